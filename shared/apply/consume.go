package apply

import (
	"context"
	"log/slog"
	"time"

	"github.com/pgferry/pgferry/shared/fault"
	"github.com/pgferry/pgferry/shared/queue"
)

// Queue is what the consume step does to the FIFO queue its messages came
// from. sqsfifo.Queue implements it.
type Queue interface {
	// Delete removes m for good. The step calls it only once m's batch
	// and watermark have committed, or once m is parked.
	Delete(ctx context.Context, m queue.Message) error
	// SetVisibility hides m for d from now; 0 makes it visible again at
	// once. It fails once m's receipt is no longer valid.
	SetVisibility(ctx context.Context, m queue.Message, d time.Duration) error
}

// Consumer is the consume step: the one place where a received message is
// delivered and then deleted, hidden for a retry, or parked. The apply
// Lambda, the local runner and redrive all use it.
type Consumer struct {
	Handler *Handler
	// Queue is where the messages came from.
	Queue Queue
	// Park is the dead-letter queue; nil never parks (a redrive, which
	// reads the dead-letter queue itself, or a runner without one).
	Park Parker
	// Visibility is how long a message stays hidden while it is applied;
	// the step renews it every half of that (see KeepHidden).
	Visibility time.Duration
	Log        *slog.Logger
	// Reported leaves done messages (applied or parked) on the queue for
	// the caller to report as done: the Lambda's event source mapping
	// deletes every record not listed in batchItemFailures. Otherwise the
	// step deletes them itself.
	Reported bool
	// Redrive marks a consumer of the dead-letter queue: its messages are
	// parked batches, so a failure leaves one parked, and the log lines
	// say so and name it with the error it was parked with.
	Redrive bool
	// AppliedLevel is the level of the per-batch "batch applied" line:
	// Info (the zero value) where it is a batch's only trace, Debug where
	// a progress display counts batches.
	AppliedLevel slog.Level
	// OnApplied, if set, is called with each applied (or replayed)
	// delivery once it is done.
	OnApplied func(Delivery)
}

// Handled is one message and what its delivery decided.
type Handled struct {
	Message  queue.Message
	Delivery Delivery
}

// Outcome is what one Consume did.
type Outcome struct {
	// Applied counts messages whose batch is applied (or was already):
	// done, and deleted unless Reported.
	Applied int
	// Parked lists messages moved to the dead-letter queue: done too.
	// Later batches of their group fail with ErrGap until a redrive.
	Parked []Handled
	// Failed is the first failure, hidden for its retry delay; nil if
	// there was none, or if ctx ended first.
	Failed *Handled
	// Rest is the first failure and every message after it, in order:
	// not done, back on the queue. The Lambda reports each of them in
	// batchItemFailures. Empty when every message is done.
	Rest []queue.Message
	// Undeleted lists done messages the step could not delete. Nothing is
	// lost: a redelivery finds them applied (a watermark no-op) or parked.
	Undeleted []queue.Message
}

// Consume delivers msgs in order, as received from one FIFO queue, and acts
// on each (see Handler.Deliver for the decision):
//   - applied, or a replay: deleted (unless Reported);
//   - parked in the dead-letter queue: deleted (unless Reported); the step
//     goes on, since the parked batch no longer holds its place;
//   - failed: hidden for its retry delay (a redrive's stays parked).
//
// FIFO rule: Consume stops at the first failure; that message and every
// later one go to Rest, and the later ones are made visible again at once.
// Applying a later message of the failed one's group would break its order;
// SQS does not hand out that group's later messages while the failed one is
// hidden, so releasing them cannot either, and other groups are not held up.
// When ctx ends, Consume stops the same way and releases the current message
// too, without a retry delay.
//
// Every message is kept hidden while it is applied (KeepHidden). Queue calls
// that act on a decision outlive ctx: a decision is never left half done.
func (c *Consumer) Consume(ctx context.Context, msgs []queue.Message) Outcome {
	var out Outcome
	bg := context.WithoutCancel(ctx)
	for i, m := range msgs {
		if ctx.Err() != nil {
			out.Rest = c.release(bg, msgs[i:])
			return out
		}
		stop := KeepHidden(ctx, c.Queue, m, c.Visibility, c.Log)
		d := c.Handler.Deliver(ctx, m, c.Park)
		stop()
		switch {
		case d.Err == nil:
			fault.Point(fault.ApplyCommitted)
			c.logApplied(ctx, d)
			out.Applied++
			if !c.done(bg, m, "delete applied message") {
				out.Undeleted = append(out.Undeleted, m)
			}
			if c.OnApplied != nil {
				c.OnApplied(d)
			}
		case d.Parked:
			c.Log.Error("batch parked in the dead-letter queue; its target is blocked until it is re-driven",
				"batch", d.Describe(m), "attempts", m.Receives, "err", d.Err)
			fault.Point(fault.ApplyParked)
			out.Parked = append(out.Parked, Handled{m, d})
			if !c.done(bg, m, "delete parked message from the queue") {
				out.Undeleted = append(out.Undeleted, m)
			}
		case ctx.Err() != nil:
			// The failure is ctx's, not the batch's: no retry delay.
			out.Rest = c.release(bg, msgs[i:])
			return out
		default:
			if c.Redrive {
				c.Log.Error("parked batch still fails; it stays parked", "batch", DescribeParked(m), "err", d.Err)
			} else {
				c.Log.Warn("apply failed; will retry", "batch", d.Describe(m), "class", d.Class.String(),
					"attempt", m.Receives, "retry_in", d.Retry.Round(time.Millisecond).String(), "err", d.Err)
			}
			if err := c.Queue.SetVisibility(bg, m, d.Retry); err != nil {
				c.Log.Warn("set retry delay", "err", err)
			}
			out.Failed = &Handled{m, d}
			out.Rest = append([]queue.Message{m}, c.release(bg, msgs[i+1:])...)
			return out
		}
	}
	return out
}

// done removes a message the step is finished with, unless the caller
// reports it; it says whether the message is gone (or left to the caller).
func (c *Consumer) done(ctx context.Context, m queue.Message, what string) bool {
	if c.Reported {
		return true
	}
	if err := c.Queue.Delete(ctx, m); err != nil {
		c.Log.Warn(what, "err", err)
		return false
	}
	return true
}

// release makes msgs visible again at once and returns them. A failure is
// harmless: the message reappears when its visibility timeout ends.
func (c *Consumer) release(ctx context.Context, msgs []queue.Message) []queue.Message {
	for _, m := range msgs {
		_ = c.Queue.SetVisibility(ctx, m, 0)
	}
	return msgs
}

func (c *Consumer) logApplied(ctx context.Context, d Delivery) {
	msg := "batch applied"
	if c.Redrive {
		msg = "parked batch applied"
	}
	b := d.Batch
	c.Log.Log(ctx, c.AppliedLevel, msg, "seq", b.Seq, "target", b.Target, "to", b.To.String(),
		"rows", d.Result.Rows, "replay", !d.Result.Applied)
}

// KeepHidden keeps m hidden while it is being applied, extending its
// visibility to vis every vis/2, until the returned stop is called. A long
// apply therefore never lets its message reappear to another consumer.
func KeepHidden(ctx context.Context, q Queue, m queue.Message, vis time.Duration, log *slog.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(max(vis/2, 500*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := q.SetVisibility(ctx, m, vis); err != nil && ctx.Err() == nil {
					log.Warn("extend message visibility", "err", err)
				}
			}
		}
	}()
	return func() { cancel(); <-done }
}

// DescribeParked names a dead-lettered message and the failure it carries.
func DescribeParked(m queue.Message) string {
	what := m.Attrs[AttrBatch]
	if what == "" {
		what = "message " + m.DedupID
	}
	s := what + " (parked in the dead-letter queue"
	if n := m.Attrs[AttrAttempts]; n != "" {
		s += " after " + n + " attempts"
	}
	if e := m.Attrs[AttrError]; e != "" {
		s += ": " + e
	}
	return s + ")"
}
