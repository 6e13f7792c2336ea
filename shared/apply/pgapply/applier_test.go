package pgapply_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/apply"
	"github.com/pgferry/pgferry/shared/apply/pgapply"
	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/testenv"
)

const (
	pipeline = "p"
	target   = "replica"
)

var (
	group = batch.Group(pipeline, target)
	tbl   = batch.Table{Schema: "public", Name: "t"}
)

// newTarget returns an applier on a fresh target database holding ddl.
func newTarget(t *testing.T, ddl string) (*pgapply.Applier, *pgxpool.Pool) {
	t.Helper()
	pool := testenv.Pool(t, testenv.NewDB(t, "dst"))
	testenv.Exec(t, pool, ddl)
	a, err := pgapply.New(context.Background(), pool, pipeline, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return a, pool
}

func v(s string) batch.Value { return &s }

func pos(tick uint64, tx int64) batch.Position { return batch.Position{Tick: tick, Tx: tx} }

// mk returns a batch of one epoch over segs.
func mk(seq uint64, from, to batch.Position, segs ...batch.Segment) *batch.Batch {
	return &batch.Batch{
		Version: batch.Version, Pipeline: pipeline, Target: target, Seq: seq,
		From: from, To: to, Epochs: []batch.Epoch{{Segments: segs}},
	}
}

// upsert is a segment of t (id, v) upserting id=v pairs.
func upsert(kv ...string) batch.Segment {
	s := batch.Segment{Table: tbl, Columns: []string{"id", "v"}, Key: []string{"id"}}
	for i := 0; i < len(kv); i += 2 {
		s.Upserts = append(s.Upserts, batch.Row{v(kv[i]), v(kv[i+1])})
	}
	return s
}

func del(ids ...string) batch.Segment {
	s := batch.Segment{Table: tbl, Columns: []string{"id", "v"}, Key: []string{"id"}}
	for _, id := range ids {
		s.Deletes = append(s.Deletes, batch.Row{v(id)})
	}
	return s
}

// contents renders a table as "id=v,…" in id order.
func contents(t *testing.T, pool *pgxpool.Pool, table string) string {
	t.Helper()
	var s string
	err := pool.QueryRow(context.Background(),
		`SELECT coalesce(string_agg(r::text, ',' ORDER BY r::text), '') FROM `+table+` r`).Scan(&s)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func watermark(t *testing.T, a *pgapply.Applier) batch.Position {
	t.Helper()
	p, err := a.Watermark(context.Background(), group)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustApply(t *testing.T, a *pgapply.Applier, b *batch.Batch) apply.Result {
	t.Helper()
	res, err := a.Apply(context.Background(), b)
	if err != nil {
		t.Fatalf("apply batch %d: %v", b.Seq, err)
	}
	return res
}

const tDDL = `CREATE TABLE t (id int PRIMARY KEY, v text)`

func TestWatermarkIsZeroThenToOfAppliedBatch(t *testing.T) {
	t.Parallel()
	a, _ := newTarget(t, tDDL)
	if got, want := watermark(t, a), (batch.Position{}); got != want {
		t.Fatalf("watermark before any batch = %s, want zero", got)
	}
	b := mk(1, batch.Position{}, pos(1, 17), upsert("1", "a"))
	if res := mustApply(t, a, b); !res.Applied {
		t.Fatal("first batch reported as a replay")
	}
	if got, want := watermark(t, a), b.To; got != want {
		t.Fatalf("watermark after batch = %s, want its To %s", got, want)
	}
	// Another group of the same pipeline is independent.
	other, err := a.Watermark(context.Background(), batch.Group(pipeline, "other"))
	if err != nil {
		t.Fatal(err)
	}
	if !other.IsZero() {
		t.Fatalf("watermark of an untouched group = %s, want zero", other)
	}
}

func TestApplyingBatchTwiceLeavesTargetUnchanged(t *testing.T) {
	t.Parallel()
	a, pool := newTarget(t, tDDL)
	testenv.Exec(t, pool, `INSERT INTO t VALUES (1, 'one'), (2, 'two')`)
	b := mk(1, batch.Position{}, pos(1, 10), upsert("3", "three", "1", "uno"), del("2"))

	first := mustApply(t, a, b)
	if !first.Applied {
		t.Fatal("first delivery was not applied")
	}
	if got, want := first.Rows, 3; got != want {
		t.Fatalf("first delivery wrote %d rows, want %d", got, want)
	}
	after := contents(t, pool, "t")
	if want := "(1,uno),(3,three)"; after != want {
		t.Fatalf("target after first delivery = %s, want %s", after, want)
	}
	// Make the replay able to show itself: if it ran, row 2 would vanish
	// again and row 1 would be reset.
	testenv.Exec(t, pool, `INSERT INTO t VALUES (2, 'back')`)
	testenv.Exec(t, pool, `UPDATE t SET v = 'later' WHERE id = 1`)
	before := contents(t, pool, "t")

	second := mustApply(t, a, b)
	if second.Applied {
		t.Fatal("second delivery reported Applied = true, want a no-op")
	}
	if got, want := second.Rows, 0; got != want {
		t.Fatalf("second delivery wrote %d rows, want %d", got, want)
	}
	if got := contents(t, pool, "t"); got != before {
		t.Fatalf("second delivery changed the target: %s, was %s", got, before)
	}
	if got, want := watermark(t, a), b.To; got != want {
		t.Fatalf("watermark after replay = %s, want %s", got, want)
	}
}

func TestStaleBatchAfterItsSuccessorIsNoOp(t *testing.T) {
	t.Parallel()
	a, pool := newTarget(t, tDDL)
	b1 := mk(1, batch.Position{}, pos(1, 10), upsert("1", "old", "2", "gone-later"))
	b2 := mk(2, b1.To, pos(1, 20), upsert("1", "new"), del("2"))
	mustApply(t, a, b1)
	mustApply(t, a, b2)

	for _, stale := range []*batch.Batch{
		b1,
		// A batch that ends exactly at the watermark is a replay too.
		mk(3, pos(1, 15), b2.To, upsert("1", "stale")),
	} {
		res := mustApply(t, a, stale)
		if res.Applied {
			t.Fatalf("stale batch %s..%s reported Applied after %s", stale.From, stale.To, b2.To)
		}
		if got, want := contents(t, pool, "t"), "(1,new)"; got != want {
			t.Fatalf("target after stale batch %s..%s = %s, want %s", stale.From, stale.To, got, want)
		}
	}
	if got, want := watermark(t, a), b2.To; got != want {
		t.Fatalf("watermark = %s, want %s", got, want)
	}
}

func TestOverlappingBatchThatReachesFurtherIsApplied(t *testing.T) {
	t.Parallel()
	// A drain that crashed after sending re-drains from the same place and
	// may reach further: that batch is applied in full.
	a, pool := newTarget(t, tDDL)
	b1 := mk(1, batch.Position{}, pos(1, 10), upsert("1", "a"))
	mustApply(t, a, b1)
	again := mk(1, batch.Position{}, pos(1, 30), upsert("1", "a", "2", "b"))
	if res := mustApply(t, a, again); !res.Applied {
		t.Fatal("overlapping batch that reaches further was skipped")
	}
	if got, want := contents(t, pool, "t"), "(1,a),(2,b)"; got != want {
		t.Fatalf("target = %s, want %s", got, want)
	}
	if got, want := watermark(t, a), again.To; got != want {
		t.Fatalf("watermark = %s, want %s", got, want)
	}
}

func TestBatchAfterGapIsRefusedAndChangesNothing(t *testing.T) {
	t.Parallel()
	a, pool := newTarget(t, tDDL)
	b1 := mk(1, batch.Position{}, pos(1, 10), upsert("1", "a"))
	mustApply(t, a, b1)
	// Batch 2 (1.10 .. 2.5) is missing; batch 3 starts where it ended.
	b3 := mk(3, pos(2, 5), pos(2, 9), upsert("1", "changed", "3", "c"), del("1"))
	res, err := a.Apply(context.Background(), b3)
	if !errors.Is(err, apply.ErrGap) {
		t.Fatalf("apply after a gap: err = %v, want ErrGap", err)
	}
	if res.Applied {
		t.Fatal("batch after a gap reported Applied")
	}
	if got, want := contents(t, pool, "t"), "(1,a)"; got != want {
		t.Fatalf("target after refused batch = %s, want %s", got, want)
	}
	if got, want := watermark(t, a), b1.To; got != want {
		t.Fatalf("watermark after refused batch = %s, want %s", got, want)
	}
	if got, want := apply.Classify(err), apply.Blocked; got != want {
		t.Fatalf("a gap is classified %v, want %v (it waits for the missing batch)", got, want)
	}
}

func TestMissingColumnRollsBackWholeBatch(t *testing.T) {
	t.Parallel()
	a, pool := newTarget(t, tDDL+`; CREATE TABLE u (id int PRIMARY KEY)`)
	b1 := mk(1, batch.Position{}, pos(1, 10), upsert("1", "a", "2", "b"))
	mustApply(t, a, b1)

	// The source added column w to t; the first epoch still has the old
	// shape and touches t and u, the second carries the new column.
	b2 := &batch.Batch{
		Version: batch.Version, Pipeline: pipeline, Target: target, Seq: 2,
		From: b1.To, To: pos(2, 40),
		Epochs: []batch.Epoch{
			{Segments: []batch.Segment{
				upsert("1", "changed", "5", "e"),
				del("2"),
				{Table: batch.Table{Schema: "public", Name: "u"}, Columns: []string{"id"}, Key: []string{"id"}, Upserts: []batch.Row{{v("9")}}},
			}},
			{Segments: []batch.Segment{
				{Table: tbl, Columns: []string{"id", "v", "w"}, Key: []string{"id"}, Upserts: []batch.Row{{v("6"), v("f"), v("new")}}},
			}},
		},
	}
	res, err := a.Apply(context.Background(), b2)
	if !errors.Is(err, apply.ErrSchemaBehind) {
		t.Fatalf("apply with a column the target lacks: err = %v, want ErrSchemaBehind", err)
	}
	if res.Applied {
		t.Fatal("failed batch reported Applied")
	}
	if got, want := contents(t, pool, "t"), "(1,a),(2,b)"; got != want {
		t.Fatalf("t after failed batch = %s, want %s (earlier segments rolled back)", got, want)
	}
	if got, want := contents(t, pool, "u"), ""; got != want {
		t.Fatalf("u after failed batch = %s, want it empty", got)
	}
	if got, want := watermark(t, a), b1.To; got != want {
		t.Fatalf("watermark after failed batch = %s, want %s", got, want)
	}

	// Schema sync adds the column; the same batch then applies in full.
	testenv.Exec(t, pool, `ALTER TABLE t ADD COLUMN w text`)
	if res := mustApply(t, a, b2); !res.Applied {
		t.Fatal("retried batch not applied")
	}
	if got, want := contents(t, pool, "t"), "(1,changed,),(5,e,),(6,f,new)"; got != want {
		t.Fatalf("t after retry = %s, want %s", got, want)
	}
	if got, want := contents(t, pool, "u"), "(9)"; got != want {
		t.Fatalf("u after retry = %s, want %s", got, want)
	}
	if got, want := watermark(t, a), b2.To; got != want {
		t.Fatalf("watermark after retry = %s, want %s", got, want)
	}
}

func TestMissingTableIsSchemaBehind(t *testing.T) {
	t.Parallel()
	a, pool := newTarget(t, tDDL)
	b := mk(1, batch.Position{}, pos(1, 10), upsert("1", "a"),
		batch.Segment{Table: batch.Table{Schema: "public", Name: "absent"}, Columns: []string{"id"}, Key: []string{"id"}, Upserts: []batch.Row{{v("1")}}})
	_, err := a.Apply(context.Background(), b)
	if !errors.Is(err, apply.ErrSchemaBehind) {
		t.Fatalf("apply to a missing table: err = %v, want ErrSchemaBehind", err)
	}
	if got, want := contents(t, pool, "t"), ""; got != want {
		t.Fatalf("t after failed batch = %s, want it empty", got)
	}
	if got := watermark(t, a); !got.IsZero() {
		t.Fatalf("watermark after failed batch = %s, want zero", got)
	}
}

func TestKeylessDeleteRemovesOneOfIdenticalRows(t *testing.T) {
	t.Parallel()
	a, pool := newTarget(t, `CREATE TABLE k (a int, b text)`)
	k := batch.Table{Schema: "public", Name: "k"}
	seg := func() batch.Segment { return batch.Segment{Table: k, Columns: []string{"a", "b"}} }

	ins := seg()
	for range 3 {
		ins.Upserts = append(ins.Upserts, batch.Row{v("1"), v("x")})
	}
	// Rows with NULLs match too, and a different row is left alone.
	ins.Upserts = append(ins.Upserts, batch.Row{v("2"), nil}, batch.Row{v("2"), nil}, batch.Row{v("3"), v("y")})
	b1 := mk(1, batch.Position{}, pos(1, 10), ins)
	mustApply(t, a, b1)
	if got, want := contents(t, pool, "k"), "(1,x),(1,x),(1,x),(2,),(2,),(3,y)"; got != want {
		t.Fatalf("k after inserts = %s, want %s", got, want)
	}

	d := seg()
	d.Deletes = []batch.Row{{v("1"), v("x")}, {v("2"), nil}}
	b2 := mk(2, b1.To, pos(1, 20), d)
	mustApply(t, a, b2)
	if got, want := contents(t, pool, "k"), "(1,x),(1,x),(2,),(3,y)"; got != want {
		t.Fatalf("k after deleting one of each duplicate = %s, want %s", got, want)
	}
	// Replaying the delete must not remove another duplicate.
	if res := mustApply(t, a, b2); res.Applied {
		t.Fatal("replayed keyless delete reported Applied")
	}
	if got, want := contents(t, pool, "k"), "(1,x),(1,x),(2,),(3,y)"; got != want {
		t.Fatalf("k after replaying the delete = %s, want %s", got, want)
	}
}

func TestFirstBatchMissingOnFreshTargetIsAGap(t *testing.T) {
	t.Parallel()
	a, pool := newTarget(t, tDDL)
	// Batch 1 (zero .. 1.10) was dead-lettered; batch 2 must not overtake it.
	b2 := mk(2, pos(1, 10), pos(1, 20), upsert("1", "a"))
	if _, err := a.Apply(context.Background(), b2); !errors.Is(err, apply.ErrGap) {
		t.Fatalf("second batch on a fresh target: err = %v, want ErrGap", err)
	}
	if got, want := contents(t, pool, "t"), ""; got != want {
		t.Fatalf("target after refused batch = %q, want empty", got)
	}
	mustApply(t, a, mk(1, batch.Position{}, pos(1, 10), upsert("1", "first")))
	mustApply(t, a, b2)
	if got, want := contents(t, pool, "t"), "(1,a)"; got != want {
		t.Fatalf("target after both batches = %s, want %s", got, want)
	}
}

func TestBatchFromAnotherLineageIsRefused(t *testing.T) {
	t.Parallel()
	a, pool := newTarget(t, tDDL)
	b1 := mk(1, batch.Position{}, pos(3, 10), upsert("1", "a"))
	b1.Lineage = "old"
	mustApply(t, a, b1)
	// The checkpoint store was lost: positions restarted under a new
	// lineage. Without the check this batch would look like a replay.
	b2 := mk(1, batch.Position{}, pos(1, 5), upsert("2", "new"))
	b2.Lineage = "new"
	_, err := a.Apply(context.Background(), b2)
	if !errors.Is(err, apply.ErrLineage) {
		t.Fatalf("batch from another lineage: err = %v, want ErrLineage", err)
	}
	if got, want := apply.Classify(err), apply.Blocked; got != want {
		t.Fatalf("lineage mismatch classified %v, want %v (it waits for an operator)", got, want)
	}
	if got, want := contents(t, pool, "t"), "(1,a)"; got != want {
		t.Fatalf("target after refused batch = %s, want %s", got, want)
	}
}

// An upsert of an existing row updates it in place (ON CONFLICT on the
// primary key, in key order), so columns the batch does not carry keep
// their values; replacing the row would reset them to their defaults.
func TestUpsertOfExistingRowKeepsColumnsTheBatchLacks(t *testing.T) {
	a, pool := newTarget(t, `CREATE TABLE t (id int PRIMARY KEY, v text, extra int DEFAULT 5);
		CREATE TABLE t2 (x int, y int, v text, extra int DEFAULT 5, PRIMARY KEY (y, x))`)
	mustApply(t, a, mk(1, pos(0, 0), pos(1, 0), upsert("1", "a")))
	testenv.Exec(t, pool, `UPDATE t SET extra = 42; INSERT INTO t2 VALUES (1, 2, 'a', 42)`)
	t2 := batch.Segment{Table: batch.Table{Schema: "public", Name: "t2"}, Columns: []string{"x", "y", "v"}, Key: []string{"y", "x"},
		Upserts: []batch.Row{{v("1"), v("2"), v("b")}, {v("3"), v("4"), v("c")}}}
	mustApply(t, a, mk(2, pos(1, 0), pos(2, 0), upsert("1", "b", "2", "c"), t2))
	if got := contents(t, pool, "t"); got != "(1,b,42),(2,c,5)" {
		t.Fatalf("t = %s, want (1,b,42),(2,c,5)", got)
	}
	if got := contents(t, pool, "t2"); got != "(1,2,b,42),(3,4,c,5)" {
		t.Fatalf("t2 = %s, want (1,2,b,42),(3,4,c,5)", got)
	}
}

// Compaction can net two source transactions that swap the values of a
// unique column (other than the key) into one batch. Updated row by row,
// ON CONFLICT on the key meets the other row's old value (23505); the
// applier replaces those rows instead, and the batch applies.
func TestUpsertsThatSwapAUniqueValueApply(t *testing.T) {
	a, pool := newTarget(t, `CREATE TABLE u (id int PRIMARY KEY, code text UNIQUE, n int)`)
	seg := func(rows ...[]string) batch.Segment {
		s := batch.Segment{Table: batch.Table{Schema: "public", Name: "u"}, Columns: []string{"id", "code", "n"}, Key: []string{"id"}}
		for _, r := range rows {
			s.Upserts = append(s.Upserts, batch.Row{v(r[0]), v(r[1]), v(r[2])})
		}
		return s
	}
	mustApply(t, a, mk(1, pos(0, 0), pos(1, 0), seg([]string{"1", "a", "1"}, []string{"2", "b", "2"})))
	mustApply(t, a, mk(2, pos(1, 0), pos(2, 0), seg([]string{"1", "b", "10"}, []string{"2", "a", "20"}, []string{"3", "c", "30"})))
	if got := contents(t, pool, "u"); got != "(1,b,10),(2,a,20),(3,c,30)" {
		t.Fatalf("u = %s, want (1,b,10),(2,a,20),(3,c,30)", got)
	}
}
