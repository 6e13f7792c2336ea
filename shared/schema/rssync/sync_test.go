package rssync_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/redshiftdata"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/redshift"
	"github.com/pgferry/pgferry/shared/schema/rssync"
	"github.com/pgferry/pgferry/shared/testenv"
)

func logger() *slog.Logger {
	if os.Getenv("PGFERRY_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// env is a source database and a Redshift target on the stand-in (whose
// backend database is dst, read directly to check what it holds).
type env struct {
	t    *testing.T
	src  *pgxpool.Pool
	dst  *pgxpool.Pool // the stand-in's backend database
	ex   redshift.Exec
	sync *rssync.Syncer
}

func newEnv(t *testing.T, targetExtra string) *env {
	t.Helper()
	ac := testenv.AWSConfig(t)
	if os.Getenv("AWS_ENDPOINT_URL_REDSHIFT_DATA") == "" {
		t.Fatal("AWS_ENDPOINT_URL_REDSHIFT_DATA is not set: localstack/up starts the Redshift stand-in")
	}
	srcDSN, dstDSN := testenv.NewDB(t, "rssrc"), testenv.NewDB(t, "rsdst")
	u, err := url.Parse(dstDSN)
	if err != nil {
		t.Fatal(err)
	}
	db := strings.TrimPrefix(u.Path, "/")
	yaml := `
name: rssync
hash_salt: "0123456789abcdef0123"
source: {dsn: "` + srcDSN + `", tables: ["public.*"]}
targets:
  wh:
    kind: redshift
    data_api: {workgroup: wg-test, database: ` + db + `}
    staging: {bucket: rssync-test}
    copy_role_arn: "arn:aws:iam::000000000000:role/copy"
` + targetExtra
	cfg, err := config.Parse([]byte(yaml), os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, src: testenv.Pool(t, srcDSN), dst: testenv.Pool(t, dstDSN)}
	e.ex = redshift.NewDataAPI(redshiftdata.NewFromConfig(ac), *cfg.Targets["wh"].DataAPI)
	e.sync = rssync.New(e.src, e.ex, cfg, "wh", logger())
	return e
}

func (e *env) syncSQL() string {
	e.t.Helper()
	plan, err := e.sync.Sync(context.Background())
	if err != nil {
		e.t.Fatalf("sync: %v", err)
	}
	again, err := e.sync.Plan(context.Background())
	if err != nil {
		e.t.Fatalf("plan after sync: %v", err)
	}
	if !again.Empty() {
		e.t.Fatalf("plan after sync is not empty:\n%s", again.SQL())
	}
	return plan.SQL()
}

// columns returns "name type" of a target table, as the stand-in's
// backend holds it.
func (e *env) columns(schema, table string) string {
	e.t.Helper()
	rows, err := e.dst.Query(context.Background(), `SELECT column_name || ' ' || format_type(a.atttypid, a.atttypmod)
		FROM information_schema.columns c JOIN pg_attribute a ON a.attrelid = format('%I.%I', c.table_schema, c.table_name)::regclass AND a.attname = c.column_name
		WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position`, schema, table)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, s)
	}
	return strings.Join(out, ", ")
}

func (e *env) query(sql string) string {
	e.t.Helper()
	var s string
	if err := e.dst.QueryRow(context.Background(), sql).Scan(&s); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
	return s
}

func TestSyncFollowsTheSource(t *testing.T) {
	e := newEnv(t, "")
	testenv.Exec(t, e.src, `CREATE TABLE orders (id bigint PRIMARY KEY, note varchar(10), total numeric(10,2), qty integer,
		doc jsonb, made timestamptz, code text)`)
	testenv.Exec(t, e.src, `CREATE INDEX orders_made ON orders (made)`)

	// Build from an empty target; --plan's text is the DDL.
	plan, err := e.sync.Plan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := `CREATE SCHEMA IF NOT EXISTS "public";
CREATE TABLE "public"."orders" (
    "id" bigint,
    "note" varchar(40),
    "total" numeric(10,2),
    "qty" integer,
    "doc" super,
    "made" timestamptz,
    "code" varchar(65535),
    PRIMARY KEY ("id")
) DISTSTYLE AUTO SORTKEY AUTO;
`
	// The stand-in's backend already has schema public: only the table.
	want = strings.TrimPrefix(want, `CREATE SCHEMA IF NOT EXISTS "public";`+"\n")
	if got := plan.SQL(); got != want {
		t.Fatalf("plan:\n%s\nwant:\n%s", got, want)
	}
	if !strings.Contains(strings.Join(plan.Warnings, "\n"), "index orders_made on public.orders: Redshift has no secondary indexes") {
		t.Fatalf("no warning for the index: %q", plan.Warnings)
	}
	if got := e.syncSQL(); got != want {
		t.Fatalf("sync ran:\n%s", got)
	}
	if got, w := e.columns("public", "orders"), "id bigint, note character varying(40), total numeric(10,2), qty integer, doc jsonb, made timestamp with time zone, code character varying(65535)"; got != w {
		t.Fatalf("target columns:\n%s\nwant\n%s", got, w)
	}
	if err := e.ex.Tx(context.Background(), []string{`INSERT INTO public.orders (id, note, total, qty, code, doc) VALUES (1, 'abc', 1.50, 7, 'x', JSON_PARSE('{"a":1}'))`}); err != nil {
		t.Fatal(err)
	}

	// Add a table and a column, drop a column, rename a column and the
	// table, widen a varchar, change a type: in one round.
	testenv.Exec(t, e.src, `CREATE TABLE items (k text PRIMARY KEY, n smallint)`)
	testenv.Exec(t, e.src, `ALTER TABLE orders ADD COLUMN extra boolean`)
	testenv.Exec(t, e.src, `ALTER TABLE orders DROP COLUMN made`)
	testenv.Exec(t, e.src, `ALTER TABLE orders RENAME COLUMN total TO amount`)
	testenv.Exec(t, e.src, `ALTER TABLE orders RENAME TO purchases`)
	testenv.Exec(t, e.src, `ALTER TABLE purchases ALTER COLUMN note TYPE varchar(50)`)
	testenv.Exec(t, e.src, `ALTER TABLE purchases ALTER COLUMN qty TYPE bigint`)
	testenv.Exec(t, e.src, `ALTER TABLE purchases ALTER COLUMN doc TYPE text`)
	want = `ALTER TABLE "public"."orders" RENAME TO "purchases";
ALTER TABLE "public"."purchases" DROP COLUMN "made";
ALTER TABLE "public"."purchases" RENAME COLUMN "total" TO "amount";
CREATE TABLE "public"."items" (
    "k" varchar(65535),
    "n" smallint,
    PRIMARY KEY ("k")
) DISTSTYLE AUTO SORTKEY AUTO;
ALTER TABLE "public"."purchases" ADD COLUMN "qty__pgferry_retype" bigint;
UPDATE "public"."purchases" SET "qty__pgferry_retype" = CAST("qty" AS bigint);
ALTER TABLE "public"."purchases" DROP COLUMN "qty";
ALTER TABLE "public"."purchases" RENAME COLUMN "qty__pgferry_retype" TO "qty";
ALTER TABLE "public"."purchases" ADD COLUMN "doc__pgferry_retype" varchar(65535);
UPDATE "public"."purchases" SET "doc__pgferry_retype" = "json_serialize"("doc");
ALTER TABLE "public"."purchases" DROP COLUMN "doc";
ALTER TABLE "public"."purchases" RENAME COLUMN "doc__pgferry_retype" TO "doc";
ALTER TABLE "public"."purchases" ADD COLUMN "extra" boolean;
ALTER TABLE "public"."purchases" ALTER COLUMN "note" TYPE varchar(200);
`
	if got := e.syncSQL(); got != want {
		t.Fatalf("sync ran:\n%s\nwant:\n%s", got, want)
	}
	if got, w := e.columns("public", "purchases"), "id bigint, note character varying(200), amount numeric(10,2), code character varying(65535), qty bigint, doc character varying(65535), extra boolean"; got != w {
		t.Fatalf("target columns:\n%s\nwant\n%s", got, w)
	}
	// The renames and the type change kept the row's data.
	if got := e.query(`SELECT id || '/' || note || '/' || amount || '/' || qty || '/' || code || '/' || replace(doc, ' ', '') FROM public.purchases`); got != `1/abc/1.50/7/x/{"a":1}` {
		t.Fatalf("row after the round: %s", got)
	}
	if got := e.columns("public", "items"); got != "k character varying(65535), n smallint" {
		t.Fatalf("items: %s", got)
	}

	// A table dropped on the source goes; a table made by hand stays.
	if err := e.ex.Tx(context.Background(), []string{`CREATE TABLE public.by_hand (a integer)`}); err != nil {
		t.Fatal(err)
	}
	testenv.Exec(t, e.src, `DROP TABLE items`)
	if got := e.syncSQL(); got != `DROP TABLE "public"."items";`+"\n" {
		t.Fatalf("sync ran:\n%s", got)
	}
	if n, err := e.sync.SyncSequences(context.Background()); n != 0 || err != nil {
		t.Fatalf("SyncSequences = %d, %v", n, err)
	}
}

func TestSyncShapesTablesByRules(t *testing.T) {
	e := newEnv(t, `    tables: ["public.kept"]
    deletes: soft
    rules:
      - {table: public.kept, columns: {exclude: [secret]}, hash: [email]}
`)
	testenv.Exec(t, e.src, `CREATE TABLE kept (id integer PRIMARY KEY, email varchar(20), secret text, age smallint)`)
	testenv.Exec(t, e.src, `CREATE TABLE skipped (id integer PRIMARY KEY)`)
	got := e.syncSQL()
	if strings.Contains(got, "skipped") || strings.Contains(got, "secret") {
		t.Fatalf("sync ran DDL for what the rules leave out:\n%s", got)
	}
	if c, w := e.columns("public", "kept"), "id integer, email character varying(65535), age smallint, _pgferry_deleted_at timestamp with time zone"; c != w {
		t.Fatalf("kept: %s\nwant %s", c, w)
	}
}

// A plan longer than one Data API batch takes (40 statements) runs in
// several transactions, the registry with the last; the next plan is
// empty.
func TestSyncSplitsAPlanLargerThanOneBatch(t *testing.T) {
	e := newEnv(t, "")
	for i := range 45 {
		testenv.Exec(t, e.src, fmt.Sprintf(`CREATE TABLE t%02d (id integer PRIMARY KEY, v text)`, i))
	}
	got := e.syncSQL()
	if n := strings.Count(got, "CREATE TABLE"); n != 45 {
		t.Fatalf("created %d tables", n)
	}
	if n := e.query(`SELECT count(*)::text FROM information_schema.tables WHERE table_schema = 'public' AND table_name LIKE 't%'`); n != "45" {
		t.Fatalf("target has %s tables", n)
	}
}
