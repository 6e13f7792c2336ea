package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgferry/pgferry/shared/apply"
	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/drain"
	"github.com/pgferry/pgferry/shared/queue"
	"github.com/pgferry/pgferry/shared/queue/sqsfifo"
)

// Local runs drain and apply in one process on timers, standing in for
// EventBridge and the SQS event source mapping.
type Local struct {
	Cfg      *config.Config
	Drainer  Drain
	Handler  *apply.Handler
	Queue    *sqsfifo.Queue
	Log      *slog.Logger
	Progress *Progress

	// caughtUp is the start time (UnixNano) of the latest drain run that
	// found nothing new: every change committed before it is queued.
	caughtUp atomic.Int64
	// fatal carries an apply failure that exhausted its attempts.
	fatal chan error
}

// Drain is one drain run of either capture mode: it ships every change
// committed before it started (or stops at its deadline margin) and
// checkpoints after each batch is queued. See drain.Drainer.Run.
type Drain interface {
	Run(ctx context.Context) (drain.Stats, error)
}

// ErrPoison reports a batch that kept failing.
var ErrPoison = errors.New("a batch keeps failing")

// Run drains and applies until ctx ends. With untilIdle it returns nil as
// soon as every change committed before the call is applied to every
// target, or an error naming the batch that cannot be applied.
func (l *Local) Run(ctx context.Context, untilIdle bool, lastSent func(context.Context) (batch.Position, error)) error {
	ctx, cancel := context.WithCancel(ctx)
	l.fatal = make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); l.drainLoop(ctx) }()
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
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-l.fatal:
			return err
		case <-tick.C:
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
			return nil
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

func (l *Local) drainLoop(ctx context.Context) {
	backoff := time.Duration(0)
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
		case err != nil:
			backoff = nextBackoff(backoff)
			l.Log.Error("drain failed; retrying", "err", err, "in", backoff.Round(time.Millisecond))
		default:
			backoff = 0
			if st.CaughtUp && st.Batches == 0 {
				l.caughtUp.Store(started)
			}
		}
		sleep(ctx, max(backoff, l.Cfg.Drain.Interval.Duration))
	}
}

// applyLoop consumes the FIFO queue. Messages of one group arrive in
// order; after a failure the rest of that group's messages in the same
// receive are released untouched, so order is kept. A message is deleted
// only after its apply and watermark committed.
//
// A long poll is never abandoned: a message the queue hands to a poll
// whose caller has gone stays invisible for the whole visibility timeout,
// blocking its group. Polls are short and finish even after ctx ends, and
// messages received after ctx ended are given back at once.
func (l *Local) applyLoop(ctx context.Context, untilIdle bool) {
	backoff := time.Duration(0)
	vis := l.Cfg.Apply.Visibility.Duration
	for ctx.Err() == nil {
		msgs, err := l.Queue.Receive(context.WithoutCancel(ctx), 10, time.Second, vis)
		if err != nil {
			backoff = nextBackoff(backoff)
			l.Log.Error("receive failed; retrying", "err", err, "in", backoff.Round(time.Millisecond))
			sleep(ctx, backoff)
			continue
		}
		backoff = 0
		failed := map[string]bool{}
		for _, m := range msgs {
			if failed[m.Group] || ctx.Err() != nil {
				_ = l.Queue.SetVisibility(context.WithoutCancel(ctx), m, 0)
				continue
			}
			if err := l.handle(ctx, m, untilIdle); err != nil {
				failed[m.Group] = true
			}
		}
	}
}

// heartbeat keeps m hidden while it is being applied, extending its
// visibility every half timeout, until stop is called.
func (l *Local) heartbeat(ctx context.Context, m queue.Message) (stop func()) {
	vis := l.Cfg.Apply.Visibility.Duration
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(vis / 2)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := l.Queue.SetVisibility(ctx, m, vis); err != nil && ctx.Err() == nil {
					l.Log.Warn("extend message visibility", "err", err)
				}
			}
		}
	}()
	return func() { cancel(); <-done }
}

func (l *Local) handle(ctx context.Context, m queue.Message, untilIdle bool) error {
	stop := l.heartbeat(ctx, m)
	b, res, err := l.Handler.Handle(ctx, m.Body)
	stop()
	if err != nil {
		if ctx.Err() != nil {
			_ = l.Queue.SetVisibility(context.WithoutCancel(ctx), m, 0)
			return err
		}
		desc := m.DedupID
		if b != nil {
			desc = fmt.Sprintf("batch %d (%s..%s) for target %s", b.Seq, b.From, b.To, b.Target)
		}
		class := apply.Classify(err)
		l.Log.Error("apply failed", "batch", desc, "attempt", m.Receives, "terminal", class == apply.Terminal, "err", err)
		if m.Receives >= l.Cfg.Apply.MaxAttempts && untilIdle {
			select {
			case l.fatal <- fmt.Errorf("%w: %s failed %d times, last error: %v", ErrPoison, desc, m.Receives, err):
			default:
			}
		}
		// Back off before the group is retried.
		delay := time.Duration(min(m.Receives, 6)) * time.Second
		_ = l.Queue.SetVisibility(ctx, m, delay)
		return err
	}
	if err := l.Queue.Delete(context.WithoutCancel(ctx), m); err != nil {
		// The batch is applied; a redelivery is a watermark no-op.
		l.Log.Warn("delete applied message", "err", err)
	}
	if l.Progress != nil {
		l.Progress.Applied(b, res)
	}
	return nil
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
