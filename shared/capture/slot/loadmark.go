package slot

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/pgferry/pgferry/shared/batch"
)

// Mark commits an initial-load mark for target, table t and loadID into
// the stream: a transactional logical decoding message, which the stream
// decodes into the row change trigger capture would deliver for an insert
// into batch.LoadMarks. It commits after every chunk copy of the load has
// read its snapshot, so every change a chunk missed comes before it in the
// stream. Writing a mark twice is harmless: the applier acts on the first.
func (c *Capture) Mark(ctx context.Context, target string, t batch.Table, loadID string) error {
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	content, err := json.Marshal(wireMessage{Mark: &loadMessage{
		ID: hex.EncodeToString(id), Target: target, Schema: t.Schema, Table: t.Name, LoadID: loadID,
	}})
	if err != nil {
		return err
	}
	if _, err := c.pool.Exec(ctx, "SELECT pg_logical_emit_message(true, $1, $2::text)", c.prefix, string(content)); err != nil {
		return explainPrivilege(fmt.Errorf("slot: write load mark for %s on target %s: %w", t, target, err))
	}
	return nil
}
