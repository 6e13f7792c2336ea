package schema

import "strings"

// rewriteNames returns sql with every schema-qualified reference
// schema.name for which move returns a new schema changed to that schema
// (move returns it as SQL text, already quoted as the server would).
// It scans SQL lexically: string literals, dollar-quoted strings, quoted
// identifiers and comments are skipped intact, so a name inside a
// function body written as a string, or inside a literal, is never
// touched. Catalog deparse functions write identifiers the canonical way
// (quote_ident), which is what makes this reliable.
func rewriteNames(sql string, move func(schema, name string) (string, bool)) string {
	var out strings.Builder
	type tok struct {
		start, end int
		ident      string
		isIdent    bool
	}
	var prev [3]tok // last three significant tokens: ident '.' ident
	n := 0
	last := 0 // bytes of sql copied to out
	push := func(t tok) {
		prev[0], prev[1], prev[2] = prev[1], prev[2], t
		n++
	}
	i := 0
	for i < len(sql) {
		c := sql[i]
		switch {
		case c == '\'' || ((c == 'E' || c == 'e') && i+1 < len(sql) && sql[i+1] == '\'' && !identByte(prevByte(sql, i))):
			esc := c != '\''
			if esc {
				i++
			}
			j := i + 1
			for j < len(sql) {
				if esc && sql[j] == '\\' {
					j += 2
					continue
				}
				if sql[j] == '\'' {
					if j+1 < len(sql) && sql[j+1] == '\'' {
						j += 2
						continue
					}
					break
				}
				j++
			}
			start := i
			i = min(j+1, len(sql))
			push(tok{})
			// 'schema.name'::regclass names a relation inside a literal
			// (a serial column's nextval default): move it too.
			if !esc && strings.HasPrefix(sql[i:], "::regclass") {
				if q, raw, ok := parseQualified(strings.ReplaceAll(sql[start+1:i-1], "''", "'")); ok {
					if to, ok := move(q[0], q[1]); ok {
						out.WriteString(sql[last:start])
						out.WriteString(quoteLiteral(to + "." + raw))
						last = i
					}
				}
			}
		case c == '$' && !identByte(prevByte(sql, i)):
			// $tag$ … $tag$ (or a $1 parameter, which is just skipped).
			j := i + 1
			for j < len(sql) && identByte(sql[j]) && sql[j] != '$' {
				j++
			}
			if j < len(sql) && sql[j] == '$' {
				tag := sql[i : j+1]
				end := strings.Index(sql[j+1:], tag)
				if end < 0 {
					i = len(sql)
				} else {
					i = j + 1 + end + len(tag)
				}
			} else {
				i = j
			}
			push(tok{})
		case c == '-' && i+1 < len(sql) && sql[i+1] == '-':
			j := strings.IndexByte(sql[i:], '\n')
			if j < 0 {
				i = len(sql)
			} else {
				i += j
			}
		case c == '/' && i+1 < len(sql) && sql[i+1] == '*':
			j := strings.Index(sql[i+2:], "*/")
			if j < 0 {
				i = len(sql)
			} else {
				i += j + 4
			}
		case c == '"':
			j := i + 1
			var b strings.Builder
			for j < len(sql) {
				if sql[j] == '"' {
					if j+1 < len(sql) && sql[j+1] == '"' {
						b.WriteByte('"')
						j += 2
						continue
					}
					break
				}
				b.WriteByte(sql[j])
				j++
			}
			push(tok{start: i, end: min(j+1, len(sql)), ident: b.String(), isIdent: true})
			i = min(j+1, len(sql))
		case identStart(c):
			j := i + 1
			for j < len(sql) && identByte(sql[j]) {
				j++
			}
			// Unquoted identifiers are folded to lower case.
			push(tok{start: i, end: j, ident: strings.ToLower(sql[i:j]), isIdent: true})
			i = j
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
			continue
		default:
			if c == '.' {
				push(tok{start: i, end: i + 1, ident: "."})
			} else {
				push(tok{})
			}
			i++
		}
		if n >= 3 && prev[0].isIdent && !prev[1].isIdent && prev[1].ident == "." && prev[2].isIdent &&
			prev[1].start == prev[0].end && prev[2].start == prev[1].end && !precededByDot(sql, prev[0].start) {
			if to, ok := move(prev[0].ident, prev[2].ident); ok {
				out.WriteString(sql[last:prev[0].start])
				out.WriteString(to)
				last = prev[0].end
			}
		}
	}
	if last == 0 {
		return sql
	}
	out.WriteString(sql[last:])
	return out.String()
}

func prevByte(s string, i int) byte {
	if i == 0 {
		return ' '
	}
	return s[i-1]
}

func precededByDot(s string, i int) bool { return i > 0 && s[i-1] == '.' }

func identStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80
}

func identByte(c byte) bool { return identStart(c) || (c >= '0' && c <= '9') || c == '$' }

// parseQualified splits a two-part name written as SQL ("a"."B", a.b),
// folding unquoted parts to lower case. raw is the name part as written.
func parseQualified(s string) (parts2 [2]string, raw string, ok bool) {
	var parts []string
	for len(s) > 0 {
		raw = s
		if s[0] == '"' {
			var b strings.Builder
			j := 1
			for ; j < len(s); j++ {
				if s[j] == '"' {
					if j+1 < len(s) && s[j+1] == '"' {
						b.WriteByte('"')
						j++
						continue
					}
					break
				}
				b.WriteByte(s[j])
			}
			if j >= len(s) {
				return [2]string{}, "", false
			}
			parts = append(parts, b.String())
			raw = raw[:j+1]
			s = s[j+1:]
		} else {
			j := strings.IndexByte(s, '.')
			if j < 0 {
				j = len(s)
			}
			parts = append(parts, strings.ToLower(s[:j]))
			raw = raw[:j]
			s = s[j:]
		}
		if len(s) > 0 {
			if s[0] != '.' {
				return [2]string{}, "", false
			}
			s = s[1:]
		}
	}
	if len(parts) != 2 {
		return [2]string{}, "", false
	}
	return [2]string{parts[0], parts[1]}, raw, true
}
