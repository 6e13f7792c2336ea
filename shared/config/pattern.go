package config

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// Pattern matches schema-qualified table names. Each part is a shell glob
// (*, ?, [a-z]); a part in double quotes is matched literally, so
// `"my.schema"."Tab*"` names a schema with a dot and a table starting
// "Tab*" exactly.
type Pattern struct {
	Schema, Table string
	literal       [2]bool
}

// ParsePattern parses "schema.table".
func ParsePattern(s string) (Pattern, error) {
	parts, err := splitQualified(s)
	if err != nil {
		return Pattern{}, err
	}
	p := Pattern{Schema: parts[0].text, Table: parts[1].text, literal: [2]bool{parts[0].quoted, parts[1].quoted}}
	for i, part := range []string{p.Schema, p.Table} {
		if part == "" {
			return Pattern{}, fmt.Errorf("pattern %q has an empty %s part", s, [2]string{"schema", "table"}[i])
		}
		if !p.literal[i] {
			if _, err := path.Match(part, ""); err != nil {
				return Pattern{}, fmt.Errorf("pattern %q: %q is not a valid glob", s, part)
			}
		}
	}
	return p, nil
}

// Match reports whether schema.table matches.
func (p Pattern) Match(schema, table string) bool {
	return matchPart(p.Schema, p.literal[0], schema) && matchPart(p.Table, p.literal[1], table)
}

func matchPart(pat string, literal bool, s string) bool {
	if literal {
		return pat == s
	}
	ok, _ := path.Match(pat, s)
	return ok
}

type part struct {
	text   string
	quoted bool
}

func splitQualified(s string) ([2]part, error) {
	var parts []part
	rest := strings.TrimSpace(s)
	for {
		var p part
		if strings.HasPrefix(rest, `"`) {
			end := -1
			var b strings.Builder
			for i := 1; i < len(rest); i++ {
				if rest[i] == '"' {
					if i+1 < len(rest) && rest[i+1] == '"' {
						b.WriteByte('"')
						i++
						continue
					}
					end = i
					break
				}
				b.WriteByte(rest[i])
			}
			if end < 0 {
				return [2]part{}, fmt.Errorf("pattern %q has an unterminated quote", s)
			}
			p = part{text: b.String(), quoted: true}
			rest = rest[end+1:]
		} else {
			i := strings.IndexByte(rest, '.')
			if i < 0 {
				i = len(rest)
			}
			p = part{text: rest[:i]}
			rest = rest[i:]
		}
		parts = append(parts, p)
		if rest == "" {
			break
		}
		if rest[0] != '.' {
			return [2]part{}, fmt.Errorf("pattern %q: unexpected text after a quoted name", s)
		}
		rest = rest[1:]
	}
	if len(parts) != 2 {
		return [2]part{}, errors.New("pattern " + fmt.Sprintf("%q", s) + " must be schema-qualified, like public.* or sales.orders")
	}
	return [2]part{parts[0], parts[1]}, nil
}
