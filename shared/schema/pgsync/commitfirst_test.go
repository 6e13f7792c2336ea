package pgsync_test

import (
	"context"
	"testing"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/testenv"
)

// burstDDL adds an enum label on the source and, in later statements of
// the same burst, uses it in a default, a partial index and a check: a
// plan that runs them all in one transaction fails on the target with
// "unsafe use of new value" (55P04).
func burstDDL(t *testing.T, e *env) {
	t.Helper()
	testenv.Exec(t, e.src, `ALTER TYPE mood ADD VALUE 'happy'`)
	testenv.Exec(t, e.src, `CREATE TABLE u (id int PRIMARY KEY, m mood NOT NULL DEFAULT 'happy' CHECK (m <> 'sad' OR id > 0))`)
	testenv.Exec(t, e.src, `CREATE INDEX t_happy ON t (id) WHERE m = 'happy'`)
}

func TestSchemaJobCommitsANewEnumLabelBeforeTheDDLThatUsesIt(t *testing.T) {
	e := newEnv(t, "")
	ctx := context.Background()
	testenv.Exec(t, e.src, `CREATE TYPE mood AS ENUM ('sad', 'ok'); CREATE TABLE t (id int PRIMARY KEY, m mood)`)
	e.syncOnce()
	a := e.applier()
	burstDDL(t, e)
	job := &batch.Batch{Version: batch.VersionSchema, Pipeline: "sync", Target: "replica", Lineage: "l", Seq: 1,
		From: batch.Position{}, To: batch.Position{Tick: 1}, Schema: &batch.SchemaJob{Reason: "test"}}
	if res, err := a.Apply(ctx, job); err != nil || !res.Applied {
		t.Fatalf("schema job: applied %v, err %v", res.Applied, err)
	}
	if wm, _ := a.Watermark(ctx, batch.Group("sync", "replica")); wm != (batch.Position{Tick: 1}) {
		t.Fatalf("watermark after the job = %s, want 1.0", wm)
	}
	e.assertNothingToDo()
	schematestSame(t, e)
	tbl := batch.Table{Schema: "public", Name: "u"}
	if _, err := a.Apply(ctx, rowsBatch(2, tbl, []string{"id", "m"}, []string{"id"}, []string{"1", "happy"})); err != nil {
		t.Fatal(err)
	}
}

func TestBatchWithANewEnumLabelIsRetriedAfterASyncThatAlsoUsesTheLabel(t *testing.T) {
	e := newEnv(t, "")
	ctx := context.Background()
	testenv.Exec(t, e.src, `CREATE TYPE mood AS ENUM ('sad', 'ok'); CREATE TABLE t (id int PRIMARY KEY, m mood)`)
	e.syncOnce()
	a := e.applier()
	burstDDL(t, e)
	// The batch reaches the target before any schema job: it fails for
	// the unknown label (22P02), and the sync it triggers must add the
	// label and then create what uses it.
	tbl := batch.Table{Schema: "public", Name: "t"}
	res, err := a.Apply(ctx, rowsBatch(1, tbl, []string{"id", "m"}, []string{"id"}, []string{"1", "happy"}))
	if err != nil || !res.Applied {
		t.Fatalf("batch: applied %v, err %v", res.Applied, err)
	}
	if got := e.targetString(`SELECT m::text FROM t WHERE id = 1`); got != "happy" {
		t.Fatalf("t.m = %q, want happy", got)
	}
	e.assertNothingToDo()
	schematestSame(t, e)
}

func TestSyncOfAnEmptyishTargetAddsLabelsThenUsesThem(t *testing.T) {
	e := newEnv(t, "")
	testenv.Exec(t, e.src, `CREATE TYPE mood AS ENUM ('sad', 'ok'); CREATE TABLE t (id int PRIMARY KEY, m mood)`)
	e.syncOnce()
	burstDDL(t, e)
	e.syncOnce()
	e.assertNothingToDo()
	schematestSame(t, e)
}
