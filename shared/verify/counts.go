package verify

import (
	"context"
	"fmt"

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
func Counts(ctx context.Context, src *pgxpool.Pool, targets map[string]Target, names []string, tables []batch.Table) []Count {
	var out []Count
	for _, t := range tables {
		n, srcErr := Postgres{src}.Count(ctx, t)
		for _, name := range names {
			c := Count{Table: t, Target: name, SourceRows: n, Err: srcErr}
			var err error
			if srcErr != nil {
				c.Err = fmt.Errorf("source: %w", srcErr)
			} else if c.TargetRows, err = targets[name].Count(ctx, t); err != nil {
				c.Err = fmt.Errorf("target: %w", err)
			}
			out = append(out, c)
		}
	}
	return out
}
