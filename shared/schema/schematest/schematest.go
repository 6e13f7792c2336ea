// Package schematest holds what schema sync tests share: a rich source
// schema and a catalog comparison between two databases.
package schematest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// RichDDL is a source schema with every kind of object schema sync
// creates: extensions (citext, hstore), an enum, a composite type, a
// domain whose check calls a function, a function used by a default, an
// owned sequence used by a default, identity, serial and generated
// columns, a collation, primary, unique, check and foreign keys, a
// partitioned table with a default partition, unique, partial and
// expression indexes, a standalone function, an aggregate over it, a
// trigger function, a procedure, a view over a view, and a materialized
// view with an index.
const RichDDL = `
CREATE EXTENSION IF NOT EXISTS citext;
CREATE EXTENSION IF NOT EXISTS hstore;
CREATE SCHEMA shop;
CREATE TYPE shop.status AS ENUM ('new', 'paid', 'shipped');
CREATE TYPE shop.amount AS (currency char(3), cents bigint);
CREATE FUNCTION shop.positive(v numeric) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$ SELECT v > 0 $$;
CREATE DOMAIN shop.price AS numeric(12,2) CONSTRAINT price_positive CHECK (shop.positive(VALUE));
CREATE FUNCTION shop.next_code() RETURNS text LANGUAGE plpgsql AS $f$ BEGIN RETURN 'C-' || floor(random() * 1e6)::int; END $f$;
CREATE SEQUENCE shop.order_no START 1000;
CREATE TABLE shop.customers (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email citext NOT NULL UNIQUE,
    code text NOT NULL DEFAULT shop.next_code(),
    tags hstore,
    created timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE shop.orders (
    id serial PRIMARY KEY,
    order_no bigint NOT NULL DEFAULT nextval('shop.order_no'),
    customer_id bigint NOT NULL REFERENCES shop.customers (id) ON DELETE CASCADE,
    status shop.status NOT NULL DEFAULT 'new',
    total shop.price,
    amount shop.amount,
    qty int NOT NULL CONSTRAINT qty_positive CHECK (qty > 0),
    unit numeric(10,2) NOT NULL,
    line_total numeric GENERATED ALWAYS AS (qty * unit) STORED,
    note text COLLATE "C"
);
ALTER SEQUENCE shop.order_no OWNED BY shop.orders.order_no;
CREATE INDEX orders_open ON shop.orders (customer_id) WHERE status <> 'shipped';
CREATE INDEX orders_lower_note ON shop.orders (lower(note));
CREATE UNIQUE INDEX orders_no ON shop.orders (order_no);
CREATE TABLE shop.events (region text NOT NULL, at date NOT NULL, payload jsonb, PRIMARY KEY (region, at)) PARTITION BY LIST (region);
CREATE TABLE shop.events_eu PARTITION OF shop.events FOR VALUES IN ('eu');
CREATE TABLE shop.events_other PARTITION OF shop.events DEFAULT;
CREATE INDEX events_at ON shop.events (at);
CREATE TABLE public.plain (id int PRIMARY KEY, v text);
CREATE FUNCTION shop._concat(acc text, v text) RETURNS text LANGUAGE sql IMMUTABLE
    AS $$ SELECT CASE WHEN acc IS NULL THEN v WHEN v IS NULL THEN acc ELSE acc || ', ' || v END $$;
CREATE AGGREGATE shop.concat_all(text) (SFUNC = shop._concat, STYPE = text);
CREATE FUNCTION shop.lower_email() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN NEW.email := lower(NEW.email); RETURN NEW; END $f$;
CREATE PROCEDURE shop.close_orders(before date) LANGUAGE sql AS $$ UPDATE shop.orders SET status = 'shipped' WHERE false $$;
CREATE VIEW shop.order_summary AS SELECT customer_id, count(*) AS orders, sum(qty) AS qty FROM shop.orders GROUP BY customer_id;
CREATE VIEW shop.big_customers WITH (security_barrier) AS SELECT customer_id, orders FROM shop.order_summary WHERE orders > 2;
CREATE MATERIALIZED VIEW shop.customer_emails AS SELECT id, shop.concat_all(email::text) OVER (ORDER BY id) AS so_far FROM shop.customers;
CREATE UNIQUE INDEX customer_emails_id ON shop.customer_emails (id);
`

// userObjects excludes system schemas and pgferry's own.
const userObjects = `n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%' AND n.nspname NOT LIKE 'pgferry%'`

// catalogQueries list, per kind of object, the rows that must be equal on
// source and target. Each query's rows are strings; order does not matter.
var catalogQueries = map[string]string{
	"columns (name, type, nullability, default)": `
		SELECT format('%s.%s.%s %s %s %s %s', n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
		              a.attnotnull, a.attidentity::text || a.attgenerated::text, coalesce(pg_get_expr(d.adbin, d.adrelid), ''))
		FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
		WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped AND ` + userObjects,
	"enum labels": `
		SELECT format('%s.%s %s', n.nspname, t.typname, string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder))
		FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid JOIN pg_namespace n ON n.oid = t.typnamespace
		WHERE ` + userObjects + ` GROUP BY n.nspname, t.typname`,
	"indexes": `
		SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ` + userObjects,
	"constraints": `
		SELECT format('%s %s %s', k.conrelid::regclass, k.conname, pg_get_constraintdef(k.oid))
		FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace WHERE k.contype <> 'n' AND ` + userObjects,
	"functions": `
		SELECT pg_get_functiondef(p.oid) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		WHERE p.prokind = 'f' AND ` + userObjects + `
		  AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_proc'::regclass AND e.objid = p.oid AND e.deptype = 'e')`,
	"procedures and aggregates": `
		SELECT format('%s.%s(%s) %s %s', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid), p.prokind,
		              coalesce((SELECT format('%s %s %s', a.aggtransfn, format_type(a.aggtranstype, NULL), a.agginitval)
		                        FROM pg_aggregate a WHERE a.aggfnoid = p.oid), pg_get_functiondef(p.oid)))
		FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		WHERE p.prokind IN ('a', 'p') AND ` + userObjects + `
		  AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_proc'::regclass AND e.objid = p.oid AND e.deptype = 'e')`,
	"views and materialized views": `
		SELECT format('%s.%s %s %s %s', n.nspname, c.relname, c.relkind, c.reloptions, pg_get_viewdef(c.oid))
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('v', 'm') AND ` + userObjects + `
		  AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_class'::regclass AND e.objid = c.oid AND e.deptype = 'e')`,
	"extensions": `SELECT extname FROM pg_extension`,
	"types": `
		SELECT format('%s.%s %s %s', n.nspname, t.typname, t.typtype, format_type(t.typbasetype, t.typtypmod))
		FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace LEFT JOIN pg_class c ON c.oid = t.typrelid
		WHERE (t.typtype IN ('e', 'd') OR c.relkind = 'c') AND ` + userObjects + `
		  AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.objid IN (t.oid, t.typrelid) AND e.deptype = 'e')`,
}

// Rows returns the comparable catalog rows of a database, by kind.
func Rows(ctx context.Context, p *pgxpool.Pool) (map[string][]string, error) {
	return RowsOf(ctx, p, catalogQueries)
}

// RowsOf runs each query of queries (one text column per row) in one
// transaction with an empty search_path, so names come out qualified, and
// returns the sorted rows by the query's key.
func RowsOf(ctx context.Context, p *pgxpool.Pool, queries map[string]string) (map[string][]string, error) {
	out := map[string][]string{}
	err := pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL search_path = ''"); err != nil {
			return err
		}
		for kind, q := range queries {
			rows, err := tx.Query(ctx, q)
			if err != nil {
				return fmt.Errorf("%s: %w", kind, err)
			}
			got, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return fmt.Errorf("%s: %w", kind, err)
			}
			slices.Sort(got)
			out[kind] = got
		}
		return nil
	})
	return out, err
}

// AssertSameCatalog fails t unless columns, enum labels, indexes,
// constraints, functions, extensions and user types of src and dst are the
// same (pgferry's own schemas left out).
func AssertSameCatalog(t testing.TB, src, dst *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	a, err := Rows(ctx, src)
	if err != nil {
		t.Fatalf("read source catalog: %v", err)
	}
	b, err := Rows(ctx, dst)
	if err != nil {
		t.Fatalf("read target catalog: %v", err)
	}
	for kind := range catalogQueries {
		if d := diffRows(a[kind], b[kind]); d != "" {
			t.Errorf("%s differ between source and target:\n%s", kind, d)
		}
	}
}

func diffRows(a, b []string) string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, "  only on source: "+x)
		}
	}
	for _, x := range b {
		if !slices.Contains(a, x) {
			out = append(out, "  only on target: "+x)
		}
	}
	return strings.Join(out, "\n")
}
