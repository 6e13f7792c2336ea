package rssync_test

import (
	"context"
	"testing"

	"github.com/pgferry/pgferry/shared/apply/rsapply"
	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/payload/s3store"
	"github.com/pgferry/pgferry/shared/schema/rssync"
	"github.com/pgferry/pgferry/shared/testenv"
)

func str(s string) *string { return &s }

// applierEnv wraps a real rsapply.Applier on the stand-in.
func (e *env) applier() *rssync.Applier {
	e.t.Helper()
	ctx := context.Background()
	client := s3store.NewClient(testenv.AWSConfig(e.t))
	bucket := "rssync-test"
	if err := s3store.EnsureBucket(ctx, client, bucket); err != nil {
		e.t.Fatal(err)
	}
	next, err := rsapply.New(ctx, e.ex, rsapply.NewS3Objects(client, bucket), rsapply.Options{
		Pipeline: "rssync", Target: "wh", Bucket: bucket, Prefix: testenv.Name("rssync") + "/",
		CopyRoleARN: "arn:aws:iam::000000000000:role/copy", Log: logger(),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return rssync.NewApplier(next, e.sync, "pgferry_rssync", logger())
}

func rowBatch(seq uint64, cols []string, rows ...batch.Row) *batch.Batch {
	return &batch.Batch{Version: batch.Version, Pipeline: "rssync", Target: "wh", Lineage: "l1", Seq: seq,
		From: batch.Position{Tick: seq - 1}, To: batch.Position{Tick: seq},
		Epochs: []batch.Epoch{{Segments: []batch.Segment{{
			Table: batch.Table{Schema: "public", Name: "t"}, Columns: cols, Key: []string{"id"}, Upserts: rows,
		}}}}}
}

func TestApplierSyncsAndRetriesABatchTheTargetIsBehindOf(t *testing.T) {
	e := newEnv(t, "")
	ctx := context.Background()
	testenv.Exec(t, e.src, `CREATE TABLE t (id integer PRIMARY KEY, a text)`)
	a := e.applier()

	// A schema job builds the table and moves the watermark past itself.
	job := &batch.Batch{Version: batch.VersionSchema, Pipeline: "rssync", Target: "wh", Lineage: "l1", Seq: 1,
		From: batch.Position{Tick: 0}, To: batch.Position{Tick: 1}, Schema: &batch.SchemaJob{Reason: "test"}}
	if _, err := a.Apply(ctx, job); err != nil {
		t.Fatalf("schema job: %v", err)
	}
	if got := e.columns("public", "t"); got != "id integer, a character varying(65535)" {
		t.Fatalf("after the schema job: %s", got)
	}
	if wm, err := a.Watermark(ctx, batch.Group("rssync", "wh")); err != nil || wm.Tick != 1 {
		t.Fatalf("watermark after the job = %v, %v", wm, err)
	}

	// The source adds a column; a batch carrying it reaches a target
	// without it: synced, then retried.
	testenv.Exec(t, e.src, `ALTER TABLE t ADD COLUMN b bigint`)
	if _, err := a.Apply(ctx, rowBatch(2, []string{"id", "a", "b"}, batch.Row{str("1"), str("x"), str("10")})); err != nil {
		t.Fatalf("batch with a new column: %v", err)
	}
	if got := e.query(`SELECT id || '/' || a || '/' || b FROM public.t`); got != "1/x/10" {
		t.Fatalf("row: %s", got)
	}

	// The source renames a column and drops another; a batch captured
	// before, with the old names, is adapted after the sync.
	testenv.Exec(t, e.src, `ALTER TABLE t RENAME COLUMN a TO a2`)
	testenv.Exec(t, e.src, `ALTER TABLE t DROP COLUMN b`)
	if _, err := e.sync.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Apply(ctx, rowBatch(3, []string{"id", "a", "b"}, batch.Row{str("2"), str("y"), str("20")})); err != nil {
		t.Fatalf("batch with former names: %v", err)
	}
	if got := e.query(`SELECT string_agg(id || '/' || a2, ',' ORDER BY id) FROM public.t`); got != "1/x,2/y" {
		t.Fatalf("rows: %s", got)
	}
	if got := e.columns("public", "t"); got != "id integer, a2 character varying(65535)" {
		t.Fatalf("columns: %s", got)
	}
}

// With apply_schema and mixed-case source names, batches are written to
// the folded names under apply_schema.
func TestApplierWritesIntoApplySchema(t *testing.T) {
	e := newEnv(t, "    apply_schema: Analytics\n")
	ctx := context.Background()
	testenv.Exec(t, e.src, `CREATE TABLE "T" (id integer PRIMARY KEY, "A" text)`)
	a := e.applier()
	b := rowBatch(1, []string{"id", "A"}, batch.Row{str("1"), str("x")})
	b.Epochs[0].Segments[0].Table.Name = "T"
	if _, err := a.Apply(ctx, b); err != nil {
		t.Fatalf("batch: %v", err)
	}
	if got := e.query(`SELECT id || '/' || a FROM analytics.t`); got != "1/x" {
		t.Fatalf("row: %s", got)
	}
}
