// Package pgtext reads and writes PostgreSQL's text formats: the composite
// record literal produced by record_out, and the COPY text format.
package pgtext

import (
	"fmt"
	"strings"

	"github.com/pgferry/pgferry/shared/batch"
)

// ParseRecord splits a record literal such as `(1,"a b",,"x""y")` into its
// fields, following record_in: an empty unquoted field is NULL, `""` is the
// empty string, and inside or outside quotes a backslash escapes the next
// byte. Each field keeps the column type's own text form.
func ParseRecord(s string) (batch.Row, error) {
	if len(s) < 2 || s[0] != '(' || s[len(s)-1] != ')' {
		return nil, fmt.Errorf("pgtext: malformed record literal (want parentheses): %.40q", s)
	}
	body := s[1 : len(s)-1]
	if body == "" {
		// "()" is a zero-column row; a single NULL column is also "()" in
		// record_out, and callers resolve that by the column count.
		return batch.Row{}, nil
	}
	var row batch.Row
	var b strings.Builder
	i := 0
	for {
		if i == len(body) || body[i] == ',' {
			row = append(row, nil)
		} else {
			b.Reset()
			inQuote := false
			for i < len(body) {
				c := body[i]
				switch {
				case c == '\\':
					if i+1 == len(body) {
						return nil, fmt.Errorf("pgtext: record literal ends after backslash: %.40q", s)
					}
					b.WriteByte(body[i+1])
					i += 2
					continue
				case c == '"' && inQuote && i+1 < len(body) && body[i+1] == '"':
					b.WriteByte('"')
					i += 2
					continue
				case c == '"':
					inQuote = !inQuote
				case c == ',' && !inQuote:
					goto field
				default:
					b.WriteByte(c)
				}
				i++
			}
			if inQuote {
				return nil, fmt.Errorf("pgtext: unterminated quote in record literal: %.40q", s)
			}
		field:
			v := b.String()
			row = append(row, &v)
		}
		if i >= len(body) {
			return row, nil
		}
		i++ // the comma
		if i == len(body) {
			return append(row, nil), nil
		}
	}
}

// ParseRecordN parses a record literal that must have n fields. It resolves
// the one ambiguity of record_out: "()" is a single NULL when n == 1.
func ParseRecordN(s string, n int) (batch.Row, error) {
	row, err := ParseRecord(s)
	if err != nil {
		return nil, err
	}
	if len(row) == 0 && n == 1 {
		return batch.Row{nil}, nil
	}
	if len(row) != n {
		return nil, fmt.Errorf("pgtext: record has %d fields, want %d", len(row), n)
	}
	return row, nil
}
