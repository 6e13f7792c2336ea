// Package checkpoint defines the drain's durable state: where capture has
// got to, and the lease that keeps two drains of a pipeline from running
// at once.
package checkpoint

import (
	"errors"
	"time"

	"github.com/pgferry/pgferry/shared/batch"
)

// Checkpoint is the drain's progress for one pipeline.
type Checkpoint struct {
	// Pos is the last position whose batches are durably queued.
	Pos batch.Position
	// Seq numbers the batches shipped so far.
	Seq uint64
	// LastSent is the To of the newest shipped batch; the next batch's
	// From, which lets appliers detect a missing batch.
	LastSent batch.Position
	// Prev is the snapshot that ends the last finished window ("" before
	// the first) and Window the end snapshot of the window being shipped
	// ("" when none is open).
	Prev, Window string
	// Lineage names this checkpoint history. It is chosen when the first
	// checkpoint is written and travels in every batch. If the checkpoint
	// store is ever lost, positions start again from the beginning; the
	// new lineage keeps those batches from being mistaken for replays of
	// the old ones (and dropped) by SQS deduplication or by a target's
	// watermark.
	Lineage string
	// Schema is the fingerprint of the replicated tables' source catalog
	// as of the last schema job the drain shipped ("" before the first):
	// when the catalog's fingerprint differs, the drain puts a schema job
	// in the stream (see drain.Options.Schema).
	Schema string
}

// Lease is a held drain lease. Gen increases every time the lease changes
// hands, and fences checkpoint writes of a holder that lost it.
type Lease struct {
	Owner   string
	Gen     int64
	Expires time.Time
}

var (
	// ErrLeaseHeld means another live holder has the lease.
	ErrLeaseHeld = errors.New("checkpoint: the drain lease is held by another drain")
	// ErrLeaseLost means the lease expired and was taken over; the caller
	// must stop without writing anything more.
	ErrLeaseLost = errors.New("checkpoint: the drain lease was lost")
	// ErrStale means the write would move the position backwards (or not
	// forward).
	ErrStale = errors.New("checkpoint: position does not advance")
)
