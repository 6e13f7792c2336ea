package runner_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/pgferry/pgferry/shared/apply/pgapply"
	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/initload"
	"github.com/pgferry/pgferry/shared/load"
)

const loadOrderDDL = `
CREATE TABLE items (id int PRIMARY KEY, grp int NOT NULL, note text, code text UNIQUE);
CREATE INDEX items_grp ON items (grp);
CREATE TABLE other (id int PRIMARY KEY, v text);
CREATE TABLE keyless (v int, w text);`

// TestLoadingTableHoldsItsChangesUntilHandOver copies a table chunk by
// chunk while its rows change, and checks the order of things: the
// loading table's changes are held on the target (neither applied to the
// half-copied table nor lost), other tables keep flowing, and at hand-over
// the held changes — updates, deletes, key changes across chunks copied
// and not yet copied, swaps of a unique column — are replayed over the
// finished copy, so the target ends equal to the source, with its
// secondary indexes back.
func TestLoadingTableHoldsItsChangesUntilHandOver(t *testing.T) {
	forEachCapture(t, testLoadingTableHolds)
}

func testLoadingTableHolds(t *testing.T, mode string) {
	f := newFixtureMode(t, mode, loadOrderDDL, "load:\n  chunk_rows: 1000\n  parallelism: 2\n")
	ctx := context.Background()
	f.exec(`INSERT INTO items SELECT g, g % 10, 'n' || g, 'c' || g FROM generate_series(1, 10000) g`)
	f.exec(`INSERT INTO other SELECT g, 'o' || g FROM generate_series(1, 100) g`)
	f.exec(`INSERT INTO keyless SELECT g % 7, 'k' FROM generate_series(1, 50) g`)
	f.exec(`ANALYZE items`)

	loader := f.loader()
	tables, err := initload.Tables(ctx, f.cfg, f.src, []string{"public.items", "public.other", "public.keyless"})
	if err != nil {
		t.Fatal(err)
	}
	plans, err := loader.Prepare(ctx, "replica", tables, load.Options{ChunkRows: 1000, DropIndexes: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(plans) != 2 || plans[0].Table.Table.Name != "items" || plans[1].Table.Table.Name != "other" {
		t.Fatalf("planned %d tables, want items then other, largest first (keyless is copied by capture)", len(plans))
	}
	p := plans[0]
	// other is copied at once and handed over by the first replication.
	for _, j := range plans[1].Jobs(nil) {
		if err := loader.Copy(ctx, j); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(p.Chunks); n < 4 {
		t.Fatalf("items planned in %d chunks, want several", n)
	}
	t.Logf("items: %d chunks", len(p.Chunks))
	first, last := p.Chunks[0], p.Chunks[len(p.Chunks)-1]
	inFirst, _ := strconv.Atoi(first.Hi[0])
	inFirst-- // the largest id of the first chunk
	inLast, _ := strconv.Atoi(last.Lo[0])
	if inFirst < 5 || inLast > 9995 {
		t.Fatalf("chunk bounds %v..%v leave no room for the test", first.Hi, last.Lo)
	}
	if got := f.targetInt(`SELECT count(*) FROM pg_indexes WHERE tablename = 'items' AND indexname <> 'items_pkey'`); got != 0 {
		t.Fatalf("target items has %d secondary indexes during the load, want 0 (dropped for the copy)", got)
	}

	jobs := p.Jobs(nil)
	copyChunk := func(j load.Job) {
		t.Helper()
		if err := loader.Copy(ctx, j); err != nil {
			t.Fatalf("copy chunk %d: %v", j.Chunk.N, err)
		}
	}
	copyChunk(jobs[0]) // the first chunk is on the target, the last is not

	// Changes to rows of the copied first chunk and of the uncopied last
	// chunk, key changes in both directions, a unique value swap, and a
	// new row.
	f.exec(`UPDATE items SET note = 'changed' WHERE id IN (1, $1::int)`, inLast+1)
	f.exec(`DELETE FROM items WHERE id IN (2, $1::int)`, inLast+2)
	f.exec(`UPDATE items SET id = 20001 WHERE id = 3`)              // first chunk → past the end
	f.exec(`UPDATE items SET id = -5 WHERE id = $1::int`, inLast+3) // last chunk → before the start
	f.exec(`BEGIN; UPDATE items SET code = 'tmp' WHERE id = 4; UPDATE items SET code = 'c4' WHERE id = 5; UPDATE items SET code = 'c5' WHERE id = 4; COMMIT`)
	f.exec(`INSERT INTO items VALUES (30000, 1, 'new', 'new')`)
	f.exec(`UPDATE other SET v = 'flowing' WHERE id = 1`)
	f.replicate()

	if got := f.targetInt(`SELECT count(*) FROM other WHERE v = 'flowing'`); got != 1 {
		t.Errorf("other table did not flow while items loads")
	}
	if got := f.targetInt(`SELECT count(*) FROM items WHERE note = 'changed' OR id IN (-5, 20001, 30000)`); got != 0 {
		t.Errorf("%d changed rows of the loading table were written before its copy finished", got)
	}
	if got := f.targetInt(`SELECT count(*) FROM items WHERE id = 2`); got != 1 {
		t.Errorf("a delete reached the loading table before its copy finished")
	}
	held, err := f.targets["replica"].(*pgapply.Applier).HeldRows(ctx, batch.Table{Schema: "public", Name: "items"})
	if err != nil {
		t.Fatal(err)
	}
	if held == 0 {
		t.Fatal("no changes of the loading table are held")
	}
	if got := f.targetInt(`SELECT count(*) FROM keyless`); got != 50 {
		t.Errorf("keyless table: %d rows on the target, want 50 (capture copies it)", got)
	}

	// Copy the rest, with more changes between chunks, then hand over.
	for i, j := range jobs[1:] {
		copyChunk(j)
		if i == 0 {
			f.exec(`UPDATE items SET note = 'late' WHERE id IN (6, $1::int)`, inLast+4)
			f.exec(`DELETE FROM items WHERE id = 20001`)
		}
	}
	// Once every chunk is copied, Complete has written the mark; the
	// stream hands the table over when it reaches it.
	if _, err := loader.Complete(ctx, "replica", p.Table.Table, p.LoadID); err != nil {
		t.Fatal(err)
	}
	f.exec(`UPDATE items SET note = 'after' WHERE id = 7`)
	f.replicate()
	st, _, err := f.targets["replica"].(*pgapply.Applier).LoadStatus(ctx, p.Table.Table)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Loaded {
		t.Fatalf("items not handed over after the mark was applied: %+v", st)
	}
	f.assertSame()
	if got := f.targetInt(`SELECT count(*) FROM pg_indexes WHERE tablename = 'items' AND indexname IN ('items_grp', 'items_code_key')`); got != 2 {
		t.Errorf("target items has %d of its 2 secondary indexes back", got)
	}
	if got := f.targetInt(`SELECT count(*) FROM pgferry.load_held`); got != 0 {
		t.Errorf("%d held changes left after hand-over", got)
	}
	// The table now follows the stream directly.
	f.exec(`UPDATE items SET note = 'direct' WHERE id = 8`)
	f.replicate()
	f.assertSame()
}
