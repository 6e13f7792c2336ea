package pgsync

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// A Tightening step that the target's rows violate is deferred (see
// Syncer.run): most often the rows of the source's backfill are still on
// their way, behind the schema job. Every sync plans it again, so the next
// schema job, the scheduled schema-diff (which ships a job while a plan is
// not empty) or a retry-after-DDL runs it. Between them, the applier tries
// it again after batches (RetryDeferred), so that it lands soon after the
// backfill does, even where no schema-diff runs (the local runner).

// Waits between retries of deferred steps after batches: the first retry
// follows the next batch, and so does the one after a retry that ran some
// of them (the backfill is arriving); a retry that ran none backs off, up
// to maxDeferredWait, since a violation the stream will never fix (rows
// only the target has) would otherwise cost a catalog diff per batch.
const (
	firstDeferredWait = time.Second
	maxDeferredWait   = 5 * time.Minute
)

// deferredState remembers whether this process's last sync deferred a
// step, and when to try again.
type deferredState struct {
	mu      sync.Mutex
	pending bool
	next    time.Time
	wait    time.Duration
}

// outcome records whether a sync that ran its whole plan deferred a step.
func (d *deferredState) outcome(deferred bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	switch {
	case !deferred:
		d.pending, d.wait = false, 0
	case !d.pending:
		d.pending, d.next, d.wait = true, now, firstDeferredWait
	default:
		d.next = now.Add(d.wait)
		d.wait = min(2*d.wait, maxDeferredWait)
	}
}

// retryNow makes the next retry due at once, with the first wait.
func (d *deferredState) retryNow() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.next, d.wait = time.Now(), firstDeferredWait
}

func (d *deferredState) due() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pending && !time.Now().Before(d.next)
}

// RetryDeferred runs the Tightening steps a sync of this process deferred
// again, when one is due (see deferredState), and returns how many ran.
// It runs them only when they are all the target lacks: otherwise a schema
// job is on its way (or schema-diff will ship one) and runs the whole
// plan, and running only part of a plan ahead of its job could use names
// the plan's other steps have not made yet. Each runs under a savepoint;
// one still violated stays deferred. Cheap when nothing is due (no query).
func (s *Syncer) RetryDeferred(ctx context.Context) (int, error) {
	if !s.deferred.due() {
		return 0, nil
	}
	des, err := s.Desired(ctx)
	if err != nil {
		return 0, err
	}
	ran := 0
	err = pgx.BeginFunc(ctx, s.dst, func(tx pgx.Tx) error {
		plan, reg, err := s.planTx(ctx, tx, des)
		if err != nil {
			return err
		}
		if plan.Empty() {
			s.deferred.outcome(false)
			return nil
		}
		for _, st := range plan.Steps {
			if !st.Tightening {
				// Not ours to run now; count it as a failed retry so that
				// the next try backs off.
				s.deferred.outcome(true)
				return nil
			}
		}
		if !sameRegistry(reg, plan.Registry) {
			s.deferred.outcome(true)
			return nil
		}
		if err := s.run(ctx, tx, plan, plan.Steps); err != nil {
			return err
		}
		ran = len(plan.Steps)
		if ran > 0 && len(plan.Deferred) > 0 {
			// Progress: the rest may need only the next batch.
			s.deferred.retryNow()
		} else {
			s.deferred.outcome(len(plan.Deferred) > 0)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("targets.%s: retrying deferred schema steps: %w", s.target, err)
	}
	if ran > 0 {
		s.log.Info("schema sync ran steps it had deferred", "target", s.target, "statements", ran)
	}
	return ran, nil
}
