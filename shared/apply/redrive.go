package apply

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/pgferry/pgferry/shared/queue"
)

// ErrRedrive reports dead-lettered batches that still fail.
var ErrRedrive = errors.New("redrive: some parked batches still fail")

// RedriveStats describes one Redrive.
type RedriveStats struct {
	Applied int // parked batches applied (or found already applied) and removed
	Failing int // groups whose first parked batch still fails; it stays parked
}

// DeadLetters is the dead-letter queue as Redrive reads it.
// sqsfifo.Queue implements it.
type DeadLetters interface {
	Queue
	// Receive returns up to max messages, waiting up to wait for the
	// first, and hides them for visibility.
	Receive(ctx context.Context, max int, wait, visibility time.Duration) ([]queue.Message, error)
}

// Redrive applies the batches parked in the dead-letter queue directly to
// their targets, in each group's order, deleting each one only after its
// apply committed. Applying in place rather than moving messages back to
// the queue keeps order exact: moved-back batches would queue behind later
// batches of the same group that are waiting for them.
//
// A group whose first parked batch still fails stops there; its batches
// stay parked and the returned error (ErrRedrive) names each one with its
// error. Other groups carry on. Redrive is safe to run while appliers run
// (the target's watermark lock orders them) and safe to repeat.
func Redrive(ctx context.Context, h *Handler, dlq DeadLetters, log *slog.Logger) (RedriveStats, error) {
	var st RedriveStats
	// Received messages stay hidden this long, so that one pass does not
	// see a failing batch again; the consume step keeps the one it applies
	// hidden as long as the apply takes.
	const hide = time.Minute
	c := &Consumer{Handler: h, Queue: dlq, Visibility: hide, Log: log, Redrive: true}
	failed := map[string]bool{}
	var stuck []string
	// Messages of failing groups are hidden while the rest is worked
	// through, then given back at once: they stay parked.
	var held []queue.Message
	defer func() {
		for _, m := range held {
			_ = dlq.SetVisibility(context.WithoutCancel(ctx), m, 0)
		}
	}()
	empty := 0
	for empty < 2 {
		msgs, err := dlq.Receive(ctx, 10, time.Second, hide)
		if err != nil {
			return st, err
		}
		if len(msgs) == 0 {
			empty++
			continue
		}
		empty = 0
		var todo []queue.Message
		for _, m := range msgs {
			if failed[m.Group] {
				held = append(held, m)
			} else {
				todo = append(todo, m)
			}
		}
		// The step stops at a failure and gives back the messages after
		// it; the next receive brings those of other groups again.
		out := c.Consume(ctx, todo)
		st.Applied += out.Applied
		if len(out.Undeleted) > 0 {
			return st, fmt.Errorf("redrive: applied %s but could not remove it from the dead-letter queue (a second redrive skips it)", DescribeParked(out.Undeleted[0]))
		}
		if f := out.Failed; f != nil {
			failed[f.Message.Group] = true
			stuck = append(stuck, fmt.Sprintf("%s still fails: %v", DescribeParked(f.Message), f.Delivery.Err))
			held = append(held, f.Message)
		}
		if err := ctx.Err(); err != nil {
			return st, err
		}
	}
	st.Failing = len(failed)
	if len(stuck) > 0 {
		return st, fmt.Errorf("%w:\n  %s", ErrRedrive, strings.Join(stuck, "\n  "))
	}
	return st, nil
}
