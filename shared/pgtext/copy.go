package pgtext

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/pgferry/pgferry/shared/batch"
)

// AppendCopyRow appends one line of COPY text format (tab-separated, \N for
// NULL, backslash escapes) holding the given values.
func AppendCopyRow(dst []byte, row batch.Row) []byte {
	for i, v := range row {
		if i > 0 {
			dst = append(dst, '\t')
		}
		if v == nil {
			dst = append(dst, '\\', 'N')
			continue
		}
		dst = appendCopyValue(dst, *v)
	}
	return append(dst, '\n')
}

func appendCopyValue(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			dst = append(dst, '\\', '\\')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// Settings are every setting that changes how values print or parse as
// text, with the values the capture triggers use.
var Settings = [][2]string{
	{"datestyle", "ISO, YMD"}, {"intervalstyle", "postgres"}, {"extra_float_digits", "1"},
	{"bytea_output", "hex"}, {"timezone", "UTC"},
}

// SessionSettings pins Settings for the current transaction (SET LOCAL
// statements). Any session that writes or compares captured text runs it.
var SessionSettings = func() string {
	var stmts []string
	for _, s := range Settings {
		stmts = append(stmts, fmt.Sprintf("SET LOCAL %s = '%s'", s[0], s[1]))
	}
	return strings.Join(stmts, "; ")
}()

// ParseCopyRow parses one line of COPY text format (without its newline)
// into values, the inverse of AppendCopyRow for what COPY TO writes:
// \N is NULL, and \b \f \n \r \t \v \\ and octal or \x escapes are
// decoded.
func ParseCopyRow(line []byte) (batch.Row, error) {
	var row batch.Row
	start := 0
	for i := 0; i <= len(line); i++ {
		if i < len(line) && line[i] != '\t' {
			continue
		}
		f := line[start:i]
		start = i + 1
		if string(f) == `\N` {
			row = append(row, nil)
			continue
		}
		v, err := unescapeCopy(f)
		if err != nil {
			return nil, err
		}
		row = append(row, &v)
	}
	return row, nil
}

func unescapeCopy(f []byte) (string, error) {
	if bytes.IndexByte(f, '\\') < 0 {
		return string(f), nil
	}
	out := make([]byte, 0, len(f))
	for i := 0; i < len(f); i++ {
		c := f[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		i++
		if i == len(f) {
			return "", errors.New("pgtext: COPY value ends in a backslash")
		}
		switch c = f[i]; c {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'v':
			out = append(out, '\v')
		case 'x':
			n, v := 0, byte(0)
			for n < 2 && i+1 < len(f) && isHex(f[i+1]) {
				i++
				v = v<<4 | hexVal(f[i])
				n++
			}
			if n == 0 {
				out = append(out, 'x')
			} else {
				out = append(out, v)
			}
		case '0', '1', '2', '3', '4', '5', '6', '7':
			v := c - '0'
			for n := 1; n < 3 && i+1 < len(f) && f[i+1] >= '0' && f[i+1] <= '7'; n++ {
				i++
				v = v<<3 | (f[i] - '0')
			}
			out = append(out, v)
		default:
			out = append(out, c)
		}
	}
	return string(out), nil
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func hexVal(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}
