package pgapply_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/pgferry/pgferry/shared/apply"
	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/testenv"
)

// A batch of small segments of known tables goes out in one round trip;
// whatever the full path would refuse or skip is still refused or
// skipped, and changes nothing: replays, stale batches, gaps, another
// lineage, a value the target rejects, a column the target lost.
func TestPipelinedApplyKeepsTheWatermarkRules(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, pool := newTarget(t, tDDL+`; CREATE TABLE u (id int PRIMARY KEY, w text)`)
	u := batch.Table{Schema: "public", Name: "u"}
	useg := func(id, w string) batch.Segment {
		return batch.Segment{Table: u, Columns: []string{"id", "w"}, Key: []string{"id"}, Upserts: []batch.Row{{v(id), v(w)}}}
	}
	var seq uint64
	at := batch.Position{}
	next := func(epochs ...batch.Epoch) *batch.Batch {
		seq++
		return &batch.Batch{Version: batch.Version, Pipeline: pipeline, Target: target, Seq: seq, Lineage: "L",
			From: at, To: pos(seq, 1), Epochs: epochs}
	}
	wantT, wantU := "", ""
	check := func(when string) {
		t.Helper()
		if got := contents(t, pool, "t"); got != wantT {
			t.Fatalf("t %s = %s, want %s", when, got, wantT)
		}
		if got := contents(t, pool, "u"); got != wantU {
			t.Fatalf("u %s = %s, want %s", when, got, wantU)
		}
		if got := watermark(t, a); got != at {
			t.Fatalf("watermark %s = %s, want %s", when, got, at)
		}
	}
	// apply applies b and checks how: pipelined or the full way.
	apply1 := func(b *batch.Batch, pipelined bool) apply.Result {
		t.Helper()
		sent, applied := a.Pipelined()
		res := mustApply(t, a, b)
		sent2, applied2 := a.Pipelined()
		if got := applied2 > applied; got != pipelined || (pipelined && sent2 != sent+1) {
			t.Fatalf("batch %d: pipelined = %v, want %v", b.Seq, got, pipelined)
		}
		if res.Applied {
			at = b.To
		}
		return res
	}
	// warm applies a batch touching both tables (row 9 of each), so that
	// the catalog data of both is cached (every failure drops it).
	warm := func(pipelined bool) {
		t.Helper()
		_ = apply1(next(batch.Epoch{Segments: []batch.Segment{upsert("9", "w"), useg("9", "w")}}), pipelined)
	}
	// refused sends b (which must try the pipeline and give way) and
	// returns the full path's error.
	refused := func(what string, b *batch.Batch) error {
		t.Helper()
		sent, applied := a.Pipelined()
		res, err := a.Apply(ctx, b)
		sent2, applied2 := a.Pipelined()
		if sent2 != sent+1 || applied2 != applied {
			t.Fatalf("%s: sent %d→%d, applied %d→%d: want one pipeline that gave way", what, sent, sent2, applied, applied2)
		}
		if res.Applied || res.Rows != 0 {
			t.Fatalf("%s: %+v, want nothing applied", what, res)
		}
		check("after " + what)
		return err
	}

	warm(false) // nothing cached yet
	wantT, wantU = "(9,w)", "(9,w)"
	check("after the first batch")
	warm(true)
	check("after the second batch")
	// Truncate, deletes and upserts keep their order inside the pipeline.
	b := next(
		batch.Epoch{Truncate: []batch.Table{u}, Segments: []batch.Segment{useg("7", "y")}},
		batch.Epoch{Segments: []batch.Segment{upsert("1", "a", "2", "b")}},
		batch.Epoch{Segments: []batch.Segment{del("1", "9"), upsert("1", "again", "3", "c")}},
	)
	if res := apply1(b, true); !res.Applied || res.Rows != 7 {
		t.Fatalf("batch %d: %+v, want applied with 7 rows", b.Seq, res)
	}
	wantT, wantU = "(1,again),(2,b),(3,c)", "(7,y)"
	check("after the ordered batch")

	// A replay and a stale batch: no-ops, reported as not applied.
	if err := refused("a replay", b); err != nil {
		t.Fatal(err)
	}
	stale := &batch.Batch{Version: batch.Version, Pipeline: pipeline, Target: target, Seq: b.Seq, Lineage: "L",
		From: b.From, To: b.To, Epochs: []batch.Epoch{{Segments: []batch.Segment{upsert("1", "stale")}}}}
	if err := refused("a stale batch", stale); err != nil {
		t.Fatal(err)
	}

	// A gap and another lineage are refused.
	gap := next(batch.Epoch{Segments: []batch.Segment{upsert("1", "gap")}})
	gap.From = pos(seq, 0)
	if err := refused("a batch after a gap", gap); !errors.Is(err, apply.ErrGap) {
		t.Fatalf("batch after a gap: err = %v, want ErrGap", err)
	}
	warm(false)
	wantT, wantU = "(1,again),(2,b),(3,c),(9,w)", "(7,y),(9,w)"
	check("after a warming batch")
	other := next(batch.Epoch{Segments: []batch.Segment{upsert("1", "other")}})
	other.Lineage = "M"
	if err := refused("a batch of another lineage", other); !errors.Is(err, apply.ErrLineage) {
		t.Fatalf("batch of another lineage: err = %v, want ErrLineage", err)
	}

	// A value the target rejects, after rows of the same batch that it
	// takes: the error names the column (the retry through staging tables).
	warm(false)
	bad := next(batch.Epoch{Segments: []batch.Segment{upsert("1", "changed"), useg("not a number", "z")}})
	if err := refused("a rejected value", bad); err == nil || !strings.Contains(err.Error(), "column id") {
		t.Fatalf("rejected value: err = %v, want one naming column id", err)
	}

	// The target lost a column the cached catalog data still lists: the
	// batch is schema-behind, as on the full path.
	warm(false)
	testenv.Exec(t, pool, `ALTER TABLE u DROP COLUMN w`)
	wantU = "(7),(9)"
	lost := next(batch.Epoch{Segments: []batch.Segment{upsert("1", "lost"), useg("8", "z")}})
	if err := refused("a column the target lost", lost); !errors.Is(err, apply.ErrSchemaBehind) {
		t.Fatalf("column dropped on the target: err = %v, want ErrSchemaBehind", err)
	}
}

// An update segment (columns the source did not send keep the target's
// value) of a table whose catalog data is not cached yet: the pipelined
// attempt must give way to the full path, not read the catalog without a
// transaction (it panicked once, in a full test run), and the same
// segment once cached goes out pipelined.
func TestPipelinedApplyOfAnUpdateSegmentOfAnUncachedTable(t *testing.T) {
	t.Parallel()
	a, pool := newTarget(t, `CREATE TABLE docs (id int PRIMARY KEY, n text, big text)`)
	testenv.Exec(t, pool, `INSERT INTO docs VALUES (1, 'a', 'kept'), (2, 'b', 'kept')`)
	docs := batch.Table{Schema: "public", Name: "docs"}
	upd := func(id, n string) batch.Segment {
		return batch.Segment{Table: docs, Columns: []string{"id", "n"}, Key: []string{"id"}, Update: true,
			Match: []batch.Row{{v(id)}}, Upserts: []batch.Row{{v(id), v(n)}}}
	}
	for i, want := range []struct {
		id, n     string
		pipelined bool
	}{{"1", "a2", false}, {"2", "b2", true}} {
		_, before := a.Pipelined()
		res := mustApply(t, a, mk(uint64(i+1), pos(uint64(i), 0), pos(uint64(i+1), 0), upd(want.id, want.n)))
		_, after := a.Pipelined()
		if !res.Applied || (after > before) != want.pipelined {
			t.Fatalf("batch %d: %+v, pipelined %v, want applied, pipelined %v", i+1, res, after > before, want.pipelined)
		}
	}
	if got := contents(t, pool, "docs"); got != "(1,a2,kept),(2,b2,kept)" {
		t.Fatalf("docs = %s", got)
	}
}
