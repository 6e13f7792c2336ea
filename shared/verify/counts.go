package verify

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/rules"
)

// Count is one table's row count on the source and on one target.
type Count struct {
	Table                  batch.Table
	TargetTable            batch.Table // Table's name on the target (apply_schema)
	Target                 string
	SourceRows, TargetRows int64
	// NotCounted, when set, says why the two counts are not expected to
	// be equal (the target's rules keep only some rows or some
	// operations); such a count is reported, not judged.
	NotCounted string
	Err        error
}

// OK reports whether both sides hold the same number of rows, or the
// count is not judged (NotCounted).
func (c Count) OK() bool {
	return c.Err == nil && (c.NotCounted != "" || c.SourceRows == c.TargetRows)
}

// Counts compares row counts of tables between the source and each of
// cfg's targets, where the target keeps them (apply_schema), skipping the
// tables a target does not get (cheaper than Compare's checksums; under
// live writes the two sides are read at different moments). Per-table
// errors are reported in the results.
func Counts(ctx context.Context, src *pgxpool.Pool, targets map[string]Target, cfg *config.Config, tables []batch.Table) []Count {
	set := rules.ForSource(cfg, src)
	var out []Count
	for _, t := range tables {
		n, srcErr := Postgres{src}.Count(ctx, t)
		for _, name := range cfg.TargetNames() {
			c := Count{Table: t, TargetTable: OnTarget(cfg.Targets[name], t), Target: name, SourceRows: n}
			if tr := set.Target(name); tr != nil {
				if !tr.Gets(t) {
					continue
				}
				c.NotCounted = tr.RowsDiffer(t)
			}
			var err error
			if srcErr != nil {
				c.Err = fmt.Errorf("source: %w", srcErr)
			} else if c.TargetRows, err = targets[name].Count(ctx, c.TargetTable); err != nil {
				c.Err = fmt.Errorf("target: %w", err)
			}
			out = append(out, c)
		}
	}
	return out
}
