// Package checkpoint defines the drain's durable state: where capture has
// got to, and the lease that keeps two drains of a pipeline from running
// at once.
package checkpoint

import (
	"errors"
	"sort"
	"strings"
	"time"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/config"
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
	// Capture is the capture mode (config.CaptureTrigger or
	// config.CaptureSlot) whose positions this checkpoint holds. Positions
	// of one mode mean nothing to the other, so a drain of the other mode
	// must not continue from it (see Mode). "" in checkpoints saved before
	// the mode was recorded.
	Capture string
	// Rules is the rules fingerprint (config.RulesFingerprint) each target
	// was shipped under, in EncodeRules form ("" in checkpoints saved
	// before it was recorded). A drain compares it with its configuration
	// before shipping (drain.CheckRules).
	Rules string
	// Resend, under slot capture, describes the batch ending at Pos while
	// it may not be on the queue: the slot drain saves a batch's
	// checkpoint before it publishes the batch, because a later read of
	// the slot cannot know where an earlier run cut (see
	// drain.SlotDrainer). Pending is false otherwise.
	Resend Resend
	// Saved is when the checkpoint was last written (zero if unknown). It
	// is read, never written, by the caller: the store sets it.
	Saved time.Time
}

// Resend is a checkpointed batch that may not have been published. The
// next drain reads its transactions again, from Read, and publishes it
// again, from From to exactly the checkpoint's Pos with the checkpoint's
// Seq, before anything else.
type Resend struct {
	Pending bool
	// Read is the checkpoint's Pos before the batch: where its
	// transactions are read from. From is the batch's From.
	Read, From batch.Position
}

// Mode returns the capture mode the checkpoint belongs to: the recorded
// one, or, for a checkpoint saved before the mode was recorded (inferred
// is then true), the one its shape shows. Trigger capture stores the
// snapshot ending its last window (Prev, or Window while one is open)
// from its very first save; slot capture never stores a snapshot (its
// positions are LSNs). A checkpoint that was never saved has no mode ("").
func (cp Checkpoint) Mode() (mode string, inferred bool) {
	switch {
	case cp.Capture != "":
		return cp.Capture, false
	case cp.Prev != "" || cp.Window != "":
		return config.CaptureTrigger, true
	case cp.Lineage != "" || cp.Pos != (batch.Position{}):
		return config.CaptureSlot, true
	}
	return "", false
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

// EncodeRules writes fingerprints by target name as Checkpoint.Rules:
// "name=fingerprint" pairs, sorted, joined by ";" (target names and
// fingerprints hold neither).
func EncodeRules(m map[string]string) string {
	parts := make([]string, 0, len(m))
	for n, fp := range m {
		parts = append(parts, n+"="+fp)
	}
	sort.Strings(parts)
	return strings.Join(parts, ";")
}

// DecodeRules reads Checkpoint.Rules back (nil for "").
func DecodeRules(s string) map[string]string {
	if s == "" {
		return nil
	}
	out := map[string]string{}
	for _, p := range strings.Split(s, ";") {
		if n, fp, ok := strings.Cut(p, "="); ok {
			out[n] = fp
		}
	}
	return out
}
