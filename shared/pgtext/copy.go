package pgtext

import "github.com/pgferry/pgferry/shared/batch"

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

// SessionSettings pins, for the current transaction, every setting that
// changes how values print or parse as text, to the values the capture
// triggers use. Any session that writes or compares captured text runs it.
const SessionSettings = `SET LOCAL datestyle = 'ISO, YMD'; SET LOCAL intervalstyle = 'postgres';
SET LOCAL extra_float_digits = 1; SET LOCAL bytea_output = 'hex'; SET LOCAL timezone = 'UTC'`
