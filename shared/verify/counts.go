package verify

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/batch"
)

// Count is one table's row count on the source and on one target.
type Count struct {
	Table                  batch.Table
	Target                 string
	SourceRows, TargetRows int64
	Err                    error
}

// OK reports whether both sides hold the same number of rows.
func (c Count) OK() bool { return c.Err == nil && c.SourceRows == c.TargetRows }

// Counts compares row counts of tables between the source and each
// target (cheaper than Compare's checksums; under live writes the two
// sides are read at different moments). Per-table errors are reported in
// the results.
func Counts(ctx context.Context, src *pgxpool.Pool, targets map[string]*pgxpool.Pool, names []string, tables []batch.Table) []Count {
	var out []Count
	for _, t := range tables {
		q := "SELECT count(*) FROM " + pgx.Identifier{t.Schema, t.Name}.Sanitize()
		var n int64
		srcErr := src.QueryRow(ctx, q).Scan(&n)
		for _, name := range names {
			c := Count{Table: t, Target: name, SourceRows: n, Err: srcErr}
			if srcErr != nil {
				c.Err = fmt.Errorf("source: %w", srcErr)
			} else if err := targets[name].QueryRow(ctx, q).Scan(&c.TargetRows); err != nil {
				c.Err = fmt.Errorf("target: %w", err)
			}
			out = append(out, c)
		}
	}
	return out
}
