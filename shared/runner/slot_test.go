package runner_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgferry/pgferry/shared/config"
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
// batch.max_rows is one batch (through the S3 claim check), applied in
// one target transaction. PGFERRY_HUGE_TXN_ROWS overrides its size of 1M
// rows (about 25 s on a 2-core machine).
func TestSlotShipsHugeTransactionAsOneBatch(t *testing.T) {
	rows := 1_000_000
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
	start := time.Now()
	f.replicate()
	t.Logf("%d-row transaction replicated in %s", rows, time.Since(start).Round(time.Millisecond))
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
}
