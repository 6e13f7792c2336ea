package redshift

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/pgferry/pgferry/shared/batch"
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

// Columns reads table t's columns from information_schema.columns, which
// Redshift and PostgreSQL both have: per column its name, data_type,
// character_maximum_length, numeric_precision and numeric_scale, in
// order. Redshift folds identifiers to lower case, quoted ones too
// (unless enable_case_sensitive_identifier is on), so a table not found
// under its own name is looked up under its lower-cased name. No rows:
// the table does not exist.
func Columns(ctx context.Context, ex Exec, t batch.Table) ([][]*string, error) {
	var rows [][]*string
	for _, tb := range []batch.Table{t, {Schema: strings.ToLower(t.Schema), Name: strings.ToLower(t.Name)}} {
		s, err := Literal(tb.Schema)
		if err != nil {
			return nil, err
		}
		n, err := Literal(tb.Name)
		if err != nil {
			return nil, err
		}
		rows, err = ex.Query(ctx, `SELECT column_name, data_type, character_maximum_length, numeric_precision, numeric_scale
FROM information_schema.columns WHERE table_schema = `+s+` AND table_name = `+n+` ORDER BY ordinal_position`)
		if err != nil || len(rows) > 0 {
			return rows, err
		}
	}
	return nil, nil
}

// Int reads an integer catalog field of a Query row (NULL or not a number:
// 0), such as character_maximum_length or numeric_scale.
func Int(v *string) int {
	if v == nil {
		return 0
	}
	i, _ := strconv.Atoi(*v)
	return i
}
