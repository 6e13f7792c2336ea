package drain

import (
	"context"
	"fmt"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/checkpoint"
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
	// checkpointFirst saves the checkpoint before publishing (slot
	// capture; see shipBatch).
	checkpointFirst bool
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
//
// That needs a re-read to cut the same batch, which trigger capture's
// windows guarantee and a slot's stream does not: a later run reads on to
// a later heartbeat and would cut wider, and a wider batch that overlaps
// one a target already applied is not a replay (its net changes assume
// the target is at its From: a row the first batch inserted and a later
// transaction deleted nets to nothing, and the delete is lost). With
// c.checkpointFirst (slot capture) steps 3 and 4 swap: the checkpoint,
// saved first, records the batch as one to resend (checkpoint.Resend),
// so a run that fails before the batch is surely on the queue leaves its
// exact range behind, and the next run re-cuts and resends exactly that
// batch (resendBatch) before anything else.
func shipBatch(ctx context.Context, h *held, pub queue.Publisher, opts Options, st *Stats, c cut, confirm func() error) (*batch.Batch, error) {
	b := newBatch(opts, h.cp.Lineage, h.cp.Seq+1, h.cp.LastSent, c)
	if err := h.renew(ctx); err != nil {
		return nil, err
	}
	next := h.cp
	next.Pos, next.Seq, next.LastSent, next.Resend = b.To, b.Seq, b.To, checkpoint.Resend{}
	if c.checkpointFirst {
		next.Resend = checkpoint.Resend{Pending: true, Read: h.cp.Pos, From: b.From}
		if err := h.save(ctx, next); err != nil {
			return nil, err
		}
		fault.Point(fault.DrainCheckpointed)
	}
	if err := publishAll(ctx, pub, opts, &b, c.comp.Epochs, c.spill.parts); err != nil {
		return nil, err
	}
	fault.Point(fault.DrainSent)
	if c.checkpointFirst {
		// On the queue: nothing to resend. The stored checkpoint says so
		// from the next save on; until then a new run resends a duplicate.
		h.cp.Resend = checkpoint.Resend{}
	} else {
		if err := h.save(ctx, next); err != nil {
			return nil, err
		}
		fault.Point(fault.DrainCheckpointed)
	}
	if confirm != nil {
		if err := confirm(); err != nil {
			return nil, err
		}
	}
	st.shipped(opts, &b)
	return &b, nil
}

// resendBatch publishes again the batch that the run's checkpoint records
// as possibly unsent (checkpoint.Resend), re-cut in c from the same
// transactions: the same Seq, From and To, so the same deduplication id,
// and the same net changes. It then confirms as shipBatch does. The
// stored checkpoint keeps the mark until the next save, which clears it.
func resendBatch(ctx context.Context, h *held, pub queue.Publisher, opts Options, st *Stats, c cut, confirm func() error) (*batch.Batch, error) {
	rs := h.cp.Resend
	if !rs.Pending || c.to != h.cp.Pos {
		return nil, fmt.Errorf("drain: resend a batch ending at %s, but the checkpoint holds %s (pending %t)", c.to, h.cp.Pos, rs.Pending)
	}
	b := newBatch(opts, h.cp.Lineage, h.cp.Seq, rs.From, c)
	if err := h.renew(ctx); err != nil {
		return nil, err
	}
	if err := publishAll(ctx, pub, opts, &b, c.comp.Epochs, c.spill.parts); err != nil {
		return nil, err
	}
	fault.Point(fault.DrainSent)
	h.cp.Resend = checkpoint.Resend{}
	if confirm != nil {
		if err := confirm(); err != nil {
			return nil, err
		}
	}
	st.shipped(opts, &b)
	return &b, nil
}

func newBatch(opts Options, lineage string, seq uint64, from batch.Position, c cut) batch.Batch {
	b := batch.Batch{
		Version:    batch.Version,
		Pipeline:   opts.Pipeline,
		Lineage:    lineage,
		Seq:        seq,
		From:       from,
		To:         c.to,
		Txns:       c.txns,
		Events:     c.comp.Events(),
		CapturedAt: c.capturedAt,
	}
	if c.spill != nil {
		b.Events += c.spill.events
	}
	return b
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
