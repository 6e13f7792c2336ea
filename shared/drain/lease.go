package drain

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/pgferry/pgferry/shared/checkpoint"
)

// acquire takes the pipeline's drain lease for one run. The returned
// release gives it back (best effort: an unreleased lease only expires).
// The two debug lines bracket the time the drain surely held the lease;
// tests check that two drains' brackets never overlap.
func acquire(ctx context.Context, cps Checkpoints, opts Options, log *slog.Logger) (checkpoint.Lease, func(), error) {
	lease, err := cps.Acquire(ctx, opts.Owner, opts.Lease)
	if err != nil {
		return lease, nil, err
	}
	log.Debug("drain lease acquired", "owner", lease.Owner, "generation", lease.Gen)
	release := func() {
		log.Debug("drain lease releasing", "owner", lease.Owner, "generation", lease.Gen)
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := cps.Release(rctx, lease); err != nil {
			log.Warn("release drain lease", "err", err)
		}
	}
	return lease, release, nil
}

// held is a run's lease and the checkpoint it writes under it.
type held struct {
	store Checkpoints
	ttl   time.Duration
	lease checkpoint.Lease
	cp    checkpoint.Checkpoint
	// marked: the stored checkpoint marks its batch as one to resend
	// (checkpoint.Resend), whether or not cp still does.
	marked bool
}

// save writes cp under the lease and makes it the run's checkpoint.
func (h *held) save(ctx context.Context, cp checkpoint.Checkpoint) error {
	if err := h.store.Save(ctx, h.lease, cp); err != nil {
		return err
	}
	h.cp, h.marked = cp, cp.Resend.Pending
	return nil
}

// settle clears the stored checkpoint's resend mark once the run knows
// its batch is on the queue, so that the next run need not read it
// again and a schema job outside a run (ShipSchemaJob) may follow it.
// Leaving the mark is harmless: the next run resends a duplicate, or
// finds the slot confirmed past the batch.
func (h *held) settle(ctx context.Context) error {
	if !h.marked || h.cp.Resend.Pending {
		return nil
	}
	if err := h.store.ClearResend(ctx, h.lease, h.cp.Pos); err != nil {
		return err
	}
	h.marked = false
	return nil
}

// renew extends the lease once half of it has gone. A lost lease stops
// the run: another drain may be writing.
func (h *held) renew(ctx context.Context) error {
	if time.Until(h.lease.Expires) > h.ttl/2 {
		return nil
	}
	l, err := h.store.Renew(ctx, h.lease, h.ttl)
	if err != nil {
		if errors.Is(err, checkpoint.ErrLeaseLost) {
			return fmt.Errorf("drain: stopping: %w", err)
		}
		return err
	}
	h.lease = l
	return nil
}
