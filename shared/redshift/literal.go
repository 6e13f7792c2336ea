package redshift

import (
	"fmt"
	"strings"
)

// Literal renders s as a SQL string literal that means s on Redshift and
// on PostgreSQL alike. Single quotes are doubled. Backslashes are refused:
// Redshift reads a backslash in a literal as an escape and PostgreSQL
// (standard_conforming_strings) does not, so no one spelling is safe on
// both. Control characters are refused too. Callers use it for names and
// identifiers they checked (pipeline, group, lineage, S3 URLs, role ARNs)
// and for catalog lookups by table name.
func Literal(s string) (string, error) {
	for _, r := range s {
		if r == '\\' || r < 0x20 || r == 0x7f {
			return "", fmt.Errorf("redshift: %q cannot be written as a SQL literal (backslash or control character)", s)
		}
	}
	return "'" + strings.ReplaceAll(s, "'", "''") + "'", nil
}
