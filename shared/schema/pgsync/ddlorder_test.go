package pgsync_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/schema/pgsync"
	"github.com/pgferry/pgferry/shared/testenv"
)

// Schema jobs are ordered with the data only approximately: these tests
// put a job before rows committed ahead of its DDL, the way the stream
// can.

func schemaJob(seq uint64) *batch.Batch {
	return &batch.Batch{Version: batch.VersionSchema, Pipeline: "sync", Target: "replica", Lineage: "l", Seq: seq,
		From: batch.Position{Tick: seq - 1}, To: batch.Position{Tick: seq}, Schema: &batch.SchemaJob{Reason: "test"}}
}

// logBuffer is a slog destination tests can read.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// logged gives e a syncer (and so appliers) whose log the test reads.
func (e *env) logged() *logBuffer {
	buf := &logBuffer{}
	e.sync = pgsync.New(e.src, e.dst, e.cfg, "replica", slog.New(slog.NewTextHandler(buf, nil)))
	return buf
}

// tightenings are the source's backfills, each followed by the DDL that
// needs it.
const tightenings = `
UPDATE t SET c = 0 WHERE c IS NULL; ALTER TABLE t ALTER c SET NOT NULL;
UPDATE t SET k = 0 WHERE k < 0; ALTER TABLE t ADD CONSTRAINT t_k_check CHECK (k >= 0);
UPDATE t SET u = id; ALTER TABLE t ADD CONSTRAINT t_u_key UNIQUE (u);
INSERT INTO parent VALUES (7); ALTER TABLE t ADD CONSTRAINT t_ref_fkey FOREIGN KEY (ref) REFERENCES parent;
UPDATE t SET d = 1 WHERE d IS NULL OR d <= 0; ALTER DOMAIN dom SET NOT NULL; ALTER DOMAIN dom ADD CONSTRAINT dom_pos CHECK (VALUE > 0);
`

// tighteningSetup makes the tables tightenings changes, and the same two
// rows on both sides; the target's rows are as before the backfill.
func tighteningSetup(t *testing.T, e *env) {
	t.Helper()
	testenv.Exec(t, e.src, `CREATE DOMAIN dom AS int; CREATE TABLE parent (id int PRIMARY KEY);
		CREATE TABLE t (id int PRIMARY KEY, c int, k int, u int, ref int, d dom)`)
	e.syncOnce()
	rows := `INSERT INTO t VALUES (1, NULL, -1, 1, 7, NULL), (2, 1, 1, 1, NULL, -3)`
	testenv.Exec(t, e.src, rows)
	testenv.Exec(t, e.dst, rows)
}

func TestTighteningAheadOfItsBackfillIsDeferredUntilTheRowsArrive(t *testing.T) {
	e := newEnv(t, "")
	ctx := context.Background()
	logs := e.logged()
	tighteningSetup(t, e)
	testenv.Exec(t, e.src, tightenings)
	a := e.applier()
	// The job overtakes the backfill's rows: every tightening is violated
	// on the target. It must not fail (it would be dead-lettered and block
	// the pipeline); the rest of it applies and the watermark moves.
	testenv.Exec(t, e.src, `ALTER TABLE t ADD COLUMN note text`)
	if res, err := a.Apply(ctx, schemaJob(1)); err != nil || !res.Applied {
		t.Fatalf("schema job: applied %v, err %v", res.Applied, err)
	}
	if n := e.targetString(`SELECT count(*)::text FROM information_schema.columns WHERE table_name = 't' AND column_name = 'note'`); n != "1" {
		t.Fatalf("the job's other DDL did not run")
	}
	if wm, _ := a.Watermark(ctx, batch.Group("sync", "replica")); wm != (batch.Position{Tick: 1}) {
		t.Fatalf("watermark after the job = %s, want 1.0", wm)
	}
	// Deferred, not forgotten: each is in the plan (--plan shows it, and
	// schema-diff ships a job for it) and was logged at WARN.
	plan, err := e.sync.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	deferred := []string{`ALTER COLUMN "c" SET NOT NULL`, `"t_k_check" CHECK`, `"t_u_key" UNIQUE`, `"t_ref_fkey" FOREIGN KEY`,
		`DOMAIN "public"."dom" SET NOT NULL`, `"dom_pos" CHECK`}
	for _, want := range deferred {
		if !strings.Contains(plan.SQL(), want) {
			t.Errorf("the plan after the job lacks the deferred %s:\n%s", want, plan.SQL())
		}
		if !strings.Contains(logs.String(), "level=WARN msg=\"schema sync: deferred") || !strings.Contains(logs.String(), strings.ReplaceAll(want, `"`, `\"`)) {
			t.Errorf("no WARN names the deferred %s:\n%s", want, logs.String())
		}
	}
	// The backfill's rows arrive: after that batch the deferred steps run
	// (no further DDL or schema job needed).
	if _, err := a.Apply(ctx, rowsBatch(2, batch.Table{Schema: "public", Name: "t"}, []string{"id", "c", "k", "u", "d"}, []string{"id"},
		[]string{"1", "0", "0", "1", "1"}, []string{"2", "1", "1", "2", "1"})); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Apply(ctx, rowsBatch(3, batch.Table{Schema: "public", Name: "parent"}, []string{"id"}, []string{"id"}, []string{"7"})); err != nil {
		t.Fatal(err)
	}
	e.assertNothingToDo()
	schematestSame(t, e)
}

func TestBatchASyncCannotFixStillFailsWhileAConstraintIsDeferred(t *testing.T) {
	e := newEnv(t, "")
	ctx := context.Background()
	tighteningSetup(t, e)
	testenv.Exec(t, e.src, tightenings)
	a := e.applier()
	if _, err := a.Apply(ctx, schemaJob(1)); err != nil {
		t.Fatalf("schema job: %v", err)
	}
	// A check only the target has: a retry after DDL cannot cure it, and
	// the deferred steps the sync plans again (and defers again) must not
	// count as a cure. Every attempt ends with the error, so the batch
	// goes on to the normal retries and the dead-letter queue.
	testenv.Exec(t, e.dst, `ALTER TABLE t ADD CONSTRAINT target_only CHECK (id < 100)`)
	for attempt := 1; attempt <= 3; attempt++ {
		_, err := a.Apply(ctx, rowsBatch(2, batch.Table{Schema: "public", Name: "t"}, []string{"id"}, []string{"id"}, []string{"500"}))
		if err == nil || !strings.Contains(err.Error(), "target_only") {
			t.Fatalf("attempt %d: err = %v, want the target-only constraint's violation", attempt, err)
		}
	}
	if n := e.targetString(`SELECT count(*)::text FROM t`); n != "2" {
		t.Fatalf("target holds %s rows, want 2", n)
	}
}

func TestAddedColumnKeepsWhatTheSourcesExistingRowsRead(t *testing.T) {
	e := newEnv(t, "")
	logs := e.logged()
	testenv.Exec(t, e.src, `CREATE TABLE t (id int PRIMARY KEY); CREATE TABLE v (id int PRIMARY KEY)`)
	e.syncOnce()
	testenv.Exec(t, e.src, `INSERT INTO t VALUES (1), (2); INSERT INTO v VALUES (1)`)
	testenv.Exec(t, e.dst, `INSERT INTO t VALUES (1), (2); INSERT INTO v VALUES (1)`)
	testenv.Exec(t, e.src, `
		ALTER TABLE t ADD COLUMN later int; ALTER TABLE t ALTER later SET DEFAULT 5;
		ALTER TABLE t ADD COLUMN changed int DEFAULT 5; ALTER TABLE t ALTER changed SET DEFAULT 7;
		ALTER TABLE t ADD COLUMN dropped text DEFAULT 'x y'; ALTER TABLE t ALTER dropped DROP DEFAULT;
		ALTER TABLE t ADD COLUMN stamped timestamptz DEFAULT now();
		ALTER TABLE t ADD COLUMN flag boolean NOT NULL DEFAULT false;
		ALTER TABLE t ADD COLUMN neg int DEFAULT -5;
		ALTER TABLE v ADD COLUMN r float8 DEFAULT random()`)
	ddl := e.syncOnce()
	for _, want := range []string{
		`ADD COLUMN "later" integer;` + "\n" + `ALTER TABLE "public"."t" ALTER COLUMN "later" SET DEFAULT 5;`,
		`ADD COLUMN "flag" boolean DEFAULT false NOT NULL;`,
		`ADD COLUMN "neg" integer DEFAULT '-5'::integer;`,
	} {
		if !strings.Contains(ddl, want) {
			t.Errorf("plan lacks %s:\n%s", want, ddl)
		}
	}
	rows := `SELECT string_agg(concat_ws('|', id, coalesce(later::text, 'null'), changed, dropped, stamped, flag, neg), ';' ORDER BY id) FROM t`
	var want string
	if err := e.src.QueryRow(context.Background(), rows).Scan(&want); err != nil {
		t.Fatal(err)
	}
	if got := e.targetString(rows); got != want {
		t.Errorf("target rows %q, source rows %q", got, want)
	}
	// A volatile default rewrote the source's rows with values no capture
	// saw: the target's existing rows cannot match, and the log says so
	// and how to reload.
	if got := e.targetString(`SELECT coalesce(r::text, 'null') FROM v`); got != "null" {
		t.Errorf("v.r on the target = %s, want null (not a value of the target's own)", got)
	}
	if l := logs.String(); !strings.Contains(l, "level=WARN") || !strings.Contains(l, "public.v.r has a volatile default (random())") ||
		!strings.Contains(l, "--load-tables public.v --reload") {
		t.Errorf("no WARN about the volatile default:\n%s", l)
	}
	e.assertNothingToDo()
	schematestSame(t, e)
}

func TestNewPartitionTakesTheRowsTheTargetsDefaultPartitionHeld(t *testing.T) {
	e := newEnv(t, "")
	testenv.Exec(t, e.src, `CREATE TABLE ev (id int GENERATED ALWAYS AS IDENTITY, day date NOT NULL, v int,
			v2 int GENERATED ALWAYS AS (v * 2) STORED, PRIMARY KEY (id, day)) PARTITION BY RANGE (day);
		CREATE TABLE ev_2024 PARTITION OF ev FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
		CREATE TABLE "ev default" PARTITION OF ev DEFAULT`)
	e.syncOnce()
	// The source makes a 2025 partition, then writes into it; the rows
	// reach the target before the schema job, into its default partition.
	testenv.Exec(t, e.src, `CREATE TABLE ev_2025 PARTITION OF ev FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')`)
	rows := `INSERT INTO ev (id, day, v) OVERRIDING SYSTEM VALUE VALUES (1, '2024-05-01', 1), (2, '2025-03-01', 2), (3, '2026-02-01', 3), (4, '2025-12-31', 4)`
	testenv.Exec(t, e.src, rows)
	testenv.Exec(t, e.dst, rows)
	a := e.applier()
	if res, err := a.Apply(context.Background(), schemaJob(1)); err != nil || !res.Applied {
		t.Fatalf("schema job: applied %v, err %v", res.Applied, err)
	}
	where := `SELECT string_agg(tableoid::regclass::text || ':' || id || ',' || v2, ';' ORDER BY id) FROM ev`
	var want string
	if err := e.src.QueryRow(context.Background(), where).Scan(&want); err != nil {
		t.Fatal(err)
	}
	if got := e.targetString(where); got != want {
		t.Errorf("target rows %s, source rows %s", got, want)
	}
	e.assertNothingToDo()
	schematestSame(t, e)
}

// TestDomainConstraintReplacedInOneSyncApplies: a plan that drops a
// domain constraint and then adds one (a tightening step, run under a
// savepoint) in the same transaction. PostgreSQL 15 leaves the drop's
// invalidations pending, and a subtransaction that invalidates a cache
// then fails with "cannot start a subtransaction when there are
// unprocessed inval messages" (XX000): the job would be dead-lettered.
func TestDomainConstraintReplacedInOneSyncApplies(t *testing.T) {
	e := newEnv(t, "")
	testenv.Exec(t, e.src, `CREATE DOMAIN sku AS text CONSTRAINT sku_upper CHECK (VALUE ~ '^[A-Z]');
		CREATE TABLE items (id int PRIMARY KEY, s sku)`)
	e.syncOnce()
	testenv.Exec(t, e.src, `ALTER DOMAIN sku DROP CONSTRAINT sku_upper;
		ALTER DOMAIN sku ADD CONSTRAINT sku_short CHECK (length(VALUE) < 20);
		ALTER TABLE items ADD CONSTRAINT items_id_pos CHECK (id > 0)`)
	sql := e.syncOnce()
	for _, want := range []string{"DROP CONSTRAINT", "sku_short", "items_id_pos"} {
		if !strings.Contains(sql, want) {
			t.Errorf("the sync ran no step with %q:\n%s", want, sql)
		}
	}
	var got string
	if err := e.dst.QueryRow(context.Background(), `SELECT string_agg(conname, ',' ORDER BY conname) FROM pg_constraint
		WHERE conname IN ('sku_upper', 'sku_short', 'items_id_pos')`).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if want := "items_id_pos,sku_short"; got != want {
		t.Errorf("target constraints = %s, want %s", got, want)
	}
	e.assertNothingToDo()
}
