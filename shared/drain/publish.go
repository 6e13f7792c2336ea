package drain

import (
	"context"
	"fmt"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/queue"
)

// publishAll puts b on every target's FIFO group. On return without error
// it is durably queued for all of them. The deduplication id is the
// target, lineage and end position: SQS drops a re-shipped copy within its
// five-minute window, and a later copy is a no-op at the target's
// watermark.
func publishAll(ctx context.Context, pub queue.Publisher, opts Options, b *batch.Batch) error {
	for _, target := range opts.Targets {
		b.Target = target
		body, err := b.Encode()
		if err != nil {
			return fmt.Errorf("drain: encode batch %d: %w", b.Seq, err)
		}
		dedup := fmt.Sprintf("%s.%s.%d.%d", target, b.Lineage, b.To.Tick, b.To.Tx)
		if err := pub.Publish(ctx, batch.Group(opts.Pipeline, target), dedup, body); err != nil {
			return err
		}
	}
	return nil
}

// shipped counts a queued and checkpointed batch and calls opts.OnShip.
func (st *Stats) shipped(opts Options, b *batch.Batch) {
	st.Batches++
	st.Txns += b.Txns
	st.Events += b.Events
	st.Rows += b.Rows()
	if opts.OnShip != nil {
		opts.OnShip(b)
	}
}
