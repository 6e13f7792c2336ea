package slot

import (
	"context"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/capture"
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
	cr, err := capture.LookupRelation(ctx, c.pool, relid)
	if err != nil {
		return relation{}, err
	}
	r := relation{table: cr.Table, self: cr.Self, key: cr.PK, gone: cr.Gone}
	if len(cr.IdentityIndex) > 0 {
		r.key = cr.IdentityIndex
	}
	return r, nil
}
