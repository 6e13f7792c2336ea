package apply

import (
	"context"
	"errors"
	"fmt"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/metrics"
	"github.com/pgferry/pgferry/shared/queue"
)

// Result describes one applied batch.
type Result struct {
	Applied bool // false: the batch was at or below the watermark (a replay)
	Rows    int  // net row operations written
}

// Applier writes batches to one target.
type Applier interface {
	// Apply applies b atomically with its watermark and returns once both
	// are committed. Idempotent: a batch ending at or below the watermark
	// is a no-op (Result.Applied false). A batch starting after the
	// watermark fails with ErrGap and changes nothing.
	Apply(ctx context.Context, b *batch.Batch) (Result, error)
	// Watermark returns the applied position of a message group, or the
	// zero position if nothing was applied yet.
	Watermark(ctx context.Context, group string) (batch.Position, error)
}

// Parts streams the rows of a spilled batch (batch.Batch.Parts): it
// calls each with every part's epochs in order, holding one part at a
// time, and stops at the first error.
type Parts func(ctx context.Context, each func([]batch.Epoch) error) error

// PartsApplier is an Applier that can apply a spilled batch.
type PartsApplier interface {
	// ApplyParts applies b, whose rows parts streams, as Apply applies a
	// batch: in one transaction with its watermark, idempotent, and
	// rolled back whole if anything fails, the reading of a part included.
	ApplyParts(ctx context.Context, b *batch.Batch, parts Parts) (Result, error)
}

// ErrCannotStream reports a spilled batch for a target whose applier
// cannot apply one.
var ErrCannotStream = errors.New("apply: this target cannot apply a batch spilled in parts")

// StoredParts streams keys from store (see queue.OpenPart).
func StoredParts(store queue.PayloadStore, keys []string) Parts {
	return func(ctx context.Context, each func([]batch.Epoch) error) error {
		for _, k := range keys {
			data, err := queue.OpenPart(ctx, store, k)
			if err != nil {
				return err
			}
			eps, err := batch.DecodePart(data)
			if err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
			if err := each(eps); err != nil {
				return err
			}
		}
		return nil
	}
}

// Handler turns queue messages into applied batches.
type Handler struct {
	Pipeline string
	Targets  map[string]Applier
	Payloads queue.PayloadStore
	// MaxAttempts is how many receives a Failed batch gets before Deliver
	// parks it (apply.max_attempts).
	MaxAttempts int
	// Metrics receives apply metrics; nil discards them.
	Metrics *metrics.EMF
}

// Handle decodes one message body (following a claim check if needed) and
// applies it to its target. It returns the decoded batch when decoding
// succeeded, even if applying failed.
func (h *Handler) Handle(ctx context.Context, body []byte) (*batch.Batch, Result, error) {
	data, err := queue.Open(ctx, h.Payloads, body)
	if err != nil {
		return nil, Result{}, err
	}
	b, err := batch.Decode(data)
	if err != nil {
		return nil, Result{}, err
	}
	if b.Pipeline != h.Pipeline {
		return b, Result{}, fmt.Errorf("apply: batch %d belongs to pipeline %q, not %q", b.Seq, b.Pipeline, h.Pipeline)
	}
	t, ok := h.Targets[b.Target]
	if !ok {
		return b, Result{}, fmt.Errorf("apply: batch %d is for target %q, which is not configured", b.Seq, b.Target)
	}
	if len(b.Parts) > 0 {
		pa, ok := t.(PartsApplier)
		if !ok {
			return b, Result{}, fmt.Errorf("%w: batch %d (%d parts) for target %q; raise batch.max_rows and batch.max_bytes above the largest source transaction",
				ErrCannotStream, b.Seq, len(b.Parts), b.Target)
		}
		res, err := pa.ApplyParts(ctx, b, StoredParts(h.Payloads, b.Parts))
		return b, res, err
	}
	res, err := t.Apply(ctx, b)
	return b, res, err
}
