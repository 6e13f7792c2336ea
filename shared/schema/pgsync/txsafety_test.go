package pgsync_test

import (
	"context"
	"errors"
	"regexp"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/schema/schematest"
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

// outsideTx are the statement shapes PostgreSQL refuses inside a
// transaction block (schema/txsafety.go lists them), with an example of
// each that the test cluster refuses with SQLSTATE 25001.
var outsideTx = []struct {
	shape   *regexp.Regexp
	example string
}{
	{regexp.MustCompile(`(?i)\bCONCURRENTLY\b`), `CREATE INDEX CONCURRENTLY t_c ON t (id)`},
	{regexp.MustCompile(`(?i)\bCONCURRENTLY\b`), `DROP INDEX CONCURRENTLY IF EXISTS t_c`},
	{regexp.MustCompile(`(?i)\bCONCURRENTLY\b`), `REINDEX TABLE CONCURRENTLY t`},
	{regexp.MustCompile(`(?i)\bCONCURRENTLY\b`), `ALTER TABLE p DETACH PARTITION p1 CONCURRENTLY`},
	{regexp.MustCompile(`(?i)^\s*REINDEX\b`), `REINDEX SCHEMA public`},
	{regexp.MustCompile(`(?i)^\s*VACUUM\b`), `VACUUM t`},
	{regexp.MustCompile(`(?i)^\s*CLUSTER\b`), `CLUSTER`},
	{regexp.MustCompile(`(?i)^\s*(CREATE|DROP|ALTER)\s+DATABASE\b`), `CREATE DATABASE pgferry_never`},
	{regexp.MustCompile(`(?i)^\s*(CREATE|DROP|ALTER)\s+DATABASE\b`), `DROP DATABASE IF EXISTS pgferry_never`},
	{regexp.MustCompile(`(?i)^\s*(CREATE|DROP|ALTER)\s+DATABASE\b`), `ALTER DATABASE pgferry_never SET TABLESPACE pg_default`},
	{regexp.MustCompile(`(?i)^\s*(CREATE|DROP)\s+TABLESPACE\b`), `CREATE TABLESPACE pgferry_never LOCATION '/nonexistent'`},
	{regexp.MustCompile(`(?i)^\s*(CREATE|DROP)\s+TABLESPACE\b`), `DROP TABLESPACE IF EXISTS pgferry_never`},
	{regexp.MustCompile(`(?i)^\s*ALTER\s+SYSTEM\b`), `ALTER SYSTEM SET work_mem = '4MB'`},
	{regexp.MustCompile(`(?i)^\s*(CREATE|ALTER|DROP)\s+SUBSCRIPTION\b`), `CREATE SUBSCRIPTION pgferry_never CONNECTION 'dbname=pgferry_never' PUBLICATION p`},
	{regexp.MustCompile(`(?i)^\s*DISCARD\b`), `DISCARD ALL`},
}

// txControl are shapes that would end or split the plan's transaction.
var txControl = regexp.MustCompile(`(?i)^\s*(BEGIN|START\s+TRANSACTION|COMMIT|END|ROLLBACK|ABORT|SAVEPOINT|RELEASE|SET\s+TRANSACTION|PREPARE\s+TRANSACTION|CALL)\b`)

var addValue = regexp.MustCompile(`^ALTER TYPE \S+ ADD VALUE IF NOT EXISTS `)

// The examples are what the list claims: the test cluster refuses each
// inside a transaction block.
func TestStatementsRefusedInATransactionBlockAreRefused(t *testing.T) {
	e := newEnv(t, "")
	ctx := context.Background()
	testenv.Exec(t, e.dst, `CREATE TABLE t (id int PRIMARY KEY); CREATE TABLE p (id int) PARTITION BY RANGE (id);
		CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (0) TO (10); CREATE TYPE mood AS ENUM ('sad')`)
	for _, c := range outsideTx {
		if !c.shape.MatchString(c.example) {
			t.Errorf("shape %s does not match its example %q", c.shape, c.example)
		}
		err := pgx.BeginFunc(ctx, e.dst, func(tx pgx.Tx) error { _, err := tx.Exec(ctx, c.example); return err })
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "25001" {
			t.Errorf("%q in a transaction block: err %v, want SQLSTATE 25001", c.example, err)
		}
	}
	err := pgx.BeginFunc(ctx, e.dst, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `ALTER TYPE mood ADD VALUE IF NOT EXISTS 'ok'`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `CREATE TABLE u (m mood DEFAULT 'ok')`)
		return err
	})
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "55P04" {
		t.Errorf("a new label used in its own transaction: err %v, want SQLSTATE 55P04", err)
	}
}

// richChanges change, on a source holding schematest.RichDDL, something
// of every kind the diff alters, drops or creates.
// richChanges (run after richLabels commit).
const richLabels = `ALTER TYPE shop.status ADD VALUE 'draft' BEFORE 'new'; ALTER TYPE shop.status ADD VALUE 'returned' AFTER 'shipped'`

const richChanges = `
CREATE TYPE shop.pair AS (a int, b int);
CREATE SEQUENCE shop.ticket;
CREATE TABLE shop.tickets (id bigint PRIMARY KEY DEFAULT nextval('shop.ticket'), p shop.pair, s shop.status DEFAULT 'draft');
CREATE INDEX tickets_draft ON shop.tickets (id) WHERE s = 'draft';
ALTER TYPE shop.amount ADD ATTRIBUTE note text;
ALTER DOMAIN shop.price SET DEFAULT 1;
ALTER DOMAIN shop.price SET NOT NULL;
ALTER DOMAIN shop.price ADD CONSTRAINT price_small CHECK (VALUE < 1000000);
CREATE OR REPLACE FUNCTION shop.next_code() RETURNS text LANGUAGE plpgsql AS $f$ BEGIN RETURN 'E-' || floor(random() * 1e6)::int; END $f$;
ALTER TABLE shop.orders DROP CONSTRAINT orders_customer_id_fkey;
ALTER TABLE shop.orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES shop.customers (id);
ALTER TABLE shop.orders DROP CONSTRAINT qty_positive;
ALTER TABLE shop.orders ADD CONSTRAINT qty_small CHECK (qty < 1000);
DROP INDEX shop.orders_lower_note;
DROP INDEX shop.orders_open;
CREATE INDEX orders_open ON shop.orders (customer_id, id) WHERE status <> 'returned';
ALTER INDEX shop.events_at RENAME TO events_when;
DROP TABLE public.plain;
ALTER TABLE shop.customers RENAME TO clients;
ALTER TABLE shop.clients RENAME COLUMN code TO ref;
ALTER TABLE shop.clients ALTER COLUMN created DROP NOT NULL;
ALTER TABLE shop.clients ALTER COLUMN created SET DEFAULT clock_timestamp();
ALTER TABLE shop.clients ADD CONSTRAINT clients_ref UNIQUE (ref);
ALTER TABLE shop.orders ALTER COLUMN note SET NOT NULL;
ALTER TABLE shop.orders DROP COLUMN line_total;
ALTER TABLE shop.orders ALTER COLUMN unit TYPE numeric(14,2);
ALTER TABLE shop.orders ADD COLUMN line_total numeric GENERATED ALWAYS AS (qty * unit * 2) STORED;
ALTER TABLE shop.orders ALTER COLUMN order_no DROP DEFAULT;
ALTER TABLE shop.orders ADD COLUMN seen int GENERATED BY DEFAULT AS IDENTITY;
CREATE TABLE shop.events_us PARTITION OF shop.events FOR VALUES IN ('us');
`

// TestRenderedPlansStayInsideATransaction scans the plans of a rich
// schema — built from nothing, then changed in every way the diff knows —
// for statements PostgreSQL refuses in a transaction block, and checks
// that exactly the new enum labels are marked to commit first.
func TestRenderedPlansStayInsideATransaction(t *testing.T) {
	e := newEnv(t, "")
	ctx := context.Background()
	testenv.Exec(t, e.src, schematest.RichDDL)
	scan := func(what string) {
		t.Helper()
		plan, err := e.sync.Plan(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if plan.Empty() {
			t.Fatalf("%s: empty plan", what)
		}
		labels := 0
		for _, st := range plan.Steps {
			for _, c := range outsideTx {
				if c.shape.MatchString(st.SQL) {
					t.Errorf("%s: step %q is refused in a transaction block (%s)", what, st.SQL, c.shape)
				}
			}
			if txControl.MatchString(st.SQL) {
				t.Errorf("%s: step %q would end the plan's transaction", what, st.SQL)
			}
			if isAdd := addValue.MatchString(st.SQL); isAdd != st.CommitFirst {
				t.Errorf("%s: step %q has CommitFirst %v", what, st.SQL, st.CommitFirst)
			} else if isAdd {
				labels++
			}
		}
		t.Logf("%s: %d steps, %d to commit first", what, len(plan.Steps), labels)
		e.syncOnce()
		e.assertNothingToDo()
		schematestSame(t, e)
	}
	scan("from an empty target")
	testenv.Exec(t, e.src, richLabels)
	testenv.Exec(t, e.src, richChanges)
	scan("after every kind of change")
}

func TestRenamedCompositeAttributeKeepsItsPositionAndData(t *testing.T) {
	e := newEnv(t, "")
	ctx := context.Background()
	testenv.Exec(t, e.src, `CREATE TYPE trio AS (a text, b text, c text); CREATE TABLE t (id int PRIMARY KEY, v trio)`)
	e.syncOnce()
	a := e.applier()
	tbl := batch.Table{Schema: "public", Name: "t"}
	if _, err := a.Apply(ctx, rowsBatch(1, tbl, []string{"id", "v"}, []string{"id"}, []string{"1", "(x,y,z)"})); err != nil {
		t.Fatal(err)
	}
	testenv.Exec(t, e.src, `ALTER TYPE trio RENAME ATTRIBUTE b TO b2`)
	if ddl := e.syncOnce(); ddl != "ALTER TYPE \"public\".\"trio\" RENAME ATTRIBUTE \"b\" TO \"b2\";\n" {
		t.Fatalf("plan:\n%s\nwant a rename", ddl)
	}
	// Values keep arriving as text, by position.
	if _, err := a.Apply(ctx, rowsBatch(2, tbl, []string{"id", "v"}, []string{"id"}, []string{"2", "(p,q,r)"})); err != nil {
		t.Fatal(err)
	}
	if got := e.targetString(`SELECT string_agg((v).b2 || (v).c, ',' ORDER BY id) FROM t`); got != "yz,qr" {
		t.Fatalf("(v).b2 || (v).c = %q, want yz,qr (data kept, positions unchanged)", got)
	}
	e.assertNothingToDo()
	schematest.AssertSameDetails(t, e.src, e.dst)
}

// Several attribute changes that one sync sees together (a schema job
// runs after all the DDL that committed before it) still keep every
// renamed attribute's values: a rename must not become a drop plus an add.
func TestCompositeAttributeRenamedAmongOtherChangesInOneSyncKeepsItsData(t *testing.T) {
	for _, c := range []struct {
		name, ddl, got, want string
	}{
		{"added, then renamed", `ALTER TYPE trio ADD ATTRIBUTE d text; ALTER TYPE trio RENAME ATTRIBUTE b TO b2`,
			`SELECT format('%s,%s,%s,%s', (v).a, (v).b2, (v).c, (v).d) FROM t`, "x,y,z,"},
		{"dropped, then another renamed", `ALTER TYPE trio DROP ATTRIBUTE b; ALTER TYPE trio RENAME ATTRIBUTE c TO c2`,
			`SELECT format('%s,%s', (v).a, (v).c2) FROM t`, "x,z"},
		{"two renamed in a swap", `ALTER TYPE trio RENAME ATTRIBUTE a TO tmp; ALTER TYPE trio RENAME ATTRIBUTE c TO a; ALTER TYPE trio RENAME ATTRIBUTE tmp TO c`,
			`SELECT format('%s,%s,%s', (v).c, (v).b, (v).a) FROM t`, "x,y,z"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, "")
			ctx := context.Background()
			testenv.Exec(t, e.src, `CREATE TYPE trio AS (a text, b text, c text); CREATE TABLE t (id int PRIMARY KEY, v trio)`)
			e.syncOnce()
			tbl := batch.Table{Schema: "public", Name: "t"}
			if _, err := e.applier().Apply(ctx, rowsBatch(1, tbl, []string{"id", "v"}, []string{"id"}, []string{"1", "(x,y,z)"})); err != nil {
				t.Fatal(err)
			}
			testenv.Exec(t, e.src, c.ddl)
			ddl := e.syncOnce()
			if got := e.targetString(c.got); got != c.want {
				t.Fatalf("%s = %q on the target, want %q (values lost or moved); plan:\n%s", c.got, got, c.want, ddl)
			}
			e.assertNothingToDo()
			schematest.AssertSameDetails(t, e.src, e.dst)
		})
	}
}

func TestBatchCapturedBeforeATableRenameIsWrittenToTheRenamedTable(t *testing.T) {
	e := newEnv(t, "")
	ctx := context.Background()
	testenv.Exec(t, e.src, `CREATE TABLE items (id int PRIMARY KEY, name text)`)
	e.syncOnce()
	a := e.applier()
	testenv.Exec(t, e.src, `ALTER TABLE items RENAME TO products`)
	testenv.Exec(t, e.src, `ALTER TABLE products RENAME COLUMN name TO title`)
	e.syncOnce()
	// A batch captured under the old names arrives after the renames.
	old := rowsBatch(1, batch.Table{Schema: "public", Name: "items"}, []string{"id", "name"}, []string{"id"}, []string{"1", "kept"})
	if res, err := a.Apply(ctx, old); err != nil || !res.Applied {
		t.Fatalf("batch from before the rename: applied %v, err %v", res.Applied, err)
	}
	if got := e.targetString(`SELECT coalesce(string_agg(id || '=' || title, ','), '') FROM products`); got != "1=kept" {
		t.Fatalf("products holds %q, want 1=kept (changes to the old name were lost)", got)
	}
	e.assertNothingToDo()
}

func TestBatchViolatingAConstraintTheSourceDroppedIsRetriedAfterTheDDL(t *testing.T) {
	e := newEnv(t, "")
	ctx := context.Background()
	testenv.Exec(t, e.src, `CREATE DOMAIN sku AS text CHECK (VALUE ~ '^[A-Z]');
		CREATE TABLE t (id int PRIMARY KEY, v int CONSTRAINT v_positive CHECK (v > 0), s sku, u int UNIQUE)`)
	e.syncOnce()
	a := e.applier()
	tbl := batch.Table{Schema: "public", Name: "t"}
	testenv.Exec(t, e.src, `ALTER TABLE t DROP CONSTRAINT v_positive; ALTER DOMAIN sku DROP CONSTRAINT sku_check; ALTER TABLE t DROP CONSTRAINT t_u_key`)
	for i, b := range []*batch.Batch{
		rowsBatch(1, tbl, []string{"id", "v"}, []string{"id"}, []string{"1", "0"}),
		rowsBatch(2, tbl, []string{"id", "s"}, []string{"id"}, []string{"2", "lower"}),
		rowsBatch(3, tbl, []string{"id", "u"}, []string{"id"}, []string{"3", "7"}, []string{"4", "7"}),
	} {
		if res, err := a.Apply(ctx, b); err != nil || !res.Applied {
			t.Fatalf("batch %d: applied %v, err %v", i+1, res.Applied, err)
		}
	}
	e.assertNothingToDo()
}
