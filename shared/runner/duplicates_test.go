package runner_test

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgferry/pgferry/shared/apply"
	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/localrun"
	"github.com/pgferry/pgferry/shared/queue"
	"github.com/pgferry/pgferry/shared/testenv"
)

// drainBodies runs one drain and takes every message it queued off the
// queue, in order.
func drainBodies(t *testing.T, f *fixture) []queue.Message {
	t.Helper()
	if _, err := f.local().Drainer.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	return drainQueue(t, f)
}

// drainQueue takes every message off the fixture's queue, in order.
func drainQueue(t *testing.T, f *fixture) []queue.Message {
	t.Helper()
	ctx := context.Background()
	var out []queue.Message
	for empty := 0; empty < 2; {
		msgs, err := f.aws.Queue.Receive(ctx, 10, 0, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 0 {
			empty++
		}
		for _, m := range msgs {
			out = append(out, m)
			if err := f.aws.Queue.Delete(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
	}
	return out
}

// TestDuplicateAndLateDeliveriesChangeNothing delivers batches twice, out of
// order, after their successors, and after a visibility timeout, through
// the real queue: only the first delivery of each batch may change the
// target.
func TestDuplicateAndLateDeliveriesChangeNothing(t *testing.T) {
	forEachCapture(t, testDuplicateDeliveries)
}

func testDuplicateDeliveries(t *testing.T, mode string) {
	f := newFixtureMode(t, mode, `CREATE TABLE t (id int PRIMARY KEY, v text);`, "")
	ctx := context.Background()
	var msgs []queue.Message
	for i, stmt := range []string{
		`INSERT INTO t SELECT g, 'one' FROM generate_series(1, 50) g`,
		`UPDATE t SET v = 'two' WHERE id <= 25`,
		`DELETE FROM t WHERE id > 40`,
	} {
		f.exec(stmt)
		got := drainBodies(t, f)
		if len(got) != 1 {
			t.Fatalf("write %d made %d batches, want 1", i+1, len(got))
		}
		msgs = append(msgs, got[0])
	}
	group := batch.Group(f.cfg.Name, "replica")
	publish := func(i int, copyNo string) {
		t.Helper()
		if err := f.aws.Queue.Publish(ctx, group, msgs[i].DedupID+".copy"+copyNo, msgs[i].Body); err != nil {
			t.Fatal(err)
		}
	}
	// In queue order: B1, B1 again, B2, B1 (stale), B3, B2 (after its
	// successor), B3 again.
	for n, i := range []int{0, 0, 1, 0, 2, 1, 2} {
		publish(i, fmt.Sprint(n))
	}
	l := f.local()
	l.Progress = &localrun.Progress{W: io.Discard} // its Loop prints a line a second
	runCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := l.Run(runCtx, true, f.lastSent); err != nil {
		t.Fatal(err)
	}
	// Run returns once the target caught up; deliveries still queued
	// behind that point must all be no-ops.
	for _, m := range drainQueue(t, f) {
		if d := l.Handler.Deliver(ctx, m, nil); d.Err != nil || d.Result.Applied {
			t.Fatalf("a leftover duplicate delivery: applied %v, err %v; want a no-op", d.Result.Applied, d.Err)
		}
	}
	f.assertSame()
	if sum := l.Progress.Summary(); !strings.Contains(sum, "applied 3 batches") {
		t.Fatalf("seven deliveries of three batches: %s; want exactly 3 applied, the rest no-ops", sum)
	}
	want := f.targetChecksum()
	wm, err := f.targets["replica"].Watermark(ctx, group)
	if err != nil {
		t.Fatal(err)
	}

	// A delivery that comes back after its visibility timeout, long after
	// later batches were applied.
	publish(0, "late")
	first, err := f.aws.Queue.Receive(ctx, 1, time.Second, time.Second)
	if err != nil || len(first) != 1 {
		t.Fatalf("receive: %v, %d messages", err, len(first))
	}
	time.Sleep(1500 * time.Millisecond) // not deleted: it reappears
	again, err := f.aws.Queue.Receive(ctx, 1, 2*time.Second, 30*time.Second)
	if err != nil || len(again) != 1 || again[0].Receives < 2 {
		t.Fatalf("redelivery after the visibility timeout: %v, %+v", err, again)
	}
	d := l.Handler.Deliver(ctx, again[0], nil)
	if d.Err != nil || d.Result.Applied {
		t.Fatalf("late redelivery: applied %v, err %v; want a no-op", d.Result.Applied, d.Err)
	}
	_ = f.aws.Queue.Delete(ctx, again[0])
	if got := f.targetChecksum(); got != want {
		t.Fatal("a duplicate or late delivery changed the target")
	}
	if got, err := f.targets["replica"].Watermark(ctx, group); err != nil || got != wm {
		t.Fatalf("watermark moved from %s to %s (%v)", wm, got, err)
	}
}

// TestLongApplyKeepsItsMessageHidden holds a lock on the target table so an
// apply takes several visibility timeouts: no other consumer may receive
// the message meanwhile, and it is applied exactly once. The visibility
// is 4 s, not the 2 s minimum: the heartbeat extends it every half
// timeout, and a busy machine can delay one heartbeat by a second.
func TestLongApplyKeepsItsMessageHidden(t *testing.T) {
	f := newFixture(t, `CREATE TABLE t (id int PRIMARY KEY, v text);`, "apply:\n  visibility: 4s\n")
	ctx := context.Background()
	f.exec(`INSERT INTO t SELECT g, 'x' FROM generate_series(1, 10) g`)
	if _, err := f.local().Drainer.Run(ctx); err != nil {
		t.Fatal(err)
	}
	const vis = 4 * time.Second
	msgs, err := f.aws.Queue.Receive(ctx, 1, time.Second, vis)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("receive: %v, %d messages", err, len(msgs))
	}
	m := msgs[0]

	// Block the apply for three visibility timeouts, counted from the
	// start of the apply (below), so the apply surely waits that long.
	locker, err := testenv.Pool(t, f.dstDSN).Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := locker.Exec(ctx, `LOCK TABLE t IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}

	l := f.local()
	// The setup above took a while: hide the message for a full timeout
	// again, as a runner's receive just before its apply does.
	if err := f.aws.Queue.SetVisibility(ctx, m, vis); err != nil {
		t.Fatal(err)
	}
	stop := apply.KeepHidden(ctx, f.aws.Queue, m, vis, f.log)
	// A competing consumer polls all along.
	var stolen atomic.Int32
	pollCtx, stopPoll := context.WithCancel(ctx)
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for pollCtx.Err() == nil {
			got, err := f.aws.Queue.Receive(context.WithoutCancel(pollCtx), 1, 0, vis)
			if err == nil && len(got) > 0 {
				stolen.Add(1)
				_ = f.aws.Queue.SetVisibility(ctx, got[0], 0)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	started := time.Now()
	go func() { time.Sleep(3 * vis); _ = locker.Rollback(ctx) }()
	d := l.Handler.Deliver(ctx, m, nil)
	stop()
	took := time.Since(started)
	stopPoll()
	<-polled
	if d.Err != nil || !d.Result.Applied {
		t.Fatalf("long apply: applied %v, err %v", d.Result.Applied, d.Err)
	}
	if took < 3*vis {
		t.Fatalf("the apply took %s: the lock did not hold it up, so the test proves nothing", took)
	}
	if n := stolen.Load(); n > 0 {
		t.Fatalf("another consumer received the message %d times during a %s apply", n, took.Round(time.Millisecond))
	}
	if err := f.aws.Queue.Delete(ctx, m); err != nil {
		t.Fatalf("delete after a long apply (receipt still valid?): %v", err)
	}
	f.assertSame()
}

// targetChecksum digests every row of every replicated table on the target.
func (f *fixture) targetChecksum() string {
	f.t.Helper()
	var s string
	if err := f.dst.QueryRow(context.Background(), `SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM t`).Scan(&s); err != nil {
		f.t.Fatal(err)
	}
	return s
}

// waitFor polls cond every 100 ms until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
