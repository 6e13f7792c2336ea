package rsapply

import (
	"context"
	"fmt"
	"strings"

	"github.com/pgferry/pgferry/shared/apply"
	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/redshift"
	"github.com/pgferry/pgferry/shared/redshift/rstype"
)

// tableInfo is a target table as the applier needs it: its columns'
// types, by name.
type tableInfo struct {
	cols map[string]rstype.Column
	// folded maps lower-cased names to catalog names: Redshift folds
	// identifiers to lower case (unless enable_case_sensitive_identifier),
	// so a source column "Total" is "total" there.
	folded map[string]string
}

// column returns the target name and type of batch column n.
func (ti *tableInfo) column(n string) (string, rstype.Column, bool) {
	if c, ok := ti.cols[n]; ok {
		return n, c, true
	}
	if f, ok := ti.folded[strings.ToLower(n)]; ok {
		return f, ti.cols[f], true
	}
	return "", rstype.Column{}, false
}

// lookup reads a table's columns from information_schema.columns, which
// Redshift and PostgreSQL both have. A missing table is
// apply.ErrSchemaBehind.
func lookup(ctx context.Context, ex redshift.Exec, t batch.Table) (*tableInfo, error) {
	rows, err := redshift.Columns(ctx, ex, t)
	if err != nil {
		return nil, fmt.Errorf("read target catalog for %s: %w", t, err)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("%w: table %s does not exist on the target", apply.ErrSchemaBehind, t)
	}
	ti := &tableInfo{cols: map[string]rstype.Column{}, folded: map[string]string{}}
	for _, r := range rows {
		if len(r) != 5 || r[0] == nil || r[1] == nil {
			return nil, fmt.Errorf("read target catalog for %s: unexpected row shape", t)
		}
		ti.cols[*r[0]] = rstype.ParseColumn(*r[1], redshift.Int(r[2]), redshift.Int(r[3]), redshift.Int(r[4]))
		ti.folded[strings.ToLower(*r[0])] = *r[0]
	}
	return ti, nil
}
