package pgsync_test

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/pgferry/pgferry/shared/schema/pgsync"
	"github.com/pgferry/pgferry/shared/testenv"
)

// routinesDDL has standalone routines, an aggregate, a trigger function
// with its trigger, a function over a table's row type with an
// SQL-standard body, views over views and a materialized view with an
// index; shop holds no table but the pattern shop.* covers it.
const routinesDDL = `
CREATE TABLE public.customer (id int PRIMARY KEY, name text NOT NULL, active boolean NOT NULL DEFAULT true);
CREATE TABLE public.rental (id int PRIMARY KEY, customer_id int REFERENCES public.customer, amount numeric(8,2));
CREATE FUNCTION public.add(a int, b int DEFAULT 1) RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT a + b $$;
CREATE PROCEDURE public.deactivate_all() LANGUAGE plpgsql AS $$ BEGIN UPDATE public.customer SET active = false; END $$;
CREATE FUNCTION public._group_concat(text, text) RETURNS text LANGUAGE sql IMMUTABLE
    AS $$ SELECT CASE WHEN $2 IS NULL THEN $1 WHEN $1 IS NULL THEN $2 ELSE $1 || ', ' || $2 END $$;
CREATE AGGREGATE public.group_concat(text) (SFUNC = public._group_concat, STYPE = text);
CREATE FUNCTION public.upper_name() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.name := upper(NEW.name); RETURN NEW; END $$;
CREATE TRIGGER customer_upper BEFORE INSERT ON public.customer FOR EACH ROW EXECUTE FUNCTION public.upper_name();
CREATE FUNCTION public.customer_total(c public.customer) RETURNS numeric LANGUAGE sql STABLE
    BEGIN ATOMIC SELECT coalesce(sum(r.amount), 0) FROM public.rental r WHERE r.customer_id = c.id; END;
CREATE VIEW public.active_customers WITH (security_barrier) AS SELECT id, name FROM public.customer WHERE active WITH LOCAL CHECK OPTION;
CREATE VIEW public.active_names AS SELECT public.group_concat(name) AS names FROM public.active_customers;
CREATE MATERIALIZED VIEW public.totals AS SELECT c.id, public.customer_total(c) AS total FROM public.customer c;
CREATE UNIQUE INDEX totals_id ON public.totals (id);
CREATE SCHEMA shop;
CREATE FUNCTION shop.tax(v numeric) RETURNS numeric LANGUAGE sql IMMUTABLE AS $$ SELECT round(v * 0.2, 2) $$;
`

func TestEmptyTargetGetsEveryFunctionAndViewOfTheCoveredSchemas(t *testing.T) {
	e := newEnv(t, "")
	testenv.Exec(t, e.src, routinesDDL)
	ddl := e.syncOnce()
	t.Logf("DDL:\n%s", ddl)
	e.assertNothingToDo()
	schematestSame(t, e)
	for _, c := range []struct{ what, sql, want string }{
		{"the aggregate", `SELECT public.group_concat(v) FROM (VALUES ('a'), ('b')) x(v)`, "a, b"},
		{"a standalone function", `SELECT public.add(2)::text`, "3"},
		{"a function of a schema without tables", `SELECT shop.tax(10)::text`, "2.00"},
		{"the procedure", `SELECT count(*)::text FROM pg_proc WHERE proname = 'deactivate_all' AND prokind = 'p'`, "1"},
		{"the trigger function", `SELECT count(*)::text FROM pg_proc WHERE proname = 'upper_name'`, "1"},
		{"no trigger (triggers are not synced)", `SELECT count(*)::text FROM pg_trigger WHERE tgname = 'customer_upper'`, "0"},
		{"view options", `SELECT array_to_string(reloptions, ',') FROM pg_class WHERE relname = 'active_customers'`, "security_barrier=true,check_option=local"},
		{"the materialized view's index", `SELECT indexdef FROM pg_indexes WHERE indexname = 'totals_id'`, "CREATE UNIQUE INDEX totals_id ON public.totals USING btree (id)"},
		{"a populated materialized view", `SELECT ispopulated::text FROM pg_matviews WHERE matviewname = 'totals'`, "true"},
	} {
		if got := e.targetString(c.sql); got != c.want {
			t.Errorf("%s: %s = %q, want %q", c.what, c.sql, got, c.want)
		}
	}
	// The views work over replicated rows.
	testenv.Exec(t, e.dst, `INSERT INTO customer VALUES (1, 'ann', true), (2, 'bob', false), (3, 'cy', true);
		INSERT INTO rental VALUES (1, 1, 2.50), (2, 1, 1.25); REFRESH MATERIALIZED VIEW totals`)
	if got := e.targetString(`SELECT names || ' / ' || (SELECT total::text FROM totals WHERE id = 1) FROM active_names`); got != "ann, cy / 3.75" {
		t.Errorf("views over replicated rows = %q, want %q", got, "ann, cy / 3.75")
	}
}

func TestViewOverAnUnreplicatedTableIsReportedNotCreated(t *testing.T) {
	e := newEnv(t, "")
	ctx := context.Background()
	testenv.Exec(t, e.src, `CREATE SCHEMA private; CREATE TABLE private.secret (id int PRIMARY KEY, pin text);
		CREATE TABLE public.t (id int PRIMARY KEY);
		CREATE VIEW public.leaky AS SELECT s.id, s.pin FROM private.secret s JOIN public.t USING (id);
		CREATE VIEW public.leaky_count AS SELECT count(*) FROM public.leaky;
		CREATE FUNCTION public.pin_of(x int) RETURNS text LANGUAGE sql BEGIN ATOMIC SELECT pin FROM private.secret WHERE id = x; END;
		CREATE VIEW public.fine AS SELECT id FROM public.t`)
	wants := []string{
		"view public.leaky is not synced: it depends on table private.secret, which is not replicated",
		"view public.leaky_count is not synced: it depends on view public.leaky, which is not synced",
		"function public.pin_of(x integer) is not synced: it depends on table private.secret, which is not replicated",
	}
	plan, err := e.sync.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range wants {
		if !strings.Contains(strings.Join(plan.Warnings, "\n"), w) {
			t.Errorf("plan warnings lack %q:\n%s", w, strings.Join(plan.Warnings, "\n"))
		}
	}
	var log bytes.Buffer
	s := pgsync.New(e.src, e.dst, e.cfg, "replica", slog.New(slog.NewTextHandler(&log, nil)))
	if _, err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	for _, w := range wants {
		if !strings.Contains(log.String(), "level=WARN") || !strings.Contains(log.String(), w) {
			t.Errorf("sync log lacks a warning %q:\n%s", w, log.String())
		}
	}
	if got := e.targetString(`SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class WHERE relkind = 'v' AND relnamespace = 'public'::regnamespace`); got != "fine" {
		t.Errorf("target views = %s, want fine only", got)
	}
	if got := e.targetString(`SELECT count(*)::text FROM pg_proc WHERE proname = 'pin_of'`); got != "0" {
		t.Errorf("a function over an unreplicated table was created")
	}
	e.assertNothingToDo()
}

func TestChangedFunctionsAreReplacedOrRebuiltAndDroppedOnesDropped(t *testing.T) {
	e := newEnv(t, "")
	testenv.Exec(t, e.src, `CREATE TABLE t (id int PRIMARY KEY);
		CREATE FUNCTION body_changes(x int) RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT x + 1 $$;
		CREATE FUNCTION result_changes(x int) RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT x * 2 $$;
		CREATE VIEW doubled AS SELECT id, result_changes(id) AS d FROM t;
		CREATE FUNCTION goes_away() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;
		CREATE FUNCTION _acc(int, int) RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT coalesce($1, 0) + $2 $$;
		CREATE AGGREGATE total(int) (SFUNC = _acc, STYPE = int)`)
	e.syncOnce()
	testenv.Exec(t, e.dst, `CREATE FUNCTION mine() RETURNS int LANGUAGE sql AS $$ SELECT 7 $$`)
	testenv.Exec(t, e.src, `CREATE OR REPLACE FUNCTION body_changes(x int) RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT x + 100 $$;
		DROP VIEW doubled; DROP FUNCTION result_changes(int);
		CREATE FUNCTION result_changes(x int) RETURNS bigint LANGUAGE sql IMMUTABLE AS $$ SELECT x::bigint * 3 $$;
		CREATE VIEW doubled AS SELECT id, result_changes(id) AS d FROM t;
		DROP FUNCTION goes_away();
		DROP AGGREGATE total(int); DROP FUNCTION _acc(int, int)`)
	ddl := e.syncOnce()
	t.Logf("DDL:\n%s", ddl)
	assertOrder(t, ddl,
		// OR REPLACE cannot change a result type: the view over the
		// function goes first, then the function, and both come back.
		`DROP VIEW IF EXISTS "public"."doubled"`,
		`DROP FUNCTION IF EXISTS "public"."result_changes"(x integer)`,
		"CREATE OR REPLACE FUNCTION public.result_changes(x integer)\n RETURNS bigint",
		`CREATE OR REPLACE VIEW "public"."doubled" AS`,
		// Dropped routines go last, an aggregate before its function.
		`DROP AGGREGATE IF EXISTS "public"."total"(integer)`,
		`DROP FUNCTION IF EXISTS "public"."_acc"(integer, integer)`)
	assertOrder(t, ddl, "CREATE OR REPLACE FUNCTION public.body_changes(x integer)")
	assertOrder(t, ddl, `DROP FUNCTION IF EXISTS "public"."goes_away"()`)
	if strings.Contains(ddl, `DROP FUNCTION IF EXISTS "public"."body_changes"`) || strings.Contains(ddl, "mine") {
		t.Errorf("a body change must be replaced in place, and a target-only function left alone")
	}
	testenv.Exec(t, e.dst, `INSERT INTO t VALUES (5)`)
	if got := e.targetString(`SELECT body_changes(1) || ',' || (SELECT d FROM doubled) || ',' || mine()`); got != "101,15,7" {
		t.Errorf("target functions give %s, want 101,15,7", got)
	}
	e.assertNothingToDo()
	testenv.Exec(t, e.dst, `DROP FUNCTION mine()`)
	schematestSame(t, e)
}

// assertOrder fails t unless each of steps begins a statement of the
// plan ddl, in this order.
func assertOrder(t *testing.T, ddl string, steps ...string) {
	t.Helper()
	stmts := strings.Split(strings.TrimSuffix(ddl, ";\n"), ";\n")
	last := -1
	for _, want := range steps {
		at := slices.IndexFunc(stmts, func(s string) bool { return strings.HasPrefix(s, want) })
		switch {
		case at < 0:
			t.Errorf("plan lacks %q", want)
		case at < last:
			t.Errorf("%q is step %d, before the step %d it must follow", want, at+1, last+1)
		default:
			last = at
		}
	}
}

func TestChangedViewsAreReplacedOrRebuiltWithTheirDependents(t *testing.T) {
	e := newEnv(t, "")
	testenv.Exec(t, e.src, `CREATE TABLE c (id int PRIMARY KEY, name text, city text, score numeric(6,2));
		CREATE VIEW grows AS SELECT id, name FROM c;
		CREATE VIEW reordered AS SELECT id, name FROM c;
		CREATE VIEW over_reordered AS SELECT count(*) AS n FROM reordered;
		CREATE VIEW over_over AS SELECT n + 1 AS m FROM over_reordered;
		CREATE VIEW goes_away AS SELECT id FROM c;
		CREATE VIEW scores AS SELECT id, score FROM c;
		CREATE MATERIALIZED VIEW by_city AS SELECT city, count(*) AS n FROM c GROUP BY city;
		CREATE UNIQUE INDEX by_city_city ON by_city (city)`)
	e.syncOnce()
	testenv.Exec(t, e.dst, `CREATE VIEW mine AS SELECT id FROM c`)
	testenv.Exec(t, e.src, `CREATE OR REPLACE VIEW grows AS SELECT id, name, city FROM c;
		DROP VIEW over_over; DROP VIEW over_reordered; DROP VIEW reordered;
		CREATE VIEW reordered AS SELECT name, id FROM c;
		CREATE VIEW over_reordered AS SELECT count(*) AS n FROM reordered;
		CREATE VIEW over_over AS SELECT n + 1 AS m FROM over_reordered;
		DROP VIEW goes_away;
		DROP VIEW scores; ALTER TABLE c ALTER COLUMN score TYPE numeric(12,2); CREATE VIEW scores AS SELECT id, score FROM c;
		CREATE INDEX by_city_n ON by_city (n)`)
	ddl := e.syncOnce()
	t.Logf("DDL:\n%s", ddl)
	assertOrder(t, ddl,
		// Dependents are dropped first and created last.
		`DROP VIEW IF EXISTS "public"."over_over"`,
		`DROP VIEW IF EXISTS "public"."over_reordered"`,
		`DROP VIEW IF EXISTS "public"."reordered"`,
		`ALTER TABLE "public"."c" ALTER COLUMN "score" TYPE numeric(12,2)`,
		`CREATE OR REPLACE VIEW "public"."reordered" AS`,
		`CREATE OR REPLACE VIEW "public"."over_reordered" AS`,
		`CREATE OR REPLACE VIEW "public"."over_over" AS`)
	// A view over a retyped column goes before the ALTER TABLE.
	assertOrder(t, ddl, `DROP VIEW IF EXISTS "public"."scores"`, `ALTER TABLE "public"."c" ALTER COLUMN "score"`, `CREATE OR REPLACE VIEW "public"."scores"`)
	assertOrder(t, ddl, `DROP VIEW IF EXISTS "public"."goes_away"`)
	assertOrder(t, ddl, `CREATE OR REPLACE VIEW "public"."grows" AS`)
	assertOrder(t, ddl, `CREATE INDEX "by_city_n" ON "public"."by_city" USING btree (n)`)
	if strings.Contains(ddl, `DROP VIEW IF EXISTS "public"."grows"`) || strings.Contains(ddl, `"mine"`) || strings.Contains(ddl, `DROP MATERIALIZED VIEW`) {
		t.Errorf("a compatible change must be replaced in place, a target-only view and an unchanged materialized view left alone")
	}
	if got := e.targetString(`SELECT count(*)::text FROM pg_views WHERE viewname = 'mine'`); got != "1" {
		t.Errorf("the target's own view was dropped")
	}
	e.assertNothingToDo()
	testenv.Exec(t, e.dst, `DROP VIEW mine`)
	schematestSame(t, e)
}

func TestApplySchemaMovesFunctionsAndViews(t *testing.T) {
	e := newEnv(t, "rep")
	testenv.Exec(t, e.src, `CREATE SCHEMA shop; CREATE TABLE shop.orders (id int PRIMARY KEY, qty int);
		CREATE FUNCTION shop.twice(x int) RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT x * 2 $$;
		CREATE FUNCTION shop.order_count() RETURNS bigint LANGUAGE sql STABLE BEGIN ATOMIC SELECT count(*) FROM shop.orders; END;
		CREATE FUNCTION shop._sum(int, int) RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT coalesce($1, 0) + $2 $$;
		CREATE AGGREGATE shop.qty_sum(int) (SFUNC = shop._sum, STYPE = int, INITCOND = '0');
		CREATE VIEW shop.doubled AS SELECT id, shop.twice(qty) AS qty2 FROM shop.orders;
		CREATE VIEW shop.summary AS SELECT shop.qty_sum(qty2) AS total FROM shop.doubled;
		CREATE MATERIALIZED VIEW shop.counts AS SELECT shop.order_count() AS n;
		CREATE INDEX counts_n ON shop.counts (n)`)
	e.syncOnce()
	e.assertNothingToDo()
	testenv.Exec(t, e.dst, `INSERT INTO rep.orders VALUES (1, 2), (2, 5)`)
	if got := e.targetString(`SELECT (SELECT total FROM rep.summary) || ',' || rep.order_count()`); got != "14,2" {
		t.Errorf("rep.summary, rep.order_count() = %s, want 14,2", got)
	}
	if got := e.targetString(`SELECT count(*)::text FROM pg_namespace WHERE nspname = 'shop'`); got != "0" {
		t.Errorf("schema shop exists on the target: every object belongs in rep")
	}
	testenv.Exec(t, e.src, `CREATE OR REPLACE VIEW shop.doubled AS SELECT id, shop.twice(qty) AS qty2, qty FROM shop.orders`)
	if ddl := e.syncOnce(); !strings.Contains(ddl, `CREATE OR REPLACE VIEW "rep"."doubled" AS`) || !strings.Contains(ddl, "rep.twice(orders.qty)") {
		t.Errorf("plan:\n%s\nwant the view replaced in rep, over rep's function", ddl)
	}
	e.assertNothingToDo()
}

func TestRegistryFromBeforeFunctionSyncIsUpgraded(t *testing.T) {
	e := newEnv(t, "")
	// The registry as pgferry made it before functions and views.
	testenv.Exec(t, e.dst, `CREATE SCHEMA pgferry; CREATE TABLE pgferry.schema_objects (
		pipeline text NOT NULL, kind text NOT NULL CHECK (kind IN ('table', 'column', 'constraint', 'index')),
		src_id text NOT NULL, obj_schema text NOT NULL DEFAULT '', obj_name text NOT NULL,
		former text[] NOT NULL DEFAULT '{}', PRIMARY KEY (pipeline, kind, src_id))`)
	testenv.Exec(t, e.src, `CREATE TABLE t (id int PRIMARY KEY); CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;
		CREATE VIEW v AS SELECT id FROM t`)
	e.syncOnce()
	testenv.Exec(t, e.src, `DROP VIEW v; DROP FUNCTION f()`)
	if ddl := e.syncOnce(); ddl != "DROP VIEW IF EXISTS \"public\".\"v\";\nDROP FUNCTION IF EXISTS \"public\".\"f\"();\n" {
		t.Errorf("plan:\n%s\nwant the view and the function dropped", ddl)
	}
	e.assertNothingToDo()
}
