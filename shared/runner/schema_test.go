package runner_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/runner"
	"github.com/pgferry/pgferry/shared/schema/pgsync"
	"github.com/pgferry/pgferry/shared/schema/schematest"
	"github.com/pgferry/pgferry/shared/testenv"
)

// newSchemaFixture is a pipeline from a source holding ddl to an empty
// target whose schema pgferry creates and keeps in step (schema_sync on,
// the default).
func newSchemaFixture(t *testing.T, mode, ddl, targetKeys string) (*fixture, map[string]*pgsync.Syncer) {
	t.Helper()
	f, pools := fixtureFrom(t, ddl, "", func(src, dst string) string {
		return fmt.Sprintf(`
name: %s
source:
  dsn: %q
  tables: ["public.*", "shop.*"]%s
targets:
  replica:
    kind: postgres
    dsn: %q%s
drain:
  interval: 100ms
`, testenv.Name("t"), src, slotKeys(mode), dst, targetKeys)
	})
	syncers := runner.SchemaSyncers(f.cfg, f.src, pools, f.log)
	runner.WithSchemaSync(f.cfg, f.targets, syncers, pools, f.log)
	return f, syncers
}

// schemaLocal is the local runner as functions/local wires it.
func schemaLocal(f *fixture, syncers map[string]*pgsync.Syncer) *runner.Local {
	l := f.local()
	l.AfterCycle = func(ctx context.Context) { runner.SyncSequences(ctx, syncers, f.log) }
	return l
}

func replicateWith(t *testing.T, l *runner.Local, f *fixture) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := l.Run(ctx, true, f.lastSent); err != nil {
		t.Fatalf("replicate until idle: %v", err)
	}
}

// schemaChanges are DDL statements, each followed at once by writes that
// need it.
var schemaChanges = []struct{ name, ddl, writes string }{
	{"add column", `ALTER TABLE shop.orders ADD COLUMN gift boolean NOT NULL DEFAULT false`,
		`INSERT INTO shop.orders (customer_id, qty, unit, gift) SELECT id, 2, 9.99, true FROM shop.customers LIMIT 3`},
	{"rename column", `ALTER TABLE shop.customers RENAME COLUMN code TO ref`,
		`UPDATE shop.customers SET ref = 'R-' || id`},
	{"change column type", `ALTER TABLE shop.orders ALTER COLUMN total TYPE numeric(14,2)`,
		`INSERT INTO shop.orders (customer_id, qty, unit, total) SELECT id, 1, 1, 123456789012.34 FROM shop.customers LIMIT 1`},
	{"new enum label", `ALTER TYPE shop.status ADD VALUE 'returned' BEFORE 'shipped'`,
		`UPDATE shop.orders SET status = 'returned' WHERE id % 3 = 0`},
	{"new table", `CREATE TABLE shop.reviews (id int PRIMARY KEY, order_id int REFERENCES shop.orders (id), stars int CHECK (stars BETWEEN 1 AND 5), body text)`,
		`INSERT INTO shop.reviews SELECT id, id, 1 + id % 5, 'ok' FROM shop.orders`},
	{"dropped index", `DROP INDEX shop.orders_lower_note`,
		`DELETE FROM shop.reviews WHERE stars = 1`},
	{"drop column", `ALTER TABLE shop.orders DROP COLUMN note`,
		`UPDATE shop.orders SET unit = unit + 1 WHERE id % 2 = 0`},
	{"new index", `CREATE INDEX orders_gift ON shop.orders (customer_id) WHERE gift`,
		`INSERT INTO shop.orders (customer_id, qty, unit, gift) SELECT id, 1, 1, true FROM shop.customers LIMIT 2`},
	{"changed function", `CREATE OR REPLACE FUNCTION shop.next_code() RETURNS text LANGUAGE plpgsql AS $f$ BEGIN RETURN 'D-' || floor(random() * 1e6)::int; END $f$`,
		`INSERT INTO shop.customers (email) VALUES ('late@example.com')`},
	{"dropped table", `DROP TABLE public.plain`,
		`INSERT INTO shop.events VALUES ('us', '2024-05-01', '{"late": true}')`},
	{"new schema and type", `CREATE SCHEMA shop_extra; CREATE TYPE shop.size AS ENUM ('s', 'm', 'l'); ALTER TABLE shop.reviews ADD COLUMN size shop.size`,
		`UPDATE shop.reviews SET size = 'm'`},
}

const richRows = `
INSERT INTO shop.customers (email, tags) SELECT 'c' || g || '@Example.com', hstore('k', g::text) FROM generate_series(1, 20) g;
INSERT INTO shop.orders (customer_id, status, total, amount, qty, unit, note)
    SELECT 1 + g % 20, (ARRAY['new', 'paid', 'shipped'])[1 + g % 3]::shop.status, g * 1.5, ('(EUR,' || g * 100 || ')')::shop.amount, 1 + g % 4, 2.50, 'n' || g
    FROM generate_series(1, 60) g;
INSERT INTO shop.events SELECT CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'apac' END, date '2024-01-01' + g, jsonb_build_object('g', g) FROM generate_series(1, 30) g;
INSERT INTO public.plain SELECT g, 'v' || g FROM generate_series(1, 10) g;
`

func TestSchemaFollowsTheSourceFromAnEmptyTarget(t *testing.T) {
	forEachCapture(t, func(t *testing.T, mode string) {
		f, syncers := newSchemaFixture(t, mode, schematest.RichDDL, "")
		ctx := context.Background()
		l := schemaLocal(f, syncers)
		// First run: the drain's first schema job builds the target.
		replicateWith(t, l, f)
		schematest.AssertSameCatalog(t, f.src, f.dst)
		f.exec(richRows)
		replicateWith(t, l, f)
		f.assertSame()

		// Changes while the pipeline runs: jobs and batches interleave,
		// and a batch that overtakes its DDL is retried after it.
		bg, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); _ = schemaLocal(f, syncers).Run(bg, false, f.lastSent) }()
		for _, c := range schemaChanges {
			f.exec(c.ddl)
			f.exec(c.writes)
			time.Sleep(150 * time.Millisecond)
		}
		stop()
		wg.Wait()
		replicateWith(t, l, f)

		schematest.AssertSameCatalog(t, f.src, f.dst)
		f.assertSame()
		if n := f.targetInt(`SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = 'plain'`); n != 0 {
			t.Errorf("public.plain was dropped on the source but is still on the target")
		}
		var refs int64
		if err := f.dst.QueryRow(ctx, `SELECT count(*) FROM shop.customers WHERE ref LIKE 'R-%'`).Scan(&refs); err != nil || refs != 20 {
			t.Errorf("renamed column lost its data: %d rows with R- refs (err %v), want 20", refs, err)
		}
		for _, seq := range []string{"shop.orders_id_seq", "shop.order_no", "shop.customers_id_seq"} {
			var src, dst int64
			q := `SELECT coalesce(pg_sequence_last_value($1::regclass), 0)`
			if err := f.src.QueryRow(ctx, q, seq).Scan(&src); err != nil {
				t.Fatal(err)
			}
			if err := f.dst.QueryRow(ctx, q, seq).Scan(&dst); err != nil {
				t.Fatal(err)
			}
			if dst < src || src == 0 {
				t.Errorf("sequence %s is at %d on the target, behind the source's %d", seq, dst, src)
			}
		}
	})
}

func TestPlanPrintsTheDDLAndChangesNothing(t *testing.T) {
	f, _ := newSchemaFixture(t, config.CaptureTrigger, schematest.RichDDL, "")
	var out bytes.Buffer
	if err := runner.PrintPlans(context.Background(), f.cfg, f.src, []*pgxpool.Pool{f.dst}, &out, f.log); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"-- target replica:", `CREATE TABLE "shop"."orders"`, `CREATE TYPE "shop"."status" AS ENUM`, `CREATE INDEX "orders_open"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("plan lacks %q:\n%s", want, out.String())
		}
	}
	// (The fixture's appliers installed pgferry's watermark table; plan
	// mode itself must add nothing.)
	if n := f.targetInt(`SELECT count(*) FROM pg_namespace WHERE nspname = 'shop'`) +
		f.targetInt(`SELECT count(*) FROM pg_class WHERE relname = 'schema_objects'`); n != 0 {
		t.Errorf("plan mode changed the target (%d objects created)", n)
	}
}

func TestScheduledDiffShipsADDLThatNoWriteFollows(t *testing.T) {
	forEachCapture(t, func(t *testing.T, mode string) {
		f, syncers := newSchemaFixture(t, mode, schematest.RichDDL, "")
		ctx := context.Background()
		l := schemaLocal(f, syncers)
		replicateWith(t, l, f)
		f.exec(`CREATE INDEX customers_created ON shop.customers (created DESC)`)
		res, err := runner.SchemaDiff(ctx, f.cfg, f.src, []*pgxpool.Pool{f.dst}, f.aws, runner.InstanceID(), false, f.log)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Shipped || res.Pending["replica"] != 1 {
			t.Fatalf("schema-diff = %+v, want a job shipped for 1 pending statement", res)
		}
		replicateWith(t, l, f) // --until-idle waits for the job: it has a position
		schematest.AssertSameCatalog(t, f.src, f.dst)
		res, err = runner.SchemaDiff(ctx, f.cfg, f.src, []*pgxpool.Pool{f.dst}, f.aws, runner.InstanceID(), false, f.log)
		if err != nil || res.Shipped || res.Pending["replica"] != 0 {
			t.Fatalf("second schema-diff = %+v, %v; want nothing to do", res, err)
		}
	})
}

// A label added on the source and used by the next statements of the same
// burst (a default, rows) reaches the target in one schema job: the label
// must be committed there before the DDL that uses it runs.
func TestNewEnumLabelUsedInTheSameBurstOfDDLReachesTheTarget(t *testing.T) {
	forEachCapture(t, func(t *testing.T, mode string) {
		f, syncers := newSchemaFixture(t, mode, schematest.RichDDL, "")
		l := schemaLocal(f, syncers)
		replicateWith(t, l, f)
		f.exec(richRows)
		replicateWith(t, l, f)
		// Separate statements, as a migration tool sends them; the runner
		// is stopped, so its next drain finds them all in one change.
		f.exec(`ALTER TYPE shop.status ADD VALUE 'held' AFTER 'paid'`)
		f.exec(`CREATE TABLE shop.holds (id int PRIMARY KEY, order_id int REFERENCES shop.orders (id), status shop.status NOT NULL DEFAULT 'held')`)
		f.exec(`INSERT INTO shop.holds (id, order_id) SELECT id, id FROM shop.orders WHERE id % 4 = 0`)
		f.exec(`UPDATE shop.orders SET status = 'held' WHERE id % 4 = 0`)
		replicateWith(t, l, f)
		schematest.AssertSameCatalog(t, f.src, f.dst)
		f.assertSame()
		if n := f.targetInt(`SELECT count(*) FROM shop.holds WHERE status = 'held'`); n != 15 {
			t.Errorf("shop.holds has %d rows with the new label on the target, want 15", n)
		}
	})
}
