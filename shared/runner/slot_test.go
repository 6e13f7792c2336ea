package runner_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/runner"
)

// TestSlotKeepsUnchangedToastValues: pgoutput does not send a TOASTed
// value that an UPDATE left alone. The target must keep its 200 KB value
// through such updates (alone, after an insert in the same batch, and
// across a key change), and take the new one when it does change.
func TestSlotKeepsUnchangedToastValues(t *testing.T) {
	f := newFixtureMode(t, config.CaptureSlot, `CREATE TABLE docs (id int PRIMARY KEY, n int, big text)`, "")
	// ~200 KB of incompressible text: stored out of line.
	big := `(SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 6400))`
	f.exec(`INSERT INTO docs SELECT g, 0, ` + big + ` FROM generate_series(1, 3) g`)
	f.replicate()
	f.assertSame()

	checks := []struct{ name, sql string }{
		{"big value not updated", `UPDATE docs SET n = n + 1`},
		{"key changed, big value not updated", `UPDATE docs SET id = id + 10 WHERE id = 1`},
		{"inserted then updated in one batch", `INSERT INTO docs SELECT 4, 0, ` + big + `; UPDATE docs SET n = 7 WHERE id = 4`},
		{"big value updated", `UPDATE docs SET big = ` + big + ` WHERE id = 2`},
		{"big value updated, then not, in one transaction", `BEGIN; UPDATE docs SET big = ` + big + ` WHERE id = 3; UPDATE docs SET n = 9 WHERE id = 3; COMMIT`},
		{"not updated twice, once with a key change", `UPDATE docs SET n = 5 WHERE id = 11; UPDATE docs SET id = 21 WHERE id = 11`},
	}
	for _, c := range checks {
		f.exec(c.sql)
		f.replicate()
		f.assertSame()
		if t.Failed() {
			t.Fatalf("after %s: target differs from source", c.name)
		}
	}
	if got := f.targetInt(`SELECT count(*) FROM docs WHERE length(big) = 204800`); got != 4 {
		t.Fatalf("%d rows on the target keep a 200 KB value, want 4", got)
	}
}

// TestSlotShipsHugeTransactionAsOneBatch: a transaction far larger than
// batch.max_rows is one batch, spilled to part objects while it is read
// and applied from them as a stream in one target transaction, and the
// memory of drain and apply (this process's live heap) stays bounded by
// the batch size, not the transaction's. PGFERRY_HUGE_TXN_ROWS overrides
// its size of 300k rows.
func TestSlotShipsHugeTransactionAsOneBatch(t *testing.T) {
	rows := 300_000
	if s := os.Getenv("PGFERRY_HUGE_TXN_ROWS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("PGFERRY_HUGE_TXN_ROWS=%q: %v", s, err)
		}
		rows = n
	}
	f := newFixtureMode(t, config.CaptureSlot, `CREATE TABLE small (id int PRIMARY KEY, v text);
		CREATE TABLE huge (id int PRIMARY KEY, v text, at timestamptz)`, "")
	f.exec(`INSERT INTO small VALUES (1, 'before')`)
	f.replicate()
	ctx := context.Background()
	before, err := f.aws.State.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = pgx.BeginFunc(ctx, f.src, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO huge SELECT g, md5(g::text), '2024-01-01'::timestamptz + g * interval '1 second'
			FROM generate_series(1, $1::int) g`, rows); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE small SET v = 'with the huge insert'`)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	// The target shows the transaction whole or not at all.
	watch, stop := context.WithCancel(ctx)
	defer stop()
	seen := make(chan error, 1)
	go func() {
		for watch.Err() == nil {
			var n int64
			var v string
			err := f.dst.QueryRow(watch, `SELECT (SELECT count(*) FROM huge), (SELECT v FROM small WHERE id = 1)`).Scan(&n, &v)
			if err == nil && !((n == 0 && v == "before") || (n == int64(rows) && v == "with the huge insert")) {
				seen <- fmt.Errorf("target showed part of the transaction: %d rows in huge, small.v = %q", n, v)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		seen <- nil
	}()
	var parts atomic.Int64
	l := f.local()
	l.Drainer = f.p.Drainer(runner.InstanceID(), func(b *batch.Batch) { parts.Add(int64(len(b.Parts))) }, nil)
	peak := watchLiveHeap()
	start := time.Now()
	rctx, cancel := context.WithTimeout(ctx, 6*time.Minute) // a hang guard
	defer cancel()
	if err := l.Run(rctx, true, f.lastSent); err != nil {
		t.Fatalf("replicate until idle: %v", err)
	}
	live := peak()
	t.Logf("%d-row transaction replicated in %s; peak live heap %.1f MiB; %d parts",
		rows, time.Since(start).Round(time.Millisecond), float64(live)/(1<<20), parts.Load())
	stop()
	if err := <-seen; err != nil {
		t.Fatal(err)
	}
	after, err := f.aws.State.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := after.Seq - before.Seq; got != 1 {
		t.Fatalf("the transaction went out in %d batches, want 1", got)
	}
	if got := f.targetInt(`SELECT count(*) FROM huge`); got != int64(rows) {
		t.Fatalf("target has %d rows, want %d", got, rows)
	}
	f.assertSame()
	// batch.max_rows is 5000: the parts hold about that many rows each.
	if want := int64(rows / f.cfg.Batch.MaxRows / 2); parts.Load() < want {
		t.Errorf("the transaction went out in %d parts, want at least %d", parts.Load(), want)
	}
	// The transaction's rows take about 0.65 KB each held whole (195 MB
	// for 300k); spilled, drain and apply hold a batch or two.
	if limit := uint64(64 << 20); live > limit {
		t.Errorf("peak live heap %d MiB while replicating a %d-row transaction, want at most %d MiB", live>>20, rows, limit>>20)
	}
}

// watchLiveHeap samples the live heap (as of each garbage collection,
// runtime/metrics /gc/heap/live:bytes) after every collection until the
// returned function is called, which returns the largest value seen.
// Sampling at each GC cycle sees every value the metric takes.
func watchLiveHeap() func() uint64 {
	runtime.GC()
	done := make(chan struct{})
	out := make(chan uint64, 1)
	go func() {
		sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/cycles/total:gc-cycles"}}
		var peak, cycles uint64
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(sample)
			if c := sample[1].Value.Uint64(); c != cycles {
				cycles = c
				peak = max(peak, sample[0].Value.Uint64())
			}
			select {
			case <-done:
				out <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return func() uint64 { close(done); return <-out }
}
