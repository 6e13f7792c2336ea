package pgapply_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/apply/pgapply"
	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/pgtext"
	"github.com/pgferry/pgferry/shared/testenv"
)

const benchDDL = `CREATE TABLE bench (id bigint PRIMARY KEY, v text, n numeric, at timestamptz, tags text[])`

func benchRows(n, offset int) []batch.Row {
	rows := make([]batch.Row, n)
	for i := range rows {
		id := strconv.Itoa(offset + i)
		v, num, at, tags := "value "+id+" with some text to make it realistic", id+".25", "2024-05-01 10:00:00+00", "{a,b,"+id+"}"
		rows[i] = batch.Row{&id, &v, &num, &at, &tags}
	}
	return rows
}

// BenchmarkApplyThroughput applies upsert batches of 1k, 10k and 100k rows
// (half new keys, half updates) and reports rows/s next to three baselines
// measured in the same run on the same table shape: a raw COPY into the
// table, the hand-written staging COPY + INSERT … ON CONFLICT a careful
// engineer would write, and row-by-row upserts.
func BenchmarkApplyThroughput(b *testing.B) {
	ctx := context.Background()
	for _, n := range []int{1000, 10000, 100000} {
		b.Run(fmt.Sprintf("rows=%d", n), func(b *testing.B) {
			pool := testenv.Pool(b, testenv.NewDB(b, "bench"))
			testenv.Exec(b, pool, benchDDL)
			ap, err := pgapply.New(ctx, pool, "bench", slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				b.Fatal(err)
			}
			aps, err := pgapply.New(ctx, pool, "bench_staged", slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				b.Fatal(err)
			}
			var ours, staged, raw, hand, rowwise time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				halfFull(b, pool, n)
				rows := benchRows(n, 0)
				bt := benchBatch(i, rows)
				t0 := time.Now()
				if _, err := ap.Apply(ctx, bt); err != nil {
					b.Fatal(err)
				}
				ours += time.Since(t0)

				if n <= 10000 { // the same apply with every segment staged (the design before unnest)
					halfFull(b, pool, n)
					st := *bt
					st.Pipeline = "bench_staged"
					staged += timeIt(b, func() { applyStaged(b, aps, &st) })
				}

				testenv.Exec(b, pool, "TRUNCATE bench")
				raw += timeIt(b, func() { copyRows(b, pool, "bench", rows) })

				halfFull(b, pool, n)
				hand += timeIt(b, func() { handMerge(b, pool, rows) })

				if n <= 10000 {
					halfFull(b, pool, n)
					rowwise += timeIt(b, func() { rowByRow(b, pool, rows) })
				}
			}
			perSec := func(d time.Duration) float64 { return float64(n*b.N) / d.Seconds() }
			b.ReportMetric(perSec(ours), "rows/s")
			b.ReportMetric(perSec(raw), "raw_copy_rows/s")
			b.ReportMetric(raw.Seconds()/ours.Seconds(), "x_raw_copy")
			b.ReportMetric(hand.Seconds()/ours.Seconds(), "x_hand_merge")
			if rowwise > 0 {
				b.ReportMetric(rowwise.Seconds()/ours.Seconds(), "x_row_by_row")
			}
			if staged > 0 {
				b.ReportMetric(perSec(staged), "staged_rows/s")
			}
		})
	}
}

// halfFull empties the bench table and fills it with the first n/2 keys
// of benchRows, so that half of an n-row batch updates and half inserts.
func halfFull(b *testing.B, pool *pgxpool.Pool, n int) {
	testenv.Exec(b, pool, "TRUNCATE bench")
	testenv.Exec(b, pool, "INSERT INTO bench (id) SELECT g FROM generate_series(0, $1) g", n/2-1)
}

// benchBatch is the i-th batch (from 0) of pipeline "bench": rows upserted
// into the bench table.
func benchBatch(i int, rows []batch.Row) *batch.Batch {
	return &batch.Batch{Version: batch.Version, Pipeline: "bench", Target: "t", Seq: uint64(i + 1),
		From: batch.Position{Tick: uint64(i)}, To: batch.Position{Tick: uint64(i + 1)},
		Epochs: []batch.Epoch{{Segments: []batch.Segment{{Table: batch.Table{Schema: "public", Name: "bench"},
			Columns: []string{"id", "v", "n", "at", "tags"}, Key: []string{"id"}, Upserts: rows}}}}}
}

// manyTables makes a database with tables bench_0 … bench_{n-1} of the
// bench shape.
func manyTables(b *testing.B, n int) *pgxpool.Pool {
	pool := testenv.Pool(b, testenv.NewDB(b, "bench"))
	for i := range n {
		testenv.Exec(b, pool, strings.Replace(benchDDL, "bench", fmt.Sprintf("bench_%d", i), 1))
	}
	return pool
}

func timeIt(b *testing.B, f func()) time.Duration {
	t0 := time.Now()
	f()
	return time.Since(t0)
}

func copyText(rows []batch.Row) []byte {
	var buf []byte
	for _, r := range rows {
		buf = pgtext.AppendCopyRow(buf, r)
	}
	return buf
}

func copyRows(b *testing.B, pool *pgxpool.Pool, table string, rows []batch.Row) {
	c, err := pool.Acquire(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Release()
	if _, err := c.Conn().PgConn().CopyFrom(context.Background(), bytes.NewReader(copyText(rows)), "COPY "+table+" FROM STDIN"); err != nil {
		b.Fatal(err)
	}
}

func handMerge(b *testing.B, pool *pgxpool.Pool, rows []batch.Row) {
	ctx := context.Background()
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "CREATE TEMP TABLE s ON COMMIT DROP AS SELECT * FROM bench WITH NO DATA"); err != nil {
			return err
		}
		if _, err := tx.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(copyText(rows)), "COPY s FROM STDIN"); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO bench SELECT * FROM s ON CONFLICT (id) DO UPDATE
			SET v = EXCLUDED.v, n = EXCLUDED.n, at = EXCLUDED.at, tags = EXCLUDED.tags`)
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
}

func rowByRow(b *testing.B, pool *pgxpool.Pool, rows []batch.Row) {
	ctx := context.Background()
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		for _, r := range rows {
			if _, err := tx.Exec(ctx, `INSERT INTO bench VALUES ($1::bigint, $2, $3::numeric, $4::timestamptz, $5::text[])
				ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v, n = EXCLUDED.n, at = EXCLUDED.at, tags = EXCLUDED.tags`,
				r[0], r[1], r[2], r[3], r[4]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}

// applyStaged applies bt with every segment COPYed into a staging table.
func applyStaged(b *testing.B, ap *pgapply.Applier, bt *batch.Batch) {
	old := pgapply.SmallSegment
	pgapply.SmallSegment = 0
	defer func() { pgapply.SmallSegment = old }()
	if _, err := ap.Apply(context.Background(), bt); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkApplyManyTables applies 1k-row batches on a pipeline of 200
// tables of the bench shape (half new keys, half updates), in two
// patterns: "spread", every batch touching all 200 tables with 5 rows
// each, and "rotate", each batch 1k rows of one table, cycling through
// the tables. It reports rows/s of the applier, of the same applier with
// every segment staged (a temporary table per segment), and of row-by-row
// upserts of the same rows, all in the same run.
func BenchmarkApplyManyTables(b *testing.B) {
	const tables, n = 200, 1000
	ctx := context.Background()
	pool := manyTables(b, tables)
	cols := []string{"id", "v", "n", "at", "tags"}
	for _, pattern := range []string{"spread", "rotate"} {
		b.Run("pattern="+pattern, func(b *testing.B) {
			ap, err := pgapply.New(ctx, pool, "bench_"+pattern, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				b.Fatal(err)
			}
			// batchFor returns the segments of batch i and the tables it touches.
			batchFor := func(i int) ([]batch.Segment, []string) {
				var segs []batch.Segment
				var names []string
				add := func(t, rows int) {
					name := fmt.Sprintf("bench_%d", t)
					names = append(names, name)
					segs = append(segs, batch.Segment{Table: batch.Table{Schema: "public", Name: name}, Columns: cols,
						Key: []string{"id"}, Upserts: benchRows(rows, 0)})
				}
				if pattern == "spread" {
					for t := range tables {
						add(t, n/tables)
					}
				} else {
					add(i%tables, n)
				}
				return segs, names
			}
			reset := func(names []string) { // one round trip
				qs := make([]string, len(names))
				for i, t := range names {
					qs[i] = pgx.Identifier{t}.Sanitize()
				}
				var sql string
				for _, q := range qs { // DELETE, not TRUNCATE: no new files for 200 tables
					sql += fmt.Sprintf("DELETE FROM %s; INSERT INTO %s (id) SELECT g FROM generate_series(0, %d) g;", q, q, n/2/len(names)-1)
				}
				testenv.Exec(b, pool, sql)
			}
			var ours, staged, rowwise time.Duration
			seq := uint64(0)
			next := func(segs []batch.Segment) *batch.Batch {
				seq++
				return &batch.Batch{Version: batch.Version, Pipeline: "bench_" + pattern, Target: "t", Seq: seq,
					From: batch.Position{Tick: seq - 1}, To: batch.Position{Tick: seq}, Epochs: []batch.Epoch{{Segments: segs}}}
			}
			// Steady state: a running pipeline has read every table's
			// catalog and prepared its statements; so has the row-by-row
			// writer (staging tables are new in every batch anyway).
			for i := range min(b.N, tables) { // the tables the timed rounds touch
				segs, names := batchFor(i)
				if pattern == "spread" && i > 0 {
					break
				}
				reset(names)
				if _, err := ap.Apply(ctx, next(segs)); err != nil {
					b.Fatal(err)
				}
				reset(names)
				rowByRowSegs(b, pool, segs)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				segs, names := batchFor(i)
				reset(names)
				bt := next(segs)
				ours += timeIt(b, func() {
					if _, err := ap.Apply(ctx, bt); err != nil {
						b.Fatal(err)
					}
				})
				reset(names)
				bt = next(segs)
				staged += timeIt(b, func() { applyStaged(b, ap, bt) })
				reset(names)
				rowwise += timeIt(b, func() { rowByRowSegs(b, pool, segs) })
			}
			perSec := func(d time.Duration) float64 { return float64(n*b.N) / d.Seconds() }
			b.ReportMetric(perSec(ours), "rows/s")
			b.ReportMetric(perSec(staged), "staged_rows/s")
			b.ReportMetric(perSec(rowwise), "row_by_row_rows/s")
			b.ReportMetric(rowwise.Seconds()/ours.Seconds(), "x_row_by_row")
		})
	}
}

// BenchmarkSegmentPath compares, for one segment of n rows (half updates),
// the unnested-array merge with COPY into a staging table, alternating in
// the same loop; it is what SmallSegment is chosen by.
func BenchmarkSegmentPath(b *testing.B) {
	ctx := context.Background()
	pool := testenv.Pool(b, testenv.NewDB(b, "bench"))
	testenv.Exec(b, pool, benchDDL)
	cols := []string{"id", "v", "n", "at", "tags"}
	for _, n := range []int{10, 100, 1000, 4000} {
		b.Run(fmt.Sprintf("rows=%d", n), func(b *testing.B) {
			aps := map[int]*pgapply.Applier{}
			seqs := map[int]uint64{}
			for _, small := range []int{0, 1 << 30} {
				ap, err := pgapply.New(ctx, pool, fmt.Sprintf("path%d_%d", n, small), slog.New(slog.NewTextHandler(io.Discard, nil)))
				if err != nil {
					b.Fatal(err)
				}
				aps[small] = ap
			}
			rows := benchRows(n, 0)
			var took [2]time.Duration
			old := pgapply.SmallSegment
			defer func() { pgapply.SmallSegment = old }()
			for i := 0; i < b.N; i++ {
				for k, small := range []int{0, 1 << 30} {
					testenv.Exec(b, pool, fmt.Sprintf("TRUNCATE bench; INSERT INTO bench (id) SELECT g FROM generate_series(0, %d) g", n/2-1))
					seqs[small]++
					s := seqs[small]
					bt := &batch.Batch{Version: batch.Version, Pipeline: fmt.Sprintf("path%d_%d", n, small), Target: "t", Seq: s,
						From: batch.Position{Tick: s - 1}, To: batch.Position{Tick: s},
						Epochs: []batch.Epoch{{Segments: []batch.Segment{{Table: batch.Table{Schema: "public", Name: "bench"}, Columns: cols, Key: []string{"id"}, Upserts: rows}}}}}
					pgapply.SmallSegment = small
					took[k] += timeIt(b, func() {
						if _, err := aps[small].Apply(ctx, bt); err != nil {
							b.Fatal(err)
						}
					})
				}
			}
			b.ReportMetric(float64(n*b.N)/took[0].Seconds(), "staged_rows/s")
			b.ReportMetric(float64(n*b.N)/took[1].Seconds(), "unnest_rows/s")
		})
	}
}

// rowByRowSegs upserts the rows of segs one statement at a time, in one
// transaction.
func rowByRowSegs(b *testing.B, pool *pgxpool.Pool, segs []batch.Segment) {
	ctx := context.Background()
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		for _, s := range segs {
			q := fmt.Sprintf(`INSERT INTO %s VALUES ($1::bigint, $2, $3::numeric, $4::timestamptz, $5::text[])
				ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v, n = EXCLUDED.n, at = EXCLUDED.at, tags = EXCLUDED.tags`,
				pgx.Identifier{s.Table.Name}.Sanitize())
			for _, r := range s.Upserts {
				if _, err := tx.Exec(ctx, q, r[0], r[1], r[2], r[3], r[4]); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}

// BenchmarkApplyRoundTrips compares, alternating in one loop, 1k-row
// batches applied in one pipelined round trip and the same batches
// applied statement by statement (pgapply.Pipeline off), with row-by-row
// upserts of the same rows: one table of 1k rows, and 200 tables of 5
// rows each.
func BenchmarkApplyRoundTrips(b *testing.B) {
	const tables, n = 200, 1000
	ctx := context.Background()
	pool := manyTables(b, tables)
	cols := []string{"id", "v", "n", "at", "tags"}
	for _, spread := range []int{1, tables} {
		b.Run(fmt.Sprintf("tables=%d", spread), func(b *testing.B) {
			var segs []batch.Segment
			reset := ""
			for t := range spread {
				name := fmt.Sprintf("bench_%d", t)
				segs = append(segs, batch.Segment{Table: batch.Table{Schema: "public", Name: name}, Columns: cols,
					Key: []string{"id"}, Upserts: benchRows(n/spread, 0)})
				q := pgx.Identifier{name}.Sanitize()
				reset += fmt.Sprintf("DELETE FROM %s; INSERT INTO %s (id) SELECT g FROM generate_series(0, %d) g;", q, q, n/2/spread-1)
			}
			aps := map[bool]*pgapply.Applier{}
			seqs := map[bool]uint64{}
			for _, on := range []bool{false, true} {
				ap, err := pgapply.New(ctx, pool, fmt.Sprintf("rt%d_%v", spread, on), slog.New(slog.NewTextHandler(io.Discard, nil)))
				if err != nil {
					b.Fatal(err)
				}
				aps[on] = ap
			}
			defer func(old bool) { pgapply.Pipeline = old }(pgapply.Pipeline)
			run := func(on bool) time.Duration {
				testenv.Exec(b, pool, reset)
				seqs[on]++
				s := seqs[on]
				bt := &batch.Batch{Version: batch.Version, Pipeline: fmt.Sprintf("rt%d_%v", spread, on), Target: "t", Seq: s,
					From: batch.Position{Tick: s - 1}, To: batch.Position{Tick: s}, Epochs: []batch.Epoch{{Segments: segs}}}
				pgapply.Pipeline = on
				return timeIt(b, func() {
					if _, err := aps[on].Apply(ctx, bt); err != nil {
						b.Fatal(err)
					}
				})
			}
			run(false) // reads the catalog, prepares the statements
			run(true)
			var took [2]time.Duration
			var rowwise time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				took[0] += run(false)
				took[1] += run(true)
				testenv.Exec(b, pool, reset)
				rowwise += timeIt(b, func() { rowByRowSegs(b, pool, segs) })
			}
			perSec := func(d time.Duration) float64 { return float64(n*b.N) / d.Seconds() }
			b.ReportMetric(perSec(took[0]), "stepwise_rows/s")
			b.ReportMetric(perSec(took[1]), "pipelined_rows/s")
			b.ReportMetric(perSec(rowwise), "row_by_row_rows/s")
			b.ReportMetric(rowwise.Seconds()/took[0].Seconds(), "stepwise_x_row_by_row")
			b.ReportMetric(rowwise.Seconds()/took[1].Seconds(), "pipelined_x_row_by_row")
		})
	}
}

// BenchmarkApplyOverALink is R4's 1k-row case with the target behind a
// TCP proxy instead of on loopback, a stand-in for the network between a
// Lambda and its database: the proxy's own forwarding makes a round trip
// of about 0.2 ms on this kind of machine, and a one-way delay of 250µs
// makes it about 0.7 ms, a figure between an availability zone's and a
// region's. Row-by-row upserts pay the round trip once per row, the
// applier once per batch of small segments. It reports the round trip
// measured through the proxy next to both rates.
func BenchmarkApplyOverALink(b *testing.B) {
	for _, delay := range []time.Duration{0, 250 * time.Microsecond} {
		b.Run(fmt.Sprintf("delay=%s", delay), func(b *testing.B) { applyOverALink(b, delay) })
	}
}

func applyOverALink(b *testing.B, delay time.Duration) {
	ctx := context.Background()
	const n = 1000
	dsn := testenv.NewDB(b, "bench")
	u, err := url.Parse(dsn)
	if err != nil {
		b.Fatal(err)
	}
	proxy := testenv.NewProxy(b, u.Host)
	proxy.SetDelay(delay)
	u.Host = proxy.Addr()
	pool := testenv.Pool(b, u.String())
	testenv.Exec(b, pool, benchDDL)
	ap, err := pgapply.New(ctx, pool, "bench", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	var rtt time.Duration
	for i := 0; i < 20; i++ {
		rtt += timeIt(b, func() { testenv.Exec(b, pool, "SELECT 1") })
	}
	var ours, rowwise time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		halfFull(b, pool, n)
		rows := benchRows(n, 0)
		bt := benchBatch(i, rows)
		ours += timeIt(b, func() {
			if _, err := ap.Apply(ctx, bt); err != nil {
				b.Fatal(err)
			}
		})
		halfFull(b, pool, n)
		rowwise += timeIt(b, func() { rowByRow(b, pool, rows) })
	}
	perSec := func(d time.Duration) float64 { return float64(n*b.N) / d.Seconds() }
	b.ReportMetric(perSec(ours), "rows/s")
	b.ReportMetric(perSec(rowwise), "row_by_row_rows/s")
	b.ReportMetric(rowwise.Seconds()/ours.Seconds(), "x_row_by_row")
	b.ReportMetric(float64((rtt/20).Microseconds())/1000, "rtt_ms")
}
