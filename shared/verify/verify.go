// Package verify compares replicated tables between the source and a
// target: row count and an order-independent checksum of every row's text.
package verify

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/pgtext"
	"github.com/pgferry/pgferry/shared/rules"
)

// Table is one table's comparison.
type Table struct {
	Table batch.Table // the source table
	// TargetTable is where Table lives on Target: the same name, or the
	// name in the target's apply_schema.
	TargetTable    batch.Table
	Target         string
	SourceRows     int64
	TargetRows     int64
	SourceChecksum string
	TargetChecksum string
	Err            error
}

// OK reports whether the target matches the source.
func (t Table) OK() bool {
	return t.Err == nil && t.SourceRows == t.TargetRows && t.SourceChecksum == t.TargetChecksum
}

// Tables lists the replicated tables of the source: plain tables and
// partitioned roots matching the patterns, in name order.
func Tables(ctx context.Context, src *pgxpool.Pool, cfg *config.Config) ([]batch.Table, error) {
	return rules.ReplicatedTables(ctx, src, cfg)
}

// Target is a target as verify reads it; each target kind supplies one
// (PostgreSQL: Postgres). Both methods only read.
type Target interface {
	// Checksum returns t's row count and an order-independent checksum of
	// its rows, each rendered from the columns cols, in that order, the
	// way Postgres renders them on the source: equal values give equal
	// checksums whatever the target kind stores them as.
	Checksum(ctx context.Context, t batch.Table, cols []string) (rows int64, sum string, err error)
	// Count returns t's row count.
	Count(ctx context.Context, t batch.Table) (int64, error)
	// SumRows returns t's row count and a checksum of its rows over cols
	// as a target shaped by rules holds them (see compareShaped): each
	// row's COPY text hashed and summed; with live, soft-deleted rows
	// are left out.
	SumRows(ctx context.Context, t batch.Table, cols []string, live bool) (rows int64, sum string, err error)
}

// Postgres reads a PostgreSQL database (the source, or a postgres
// target).
type Postgres struct{ Pool *pgxpool.Pool }

var _ Target = Postgres{}

// Checksum sums the first 60 bits of each row's md5; rows are rendered in
// the given column order with fixed output settings, so both sides print
// identical text for identical values.
func (p Postgres) Checksum(ctx context.Context, t batch.Table, cols []string) (int64, string, error) {
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = "t." + pgx.Identifier{c}.Sanitize()
	}
	row := "ROW(" + strings.Join(q, ", ") + ")"
	var n int64
	var sum string
	err := pgx.BeginFunc(ctx, p.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, pgtext.SessionSettings); err != nil {
			return err
		}
		return tx.QueryRow(ctx, fmt.Sprintf(`SELECT count(*), coalesce(sum(('x' || substr(md5(%s::text), 1, 15))::bit(60)::bigint), 0)::text FROM %s t`,
			row, pgx.Identifier{t.Schema, t.Name}.Sanitize())).Scan(&n, &sum)
	})
	return n, sum, err
}

// Count returns t's row count.
func (p Postgres) Count(ctx context.Context, t batch.Table) (int64, error) {
	var n int64
	err := p.Pool.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{t.Schema, t.Name}.Sanitize()).Scan(&n)
	return n, err
}

// Compare checks every replicated table on every target (by name). Per-table errors
// are reported in the results, not returned.
func Compare(ctx context.Context, src *pgxpool.Pool, targets map[string]Target, cfg *config.Config) ([]Table, error) {
	tables, err := Tables(ctx, src, cfg)
	if err != nil {
		return nil, err
	}
	set := rules.ForSource(cfg, src)
	var out []Table
	for _, t := range tables {
		cols, err := columns(ctx, src, t)
		if err != nil {
			return nil, err
		}
		sRows, sSum, err := Postgres{src}.Checksum(ctx, t, cols)
		if err != nil {
			return nil, fmt.Errorf("verify: source %s: %w", t, err)
		}
		for _, name := range cfg.TargetNames() {
			on := OnTarget(cfg.Targets[name], t)
			r := Table{Table: t, TargetTable: on, Target: name, SourceRows: sRows, SourceChecksum: sSum}
			if tr := set.Target(name); tr != nil {
				if !tr.Gets(t) {
					continue
				}
				// Through the target's rules: both sides summed in Go.
				r.SourceRows, r.SourceChecksum, r.TargetRows, r.TargetChecksum, r.Err = compareShaped(ctx, src, targets[name], tr, t, on)
				if errors.Is(r.Err, errNotComparable) {
					continue // documented: such a table is not compared
				}
				if r.Err != nil {
					r.Err = fmt.Errorf("target %s, table %s: %w", name, on, r.Err)
				}
				out = append(out, r)
				continue
			}
			if m, ok := targets[name].(Mapper); ok {
				// Through the target's type map: both sides summed in Go.
				r.SourceRows, r.SourceChecksum, r.TargetRows, r.TargetChecksum, r.Err = compareMapped(ctx, src, targets[name], m, t, on, cols)
				if r.Err != nil {
					r.Err = fmt.Errorf("target %s, table %s: %w", name, on, r.Err)
				}
				out = append(out, r)
				continue
			}
			r.TargetRows, r.TargetChecksum, r.Err = targets[name].Checksum(ctx, on, cols)
			if r.Err != nil {
				r.Err = fmt.Errorf("target %s, table %s: %w", name, on, r.Err)
			}
			out = append(out, r)
		}
	}
	return out, nil
}

// compareMapped sums the source's rows of t mapped by m, and target
// table on's rows as dst renders them (see Mapper).
func compareMapped(ctx context.Context, src *pgxpool.Pool, dst Target, m Mapper, t, on batch.Table, cols []string) (sRows int64, sSum string, dRows int64, dSum string, err error) {
	fn, err := m.MapRow(ctx, on, cols)
	if err != nil {
		return 0, "", 0, "", err
	}
	if sRows, sSum, err = sumRows(ctx, src, t, cols, "", fn); err != nil {
		return 0, "", 0, "", fmt.Errorf("source: %w", err)
	}
	dRows, dSum, err = dst.SumRows(ctx, on, cols, false)
	return sRows, sSum, dRows, dSum, err
}

// OnTarget returns the name source table t has on target: with an
// apply_schema every replicated table lives in that schema under its own
// name, as schema sync creates it and the applier writes it (see
// pgsync.Applier.mapBatch); otherwise it keeps its name.
func OnTarget(target config.Target, t batch.Table) batch.Table {
	if target.ApplySchema != "" {
		t.Schema = target.ApplySchema
	}
	return t
}

func columns(ctx context.Context, pool *pgxpool.Pool, t batch.Table) ([]string, error) {
	var cols []string
	err := pool.QueryRow(ctx, `
		SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a
		WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped`,
		pgx.Identifier{t.Schema, t.Name}.Sanitize()).Scan(&cols)
	if err != nil {
		return nil, fmt.Errorf("verify: columns of %s: %w", t, err)
	}
	return cols, nil
}
