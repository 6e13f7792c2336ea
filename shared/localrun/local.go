// Package localrun is the local engine: drain and apply in one process,
// on timers that stand in for EventBridge and the SQS event source
// mapping, with --until-idle's idle check and a progress line.
package localrun

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgferry/pgferry/shared/apply"
	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/drain"
	"github.com/pgferry/pgferry/shared/metrics"
	"github.com/pgferry/pgferry/shared/queue/sqsfifo"
)

// Local runs drain and apply in one process on timers, standing in for
// EventBridge and the SQS event source mapping.
type Local struct {
	Cfg     *config.Config
	Drainer drain.Runner
	Handler *apply.Handler
	Queue   *sqsfifo.Queue
	// DLQ is the dead-letter queue batches are parked in; nil means
	// failing batches are retried without end.
	DLQ      *sqsfifo.Queue
	Log      *slog.Logger
	Progress *Progress
	// Metrics receives drain metrics; nil discards them. (Apply metrics
	// go through Handler.Metrics.)
	Metrics *metrics.EMF
	// busy, while it reports true, holds off --until-idle's exit (a job
	// running beside the loops; see RunWith).
	busy func() bool
	// AfterCycle, if set, runs after each receive whose messages included
	// an applied one (schema sync advances target sequences there). Its
	// error is logged and the loops go on; with untilIdle, Run runs it
	// once more when idle and does not report success while it fails
	// (see settle).
	AfterCycle func(context.Context) error

	// caughtUp is the start time (UnixNano) of the latest drain run that
	// found nothing new: every change committed before it is queued.
	caughtUp atomic.Int64
	// fatal carries an apply failure that exhausted its attempts.
	fatal chan error
}

// RunWith is Run with job (the initial load) running beside the drain
// and apply loops: with untilIdle it returns once job has returned and
// every change is applied; a failed job ends the run with job's error.
// The progress line stays quiet while job runs (it draws its own).
func (l *Local) RunWith(ctx context.Context, untilIdle bool, lastSent func(context.Context) (batch.Position, error), job func(context.Context) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var running atomic.Bool
	running.Store(true)
	l.busy = running.Load
	if l.Progress != nil {
		l.Progress.W = quietWhile{w: l.Progress.W, quiet: running.Load}
	}
	go func() {
		if err := job(ctx); err != nil {
			cancel(err)
			return
		}
		running.Store(false)
	}()
	err := l.Run(ctx, untilIdle, lastSent)
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return err
}

// quietWhile drops writes while quiet reports true.
type quietWhile struct {
	w     io.Writer
	quiet func() bool
}

func (q quietWhile) Write(p []byte) (int, error) {
	if q.quiet() {
		return len(p), nil
	}
	return q.w.Write(p)
}

var (
	// ErrPoison reports a batch that kept failing and was parked.
	ErrPoison = errors.New("a batch was dead-lettered")
	// ErrBlocked reports a target that cannot advance until an operator
	// acts (a parked earlier batch, or a checkpoint lineage mismatch).
	ErrBlocked = errors.New("a target is blocked")
)

// What settle allows a failing AfterCycle before --until-idle gives up: a
// failure the error classification calls transient (a connection lost, a
// server restarting) is retried for settleTransient, any other (a missing
// privilege) settleAttempts times, in case it was a passing state.
const (
	settleAttempts  = 3
	settleTransient = 30 * time.Second
)

// Run drains and applies until ctx ends. With untilIdle it returns nil as
// soon as every change committed before the call is applied to every
// target, or an error naming the batch that cannot be applied.
func (l *Local) Run(ctx context.Context, untilIdle bool, lastSent func(context.Context) (batch.Position, error)) error {
	ctx, cancel := context.WithCancel(ctx)
	l.fatal = make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); l.drainLoop(ctx, untilIdle) }()
	go func() { defer wg.Done(); l.applyLoop(ctx, untilIdle) }()
	defer func() { cancel(); wg.Wait() }()
	if l.Progress != nil {
		go l.Progress.Loop(ctx, l.Queue)
	}
	if !untilIdle {
		<-ctx.Done()
		return nil
	}
	start := time.Now().UnixNano()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var lastParkCheck time.Time
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-l.fatal:
			return err
		case <-tick.C:
		}
		if l.busy != nil && l.busy() {
			start = time.Now().UnixNano()
			continue
		}
		if l.caughtUp.Load() <= start {
			continue
		}
		done, err := l.applied(ctx, lastSent)
		if err != nil {
			l.Log.Warn("idle check", "err", err)
			continue
		}
		if done {
			return l.settle(ctx)
		}
		// Behind with everything shipped: if a batch of a lagging group is
		// parked, waiting is pointless; say which one.
		if time.Since(lastParkCheck) > 2*time.Second {
			lastParkCheck = time.Now()
			for _, name := range l.Cfg.TargetNames() {
				if p, err := l.parked(ctx, batch.Group(l.Cfg.Name, name)); err == nil && p != "" {
					return fmt.Errorf("%w: target %s waits for %s; fix the cause, then run --redrive", ErrBlocked, name, p)
				}
			}
		}
	}
}

// settle runs AfterCycle once more after everything is applied (the last
// cycle's may still be running, or may have failed) and returns nil once
// it succeeds. A failure is retried with backoff (see settleAttempts);
// one that persists is returned, so that --until-idle does not report
// success while, say, target sequences stay behind.
func (l *Local) settle(ctx context.Context) error {
	if l.AfterCycle == nil {
		return nil
	}
	first := time.Now()
	backoff := time.Duration(0)
	for attempt := 1; ; attempt++ {
		err := l.AfterCycle(ctx)
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case apply.Classify(err) == apply.Transient && time.Since(first) < settleTransient,
			apply.Classify(err) != apply.Transient && attempt < settleAttempts:
			backoff = nextBackoff(backoff)
			l.Log.Warn("after apply cycle; retrying", "err", err, "attempt", attempt, "in", backoff.Round(time.Millisecond))
			sleep(ctx, backoff)
		default:
			return fmt.Errorf("everything is applied, but %w", err)
		}
	}
}

// applied reports whether every target's watermark has reached the last
// batch the drain shipped.
func (l *Local) applied(ctx context.Context, lastSent func(context.Context) (batch.Position, error)) (bool, error) {
	ls, err := lastSent(ctx)
	if err != nil {
		return false, err
	}
	for name, t := range l.Handler.Targets {
		wm, err := t.Watermark(ctx, batch.Group(l.Cfg.Name, name))
		if err != nil {
			return false, err
		}
		if wm.Less(ls) {
			l.Log.Debug("idle check: target behind", "target", name, "applied", wm, "shipped", ls)
			return false, nil
		}
	}
	return true, nil
}

// drainLoop runs the drain on a timer. Failures are retried with backoff;
// with untilIdle, one that retrying cannot fix (a missing privilege, a
// refused set-up) ends the run with that error instead.
func (l *Local) drainLoop(ctx context.Context, untilIdle bool) {
	backoff := time.Duration(0)
	var lastBacklog time.Time
	for ctx.Err() == nil {
		started := time.Now().UnixNano()
		st, err := l.Drainer.Run(ctx)
		l.Log.Debug("drain run", "batches", st.Batches, "caught_up", st.CaughtUp, "err", err)
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, drain.ErrBusy):
			l.Log.Info("another drain holds the lease; waiting")
			backoff = l.Cfg.Drain.Lease.Duration / 4
		case err != nil && untilIdle && apply.Classify(err) == apply.Failed:
			l.fail(fmt.Errorf("drain: %w", err))
			return
		case err != nil:
			l.Metrics.Emit(metrics.Dims{metrics.DimPipeline: l.Cfg.Name}, metrics.Metric{Name: metrics.DrainFailures, Value: 1, Unit: metrics.Count})
			backoff = nextBackoff(backoff)
			l.Log.Error("drain failed; retrying", "err", err, "in", backoff.Round(time.Millisecond))
		default:
			backoff = 0
			if st.CaughtUp && st.Batches == 0 {
				l.caughtUp.Store(started)
			}
		}
		if l.Metrics != nil && time.Since(lastBacklog) > time.Minute {
			lastBacklog = time.Now()
			drain.EmitBacklog(ctx, l.Metrics, l.Drainer, l.Cfg.Name, l.Log)
		}
		sleep(ctx, max(backoff, l.Cfg.Drain.Interval.Duration))
	}
}

// applyLoop consumes the FIFO queue through the consume step (see
// apply.Consumer.Consume): a message is deleted only after its apply and
// watermark committed, and a receive is worked through up to its first
// failure; the messages after it are given back untouched, so order is
// kept.
//
// A long poll is never abandoned: a message the queue hands to a poll
// whose caller has gone stays invisible for the whole visibility timeout,
// blocking its group. Polls are short and finish even after ctx ends, and
// messages received after ctx ended are given back at once.
func (l *Local) applyLoop(ctx context.Context, untilIdle bool) {
	backoff := time.Duration(0)
	vis := l.Cfg.Apply.Visibility.Duration
	c := &apply.Consumer{
		Handler: l.Handler, Queue: l.Queue, Park: l.dlq(), Visibility: vis, Log: l.Log,
		// The progress line counts applied batches.
		AppliedLevel: slog.LevelDebug,
	}
	if l.Progress != nil {
		c.OnApplied = func(d apply.Delivery) { l.Progress.Applied(d.Batch, d.Result) }
	}
	for ctx.Err() == nil {
		msgs, err := l.Queue.Receive(context.WithoutCancel(ctx), 10, time.Second, vis)
		if err != nil {
			backoff = nextBackoff(backoff)
			l.Log.Error("receive failed; retrying", "err", err, "in", backoff.Round(time.Millisecond))
			sleep(ctx, backoff)
			continue
		}
		backoff = 0
		out := c.Consume(ctx, msgs)
		if untilIdle {
			l.stopIfStuck(ctx, out)
		}
		if out.Applied > 0 && l.AfterCycle != nil && ctx.Err() == nil {
			if err := l.AfterCycle(ctx); err != nil && ctx.Err() == nil {
				l.Log.Warn("after apply cycle", "err", err)
			}
		}
	}
}

// stopIfStuck ends an --until-idle run when a consume step parked a batch,
// or failed one that cannot advance until an operator acts: a checkpoint
// lineage mismatch, or an earlier batch of its group that is parked.
func (l *Local) stopIfStuck(ctx context.Context, out apply.Outcome) {
	for _, p := range out.Parked {
		l.fail(fmt.Errorf("%w: %s is parked in the dead-letter queue after %d attempts: %v; fix the cause, then run --redrive",
			ErrPoison, p.Delivery.Describe(p.Message), p.Message.Receives, p.Delivery.Err))
	}
	f := out.Failed
	if f == nil || f.Delivery.Class != apply.Blocked {
		return
	}
	desc := f.Delivery.Describe(f.Message)
	if errors.Is(f.Delivery.Err, apply.ErrLineage) {
		l.fail(fmt.Errorf("%w: %s: %v", ErrBlocked, desc, f.Delivery.Err))
	} else if parked, err := l.parked(ctx, f.Message.Group); err == nil && parked != "" {
		l.fail(fmt.Errorf("%w: %s waits for %s; fix the cause, then run --redrive", ErrBlocked, desc, parked))
	}
}

func (l *Local) fail(err error) {
	select {
	case l.fatal <- err:
	default:
	}
}

// dlq returns the dead-letter queue as a Parker, or nil (never park) when
// the runner has none.
func (l *Local) dlq() apply.Parker {
	if l.DLQ == nil {
		return nil
	}
	return l.DLQ
}

// parked describes the first batch of group waiting in the dead-letter
// queue, or returns "" if there is none. It peeks: every message it sees
// is made visible again at once.
func (l *Local) parked(ctx context.Context, group string) (string, error) {
	if l.DLQ == nil {
		return "", nil
	}
	msgs, err := l.DLQ.Receive(context.WithoutCancel(ctx), 10, 0, 5*time.Second)
	if err != nil {
		return "", err
	}
	found := ""
	for _, m := range msgs {
		if m.Group == group && found == "" {
			found = apply.DescribeParked(m)
		}
		_ = l.DLQ.SetVisibility(context.WithoutCancel(ctx), m, 0)
	}
	return found, nil
}

func nextBackoff(d time.Duration) time.Duration {
	d = min(max(2*d, 200*time.Millisecond), 10*time.Second)
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1)) // jitter
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
