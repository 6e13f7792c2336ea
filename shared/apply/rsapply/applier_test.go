package rsapply

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/pgferry/pgferry/shared/apply"
	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/metrics"
	"github.com/pgferry/pgferry/shared/testenv"
)

func sp(s string) *string { return &s }

func row(vs ...string) batch.Row {
	r := make(batch.Row, len(vs))
	for i, v := range vs {
		if v != "<NULL>" {
			r[i] = sp(v)
		}
	}
	return r
}

var orders = batch.Table{Schema: "shop", Name: "orders"}

// target is a PostgreSQL database standing in for Redshift's SQL, with
// an applier on it.
type target struct {
	t     *testing.T
	shim  *pgShim
	store *memObjects
	a     *Applier
	emf   *bytes.Buffer
}

func newTarget(t *testing.T) *target {
	t.Helper()
	pool := testenv.Pool(t, testenv.NewDB(t, "rsapply"))
	testenv.Exec(t, pool, `CREATE SCHEMA shop;
		CREATE TABLE shop.orders (id int NOT NULL, note varchar(8) NOT NULL, amount numeric(19,8), doc jsonb, at timestamptz);
		CREATE TABLE shop.events (kind varchar(20), n int)`)
	tg := &target{t: t, store: newMemObjects(), emf: &bytes.Buffer{}}
	tg.shim = &pgShim{pool: pool, store: tg.store}
	tg.a = tg.newApplier()
	return tg
}

func (tg *target) newApplier() *Applier {
	tg.t.Helper()
	a, err := New(context.Background(), tg.shim, tg.store, Options{
		Pipeline: "p", Target: "warehouse", Bucket: "stage-bucket", Prefix: "pgferry/",
		CopyRoleARN: "arn:aws:iam::123456789012:role/copy", Metrics: metrics.New(tg.emf), Log: slog.Default(),
	})
	if err != nil {
		tg.t.Fatal(err)
	}
	return a
}

func (tg *target) rows(sql string) string {
	tg.t.Helper()
	rs, err := tg.shim.Query(context.Background(), sql)
	if err != nil {
		tg.t.Fatal(err)
	}
	var lines []string
	for _, r := range rs {
		f := make([]string, len(r))
		for i, v := range r {
			if v == nil {
				f[i] = "NULL"
			} else {
				f[i] = *v
			}
		}
		lines = append(lines, strings.Join(f, "|"))
	}
	return strings.Join(lines, "\n")
}

func mkBatch(seq uint64, from, to uint64, eps ...batch.Epoch) *batch.Batch {
	return &batch.Batch{Version: batch.VersionUpdates, Pipeline: "p", Target: "warehouse", Lineage: "L1", Seq: seq,
		From: batch.Position{Tick: from}, To: batch.Position{Tick: to}, Epochs: eps}
}

var orderCols = []string{"id", "note", "amount", "doc", "at"}

func TestApplyMergesOnPostgresLikeRedshiftWould(t *testing.T) {
	tg := newTarget(t)
	ctx := context.Background()
	b1 := mkBatch(1, 0, 10, batch.Epoch{Segments: []batch.Segment{{
		Table: orders, Columns: orderCols, Key: []string{"id"},
		Upserts: []batch.Row{
			row("1", "plain", "1.5", `{"a": 1}`, "2024-01-02 03:04:05.123456+00"),
			row("2", "ééééé", "1234567890123456789", "<NULL>", "infinity"), // 10 bytes into 8; saturates; infinity
			row("3", "three", "NaN", `[]`, "<NULL>"),
		},
	}, {
		Table: batch.Table{Schema: "shop", Name: "events"}, Columns: []string{"kind", "n"},
		Upserts: []batch.Row{row("click", "1"), row("click", "1"), row("", "<NULL>")},
	}}})
	res, err := tg.a.Apply(ctx, b1)
	if err != nil || !res.Applied || res.Rows != 6 {
		t.Fatalf("apply b1: %+v, %v", res, err)
	}
	if got, want := tg.rows(`SELECT id, note, amount, doc, at FROM shop.orders ORDER BY id`),
		"1|plain|1.50000000|{\"a\": 1}|2024-01-02 03:04:05.123456+00\n"+
			"2|éééé|92233720368.54775807|NULL|9999-12-31 23:59:59.999999+00\n"+
			"3|three|NULL|[]|NULL"; got != want {
		t.Fatalf("orders after b1:\n%s\nwant\n%s", got, want)
	}
	if got, want := tg.rows(`SELECT kind, n FROM shop.events ORDER BY kind, n`), "|NULL\nclick|1\nclick|1"; got != want {
		t.Fatalf("events (keyless, duplicates kept):\n%s", got)
	}
	for _, want := range []string{`"LossyConversions":1`, `"Column":"note","Conversion":"truncated"`,
		`"Column":"amount","Conversion":"saturated"`, `"Column":"amount","Conversion":"replaced"`, `"Column":"at","Conversion":"replaced"`} {
		if !strings.Contains(tg.emf.String(), want) {
			t.Errorf("metrics lack %s:\n%s", want, tg.emf.String())
		}
	}
	if len(tg.store.objs) != 0 || tg.store.puts != 4 {
		t.Fatalf("staged files: %d put, %d left after commit", tg.store.puts, len(tg.store.objs))
	}

	// Epoch 1 deletes 3 and replaces 1; a partial update (unchanged
	// TOAST columns) sets only amount on 2, whose key moves to 20.
	b2 := mkBatch(2, 10, 20, batch.Epoch{Segments: []batch.Segment{
		{Table: orders, Columns: orderCols, Key: []string{"id"},
			Upserts: []batch.Row{row("1", "new", "2", "<NULL>", "<NULL>")}, Deletes: []batch.Row{row("3")}},
		{Table: orders, Columns: []string{"id", "amount"}, Key: []string{"id"}, Update: true,
			Upserts: []batch.Row{row("20", "7.25")}, Match: []batch.Row{row("2")}},
	}})
	if res, err := tg.a.Apply(ctx, b2); err != nil || !res.Applied || res.Rows != 3 {
		t.Fatalf("apply b2: %+v, %v", res, err)
	}
	after2 := "1|new|2.00000000|NULL|NULL\n20|éééé|7.25000000|NULL|9999-12-31 23:59:59.999999+00"
	if got := tg.rows(`SELECT id, note, amount, doc, at FROM shop.orders ORDER BY id`); got != after2 {
		t.Fatalf("orders after b2:\n%s\nwant\n%s", got, after2)
	}

	// A replay changes nothing, from the cache or from a fresh applier;
	// so does an overlapping batch that ends at the watermark.
	for _, a := range []*Applier{tg.a, tg.newApplier()} {
		if res, err := a.Apply(ctx, b2); err != nil || res.Applied {
			t.Fatalf("replay: %+v, %v", res, err)
		}
	}
	// A batch after a missing one waits.
	_, err = tg.a.Apply(ctx, mkBatch(4, 30, 40, batch.Epoch{Segments: []batch.Segment{{Table: orders, Columns: orderCols, Key: []string{"id"},
		Upserts: []batch.Row{row("9", "x", "1", "<NULL>", "<NULL>")}}}}))
	if !errors.Is(err, apply.ErrGap) || apply.Classify(err) != apply.Blocked {
		t.Fatalf("gap: %v", err)
	}
	if got := tg.rows(`SELECT id, note, amount, doc, at FROM shop.orders ORDER BY id`); got != after2 {
		t.Fatalf("a refused batch changed rows:\n%s", got)
	}
	if got := tg.rows(`SELECT tick, tx, seq, lineage FROM pgferry.watermarks`); got != "20|0|2|L1" {
		t.Fatalf("watermark %s", got)
	}
}

// Another applier (a redelivery racing this one) moves the watermark
// after this applier cached it: the guard in the transaction notices,
// and the batch becomes the replay it is.
func TestApplyGuardCatchesAWatermarkMovedBehindTheCache(t *testing.T) {
	tg := newTarget(t)
	ctx := context.Background()
	up := func(seq, from, to uint64, id string) *batch.Batch {
		return mkBatch(seq, from, to, batch.Epoch{Segments: []batch.Segment{{Table: orders, Columns: orderCols, Key: []string{"id"},
			Upserts: []batch.Row{row(id, "n"+id, "1", "<NULL>", "<NULL>")}}}})
	}
	if _, err := tg.a.Apply(ctx, up(1, 0, 10, "1")); err != nil {
		t.Fatal(err)
	}
	other := tg.newApplier()
	if res, err := other.Apply(ctx, up(2, 10, 20, "2")); err != nil || !res.Applied {
		t.Fatalf("other: %+v %v", res, err)
	}
	n := len(tg.shim.log)
	res, err := tg.a.Apply(ctx, up(2, 10, 20, "2"))
	if err != nil || res.Applied {
		t.Fatalf("stale cache: %+v, %v", res, err)
	}
	if len(tg.shim.log) != n+1 {
		t.Fatalf("the cached watermark was not trusted: %d transactions", len(tg.shim.log)-n)
	}
	if got := tg.rows(`SELECT count(*) FROM shop.orders`); got != "2" {
		t.Fatalf("rows: %s", got)
	}
}

func TestApplyRefusesWhatItCannotDoChangingNothing(t *testing.T) {
	tg := newTarget(t)
	ctx := context.Background()
	if _, err := tg.a.Apply(ctx, mkBatch(1, 0, 10, batch.Epoch{Segments: []batch.Segment{{Table: orders, Columns: orderCols, Key: []string{"id"},
		Upserts: []batch.Row{row("1", "a", "1", "<NULL>", "<NULL>")}}}})); err != nil {
		t.Fatal(err)
	}
	events := batch.Table{Schema: "shop", Name: "events"}
	cases := []struct {
		name  string
		seg   batch.Segment
		check func(error) bool
		text  string
	}{
		{"keyless delete", batch.Segment{Table: events, Columns: []string{"kind", "n"}, Deletes: []batch.Row{row("click", "1")}},
			func(err error) bool { return apply.Classify(err) == apply.Failed }, "has no primary key"},
		{"missing column", batch.Segment{Table: orders, Columns: []string{"id", "extra"}, Key: []string{"id"}, Upserts: []batch.Row{row("2", "x")}},
			func(err error) bool { return errors.Is(err, apply.ErrSchemaBehind) }, `lacks column "extra"`},
		{"missing table", batch.Segment{Table: batch.Table{Schema: "shop", Name: "nope"}, Columns: []string{"id"}, Key: []string{"id"}, Upserts: []batch.Row{row("2")}},
			func(err error) bool { return errors.Is(err, apply.ErrSchemaBehind) }, "does not exist"},
	}
	for _, c := range cases {
		_, err := tg.a.Apply(ctx, mkBatch(2, 10, 20, batch.Epoch{Segments: []batch.Segment{c.seg}}))
		if err == nil || !c.check(err) || !strings.Contains(err.Error(), c.text) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	// COPY loading fewer rows than were staged fails the transaction.
	tg.store.mangle = func(key string, data []byte) []byte {
		if !strings.HasSuffix(key, ".csv.gz") {
			return data
		}
		var f csvFile
		f.add(row("7", "only", "1", "<NULL>", "<NULL>"))
		return f.gzip()
	}
	_, err := tg.a.Apply(ctx, mkBatch(2, 10, 20, batch.Epoch{Segments: []batch.Segment{{Table: orders, Columns: orderCols, Key: []string{"id"},
		Upserts: []batch.Row{row("7", "a", "1", "<NULL>", "<NULL>"), row("8", "b", "1", "<NULL>", "<NULL>")}}}}))
	if err == nil || !strings.Contains(err.Error(), "COPY loaded a different number of rows") {
		t.Fatalf("row-count check: %v", err)
	}
	if got := tg.rows(`SELECT id FROM shop.orders ORDER BY id`); got != "1" {
		t.Fatalf("a refused batch changed rows: %s", got)
	}
	if got := tg.rows(`SELECT tick FROM pgferry.watermarks`); got != "10" {
		t.Fatalf("watermark moved: %s", got)
	}
	// Another lineage stops for an operator.
	b := mkBatch(2, 10, 20)
	b.Lineage = "L2"
	if _, err := tg.newApplier().Apply(ctx, b); !errors.Is(err, apply.ErrLineage) {
		t.Fatalf("lineage: %v", err)
	}
}
