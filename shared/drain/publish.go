package drain

import (
	"context"
	"fmt"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/fault"
	"github.com/pgferry/pgferry/shared/queue"
	"github.com/pgferry/pgferry/shared/rules"
)

// cut is a batch's worth of whole transactions, compacted and ready to
// ship.
type cut struct {
	comp       *rules.Fanout  // one compacted batch per target
	txns       int            // whole transactions in comp
	to         batch.Position // position of the last one: the batch's end
	capturedAt int64          // newest commit time among them, Unix ms
	// spill, when not nil, holds the batch's rows in part objects: comp
	// is then empty and the batch ships as a manifest (batch.Parts).
	spill *spill
}

// spill is a batch whose rows went to part objects as they were read,
// because one of its transactions was larger than a batch (see
// slotRun.spillPart).
type spill struct {
	id     string              // names this spill's part objects
	keys   map[string][]string // per target: its parts, in order
	rows   map[string]int      // per target: net row operations in them
	events int                 // source row events in them
}

func (s *spill) parts(target string) ([]string, int) {
	if s == nil {
		return nil, 0
	}
	return s.keys[target], s.rows[target]
}

// shipBatch is the one step every batch takes, whichever capture read it:
//
//  1. build the batch that follows the run's checkpoint (the next Seq,
//     From the last position sent, To c.to);
//  2. renew the lease (a lost lease stops the run: another drain may be
//     writing);
//  3. publish it to every target (publishAll);
//  4. save the checkpoint at its end (Pos, Seq and LastSent; every other
//     field, such as the open window, is kept from the run's checkpoint);
//  5. call confirm, if not nil, to let the source release what the batch
//     covers.
//
// Then it counts the batch (Stats, Options.OnShip) and returns it. The
// order is the drain's guarantee: the checkpoint never runs ahead of the
// queue and the source is never confirmed ahead of the checkpoint, so a
// crash between any two steps re-ships the same batch (same lineage,
// sequence and positions, which the queue's deduplication and the
// target's watermark absorb) and never loses one.
func shipBatch(ctx context.Context, h *held, pub queue.Publisher, opts Options, st *Stats, c cut, confirm func() error) (*batch.Batch, error) {
	b := batch.Batch{
		Version:    batch.Version,
		Pipeline:   opts.Pipeline,
		Lineage:    h.cp.Lineage,
		Seq:        h.cp.Seq + 1,
		From:       h.cp.LastSent,
		To:         c.to,
		Txns:       c.txns,
		Events:     c.comp.Events(),
		CapturedAt: c.capturedAt,
	}
	if c.spill != nil {
		b.Events += c.spill.events
	}
	if err := h.renew(ctx); err != nil {
		return nil, err
	}
	if err := publishAll(ctx, pub, opts, &b, c.comp.Epochs, c.spill.parts); err != nil {
		return nil, err
	}
	fault.Point(fault.DrainSent)
	next := h.cp
	next.Pos, next.Seq, next.LastSent = b.To, b.Seq, b.To
	if err := h.save(ctx, next); err != nil {
		return nil, err
	}
	fault.Point(fault.DrainCheckpointed)
	if confirm != nil {
		if err := confirm(); err != nil {
			return nil, err
		}
	}
	st.shipped(opts, &b)
	return &b, nil
}

// publishAll puts b, with each target's own epochs (shaped by its rules),
// on every target's FIFO group. On return without error
// it is durably queued for all of them. The deduplication id is the
// target, lineage and end position: SQS drops a re-shipped copy within its
// five-minute window, and a later copy is a no-op at the target's
// watermark.
func publishAll(ctx context.Context, pub queue.Publisher, opts Options, b *batch.Batch, epochs func(target string) []batch.Epoch, parts func(target string) ([]string, int)) error {
	for _, target := range opts.Targets {
		// Encode raises the version to what this target's copy needs.
		b.Version, b.Target, b.Epochs = batch.Version, target, epochs(target)
		if parts != nil {
			if b.Parts, b.NetRows = parts(target); len(b.Parts) > 0 {
				b.Epochs = nil // all in the parts
			}
		}
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
