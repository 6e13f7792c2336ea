package rsapply

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/redshiftdata"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/apply"
	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/load"
	"github.com/pgferry/pgferry/shared/metrics"
	"github.com/pgferry/pgferry/shared/payload/s3store"
	"github.com/pgferry/pgferry/shared/redshift"
	"github.com/pgferry/pgferry/shared/testenv"
)

var items = batch.Table{Schema: "shop", Name: "items"}

// loadRig is a source database with shop.items and a Redshift-like target
// (pgShim) with the same table in Redshift types.
type loadRig struct {
	*target
	src    *pgxpool.Pool
	copies int // chunk copies src served
}

const itemRows = 3000

func newLoadRig(t *testing.T) *loadRig {
	tg := newTarget(t)
	testenv.Exec(t, tg.shim.pool, `CREATE TABLE shop.items (id int NOT NULL, note varchar(12), amount numeric(19,8), PRIMARY KEY (id))`)
	src := testenv.Pool(t, testenv.NewDB(t, "rsload_src"))
	testenv.Exec(t, src, `CREATE SCHEMA shop;
		CREATE TABLE shop.items (id int PRIMARY KEY, note text, amount numeric);
		INSERT INTO shop.items SELECT g, 'n' || g, g * 1.5 FROM generate_series(1, 3000) g;
		UPDATE shop.items SET note = 'ünïcødé and long' WHERE id = 7;
		UPDATE shop.items SET amount = 1e30 WHERE id = 8`)
	return &loadRig{target: tg, src: src}
}

var itemCols = []string{"id", "note", "amount"}

// chunk returns chunk n of 4 (ids [750n+1, 750n+751)) as the loader would.
func (r *loadRig) chunk(loadID string, n int) load.ChunkCopy {
	return load.ChunkCopy{Table: items, LoadID: loadID, N: n, Columns: itemCols, Where: "unused"}
}

// srcOf copies chunk n from the source in COPY text, as load.CopyOut does.
func (r *loadRig) srcOf(n int) func(context.Context, io.Writer, bool) error {
	return func(ctx context.Context, w io.Writer, binary bool) error {
		if binary {
			return errors.New("asked for binary")
		}
		r.copies++
		conn, err := r.src.Acquire(ctx)
		if err != nil {
			return err
		}
		defer conn.Release()
		lo := 750*n + 1
		hi := lo + 750
		if n == 3 {
			hi = 1 << 30 // the last chunk is open-ended
		}
		_, err = conn.Conn().PgConn().CopyTo(ctx, w, fmt.Sprintf(
			"COPY (SELECT id, note, amount FROM shop.items WHERE id >= %d AND id < %d) TO STDOUT", lo, hi))
		return err
	}
}

func (r *loadRig) copyChunk(a *Applier, loadID string, n int) (int64, bool) {
	r.t.Helper()
	rows, copied, err := a.CopyChunk(context.Background(), r.chunk(loadID, n), r.srcOf(n))
	if err != nil {
		r.t.Fatalf("copy chunk %d: %v", n, err)
	}
	return rows, copied
}

func (r *loadRig) apply(a *Applier, b *batch.Batch) apply.Result {
	r.t.Helper()
	res, err := a.Apply(context.Background(), b)
	if err != nil {
		r.t.Fatalf("apply batch %d: %v", b.Seq, err)
	}
	return res
}

// srcExec changes the source; the test sends the same change as a batch.
func (r *loadRig) srcExec(sql string) { testenv.Exec(r.t, r.src, sql) }

func itemSeg(upserts []batch.Row, deletes ...batch.Row) batch.Segment {
	return batch.Segment{Table: items, Columns: itemCols, Key: []string{"id"}, Upserts: upserts, Deletes: deletes}
}

func markSeg(loadID string) batch.Segment {
	return batch.Segment{Table: batch.LoadMarks("p"), Columns: []string{"target", "tbl_schema", "tbl_name", "load_id"},
		Upserts: []batch.Row{row("warehouse", "shop", "items", loadID), row("other", "shop", "items", "x")}}
}

// want renders the source's items as the target should hold them: notes
// cut to 12 bytes at a character boundary, amounts saturated at
// NUMERIC(19,8)'s largest value.
func (r *loadRig) want() string {
	r.t.Helper()
	rows, err := r.src.Query(context.Background(), `SELECT id, CASE WHEN octet_length(note) > 12 THEN 'ünïcødé ' ELSE note END,
		CASE WHEN amount > 92233720368.54775807 THEN 92233720368.54775807 ELSE amount END::numeric(19,8)::text FROM shop.items ORDER BY id`)
	if err != nil {
		r.t.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var id int
		var note, amount *string
		if err := rows.Scan(&id, &note, &amount); err != nil {
			r.t.Fatal(err)
		}
		fmt.Fprintf(&b, "%d|%s|%s\n", id, deref(note), deref(amount))
	}
	return b.String()
}

func (r *loadRig) got() string {
	r.t.Helper()
	out := r.rows(`SELECT id, coalesce(note, ''), coalesce(amount::text, '') FROM shop.items ORDER BY id`)
	if out == "" {
		return ""
	}
	return out + "\n"
}

func (r *loadRig) state() string {
	return r.rows(`SELECT state || ' ' || (SELECT count(*) FROM pgferry.load_chunks) || ' ' || (SELECT count(*) FROM pgferry.load_held) FROM pgferry.loads`)
}

// TestLoadHoldsChangesCopiesChunksOnceAndHandsOver loads 3,000 rows in
// four chunks while the source keeps changing: changes to the loading
// table are held (other tables flow), a chunk copied twice is copied once,
// a copy that dies midway leaves nothing and a new applier (a restarted
// load) copies only the missing chunks, and the batch with the load mark
// replays the held changes so the target ends equal to the source.
func TestLoadHoldsChangesCopiesChunksOnceAndHandsOver(t *testing.T) {
	r := newLoadRig(t)
	ctx := context.Background()
	a := r.a
	// A batch before the load caches "nothing loading".
	r.apply(a, mkBatch(1, 0, 10, batch.Epoch{Segments: []batch.Segment{{Table: orders, Columns: orderCols, Key: []string{"id"},
		Upserts: []batch.Row{row("1", "before", "1", "<NULL>", "<NULL>")}}}}))
	if err := a.BeginLoad(ctx, "p.warehouse", items, "L1", 4, false); err != nil {
		t.Fatal(err)
	}
	if err := a.BeginLoad(ctx, "p.warehouse", items, "L1", 4, false); err != nil { // again: a no-op
		t.Fatal(err)
	}
	if st, found, err := a.LoadStatus(ctx, items); err != nil || !found || st != (load.State{LoadID: "L1", Chunks: 4}) {
		t.Fatalf("status after begin: %+v %v %v", st, found, err)
	}
	if rows, copied := r.copyChunk(a, "L1", 0); rows != 750 || !copied {
		t.Fatalf("chunk 0: %d rows, copied %v", rows, copied)
	}
	// Changes to copied and uncopied ranges, at the source and in the stream.
	r.srcExec(`UPDATE shop.items SET note = 'changed' WHERE id = 5; DELETE FROM shop.items WHERE id IN (10, 2000);
		INSERT INTO shop.items VALUES (5000, 'new', 2)`)
	res := r.apply(a, mkBatch(2, 10, 20, batch.Epoch{Segments: []batch.Segment{
		itemSeg([]batch.Row{row("5", "changed", "7.5"), row("5000", "new", "2")}, row("10"), row("2000")),
		{Table: orders, Columns: orderCols, Key: []string{"id"}, Upserts: []batch.Row{row("2", "during", "2", "<NULL>", "<NULL>")}},
	}}))
	if !res.Applied {
		t.Fatal("batch 2 not applied")
	}
	if got := r.rows(`SELECT note FROM shop.items WHERE id = 5`); got != "n5" {
		t.Fatalf("a loading table was written by a batch: note %q", got)
	}
	if got := r.rows(`SELECT note FROM shop.orders WHERE id = 2`); got != "during" {
		t.Fatalf("another table did not flow during the load: %q", got)
	}
	if n, err := a.HeldParts(ctx, items); err != nil || n != 1 {
		t.Fatalf("held parts: %d, %v", n, err)
	}
	// Chunk 0 again: recorded, not copied again.
	if rows, copied := r.copyChunk(a, "L1", 0); rows != 750 || copied {
		t.Fatalf("chunk 0 again: %d rows, copied %v", rows, copied)
	}
	// A copy of chunk 1 that dies midway changes nothing.
	_, _, err := a.CopyChunk(ctx, r.chunk("L1", 1), func(ctx context.Context, w io.Writer, _ bool) error {
		_, _ = io.WriteString(w, "751\tx\t1\n752\ty\t2\n")
		return errors.New("source connection lost")
	})
	if err == nil || !strings.Contains(err.Error(), "source connection lost") {
		t.Fatalf("a failed source: %v", err)
	}
	if got := r.rows(`SELECT count(*) FROM shop.items`); got != "750" {
		t.Fatalf("rows after a failed chunk: %s", got)
	}
	// The load is killed; a new process resumes it.
	r.copies = 0
	b := r.newApplier()
	if err := b.BeginLoad(ctx, "p.warehouse", items, "L1", 4, false); err != nil {
		t.Fatal(err)
	}
	for n := range 4 {
		rows, copied := r.copyChunk(b, "L1", n)
		if copied != (n != 0) {
			t.Fatalf("resumed chunk %d: copied %v", n, copied)
		}
		if n == 0 && rows != 750 {
			t.Fatalf("chunk 0 rows %d", rows)
		}
	}
	if r.copies != 3 {
		t.Fatalf("the source served %d chunk copies on resume, want 3 (chunk 0 was recorded)", r.copies)
	}
	// More changes after the copy, including a partial row (TOAST unchanged)
	// and a key change, then the mark.
	r.srcExec(`UPDATE shop.items SET amount = 99 WHERE id = 6; UPDATE shop.items SET id = 6001 WHERE id = 11;
		DELETE FROM shop.items WHERE id = 5000`)
	r.apply(b, mkBatch(3, 20, 30, batch.Epoch{Segments: []batch.Segment{
		{Table: items, Columns: []string{"id", "amount"}, Key: []string{"id"}, Update: true,
			Upserts: []batch.Row{row("6", "99"), row("6001", "16.5")}, Match: []batch.Row{row("6"), row("11")}},
	}}, batch.Epoch{Segments: []batch.Segment{itemSeg(nil, row("5000"))}}))
	if got := r.state(); got != "loading 4 3" { // a part per epoch
		t.Fatalf("load state before the mark: %q", got)
	}
	r.srcExec(`UPDATE shop.items SET note = 'with mark' WHERE id = 12`)
	r.apply(b, mkBatch(4, 30, 40, batch.Epoch{Segments: []batch.Segment{
		itemSeg([]batch.Row{row("12", "with mark", "18")}), markSeg("L1"),
	}}))
	if got := r.state(); got != "loaded 0 0" {
		t.Fatalf("load state after the mark: %q", got)
	}
	if got, want := r.got(), r.want(); got != want {
		t.Fatalf("target differs from source after hand-over:\n%s", diffLines(got, want))
	}
	// After the hand-over, batches write the table directly.
	r.srcExec(`UPDATE shop.items SET note = 'after' WHERE id = 13`)
	r.apply(b, mkBatch(5, 40, 50, batch.Epoch{Segments: []batch.Segment{itemSeg([]batch.Row{row("13", "after", "19.5")})}}))
	if got, want := r.got(), r.want(); got != want {
		t.Fatalf("target differs from source after hand-over:\n%s", diffLines(got, want))
	}
	if st, found, err := b.LoadStatus(ctx, items); err != nil || !found || st != (load.State{LoadID: "L1", Loaded: true, Chunks: 4}) {
		t.Fatalf("status after hand-over: %+v %v %v", st, found, err)
	}
	// Chunks of a finished load are not copied again.
	if _, copied := r.copyChunk(b, "L1", 2); copied {
		t.Fatal("a chunk of a finished load was copied")
	}
	// The conversions were counted, as batch rows' are.
	if !strings.Contains(r.emf.String(), `"Column":"note","Conversion":"truncated"`) ||
		!strings.Contains(r.emf.String(), `"Column":"amount","Conversion":"saturated"`) {
		t.Fatalf("lossy conversions of loaded rows not counted:\n%s", r.emf.String())
	}
	for _, tx := range r.shim.log {
		for _, s := range tx {
			if ShapeOf(s) == nil {
				t.Errorf("statement has no shape in shapes.go: %.100s", s)
			}
		}
	}
}

// TestLoadRestartEmptiesTheTableAndTheGuardCatchesAStaleCache: a batch
// planned by an applier that has not seen a BeginLoad (another process's)
// fails its guard and changes nothing; planned again, it holds the
// table's changes. A new load id restarts the load from an empty table.
func TestLoadRestartEmptiesTheTableAndTheGuardCatchesAStaleCache(t *testing.T) {
	r := newLoadRig(t)
	ctx := context.Background()
	a := r.a
	r.apply(a, mkBatch(1, 0, 10, batch.Epoch{Segments: []batch.Segment{itemSeg([]batch.Row{row("1", "old", "1"), row("99999", "stale", "1")})}}))
	loader := r.newApplier()
	if err := loader.BeginLoad(ctx, "p.warehouse", items, "L1", 4, false); err != nil {
		t.Fatal(err)
	}
	if got := r.rows(`SELECT count(*) FROM shop.items`); got != "0" {
		t.Fatalf("a new load did not start from an empty table: %s rows", got)
	}
	b2 := mkBatch(2, 10, 20, batch.Epoch{Segments: []batch.Segment{itemSeg([]batch.Row{row("2", "held", "3")})}})
	if _, err := a.Apply(ctx, b2); !errors.Is(err, apply.ErrTransient) {
		t.Fatalf("a batch planned before BeginLoad: %v, want a transient failure", err)
	}
	if got := r.rows(`SELECT count(*) FROM shop.items`); got != "0" {
		t.Fatalf("the stale batch wrote the loading table: %s rows", got)
	}
	if res := r.apply(a, b2); !res.Applied {
		t.Fatal("batch 2 not applied on retry")
	}
	if n, err := a.HeldParts(ctx, items); err != nil || n != 1 {
		t.Fatalf("held parts: %d, %v", n, err)
	}
	r.copyChunk(loader, "L1", 0)
	r.copyChunk(loader, "L1", 1)
	// Restart under a new id: chunk records of L1 go, the table is emptied.
	if err := loader.BeginLoad(ctx, "p.warehouse", items, "L2", 4, false); err != nil {
		t.Fatal(err)
	}
	if got := r.rows(`SELECT (SELECT count(*) FROM shop.items) || ' ' || (SELECT count(*) FROM pgferry.load_chunks)`); got != "0 0" {
		t.Fatalf("restart: rows and chunk records %s", got)
	}
	if _, copied := r.copyChunk(loader, "L1", 2); copied {
		t.Fatal("a chunk of the old load was copied")
	}
	for n := range 4 {
		r.copyChunk(loader, "L2", n)
	}
	// A mark of the old load hands nothing over; the new one does. (a's
	// cache still says L1: the guard fails the first try, as above.)
	if _, err := a.Apply(ctx, mkBatch(3, 20, 30)); !errors.Is(err, apply.ErrTransient) {
		t.Fatalf("a batch planned before the restart: %v, want a transient failure", err)
	}
	r.apply(a, mkBatch(3, 20, 30, batch.Epoch{Segments: []batch.Segment{markSeg("L1")}}))
	if got := r.state(); got != "loading 4 1" {
		t.Fatalf("after the old load's mark: %q", got)
	}
	r.srcExec(`UPDATE shop.items SET note = 'held' WHERE id = 2`)
	r.apply(a, mkBatch(4, 30, 40, batch.Epoch{Segments: []batch.Segment{markSeg("L2")}}))
	if got := r.state(); got != "loaded 0 0" {
		t.Fatalf("after the mark: %q", got)
	}
	if got, want := r.got(), r.want(); got != want {
		t.Fatalf("target differs from source:\n%s", diffLines(got, want))
	}
	// A reset forgets the load; the rows stay.
	if err := loader.BeginLoad(ctx, "p.warehouse", orders, "L3", 1, false); err != nil {
		t.Fatal(err)
	}
	if err := loader.ResetLoads(ctx); err != nil {
		t.Fatal(err)
	}
	if got := r.rows(`SELECT (SELECT count(*) FROM pgferry.loads) || ' ' || (SELECT count(*) FROM shop.items)`); got != "0 3000" {
		t.Fatalf("after reset: loads and rows %s", got)
	}
	if _, found, err := loader.LoadStatus(ctx, items); err != nil || found {
		t.Fatalf("status after reset: found %v, %v", found, err)
	}
}

// diffLines shows the first lines that differ.
func diffLines(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	var out []string
	for i := 0; i < max(len(g), len(w)) && len(out) < 10; i++ {
		var a, b string
		if i < len(g) {
			a = g[i]
		}
		if i < len(w) {
			b = w[i]
		}
		if a != b {
			out = append(out, fmt.Sprintf("line %d: got %q want %q", i+1, a, b))
		}
	}
	return fmt.Sprintf("%d rows vs %d\n%s", len(g), len(w), strings.Join(out, "\n"))
}

// TestLoadHandOverOfManyHeldBatchesFitsTheDataAPI: sixty batches of
// changes held during a load are handed over in one transaction of at most
// the Data API's 40 statements, because whole-row parts fold by key; a
// partial-row part in the middle keeps its place.
func TestLoadHandOverOfManyHeldBatchesFitsTheDataAPI(t *testing.T) {
	r := newLoadRig(t)
	ctx := context.Background()
	r.shim.max = 40
	a := r.a
	if err := a.BeginLoad(ctx, "p.warehouse", items, "L1", 4, false); err != nil {
		t.Fatal(err)
	}
	for n := range 4 {
		r.copyChunk(a, "L1", n)
	}
	pos := uint64(0)
	next := func(eps ...batch.Epoch) {
		r.apply(a, mkBatch(pos/10+1, pos, pos+10, eps...))
		pos += 10
	}
	for i := range 60 {
		id := fmt.Sprint(100 + i%7)
		if i == 30 {
			r.srcExec(`UPDATE shop.items SET amount = 1 WHERE id = 101`)
			next(batch.Epoch{Segments: []batch.Segment{{Table: items, Columns: []string{"id", "amount"}, Key: []string{"id"}, Update: true,
				Upserts: []batch.Row{row("101", "1")}, Match: []batch.Row{row("101")}}}})
			continue
		}
		if i%5 == 4 {
			r.srcExec(`DELETE FROM shop.items WHERE id = ` + id)
			next(batch.Epoch{Segments: []batch.Segment{itemSeg(nil, row(id))}})
			continue
		}
		note := fmt.Sprintf("v%d", i)
		r.srcExec(fmt.Sprintf(`INSERT INTO shop.items VALUES (%s, '%s', %d) ON CONFLICT (id) DO UPDATE SET note = EXCLUDED.note, amount = EXCLUDED.amount`, id, note, i))
		next(batch.Epoch{Segments: []batch.Segment{itemSeg([]batch.Row{row(id, note, fmt.Sprint(i))})}})
	}
	if n, err := a.HeldParts(ctx, items); err != nil || n != 60 {
		t.Fatalf("held parts: %d, %v", n, err)
	}
	next(batch.Epoch{Segments: []batch.Segment{markSeg("L1")}})
	if got := r.state(); got != "loaded 0 0" {
		t.Fatalf("after the mark: %q", got)
	}
	if got, want := r.got(), r.want(); got != want {
		t.Fatalf("target differs from source:\n%s", diffLines(got, want))
	}
}

// TestLoadThroughTheStandIn runs a load through the real product path:
// the Data API client against the Redshift stand-in (which refuses SQL
// Redshift would refuse) and COPY files in the S3 emulator: chunks copied
// (one twice), changes held, and the mark's batch handing the table over.
func TestLoadThroughTheStandIn(t *testing.T) {
	ctx := context.Background()
	awsCfg := testenv.AWSConfig(t)
	dsn := testenv.NewDB(t, "rsload_rs")
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	ex := redshift.NewDataAPI(redshiftdata.NewFromConfig(awsCfg), config.RedshiftDataAPI{Workgroup: "wg", Database: strings.TrimPrefix(u.Path, "/")})
	if err := ex.Tx(ctx, []string{"CREATE SCHEMA shop",
		"CREATE TABLE shop.items (id integer NOT NULL, note varchar(12), amount numeric(19,8), PRIMARY KEY (id))"}); err != nil {
		t.Fatal(err)
	}
	bucket := testenv.Name("rsload-")
	s3c := s3store.NewClient(awsCfg)
	if err := s3store.EnsureBucket(ctx, s3c, bucket); err != nil {
		t.Fatal(err)
	}
	emf := &bytes.Buffer{}
	a, err := New(ctx, ex, NewS3Objects(s3c, bucket), Options{Pipeline: "p", Target: "warehouse", Bucket: bucket, Prefix: "pgferry/",
		CopyRoleARN: "arn:aws:iam::123456789012:role/copy", Metrics: metrics.New(emf), Log: slog.Default()})
	if err != nil {
		t.Fatal(err)
	}
	src := testenv.Pool(t, testenv.NewDB(t, "rsload_src"))
	testenv.Exec(t, src, `CREATE SCHEMA shop;
		CREATE TABLE shop.items (id int PRIMARY KEY, note text, amount numeric);
		INSERT INTO shop.items SELECT g, 'n' || g, g * 1.5 FROM generate_series(1, 3000) g;
		UPDATE shop.items SET note = 'ünïcødé and long' WHERE id = 7`)
	r := &loadRig{target: &target{t: t, shim: &pgShim{pool: testenv.Pool(t, dsn)}, emf: emf}, src: src}
	if err := a.BeginLoad(ctx, "p.warehouse", items, "L1", 4, false); err != nil {
		t.Fatal(err)
	}
	r.copyChunk(a, "L1", 0)
	r.copyChunk(a, "L1", 1)
	r.srcExec(`UPDATE shop.items SET note = 'changed' WHERE id = 5; DELETE FROM shop.items WHERE id = 2000`)
	r.apply(a, mkBatch(1, 0, 10, batch.Epoch{Segments: []batch.Segment{itemSeg([]batch.Row{row("5", "changed", "7.5")}, row("2000"))}}))
	if rows, copied := r.copyChunk(a, "L1", 1); rows != 750 || copied {
		t.Fatalf("chunk 1 again: %d rows, copied %v", rows, copied)
	}
	r.copyChunk(a, "L1", 2)
	r.copyChunk(a, "L1", 3)
	if st, _, err := a.LoadStatus(ctx, items); err != nil || st != (load.State{LoadID: "L1", Chunks: 4, Copied: 4}) {
		t.Fatalf("status: %+v, %v", st, err)
	}
	r.srcExec(`UPDATE shop.items SET amount = 0 WHERE id = 6`)
	r.apply(a, mkBatch(2, 10, 20, batch.Epoch{Segments: []batch.Segment{itemSeg([]batch.Row{row("6", "n6", "0")}), markSeg("L1")}}))
	if got := r.state(); got != "loaded 0 0" {
		t.Fatalf("after the mark: %q", got)
	}
	if got, want := r.got(), r.want(); got != want {
		t.Fatalf("target differs from source:\n%s", diffLines(got, want))
	}
}
