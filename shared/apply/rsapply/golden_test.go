package rsapply

import (
	"bytes"
	"compress/gzip"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pgferry/pgferry/shared/batch"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// recordExec records transactions and answers catalog queries from a
// fixed catalog (information_schema.columns rows per schema.table).
type recordExec struct {
	catalog map[string][][]*string
	txs     [][]string
}

var catalogRE = regexp.MustCompile(`table_schema = '((?:[^']|'')*)' AND table_name = '((?:[^']|'')*)'`)

func (r *recordExec) Query(_ context.Context, sql string) ([][]*string, error) {
	if m := catalogRE.FindStringSubmatch(sql); m != nil {
		un := func(s string) string { return strings.ReplaceAll(s, "''", "'") }
		return r.catalog[un(m[1])+"."+un(m[2])], nil
	}
	if strings.HasPrefix(sql, "SELECT tbl_schema, tbl_name, load_id FROM") {
		return nil, nil // nothing loading
	}
	if strings.HasPrefix(sql, "SELECT tick, tx, lineage FROM") {
		return [][]*string{{sp("100"), sp("0"), sp("L1")}}, nil
	}
	return nil, fmt.Errorf("unexpected query %q", sql)
}

func (r *recordExec) Tx(_ context.Context, stmts []string) error {
	r.txs = append(r.txs, stmts)
	return nil
}

func (r *recordExec) MaxStatements() int { return 40 }

func col(name, typ, charLen, prec, scale string) []*string {
	c := []*string{sp(name), sp(typ), nil, nil, nil}
	for i, v := range []string{charLen, prec, scale} {
		if v != "" {
			c[2+i] = sp(v)
		}
	}
	return c
}

// goldenBatch is a representative batch: a truncate, deletes, whole-row
// upserts with values that need converting, partial rows whose key
// moved, a keyless table, a second epoch, and names that need quoting.
func goldenBatch() (*batch.Batch, map[string][][]*string) {
	weird := batch.Table{Schema: "shop", Name: `we"ird`}
	events := batch.Table{Schema: "shop", Name: "events"}
	b := mkBatch(7, 100, 200,
		batch.Epoch{Truncate: []batch.Table{events}, Segments: []batch.Segment{
			{Table: orders, Columns: orderCols, Key: []string{"id"},
				Upserts: []batch.Row{
					row("1", "a \"quoted\", multi\nline", "1.005", `{"k": "v"}`, "2024-01-02 03:04:05+00"),
					row("2", "ééééé", "-Infinity", "<NULL>", "-infinity"),
					row("3", "", "NaN", "<NULL>", "<NULL>"),
				},
				Deletes: []batch.Row{row("4"), row("5")}},
			{Table: orders, Columns: []string{"id", "note"}, Key: []string{"id"}, Update: true,
				Upserts: []batch.Row{row("60", "moved")}, Match: []batch.Row{row("6")}},
			{Table: events, Columns: []string{"kind", "n"}, Upserts: []batch.Row{row("click", "1"), row("click", "1")}},
		}},
		batch.Epoch{Segments: []batch.Segment{
			{Table: weird, Columns: []string{"k", "Mixed Case"}, Key: []string{"k"}, Upserts: []batch.Row{row("x", `\N`)}},
		}})
	cat := map[string][][]*string{
		"shop.orders": {col("id", "integer", "", "32", "0"), col("note", "character varying", "8", "", ""),
			col("amount", "numeric", "", "19", "8"), col("doc", "super", "", "", ""), col("at", "timestamp with time zone", "", "", "")},
		"shop.events": {col("kind", "character varying", "20", "", ""), col("n", "integer", "", "32", "0")},
		`shop.we"ird`: {col("k", "character varying", "4", "", ""), col("mixed case", "character varying", "65535", "", "")},
	}
	return b, cat
}

// TestGoldenStatements pins the exact statements (and staged files) the
// applier sends for a representative batch. Run with -update to rewrite
// testdata/apply.golden after a deliberate change, and review the diff:
// every statement here must stay within what Redshift accepts (shapes.go).
func TestGoldenStatements(t *testing.T) {
	b, cat := goldenBatch()
	ex := &recordExec{catalog: cat}
	store := newMemObjects()
	a, err := New(context.Background(), ex, store, Options{Pipeline: "p", Target: "warehouse", Bucket: "stage-bucket",
		Prefix: "pgferry/", CopyRoleARN: "arn:aws:iam::123456789012:role/copy", Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	a.now = func() time.Time { return time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC) }
	// Keep the staged files for the golden file: capture them before cleanup.
	files := map[string][]byte{}
	a.store = captureObjects{store, files}
	res, err := a.Apply(context.Background(), b)
	if err != nil || !res.Applied || res.Rows != 9 {
		t.Fatalf("apply: %+v, %v", res, err)
	}
	var out strings.Builder
	out.WriteString("-- install\n")
	for _, s := range ex.txs[0] {
		out.WriteString(s + ";\n")
	}
	out.WriteString("\n-- batch 7: one transaction\n")
	for _, s := range ex.txs[1] {
		out.WriteString(s + ";\n")
	}
	keys := make([]string, 0, len(files))
	for k := range files {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		data := files[k]
		if strings.HasSuffix(k, ".gz") {
			zr, err := gzip.NewReader(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			if data, err = io.ReadAll(zr); err != nil {
				t.Fatal(err)
			}
		}
		out.WriteString("\n-- s3://stage-bucket/" + k + "\n" + string(data) + "\n")
	}
	path := filepath.Join("testdata", "apply.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if out.String() != string(want) {
		t.Fatalf("statements differ from %s (run with -update after a deliberate change):\n%s", path, out.String())
	}
	// Every statement sent has a shape in the list.
	for _, s := range append(ex.txs[0], ex.txs[1]...) {
		if ShapeOf(s) == nil {
			t.Errorf("statement has no shape in shapes.go: %.80s", s)
		}
	}
	if len(store.objs) != 0 {
		t.Fatalf("%d staged files left after commit", len(store.objs))
	}
}

type captureObjects struct {
	*memObjects
	files map[string][]byte
}

func (c captureObjects) Put(ctx context.Context, key string, data []byte) error {
	c.files[key] = append([]byte(nil), data...)
	return c.memObjects.Put(ctx, key, data)
}
