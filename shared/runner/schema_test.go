package runner_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/localrun"
	"github.com/pgferry/pgferry/shared/schema/schematest"
	"github.com/pgferry/pgferry/shared/schemadiff"
	"github.com/pgferry/pgferry/shared/testenv"
)

// newSchemaFixture is a pipeline from a source holding ddl to an empty
// target whose schema pgferry creates and keeps in step (schema_sync on,
// the default).
func newSchemaFixture(t *testing.T, mode, ddl, targetKeys string) (*fixture, map[string]schemadiff.Syncer) {
	t.Helper()
	f := fixtureFrom(t, ddl, "", func(src, dst string) string {
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
	syncers := f.p.Syncers()
	return f, syncers
}

// schemaLocal is the local runner as functions/local wires it.
func schemaLocal(f *fixture, syncers map[string]schemadiff.Syncer) *localrun.Local {
	l := f.local()
	l.AfterCycle = func(ctx context.Context) error {
		_, err := schemadiff.SyncSequences(ctx, f.cfg.Name, syncers, nil)
		return err
	}
	return l
}

func replicateWith(t *testing.T, l *localrun.Local, f *fixture) {
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
	{"new function, view and materialized view", `CREATE FUNCTION shop.stars_label(s int) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT repeat('*', s) $$;
		CREATE VIEW shop.review_labels AS SELECT id, shop.stars_label(stars) AS label FROM shop.reviews;
		CREATE MATERIALIZED VIEW shop.review_counts AS SELECT stars, count(*) AS n FROM shop.reviews GROUP BY stars;
		CREATE UNIQUE INDEX review_counts_stars ON shop.review_counts (stars)`,
		`INSERT INTO shop.reviews SELECT id + 1000, id, 5, 'great' FROM shop.orders LIMIT 3`},
	{"view redefined with a new column", `CREATE OR REPLACE VIEW shop.order_summary AS
		SELECT customer_id, count(*) AS orders, sum(qty) AS qty, max(unit) AS max_unit FROM shop.orders GROUP BY customer_id`,
		`UPDATE shop.orders SET qty = qty + 1 WHERE id % 5 = 0`},
	{"view redefined incompatibly, under a dependent view", `DROP VIEW shop.big_customers; DROP VIEW shop.order_summary;
		CREATE VIEW shop.order_summary AS SELECT customer_id, count(*)::int AS orders, sum(qty) AS qty FROM shop.orders GROUP BY customer_id;
		CREATE VIEW shop.big_customers WITH (security_barrier) AS SELECT customer_id, orders FROM shop.order_summary WHERE orders > 2`,
		`UPDATE shop.orders SET qty = qty + 1 WHERE id % 7 = 0`},
	{"dropped index", `DROP INDEX shop.orders_lower_note`,
		`DELETE FROM shop.reviews WHERE stars = 1`},
	{"drop column", `ALTER TABLE shop.orders DROP COLUMN note`,
		`UPDATE shop.orders SET unit = unit + 1 WHERE id % 2 = 0`},
	{"new index", `CREATE INDEX orders_gift ON shop.orders (customer_id) WHERE gift`,
		`INSERT INTO shop.orders (customer_id, qty, unit, gift) SELECT id, 1, 1, true FROM shop.customers LIMIT 2`},
	{"changed function", `CREATE OR REPLACE FUNCTION shop.next_code() RETURNS text LANGUAGE plpgsql AS $f$ BEGIN RETURN 'D-' || floor(random() * 1e6)::int; END $f$`,
		`INSERT INTO shop.customers (email) VALUES ('late@example.com')`},
	{"dropped view and function", `DROP VIEW shop.review_labels; DROP FUNCTION shop.stars_label(int)`,
		`DELETE FROM shop.reviews WHERE id > 1000`},
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
	f, _ := newSchemaFixture(t, config.CaptureTrigger, schematest.RichDDL+`
		CREATE SCHEMA private; CREATE TABLE private.secret (id int PRIMARY KEY);
		CREATE VIEW public.leaky AS SELECT id FROM private.secret`, "")
	var out bytes.Buffer
	if err := schemadiff.PrintPlans(context.Background(), f.cfg, f.p.Planners(), &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"-- target replica:", `CREATE TABLE "shop"."orders"`, `CREATE TYPE "shop"."status" AS ENUM`, `CREATE INDEX "orders_open"`,
		`CREATE OR REPLACE AGGREGATE shop.concat_all(text)`, `CREATE OR REPLACE VIEW "shop"."big_customers"`, `CREATE MATERIALIZED VIEW "shop"."customer_emails"`,
		"-- left alone: view public.leaky is not synced: it depends on table private.secret, which is not replicated"} {
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
		res, err := f.schemaDiff(ctx, false)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Shipped || res.Pending["replica"] != 1 {
			t.Fatalf("schema-diff = %+v, want a job shipped for 1 pending statement", res)
		}
		replicateWith(t, l, f) // --until-idle waits for the job: it has a position
		schematest.AssertSameCatalog(t, f.src, f.dst)
		res, err = f.schemaDiff(ctx, false)
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

// kindsDDL is added to schematest.RichDDL for TestEveryKindOfDDLFollowsMidStream.
const kindsDDL = `
CREATE DOMAIN shop.sku AS text NOT NULL CONSTRAINT sku_upper CHECK (VALUE ~ '^[A-Z]');
CREATE TABLE shop.items (id int PRIMARY KEY, sku shop.sku, name text, qty int);
`

// kindChanges are the DDL kinds README "What is synced" lists, each run as
// separate statements (as a migration tool sends them), each followed at
// once by writes that need it.
//
// settle, when set, is a query the target must answer true before the
// change runs: a composite value in flight keeps the shape it was
// captured with, and a batch holding values of an attribute the source
// has since dropped cannot be applied (see the README's limits).
var kindChanges = []struct {
	name   string
	settle string
	ddl    []string
	writes string
}{
	{"composite: add attribute", "", []string{`ALTER TYPE shop.amount ADD ATTRIBUTE note text`},
		`UPDATE shop.orders SET amount = ROW('EUR', 5, 'hi')::shop.amount WHERE id % 2 = 0`},
	{"composite: rename attribute", "", []string{`ALTER TYPE shop.amount RENAME ATTRIBUTE cents TO minor`},
		`UPDATE shop.orders SET amount.minor = 9 WHERE id % 3 = 0`},
	{"composite: drop attribute", `SELECT count(*) > 0 FROM shop.orders WHERE (amount).minor = 9`, []string{`ALTER TYPE shop.amount DROP ATTRIBUTE note`},
		`UPDATE shop.orders SET amount = ROW('USD', 7)::shop.amount WHERE id % 5 = 0`},
	{"domain: drop NOT NULL", "", []string{`ALTER DOMAIN shop.sku DROP NOT NULL`},
		`INSERT INTO shop.items VALUES (1, NULL, 'no sku', 1)`},
	{"domain: drop CHECK", "", []string{`ALTER DOMAIN shop.sku DROP CONSTRAINT sku_upper`},
		`INSERT INTO shop.items VALUES (2, 'lower', 'lower sku', 1)`},
	{"domain: add CHECK, set default", "", []string{`ALTER DOMAIN shop.sku ADD CONSTRAINT sku_short CHECK (length(VALUE) < 20)`, `ALTER DOMAIN shop.sku SET DEFAULT 'A-0'`},
		`INSERT INTO shop.items (id, name, qty) VALUES (3, 'defaulted', 1)`},
	{"backfill for the next change", "", nil, `UPDATE shop.items SET sku = 'A-1' WHERE sku IS NULL`},
	// A constraint added right after a backfill waits until the target has
	// the backfill: a schema job may overtake the rows committed just before
	// its DDL, and would fail on the target's old rows (see the report).
	// "No NULL sku on the target" alone is no proof: it also holds before
	// item 1 (inserted with a NULL sku) got there.
	{"domain: set NOT NULL", `SELECT count(*) FILTER (WHERE id = 1 AND sku = 'A-1') = 1 AND count(*) FILTER (WHERE sku IS NULL) = 0 FROM shop.items`,
		[]string{`ALTER DOMAIN shop.sku SET NOT NULL`},
		`INSERT INTO shop.items VALUES (4, 'B-4', 'four', 4)`},
	{"extensions", "", []string{`CREATE EXTENSION IF NOT EXISTS ltree`, `CREATE EXTENSION IF NOT EXISTS pg_trgm`,
		`ALTER TABLE shop.items ADD COLUMN path ltree`, `CREATE INDEX items_name_trgm ON shop.items USING gin (name gin_trgm_ops)`},
		`UPDATE shop.items SET path = text2ltree('top.' || id)`},
	{"new schema and type", "", []string{`CREATE SCHEMA ref`, `CREATE TYPE ref.tier AS ENUM ('gold', 'silver')`, `ALTER TABLE shop.items ADD COLUMN tier ref.tier`},
		`UPDATE shop.items SET tier = 'gold' WHERE id % 2 = 0`},
	{"changed index definition", "", []string{`DROP INDEX shop.orders_open`, `CREATE INDEX orders_open ON shop.orders (customer_id, status) WHERE status <> 'shipped'`},
		`INSERT INTO shop.orders (customer_id, qty, unit) SELECT id, 1, 1 FROM shop.customers LIMIT 2`},
	{"renamed index", "", []string{`ALTER INDEX shop.events_at RENAME TO events_when`},
		`INSERT INTO shop.events VALUES ('eu', '2025-01-01', '{}')`},
	{"column default", "", []string{`ALTER TABLE shop.orders ALTER COLUMN qty SET DEFAULT 7`},
		`INSERT INTO shop.orders (customer_id, unit) SELECT id, 1 FROM shop.customers LIMIT 2`},
	{"drop NOT NULL", "", []string{`ALTER TABLE shop.orders ALTER COLUMN unit DROP NOT NULL`},
		`INSERT INTO shop.orders (customer_id, qty) SELECT id, 1 FROM shop.customers LIMIT 2`},
	{"backfill for the next change", "", nil, `UPDATE shop.customers SET tags = '' WHERE tags IS NULL`},
	{"set NOT NULL", `SELECT count(*) = 0 FROM shop.customers WHERE tags IS NULL`, []string{`ALTER TABLE shop.customers ALTER COLUMN tags SET NOT NULL`},
		`INSERT INTO shop.customers (email, tags) VALUES ('nn@example.com', 'a=>b')`},
	{"check constraint dropped", "", []string{`ALTER TABLE shop.orders DROP CONSTRAINT qty_positive`},
		`INSERT INTO shop.orders (customer_id, qty, unit) SELECT id, 0, 1 FROM shop.customers LIMIT 1`},
	{"check constraint added", "", []string{`ALTER TABLE shop.orders ADD CONSTRAINT qty_cap CHECK (qty < 1000)`},
		`INSERT INTO shop.orders (customer_id, qty, unit) SELECT id, 999, 1 FROM shop.customers LIMIT 1`},
	{"unique constraint added", "", []string{`ALTER TABLE shop.items ADD CONSTRAINT items_name UNIQUE (name)`},
		`INSERT INTO shop.items VALUES (5, 'E-5', 'five', 5)`},
	{"exclusion constraint added", "", []string{`ALTER TABLE shop.items ADD COLUMN during int4range`, `ALTER TABLE shop.items ADD CONSTRAINT items_during EXCLUDE USING gist (during WITH &&)`},
		`UPDATE shop.items SET during = int4range(id * 10, id * 10 + 5)`},
	{"identity added", "", []string{`ALTER TABLE shop.items ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY`, `SELECT setval(pg_get_serial_sequence('shop.items', 'id'), 100)`},
		`INSERT INTO shop.items (name) VALUES ('auto')`},
	{"collation changed", "", []string{`ALTER TABLE shop.items ALTER COLUMN name TYPE text COLLATE "C"`},
		`UPDATE shop.items SET name = name || '!'`},
	{"new sequence for a default", "", []string{`CREATE SEQUENCE shop.item_no START 500`, `ALTER TABLE shop.items ALTER COLUMN qty SET DEFAULT nextval('shop.item_no')`},
		`INSERT INTO shop.items (name) VALUES ('numbered')`},
	{"new serial table", "", []string{`CREATE TABLE shop.notes (id serial PRIMARY KEY, body text)`},
		`INSERT INTO shop.notes (body) SELECT 'n' || g FROM generate_series(1, 5) g`},
	{"new partition", "", []string{`CREATE TABLE shop.events_us PARTITION OF shop.events FOR VALUES IN ('us')`},
		`INSERT INTO shop.events VALUES ('eu', '2025-01-02', '{}')`},
	{"partition attached", "", []string{`CREATE TABLE shop.events_ca (region text NOT NULL, at date NOT NULL, payload jsonb)`,
		`ALTER TABLE shop.events ATTACH PARTITION shop.events_ca FOR VALUES IN ('ca')`},
		`INSERT INTO shop.events VALUES ('eu', '2025-01-03', '{}')`},
	// Rows for a new partition are written once the target has it: shop.events
	// has a default partition, and a row that reached the target before its
	// partition would sit in the default one and make the partition's
	// creation fail (see the README's limits).
	{"rows in the new partitions", `SELECT count(*) = 2 FROM pg_inherits WHERE inhrelid IN (to_regclass('shop.events_us'), to_regclass('shop.events_ca'))`,
		[]string{`UPDATE shop.events SET payload = '{"u": 1}' WHERE region = 'eu'`},
		`INSERT INTO shop.events VALUES ('us', '2025-01-04', '{}'), ('ca', '2025-01-04', '{}')`},
	{"new enum label used by the next statements", "", []string{`ALTER TYPE shop.status ADD VALUE 'held' AFTER 'paid'`,
		`CREATE TABLE shop.holds (id int PRIMARY KEY, order_id int REFERENCES shop.orders (id), status shop.status NOT NULL DEFAULT 'held')`},
		`INSERT INTO shop.holds (id, order_id) SELECT id, id FROM shop.orders WHERE id % 4 = 0`},
	{"renamed table", "", []string{`ALTER TABLE shop.items RENAME TO products`},
		`INSERT INTO shop.products (name) VALUES ('renamed')`},
}

// TestEveryKindOfDDLFollowsMidStream runs each kind of DDL while the
// pipeline runs, with writes right after that need it, and compares the
// target's catalog with the source's while the pipeline still runs (so
// the schema jobs and the retry after DDL did it, not a start-up sync),
// then the data.
func TestEveryKindOfDDLFollowsMidStream(t *testing.T) {
	forEachCapture(t, func(t *testing.T, mode string) {
		f, syncers := newSchemaFixture(t, mode, schematest.RichDDL+kindsDDL, "")
		ctx := context.Background()
		l := schemaLocal(f, syncers)
		replicateWith(t, l, f)
		f.exec(richRows)
		replicateWith(t, l, f)

		bg, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); _ = schemaLocal(f, syncers).Run(bg, false, f.lastSent) }()
		for _, c := range kindChanges {
			if c.settle != "" {
				f.waitTarget(c.settle, 20*time.Second)
			}
			for _, ddl := range c.ddl {
				f.exec(ddl)
			}
			f.exec(c.writes)
			time.Sleep(100 * time.Millisecond)
		}
		diff, err := "", error(nil)
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			if diff, err = schematest.CatalogDiff(ctx, f.src, f.dst); err == nil && diff == "" {
				break
			}
		}
		stop()
		wg.Wait()
		if err != nil || diff != "" {
			t.Errorf("the target's catalog did not follow while the pipeline ran (err %v):\n%s", err, diff)
		}
		replicateWith(t, l, f)
		schematest.AssertSameDetails(t, f.src, f.dst)
		f.assertSame()
		for _, seq := range []string{"shop.item_no", "shop.notes_id_seq", "shop.items_id_seq"} {
			var src, dst int64
			q := `SELECT coalesce(pg_sequence_last_value($1::regclass), 0)`
			if err := f.src.QueryRow(ctx, q, seq).Scan(&src); err != nil {
				t.Fatal(err)
			}
			if err := f.dst.QueryRow(ctx, q, seq).Scan(&dst); err != nil {
				t.Fatalf("sequence %s on the target: %v", seq, err)
			}
			if dst < src || src == 0 {
				t.Errorf("sequence %s is at %d on the target, behind the source's %d", seq, dst, src)
			}
		}
	})
}

// waitTarget waits until cond, a query on the target, returns true.
func (f *fixture) waitTarget(cond string, timeout time.Duration) {
	f.t.Helper()
	for deadline := time.Now().Add(timeout); ; time.Sleep(100 * time.Millisecond) {
		var ok bool
		err := f.dst.QueryRow(context.Background(), cond).Scan(&ok)
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			diff, _ := schematest.CatalogDiff(context.Background(), f.src, f.dst)
			f.t.Fatalf("the target did not reach %q in %s (last err %v); catalog differences:\n%s", cond, timeout, err, diff)
		}
	}
}

// A backfill and the DDL that needs it, as separate statements while the
// runner is stopped: the drain's next run ships the schema job ahead of
// the backfill's rows, so the target's rows still violate the new NOT NULL
// and CHECK when the job runs. The job defers them instead of being
// dead-lettered; they run once the backfill has arrived (after a batch,
// or at the latest through the scheduled schema-diff's job). A column
// added without a default and given one later keeps NULL in the existing
// rows, as on the source.
func TestConstraintRightAfterItsBackfillFollowsTheStream(t *testing.T) {
	forEachCapture(t, func(t *testing.T, mode string) {
		f, syncers := newSchemaFixture(t, mode, schematest.RichDDL, "")
		ctx := context.Background()
		l := schemaLocal(f, syncers)
		f.exec(richRows)
		f.exec(`INSERT INTO shop.customers (email) VALUES ('untagged1@example.com'), ('untagged2@example.com')`)
		replicateWith(t, l, f)
		f.exec(`UPDATE shop.customers SET tags = '' WHERE tags IS NULL`)
		f.exec(`ALTER TABLE shop.customers ALTER COLUMN tags SET NOT NULL`)
		f.exec(`UPDATE shop.orders SET qty = 3 WHERE qty > 3`)
		f.exec(`ALTER TABLE shop.orders ADD CONSTRAINT qty_small CHECK (qty <= 3)`)
		f.exec(`ALTER TABLE public.plain ADD COLUMN later int`)
		f.exec(`ALTER TABLE public.plain ALTER COLUMN later SET DEFAULT 5`)
		replicateWith(t, l, f)
		if _, err := f.schemaDiff(ctx, false); err != nil {
			t.Fatal(err)
		}
		replicateWith(t, l, f)
		schematest.AssertSameCatalog(t, f.src, f.dst)
		f.assertSame()
		if n := f.targetInt(`SELECT count(*) FROM public.plain WHERE later IS NOT NULL`); n != 0 {
			t.Errorf("%d existing rows of public.plain got the later default on the target; the source's read NULL", n)
		}
	})
}
