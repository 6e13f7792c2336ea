package main

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// Redshift limits the stand-in enforces before anything reaches PostgreSQL.
const (
	maxStatementBytes  = 16 << 20 // Redshift: 16 MB per statement
	maxIdentifierBytes = 127      // Redshift: 127 bytes, longer names are truncated
	backendIdentBytes  = 63       // PostgreSQL's NAMEDATALEN-1
)

// stmtKind says what the token pass found, before any parsing.
type stmtKind int

const (
	kindSQL    stmtKind = iota // ordinary SQL for the PostgreSQL parser
	kindCopy                   // Redshift COPY, handled by the COPY translator
	kindNoop                   // Redshift-only physical design statement: accepted, nothing to do
	kindVacuum                 // VACUUM: no-op outside a transaction block
)

// lexed is one statement after the token pass: parameters numbered,
// quoted identifiers folded to lower case, Redshift-only clauses removed.
type lexed struct {
	kind   stmtKind
	sql    string         // PostgreSQL-parsable text (kindSQL)
	tokens []token        // the folded statement's tokens (kindCopy)
	args   []string       // parameter values, $1..$n
	params map[string]int // :name → n
}

// token is a scanned token with its (already folded) text.
type token struct {
	tok        pg.Token
	kw         pg.KeywordKind
	text       string
	start, end int  // where it was in the statement
	drop       bool // removed from the text PostgreSQL parses
}

func (t token) is(words ...string) bool {
	for _, w := range words {
		if strings.EqualFold(t.text, w) {
			return true
		}
	}
	return false
}

var paramName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// lex runs the token pass over one statement. params are the Data API's
// SqlParameters by name.
func lex(sql string, params map[string]string) (*lexed, error) {
	if len(sql) > maxStatementBytes {
		return nil, refuse("statement-too-large",
			"Statement is too large. Statement Size: %d bytes. Maximum Allowed: %d bytes", len(sql), maxStatementBytes)
	}
	scan, err := pg.Scan(sql)
	if err != nil {
		return nil, &sqlError{msg: err.Error()}
	}
	raw := scan.GetTokens()
	out := &lexed{params: map[string]int{}}
	toks := make([]token, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		t := raw[i]
		if t.Token == pg.Token_SQL_COMMENT || t.Token == pg.Token_C_COMMENT {
			continue
		}
		text := sql[t.Start:t.End]
		// :name parameters: a ':' directly followed by a name.
		if t.Token == pg.Token_ASCII_58 && i+1 < len(raw) && raw[i+1].Start == t.End {
			name := sql[raw[i+1].Start:raw[i+1].End]
			if paramName.MatchString(name) {
				n, ok := out.params[name]
				if !ok {
					v, given := params[name]
					if !given {
						return nil, &validationError{fmt.Sprintf("Parameter :%s is used in the SQL but no value is given for it", name)}
					}
					out.args = append(out.args, v)
					n = len(out.args)
					out.params[name] = n
				}
				toks = append(toks, token{tok: pg.Token_PARAM, text: "$" + strconv.Itoa(n), start: int(t.Start), end: int(raw[i+1].End)})
				i++
				continue
			}
		}
		if t.Token == pg.Token_PARAM {
			return nil, refuse("positional-parameter",
				"syntax error at or near %q: the Data API takes named parameters (:name), not $n", text)
		}
		if t.Token == pg.Token_IDENT {
			folded, err := foldIdent(text)
			if err != nil {
				return nil, err
			}
			text = folded
		}
		toks = append(toks, token{tok: t.Token, kw: t.KeywordKind, text: text, start: int(t.Start), end: int(t.End)})
	}
	for name := range params {
		if _, used := out.params[name]; !used {
			return nil, &validationError{fmt.Sprintf("Parameter :%s is given but not used in the SQL", name)}
		}
	}
	// One statement per SQL string; a trailing semicolon is fine.
	for len(toks) > 0 && toks[len(toks)-1].tok == pg.Token_ASCII_59 {
		toks = toks[:len(toks)-1]
	}
	if len(toks) > 0 {
		sql = sql[:toks[len(toks)-1].end]
	}
	for _, t := range toks {
		if t.tok == pg.Token_ASCII_59 {
			return nil, unsupported("multiple-statements",
				"one SQL statement per ExecuteStatement (or per Sqls entry of BatchExecuteStatement)")
		}
	}
	if len(toks) == 0 {
		return nil, &validationError{"The SQL statement is empty"}
	}
	switch {
	case toks[0].is("copy"):
		out.kind = kindCopy
		out.tokens = toks
		return out, nil
	case toks[0].is("vacuum"):
		out.kind = kindVacuum
		return out, nil
	case toks[0].is("analyze") && len(toks) > 1 && toks[1].is("compression"):
		out.kind = kindNoop
		return out, nil
	}
	toks, noop, err := stripRedshiftClauses(toks)
	if err != nil {
		return nil, err
	}
	if noop {
		out.kind = kindNoop
		return out, nil
	}
	out.sql = join(sql, toks)
	return out, nil
}

// foldIdent folds a quoted identifier to lower case, as Redshift does
// unless enable_case_sensitive_identifier is on, and checks its length.
func foldIdent(text string) (string, error) {
	name := text
	quoted := strings.HasPrefix(text, `"`)
	if quoted {
		name = strings.ReplaceAll(text[1:len(text)-1], `""`, `"`)
		name = strings.ToLower(name)
	}
	switch n := len(name); {
	case n > maxIdentifierBytes:
		return "", refuse("identifier-too-long",
			"identifier %.40q... is %d bytes; Redshift allows at most %d bytes (and silently truncates longer names)", name, n, maxIdentifierBytes)
	case n > backendIdentBytes:
		return "", unsupported("identifier-over-63-bytes",
			"identifier %.40q... is %d bytes: Redshift takes up to %d, but the stand-in's PostgreSQL keeps only %d", name, n, maxIdentifierBytes, backendIdentBytes)
	}
	if quoted {
		return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`, nil
	}
	return text, nil
}

// join rebuilds the statement from its tokens, keeping the original text
// between them (white space, comments) and leaving out dropped tokens.
func join(sql string, toks []token) string {
	var b strings.Builder
	prev := 0
	for _, t := range toks {
		b.WriteString(sql[prev:t.start])
		if !t.drop {
			b.WriteString(t.text)
		}
		prev = t.end
	}
	b.WriteString(sql[prev:])
	return b.String()
}

// stripRedshiftClauses removes Redshift's physical-design clauses
// (DISTSTYLE, DISTKEY, SORTKEY, ENCODE, BACKUP) from CREATE/ALTER TABLE,
// rewrites MAX lengths and SYSDATE, and refuses IDENTITY columns. noop is
// true for an ALTER TABLE that only changes physical design.
func stripRedshiftClauses(in []token) (out []token, noop bool, err error) {
	ddl := in[0].is("create", "alter")
	alterTable := in[0].is("alter") && len(in) > 1 && in[1].is("table")
	for i := 0; i < len(in); i++ {
		t := in[i]
		next := func(k int) token {
			if i+k < len(in) {
				return in[i+k]
			}
			return token{}
		}
		// SYSDATE (Redshift: the transaction's start, UTC, no time zone).
		if t.tok == pg.Token_IDENT && t.is("sysdate") && next(1).tok != pg.Token_ASCII_40 &&
			(i == 0 || in[i-1].tok != pg.Token_ASCII_46) {
			in[i].text = "(transaction_timestamp() AT TIME ZONE 'UTC')"
			continue
		}
		// VARCHAR(MAX), VARBYTE(MAX).
		if t.is("max") && i >= 2 && in[i-1].tok == pg.Token_ASCII_40 &&
			in[i-2].is("varchar", "nvarchar", "varbyte", "varbinary") && next(1).tok == pg.Token_ASCII_41 {
			limit := "65535"
			if in[i-2].is("varbyte", "varbinary") {
				limit = "1024000"
			}
			in[i].tok, in[i].text = pg.Token_ICONST, limit
			continue
		}
		if !ddl {
			continue
		}
		if t.is("identity") && next(1).tok == pg.Token_ASCII_40 && next(2).tok == pg.Token_ICONST {
			return nil, false, unsupported("identity-column", "IDENTITY(seed, step) columns are not emulated (pgferry copies key values)")
		}
		if t.is("collate") && next(1).is("case_insensitive", "case_sensitive") {
			return nil, false, unsupported("collate-case", "COLLATE %s is not emulated", next(1).text)
		}
		skip := 0
		switch {
		case t.is("diststyle"):
			skip = 2
		case t.is("distkey"):
			skip = 1 + parenLen(in, i+1)
		case (t.is("compound", "interleaved")) && next(1).is("sortkey"):
			skip = 2 + parenLen(in, i+2)
		case t.is("sortkey"):
			skip = 1 + parenLen(in, i+1)
			if next(1).is("auto") {
				skip = 2
			}
		case t.is("encode") && next(1).tok != pg.Token_ASCII_40 && next(1).tok != 0:
			skip = 2
		case t.is("backup") && next(1).is("yes", "no"):
			skip = 2
		}
		if skip > 0 {
			// ALTER TABLE … ALTER DISTSTYLE/DISTKEY/SORTKEY/ENCODE and
			// ALTER [COLUMN] c ENCODE e change physical design only.
			if alterTable && (in[i-1].is("alter") || (in[i-1].is("compound", "interleaved") && in[i-2].is("alter")) ||
				(t.is("encode") && (in[i-2].is("alter") || (i >= 3 && in[i-3].is("alter") && in[i-2].is("column"))))) {
				return nil, true, nil
			}
			for k := i; k < i+skip && k < len(in); k++ {
				in[k].drop = true
			}
			i += skip - 1
		}
	}
	return in, false, nil
}

// parenLen is the number of tokens of a parenthesised list starting at i
// (0 when in[i] is not '(').
func parenLen(in []token, i int) int {
	if i >= len(in) || in[i].tok != pg.Token_ASCII_40 {
		return 0
	}
	depth := 0
	for j := i; j < len(in); j++ {
		switch in[j].tok {
		case pg.Token_ASCII_40:
			depth++
		case pg.Token_ASCII_41:
			depth--
			if depth == 0 {
				return j - i + 1
			}
		}
	}
	return len(in) - i
}
