package pgsync_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/pgferry/pgferry/shared/apply"
	"github.com/pgferry/pgferry/shared/apply/pgapply"
	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/schema"
	"github.com/pgferry/pgferry/shared/schema/pgsync"
	"github.com/pgferry/pgferry/shared/schema/schematest"
	"github.com/pgferry/pgferry/shared/testenv"
)

func (e *env) applier() *pgsync.Applier {
	e.t.Helper()
	inner, err := pgapply.New(context.Background(), e.dst, e.cfg.Name, logger())
	if err != nil {
		e.t.Fatal(err)
	}
	return pgsync.NewApplier(inner, e.sync, e.dst, e.cfg, logger())
}

func val(s string) batch.Value { return &s }

// rows makes a batch of upserts into one table, covering positions
// (seq-1, seq].
func rowsBatch(seq uint64, t batch.Table, cols, key []string, rows ...[]string) *batch.Batch {
	s := batch.Segment{Table: t, Columns: cols, Key: key}
	for _, r := range rows {
		row := make(batch.Row, len(r))
		for i, v := range r {
			row[i] = val(v)
		}
		s.Upserts = append(s.Upserts, row)
	}
	return &batch.Batch{Version: batch.Version, Pipeline: "sync", Target: "replica", Lineage: "l", Seq: seq,
		From: batch.Position{Tick: seq - 1}, To: batch.Position{Tick: seq}, Epochs: []batch.Epoch{{Segments: []batch.Segment{s}}}}
}

func (e *env) targetString(sql string) string {
	e.t.Helper()
	var s string
	if err := e.dst.QueryRow(context.Background(), sql).Scan(&s); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
	return s
}

func TestRenameKeepsDataAndOlderBatchesStillApply(t *testing.T) {
	e := newEnv(t, "")
	ctx := context.Background()
	testenv.Exec(t, e.src, `CREATE TABLE t (id int PRIMARY KEY, a text, b text, c text)`)
	e.syncOnce()
	a := e.applier()
	tbl := batch.Table{Schema: "public", Name: "t"}
	if _, err := a.Apply(ctx, rowsBatch(1, tbl, []string{"id", "a", "b", "c"}, []string{"id"}, []string{"1", "a1", "b1", "c1"})); err != nil {
		t.Fatal(err)
	}
	// The source renames a, drops b and adds d; sync runs before a batch
	// captured earlier (still naming a and b) arrives.
	testenv.Exec(t, e.src, `ALTER TABLE t RENAME COLUMN a TO a2; ALTER TABLE t DROP COLUMN b; ALTER TABLE t ADD COLUMN d int`)
	ddl := e.syncOnce()
	if !strings.Contains(ddl, `RENAME COLUMN "a" TO "a2"`) || strings.Contains(ddl, `ADD COLUMN "a2"`) {
		t.Fatalf("a rename must be planned as a rename:\n%s", ddl)
	}
	if got := e.targetString(`SELECT a2 FROM t WHERE id = 1`); got != "a1" {
		t.Fatalf("renamed column holds %q, want its data a1", got)
	}
	old := rowsBatch(2, tbl, []string{"id", "a", "b", "c"}, []string{"id"}, []string{"2", "a2-old-name", "b2", "c2"})
	if _, err := a.Apply(ctx, old); err != nil {
		t.Fatalf("a batch from before the rename and the drop was not applied: %v", err)
	}
	if got := e.targetString(`SELECT a2 || '/' || c FROM t WHERE id = 2`); got != "a2-old-name/c2" {
		t.Fatalf("row 2 = %q, want the old-named value in the renamed column", got)
	}
	e.assertNothingToDo()
	schematestSame(t, e)
}

func TestBatchAheadOfItsDDLIsRetriedAfterTheDDL(t *testing.T) {
	e := newEnv(t, "")
	ctx := context.Background()
	testenv.Exec(t, e.src, `CREATE TYPE mood AS ENUM ('sad', 'ok'); CREATE TABLE t (id int PRIMARY KEY, m mood, n numeric(4,1))`)
	e.syncOnce()
	a := e.applier()
	tbl := batch.Table{Schema: "public", Name: "t"}
	// New label, widened type and a new column on the source; batches
	// that need each reach the target before any schema job.
	testenv.Exec(t, e.src, `ALTER TYPE mood ADD VALUE 'happy'`)
	testenv.Exec(t, e.src, `ALTER TABLE t ALTER COLUMN n TYPE numeric(12,1); ALTER TABLE t ADD COLUMN note text`)
	for i, b := range []*batch.Batch{
		rowsBatch(1, tbl, []string{"id", "m"}, []string{"id"}, []string{"1", "happy"}),
		rowsBatch(2, tbl, []string{"id", "n"}, []string{"id"}, []string{"2", "12345678.5"}),
		rowsBatch(3, tbl, []string{"id", "note"}, []string{"id"}, []string{"3", "hi"}),
	} {
		res, err := a.Apply(ctx, b)
		if err != nil || !res.Applied {
			t.Fatalf("batch %d: applied %v, err %v", i+1, res.Applied, err)
		}
	}
	if got := e.targetString(`SELECT string_agg(concat_ws(',', id, m, n, note), ';' ORDER BY id) FROM t`); got != "1,happy;2,12345678.5;3,hi" {
		t.Fatalf("target rows = %q", got)
	}
	// A batch the target cannot take for a reason sync cannot cure keeps
	// its error (and goes on to the normal retry path).
	testenv.Exec(t, e.dst, `ALTER TABLE t ADD CONSTRAINT target_only CHECK (id < 100)`)
	_, err := a.Apply(ctx, rowsBatch(4, tbl, []string{"id"}, []string{"id"}, []string{"500"}))
	if err == nil || !strings.Contains(err.Error(), "target_only") {
		t.Fatalf("err = %v, want the target-only constraint's violation", err)
	}
}

func TestSchemaJobRunsInStreamOrderAndReplaysAreNoOps(t *testing.T) {
	e := newEnv(t, "")
	ctx := context.Background()
	testenv.Exec(t, e.src, `CREATE TABLE t (id int PRIMARY KEY)`)
	a := e.applier()
	job := func(seq uint64) *batch.Batch {
		return &batch.Batch{Version: batch.VersionSchema, Pipeline: "sync", Target: "replica", Lineage: "l", Seq: seq,
			From: batch.Position{Tick: seq - 1}, To: batch.Position{Tick: seq}, Schema: &batch.SchemaJob{Reason: "test"}}
	}
	// A job that starts after the watermark waits: an earlier batch is missing.
	if _, err := a.Apply(ctx, job(2)); !errors.Is(err, apply.ErrGap) {
		t.Fatalf("err = %v, want ErrGap", err)
	}
	if n := e.targetString(`SELECT count(*)::text FROM pg_tables WHERE tablename = 't'`); n != "0" {
		t.Fatalf("a job refused for a gap ran its DDL")
	}
	res, err := a.Apply(ctx, job(1))
	if err != nil || !res.Applied {
		t.Fatalf("job 1: applied %v, err %v", res.Applied, err)
	}
	if wm, _ := a.Watermark(ctx, batch.Group("sync", "replica")); wm != (batch.Position{Tick: 1}) {
		t.Fatalf("watermark after the job = %s, want 1.0", wm)
	}
	testenv.Exec(t, e.src, `ALTER TABLE t ADD COLUMN v text`)
	if res, err := a.Apply(ctx, job(1)); err != nil || res.Applied {
		t.Fatalf("replayed job: applied %v, err %v; want a no-op", res.Applied, err)
	}
	if n := e.targetString(`SELECT count(*)::text FROM information_schema.columns WHERE table_name = 't'`); n != "1" {
		t.Fatalf("a replayed job ran DDL (%s columns)", n)
	}
	if _, err := a.Apply(ctx, rowsBatch(2, batch.Table{Schema: "public", Name: "t"}, []string{"id", "v"}, []string{"id"}, []string{"1", "x"})); err != nil {
		t.Fatal(err)
	}
}

func TestTargetOnlyObjectsAreLeftAlone(t *testing.T) {
	e := newEnv(t, "")
	testenv.Exec(t, e.src, `CREATE TABLE t (id int PRIMARY KEY, v text); CREATE INDEX t_v ON t (v)`)
	e.syncOnce()
	testenv.Exec(t, e.dst, `CREATE INDEX mine ON t (id, v); ALTER TABLE t ADD COLUMN extra int; CREATE TABLE reporting (x int)`)
	testenv.Exec(t, e.src, `DROP INDEX t_v; ALTER TABLE t ADD COLUMN w int`)
	ddl := e.syncOnce()
	if want := "DROP INDEX IF EXISTS \"public\".\"t_v\";\nALTER TABLE \"public\".\"t\" ADD COLUMN \"w\" integer;\n"; ddl != want {
		t.Fatalf("plan:\n%s\nwant:\n%s", ddl, want)
	}
	if n := e.targetString(`SELECT count(*)::text FROM pg_class WHERE relname IN ('mine', 'reporting')`); n != "2" {
		t.Fatalf("target-only objects were dropped")
	}
	e.assertNothingToDo()
}

func TestApplySchemaPutsEveryTableInOneSchema(t *testing.T) {
	e := newEnv(t, "rep")
	ctx := context.Background()
	testenv.Exec(t, e.src, `CREATE EXTENSION IF NOT EXISTS citext; CREATE SCHEMA shop;
		CREATE TYPE shop.status AS ENUM ('new', 'done');
		CREATE TABLE shop.orders (id serial PRIMARY KEY, s shop.status NOT NULL DEFAULT 'new', email citext);
		CREATE TABLE public.notes (id int PRIMARY KEY, order_id int REFERENCES shop.orders (id), body text CHECK (body <> ''))`)
	e.syncOnce()
	e.assertNothingToDo()
	if got := e.targetString(`SELECT string_agg(table_schema || '.' || table_name, ',' ORDER BY table_name) FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema', 'pgferry')`); got != "rep.notes,rep.orders" {
		t.Fatalf("target tables = %s, want rep.notes,rep.orders", got)
	}
	a := e.applier()
	b := rowsBatch(1, batch.Table{Schema: "shop", Name: "orders"}, []string{"id", "s", "email"}, []string{"id"}, []string{"7", "done", "A@b.c"})
	if _, err := a.Apply(ctx, b); err != nil {
		t.Fatal(err)
	}
	if got := e.targetString(`SELECT s::text || email FROM rep.orders`); got != "doneA@b.c" {
		t.Fatalf("rep.orders holds %q", got)
	}
	// A second source schema with a table of the same name is a clash,
	// reported by name, and nothing is changed.
	testenv.Exec(t, e.src, `CREATE TABLE public.orders (id int)`)
	_, err := e.sync.Sync(ctx)
	if !errors.Is(err, schema.ErrClash) || !strings.Contains(err.Error(), "public.orders (table) and shop.orders (table) would all become rep.orders") ||
		!strings.Contains(err.Error(), "targets.replica.apply_schema") {
		t.Fatalf("err = %v, want a clash naming both tables and the key", err)
	}
}

func TestSequencesAreAdvancedNeverMovedBack(t *testing.T) {
	e := newEnv(t, "")
	ctx := context.Background()
	testenv.Exec(t, e.src, `CREATE TABLE a (id serial PRIMARY KEY); CREATE TABLE b (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, n int)`)
	e.syncOnce()
	testenv.Exec(t, e.src, `INSERT INTO a SELECT FROM generate_series(1, 40); INSERT INTO b (n) SELECT 1 FROM generate_series(1, 7)`)
	testenv.Exec(t, e.dst, `SELECT setval('b_id_seq', 100)`)
	if _, err := e.sync.SyncSequences(ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.targetString(`SELECT pg_sequence_last_value('a_id_seq')::text || ',' || pg_sequence_last_value('b_id_seq')::text`); got != "40,100" {
		t.Fatalf("target sequences at %s, want 40,100 (at least the source's, never moved back)", got)
	}
}

func schematestSame(t *testing.T, e *env) {
	t.Helper()
	schematest.AssertSameCatalog(t, e.src, e.dst)
}

// A batch captured before the source added columns reaches the target
// after the schema job that added them (jobs are ordered approximately).
// Its new rows existed on the source when the columns were added, so they
// must read what the source's old rows read (the missing value, or NULL),
// not the columns' current defaults; existing rows keep their values, and
// a column the user added on the target alone keeps its own default.
func TestOldBatchInsertsNewRowsWithTheSourcesOldRowValuesNotTheCurrentDefault(t *testing.T) {
	e := newEnv(t, "")
	ctx := context.Background()
	testenv.Exec(t, e.src, `CREATE TABLE t (id int PRIMARY KEY, a text); CREATE TABLE k (a text)`)
	e.syncOnce()
	testenv.Exec(t, e.dst, `ALTER TABLE t ADD COLUMN mine int DEFAULT 9`)
	a := e.applier()
	tbl, kl := batch.Table{Schema: "public", Name: "t"}, batch.Table{Schema: "public", Name: "k"}
	if _, err := a.Apply(ctx, rowsBatch(1, tbl, []string{"id", "a"}, []string{"id"}, []string{"1", "one"})); err != nil {
		t.Fatal(err)
	}
	testenv.Exec(t, e.src, `
		ALTER TABLE t ADD COLUMN c int; ALTER TABLE t ALTER c SET DEFAULT 5;
		ALTER TABLE t ADD COLUMN d int DEFAULT 7; ALTER TABLE t ALTER d SET DEFAULT 5;
		ALTER TABLE t ADD COLUMN e text DEFAULT 'it''s'; ALTER TABLE t ALTER e DROP DEFAULT;
		ALTER TABLE k ADD COLUMN c int; ALTER TABLE k ALTER c SET DEFAULT 5`)
	// The schema job, through the applier as in the stream.
	job := &batch.Batch{Version: batch.VersionSchema, Pipeline: "sync", Target: "replica", Lineage: "l", Seq: 2,
		From: batch.Position{Tick: 1}, To: batch.Position{Tick: 2}, Schema: &batch.SchemaJob{Reason: "test"}}
	if res, err := a.Apply(ctx, job); err != nil || !res.Applied {
		t.Fatalf("schema job: applied %v, err %v", res.Applied, err)
	}
	// Row 1 got a value of its own after the columns were added.
	testenv.Exec(t, e.dst, `UPDATE t SET c = 42, d = 43 WHERE id = 1`)
	old := rowsBatch(3, tbl, []string{"id", "a"}, []string{"id"}, []string{"1", "uno"}, []string{"2", "two"})
	keyless := rowsBatch(3, kl, []string{"a"}, nil, []string{"x"})
	old.Epochs[0].Segments = append(old.Epochs[0].Segments, keyless.Epochs[0].Segments...)
	if res, err := a.Apply(ctx, old); err != nil || !res.Applied {
		t.Fatalf("old batch: applied %v, err %v", res, err)
	}
	got := e.targetString(`SELECT string_agg(concat_ws('|', id, a, coalesce(c::text, 'null'), d, e, mine), ';' ORDER BY id) FROM t`)
	if want := "1|uno|42|43|it's|9;2|two|null|7|it's|9"; got != want {
		t.Fatalf("target rows = %q, want %q", got, want)
	}
	if got := e.targetString(`SELECT string_agg(a || '|' || coalesce(c::text, 'null'), ';') FROM k`); got != "x|null" {
		t.Fatalf("keyless rows = %q, want x|null", got)
	}
	// A batch of today's shape still gets nothing it did not ask for.
	cur := rowsBatch(4, tbl, []string{"id", "a", "c", "d", "e"}, []string{"id"}, []string{"3", "three", "1", "2", "z"})
	if _, err := a.Apply(ctx, cur); err != nil {
		t.Fatal(err)
	}
	if got := e.targetString(`SELECT concat_ws('|', c, d, e, mine) FROM t WHERE id = 3`); got != "1|2|z|9" {
		t.Fatalf("row 3 = %q, want 1|2|z|9", got)
	}
}
