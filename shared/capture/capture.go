// Package capture holds what the two capture modes (capture/trigger and
// capture/slot) share: where a captured relation's rows belong and which
// columns key them, and which rows a table already holds are copied into
// the change stream when capture starts on it.
package capture

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/config"
)

// Querier runs one query returning one row (a pool, a connection or a
// transaction).
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Relation maps a captured relation to the replicated table its rows
// belong to: a partition's rows belong to its root, but a TRUNCATE of a
// partition empties only that partition.
type Relation struct {
	Table batch.Table // the replicated table (partition root or itself)
	Self  batch.Table // the relation the change happened on
	PK    []string    // primary key of the replicated table; empty: none
	// IdentityIndex lists the columns of Self's REPLICA IDENTITY USING
	// INDEX index, if it has one (slot capture keys such tables by it).
	IdentityIndex []string
	// Gone: the relation was dropped since its change was written. Its
	// changes are skipped: its target table goes with it.
	Gone bool
}

// LookupRelation reads relid's Relation from the current catalog. A
// relation that no longer exists is returned with Gone set, not an error.
func LookupRelation(ctx context.Context, q Querier, relid uint32) (Relation, error) {
	var r Relation
	err := q.QueryRow(ctx, `
		SELECT rn.nspname, rc.relname, n.nspname, c.relname,
		       coalesce((SELECT array_agg(a.attname::text ORDER BY k.ord)
		                 FROM pg_index i
		                 CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
		                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
		                 WHERE i.indrelid = rc.oid AND i.indisprimary), '{}'),
		       coalesce((SELECT array_agg(a.attname::text ORDER BY k.ord)
		                 FROM pg_index i
		                 CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
		                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
		                 WHERE i.indrelid = c.oid AND i.indisreplident AND c.relreplident = 'i'), '{}')
		FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_class rc ON rc.oid = coalesce(pg_partition_root(c.oid), c.oid)
		JOIN pg_namespace rn ON rn.oid = rc.relnamespace
		WHERE c.oid = $1`, relid).Scan(&r.Table.Schema, &r.Table.Name, &r.Self.Schema, &r.Self.Name, &r.PK, &r.IdentityIndex)
	if errors.Is(err, pgx.ErrNoRows) {
		return Relation{Gone: true}, nil
	}
	if err != nil {
		return Relation{}, fmt.Errorf("capture: look up relation %d: %w", relid, err)
	}
	return r, nil
}

// CopiesRows reports whether the rows table oid already holds are copied
// into the change stream when capture starts on it (source.copy_existing):
// never with false; only for a table without a primary key with keyless,
// or when keylessOnly (the initial load copies keyed tables itself);
// always otherwise. q must see the table as the starting transaction does.
func CopiesRows(ctx context.Context, q Querier, src config.Source, oid uint32, keylessOnly bool) (bool, error) {
	if !src.CopyExisting() {
		return false, nil
	}
	if !keylessOnly && src.CopyKeyed() {
		return true, nil
	}
	var keyed bool
	if err := q.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_index WHERE indrelid = $1 AND indisprimary)", oid).Scan(&keyed); err != nil {
		return false, fmt.Errorf("capture: does %d have a primary key: %w", oid, err)
	}
	return !keyed, nil
}
