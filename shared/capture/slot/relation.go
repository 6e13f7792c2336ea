package slot

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/pgferry/pgferry/shared/batch"
)

// relation maps a published relation to the replicated table its rows
// belong to. Changes are published per partition, but a partition's rows
// belong to its root; a TRUNCATE of a partition empties only that
// partition.
type relation struct {
	table batch.Table // the replicated table (partition root or itself)
	self  batch.Table // the relation the change happened on
	cols  []string    // column names as pgoutput sends them
	key   []string    // key of the batch segments; empty: keyless
	// gone: the relation was dropped since; its changes are skipped, as
	// trigger capture skips them (its target table goes with it).
	gone bool
}

// lookup reads, from the current catalog, where a relation's rows go and
// which columns key them:
//   - REPLICA IDENTITY USING INDEX: that index's columns (UPDATEs carry
//     the old values of exactly those when they change);
//   - otherwise the root's primary key, as trigger capture uses; none
//     (keyless) is only possible with REPLICA IDENTITY FULL, whose old
//     rows are whole.
func (c *Capture) lookup(ctx context.Context, relid uint32) (relation, error) {
	var r relation
	var ident string
	var rootPK, identCols []string
	err := c.pool.QueryRow(ctx, `
		SELECT rn.nspname, rc.relname, n.nspname, c.relname, c.relreplident::text,
		       coalesce((SELECT array_agg(a.attname::text ORDER BY k.ord)
		                 FROM pg_index i
		                 CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
		                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
		                 WHERE i.indrelid = rc.oid AND i.indisprimary), '{}'),
		       coalesce((SELECT array_agg(a.attname::text ORDER BY k.ord)
		                 FROM pg_index i
		                 CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
		                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
		                 WHERE i.indrelid = c.oid AND i.indisreplident), '{}')
		FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_class rc ON rc.oid = coalesce(pg_partition_root(c.oid), c.oid)
		JOIN pg_namespace rn ON rn.oid = rc.relnamespace
		WHERE c.oid = $1`, relid).Scan(&r.table.Schema, &r.table.Name, &r.self.Schema, &r.self.Name, &ident, &rootPK, &identCols)
	if errors.Is(err, pgx.ErrNoRows) {
		r.gone = true
		return r, nil
	}
	if err != nil {
		return r, fmt.Errorf("slot: look up relation %d: %w", relid, err)
	}
	r.key = rootPK
	if ident == "i" && len(identCols) > 0 {
		r.key = identCols
	}
	return r, nil
}
