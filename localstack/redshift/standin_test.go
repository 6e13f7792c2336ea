package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/redshiftdata"
	"github.com/aws/aws-sdk-go-v2/service/redshiftdata/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgferry/pgferry/shared/testenv"
)

// rs is a stand-in under test: its own server in this process, reached
// through the real Data API client, executing on a fresh database of the
// test cluster.
type rs struct {
	t      *testing.T
	client *redshiftdata.Client
	s3     *s3.Client
	db     string        // the Data API's Database
	pg     *pgxpool.Pool // direct access to that database, to check effects
	srv    *server
}

func newRS(t *testing.T, pageRows int) *rs {
	t.Helper()
	dsn := testenv.NewDB(t, "rsstandin")
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testenv.AWSConfig(t)
	s3c := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	be := newBackend(testenv.ClusterDSN(t), s3c, log)
	t.Cleanup(be.close)
	srv := newServer(be, log, pageRows)
	t.Cleanup(func() { srv.closeSessions(5 * time.Second) })
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	client := redshiftdata.NewFromConfig(cfg, func(o *redshiftdata.Options) { o.BaseEndpoint = aws.String(hs.URL) })
	return &rs{t: t, client: client, s3: s3c, db: strings.TrimPrefix(u.Path, "/"), pg: testenv.Pool(t, dsn), srv: srv}
}

// wait polls DescribeStatement until the statement ends, as a Data API
// client must.
func (r *rs) wait(id *string) *redshiftdata.DescribeStatementOutput {
	r.t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for {
		d, err := r.client.DescribeStatement(ctx, &redshiftdata.DescribeStatementInput{Id: id})
		if err != nil {
			r.t.Fatalf("DescribeStatement: %v", err)
		}
		switch d.Status {
		case types.StatusStringFinished, types.StatusStringFailed, types.StatusStringAborted:
			return d
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("statement %s still %s", *id, d.Status)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (r *rs) exec(sql string, params ...string) *redshiftdata.DescribeStatementOutput {
	r.t.Helper()
	in := &redshiftdata.ExecuteStatementInput{Sql: aws.String(sql), Database: aws.String(r.db), WorkgroupName: aws.String("wg")}
	for i := 0; i+1 < len(params); i += 2 {
		in.Parameters = append(in.Parameters, types.SqlParameter{Name: aws.String(params[i]), Value: aws.String(params[i+1])})
	}
	out, err := r.client.ExecuteStatement(context.Background(), in)
	if err != nil {
		r.t.Fatalf("ExecuteStatement %.60q: %v", sql, err)
	}
	return r.wait(out.Id)
}

func (r *rs) ok(sql string, params ...string) *redshiftdata.DescribeStatementOutput {
	r.t.Helper()
	d := r.exec(sql, params...)
	if d.Status != types.StatusStringFinished {
		r.t.Fatalf("%s: %s %s", sql, d.Status, aws.ToString(d.Error))
	}
	return d
}

func (r *rs) batch(sqls ...string) *redshiftdata.DescribeStatementOutput {
	r.t.Helper()
	out, err := r.client.BatchExecuteStatement(context.Background(), &redshiftdata.BatchExecuteStatementInput{
		Sqls: sqls, Database: aws.String(r.db), ClusterIdentifier: aws.String("c1"), DbUser: aws.String("u")})
	if err != nil {
		r.t.Fatalf("BatchExecuteStatement: %v", err)
	}
	return r.wait(out.Id)
}

// rows returns a finished statement's records, following NextToken.
func (r *rs) rows(id *string) ([][]types.Field, []types.ColumnMetadata) {
	r.t.Helper()
	var recs [][]types.Field
	var meta []types.ColumnMetadata
	var token *string
	for {
		out, err := r.client.GetStatementResult(context.Background(), &redshiftdata.GetStatementResultInput{Id: id, NextToken: token})
		if err != nil {
			r.t.Fatalf("GetStatementResult: %v", err)
		}
		recs = append(recs, out.Records...)
		meta = out.ColumnMetadata
		if token = out.NextToken; token == nil {
			return recs, meta
		}
	}
}

// scalar runs a one-value query through the stand-in.
func (r *rs) scalar(sql string, params ...string) string {
	r.t.Helper()
	d := r.ok(sql, params...)
	recs, _ := r.rows(d.Id)
	if len(recs) != 1 || len(recs[0]) != 1 {
		r.t.Fatalf("%s: %d records, want one value", sql, len(recs))
	}
	return fieldText(recs[0][0])
}

func fieldText(f types.Field) string {
	switch v := f.(type) {
	case *types.FieldMemberStringValue:
		return v.Value
	case *types.FieldMemberLongValue:
		return strconv.FormatInt(v.Value, 10)
	case *types.FieldMemberBooleanValue:
		if v.Value {
			return "true"
		}
		return "false"
	case *types.FieldMemberIsNull:
		return "NULL"
	case *types.FieldMemberBlobValue:
		return "blob:" + string(v.Value)
	case *types.FieldMemberDoubleValue:
		return "double"
	}
	return "?"
}

// backendCount counts on the backend directly.
func (r *rs) backendCount(sql string, args ...any) int {
	r.t.Helper()
	var n int
	if err := r.pg.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		r.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func TestStandinRefusesPostgreSQLOnlySQL(t *testing.T) {
	r := newRS(t, 1000)
	r.ok("CREATE TABLE t (id int, v varchar(10))")
	r.ok("CREATE TABLE t2 (id int)")
	long := strings.Repeat("a", 128)
	cases := []struct {
		rule string
		sql  string
	}{
		{"on-conflict", "INSERT INTO t VALUES (1, 'a') ON CONFLICT (id) DO NOTHING"},
		{"on-conflict", "INSERT INTO t VALUES (1, 'a') ON CONFLICT (id) DO UPDATE SET v = excluded.v"},
		{"returning", "INSERT INTO t VALUES (1, 'a') RETURNING id"},
		{"returning", "UPDATE t SET v = 'b' RETURNING id"},
		{"returning", "DELETE FROM t RETURNING id"},
		{"on-commit", "CREATE TEMP TABLE s ON COMMIT DROP AS SELECT * FROM t"},
		{"on-commit", "CREATE TEMP TABLE s (id int) ON COMMIT DELETE ROWS"},
		{"with-no-data", "CREATE TEMP TABLE s AS SELECT * FROM t WITH NO DATA"},
		{"for-update", "SELECT * FROM t FOR UPDATE"},
		{"for-update", "SELECT * FROM t WHERE id = 1 FOR SHARE"},
		{"for-update", "SELECT id FROM t FOR NO KEY UPDATE SKIP LOCKED"},
		{"advisory-lock", "SELECT pg_advisory_xact_lock(42)"},
		{"advisory-lock", "SELECT pg_try_advisory_lock(1, 2)"},
		{"copy-from-stdin", "COPY t FROM STDIN"},
		{"copy-from-stdin", "COPY t (id, v) FROM STDIN WITH (FORMAT binary)"},
		{"copy-from-file", "COPY t FROM '/tmp/t.csv' CSV"},
		{"copy-to", "COPY t TO STDOUT"},
		{"sequence", "CREATE SEQUENCE s"},
		{"sequence", "SELECT nextval('s')"},
		{"sequence", "CREATE TABLE x (id bigint DEFAULT nextval('s'))"},
		{"serial", "CREATE TABLE x (id serial)"},
		{"serial", "CREATE TABLE x (id bigserial, v int)"},
		{"identity", "CREATE TABLE x (id int GENERATED ALWAYS AS IDENTITY)"},
		{"identity-column", "CREATE TABLE x (id int IDENTITY(1, 1), v int)"},
		{"create-index", "CREATE INDEX ON t (id)"},
		{"create-index", "CREATE UNIQUE INDEX t_id ON t (id)"},
		{"array", "SELECT ARRAY[1, 2]"},
		{"array", "SELECT array_agg(id) FROM t"},
		{"array", "SELECT unnest(x) FROM t"},
		{"array-type", "CREATE TABLE x (a int[])"},
		{"array-type", "SELECT '{1}'::int[]"},
		{"any-array", "SELECT * FROM t WHERE id = ANY(:ids)"},
		{"multiple-add-column", "ALTER TABLE t ADD COLUMN a int, ADD COLUMN b int"},
		{"multiple-alter-actions", "ALTER TABLE t ADD COLUMN a int, DROP COLUMN v"},
		{"alter-type-not-varchar", "ALTER TABLE t ALTER COLUMN id TYPE bigint"},
		{"alter-type-using", "ALTER TABLE t ALTER COLUMN v TYPE varchar(20) USING v::varchar"},
		{"alter-action", "ALTER TABLE t ALTER COLUMN v SET DEFAULT 'x'"},
		{"alter-action", "ALTER TABLE t ALTER COLUMN v SET NOT NULL"},
		{"add-column-constraint", "ALTER TABLE t ADD COLUMN k int PRIMARY KEY"},
		{"add-column-constraint", "ALTER TABLE t ADD COLUMN k int UNIQUE"},
		{"identifier-too-long", "CREATE TABLE " + long + " (id int)"},
		{"identifier-too-long", `SELECT 1 AS "` + long + `"`},
		{"identifier-over-63-bytes", "CREATE TABLE " + long[:100] + " (id int)"},
		{"json-type", "CREATE TABLE x (doc jsonb)"},
		{"json-type", "CREATE TABLE x (doc json)"},
		{"json-type", "SELECT '{}'::jsonb"},
		{"uuid-type", "CREATE TABLE x (id uuid)"},
		{"uuid-type", "SELECT gen_random_uuid()"},
		{"network-type", "CREATE TABLE x (ip inet)"},
		{"network-type", "CREATE TABLE x (net cidr, mac macaddr)"},
		{"range-type", "CREATE TABLE x (r int4range)"},
		{"range-type", "CREATE TABLE x (r tstzrange)"},
		{"enum-type", "CREATE TYPE mood AS ENUM ('sad', 'ok')"},
		{"unknown-type", "CREATE TABLE x (m mood)"},
		{"interval-column", "CREATE TABLE x (d interval)"},
		{"bytea-type", "CREATE TABLE x (b bytea)"},
		{"unsupported-type", "CREATE TABLE x (m money)"},
		{"unsupported-type", `CREATE TABLE x (c "char")`},
		{"unsupported-type", "CREATE TABLE x (x xml)"},
		{"session-replication-role", "SET session_replication_role = replica"},
		{"session-replication-role", "SET LOCAL session_replication_role TO replica"},
		{"set-parameter", "SET lock_timeout = '1s'"},
		{"is-distinct-from", "SELECT * FROM t WHERE id IS DISTINCT FROM 1"},
		{"is-distinct-from", "DELETE FROM t USING t2 WHERE t.id IS NOT DISTINCT FROM t2.id"},
		{"values-as-table", "SELECT * FROM (VALUES (1), (2)) AS v (x)"},
		{"values-as-table", "VALUES (1)"},
		{"with-before-insert", "WITH x AS (SELECT 1 AS id) INSERT INTO t (id) SELECT id FROM x"},
		{"data-modifying-cte", "WITH d AS (DELETE FROM t WHERE id = 1) SELECT 1"},
		{"delete-alias", "DELETE FROM t AS d WHERE d.id = 1"},
		{"delete-alias", "DELETE FROM t d USING t2 WHERE d.id = t2.id"},
		{"merge-source", "MERGE INTO t USING (SELECT 1 AS id) s ON t.id = s.id WHEN MATCHED THEN DELETE WHEN NOT MATCHED THEN INSERT (id) VALUES (s.id)"},
		{"merge-with", "WITH s AS (SELECT * FROM t2) MERGE INTO t USING t2 ON t.id = t2.id WHEN MATCHED THEN DELETE WHEN NOT MATCHED THEN INSERT (id) VALUES (t2.id)"},
		{"merge-clause", "MERGE INTO t USING t2 ON t.id = t2.id WHEN MATCHED AND t.v IS NULL THEN DELETE WHEN NOT MATCHED THEN INSERT (id) VALUES (t2.id)"},
		{"merge-clause", "MERGE INTO t USING t2 ON t.id = t2.id WHEN MATCHED THEN UPDATE SET v = 'x' WHEN MATCHED THEN DELETE WHEN NOT MATCHED THEN INSERT (id) VALUES (t2.id)"},
		{"savepoint", "SAVEPOINT a"},
		{"savepoint", "ROLLBACK TO SAVEPOINT a"},
		{"leader-node-function", "SELECT generate_series(1, 3)"},
		{"leader-node-function", "INSERT INTO t (id, v) SELECT 1, now()::varchar"},
		{"leader-node-function", "CREATE TABLE x (ts timestamp DEFAULT now())"},
		{"leader-node-function", "CREATE TABLE x (ts timestamptz DEFAULT CURRENT_TIMESTAMP)"},
		{"trigger", "CREATE TRIGGER trg BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()"},
		{"listen-notify", "LISTEN changes"},
		{"listen-notify", "NOTIFY changes"},
		{"discard", "DISCARD ALL"},
		{"extension", "CREATE EXTENSION pgcrypto"},
		{"set-schema", "ALTER TABLE t SET SCHEMA other"},
		{"check-constraint", "CREATE TABLE x (a int CHECK (a > 0))"},
		{"distinct-on", "SELECT DISTINCT ON (id) id, v FROM t"},
		{"lock-mode", "LOCK t IN SHARE MODE"},
		{"lock-mode", "LOCK TABLE t NOWAIT"},
		{"unlogged", "CREATE UNLOGGED TABLE x (a int)"},
		{"partition", "CREATE TABLE x (a int) PARTITION BY RANGE (a)"},
		{"inherits", "CREATE TABLE x (b int) INHERITS (t)"},
		{"missing-function", "SELECT string_agg(v, ',') FROM t"},
		{"json-function", "SELECT json_build_object('a', id) FROM t"},
		{"aggregate-filter", "SELECT count(*) FILTER (WHERE id > 1) FROM t"},
		{"varchar-length", "CREATE TABLE x (a varchar(70000))"},
		{"numeric-precision", "CREATE TABLE x (a numeric(40, 2))"},
		{"positional-parameter", "SELECT * FROM t WHERE id = $1"},
		{"multiple-statements", "SELECT 1; SELECT 2"},
		{"do-block", "DO $$BEGIN END$$"},
		{"two-phase-commit", "PREPARE TRANSACTION 'x'"},
		{"user-type", "CREATE DOMAIN d AS int"},
	}
	for _, c := range cases {
		var d *redshiftdata.DescribeStatementOutput
		if strings.Contains(c.sql, ":ids") {
			d = r.exec(c.sql, "ids", "{1,2}")
		} else {
			d = r.exec(c.sql)
		}
		msg := aws.ToString(d.Error)
		if d.Status != types.StatusStringFailed || !strings.HasPrefix(msg, "ERROR: ") ||
			!(strings.Contains(msg, "[redshift stand-in refused: "+c.rule+"]") || strings.Contains(msg, "[redshift stand-in unsupported: "+c.rule+"]")) {
			t.Errorf("%s\n  got %s %q, want FAILED by rule %s", c.sql, d.Status, msg, c.rule)
		}
	}

	// Inside a transaction block (a batch), these are refused as well.
	for _, c := range []struct{ rule, sql string }{
		{"alter-type-in-transaction", "ALTER TABLE t ALTER COLUMN v TYPE varchar(20)"},
		{"truncate-in-transaction", "TRUNCATE t"},
		{"vacuum-in-transaction", "VACUUM t"},
		{"transaction-control-in-batch", "COMMIT"},
	} {
		d := r.batch("INSERT INTO t VALUES (7, 'x')", c.sql)
		msg := aws.ToString(d.Error)
		if d.Status != types.StatusStringFailed || !strings.Contains(msg, c.rule) {
			t.Errorf("batch with %s: got %s %q, want FAILED by rule %s", c.sql, d.Status, msg, c.rule)
		}
	}

	// Nothing refused reached the backend.
	if n := r.backendCount(`SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relname NOT IN ('t', 't2')`); n != 0 {
		t.Errorf("%d relations (indexes, sequences, tables) were created by refused statements", n)
	}
	if n := r.backendCount("SELECT count(*) FROM t"); n != 0 {
		t.Errorf("t has %d rows after refused statements and failed batches, want 0", n)
	}
	if n := r.backendCount("SELECT count(*) FROM pg_type WHERE typname = 'mood'"); n != 0 {
		t.Error("the enum type was created")
	}
}

func TestStandinLimitsSQLSize(t *testing.T) {
	r := newRS(t, 1000)
	// The Data API takes 100 KB of SQL per statement, synchronously.
	big := "SELECT '" + strings.Repeat("x", 101<<10) + "'"
	_, err := r.client.ExecuteStatement(context.Background(), &redshiftdata.ExecuteStatementInput{
		Sql: aws.String(big), Database: aws.String(r.db), WorkgroupName: aws.String("wg")})
	var ve *types.ValidationException
	if !errors.As(err, &ve) || !strings.Contains(ve.ErrorMessage(), "100 KB") {
		t.Fatalf("101 KB statement: err %v, want ValidationException about 100 KB", err)
	}
	// Redshift's own limit (16 MB), for SQL that comes another way.
	_, err = plan("SELECT '"+strings.Repeat("x", 16<<20)+"'", nil, gateCtx{})
	if err == nil || !strings.Contains(err.Error(), "statement-too-large") {
		t.Fatalf("16 MB statement: %v, want statement-too-large", err)
	}
}

func TestStandinRunsRedshiftDDLAndDML(t *testing.T) {
	r := newRS(t, 2)
	r.ok(`CREATE TABLE "Orders" (ID int PRIMARY KEY, "Name" varchar(5) NOT NULL, note text, amount numeric,
		payload super, raw varbyte(4), code char(2), created timestamptz ENCODE az64, UNIQUE (note))
		DISTSTYLE AUTO SORTKEY AUTO`)
	// Identifiers fold to lower case, quoted or not.
	if n := r.backendCount(`SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.orders'::regclass AND attname IN ('id', 'name', 'note') `); n != 3 {
		t.Fatalf("orders has %d of the lower-case columns id, name, note", n)
	}
	if got := r.scalar(`SELECT count(*) FROM "ORDERS"`); got != "0" {
		t.Fatalf(`SELECT from "ORDERS": %s`, got)
	}
	// Primary and unique keys are not enforced: duplicates are rows.
	d := r.ok(`INSERT INTO orders (id, name, note) VALUES (1, 'a', 'n'), (1, 'a', 'n')`)
	if d.ResultRows != 2 {
		t.Fatalf("INSERT ResultRows %d, want 2", d.ResultRows)
	}
	if n := r.backendCount("SELECT count(*) FROM orders WHERE id = 1"); n != 2 {
		t.Fatalf("%d rows with id 1, want the duplicate kept (2)", n)
	}
	if n := r.backendCount("SELECT count(*) FROM pg_constraint WHERE conrelid = 'orders'::regclass AND contype IN ('p', 'u')"); n != 0 {
		t.Fatalf("%d key constraints on orders, want none", n)
	}
	if n := r.backendCount("SELECT count(*) FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'id' AND attnotnull"); n != 1 {
		t.Fatal("the primary-key column is nullable")
	}

	// VARCHAR lengths are bytes.
	r.ok(`INSERT INTO orders (id, name) VALUES (2, 'éé')`) // 4 bytes
	for _, v := range []string{"ééé", "abcdef"} {
		d = r.exec(`INSERT INTO orders (id, name) VALUES (3, :v)`, "v", v)
		if d.Status != types.StatusStringFailed || aws.ToString(d.Error) != "ERROR: value too long for type character varying(5)" {
			t.Errorf("name %q (%d bytes): %s %q, want value too long for character varying(5)", v, len(v), d.Status, aws.ToString(d.Error))
		}
	}
	// TEXT is VARCHAR(256), NUMERIC is NUMERIC(18,0).
	d = r.exec(`INSERT INTO orders (id, name, note) VALUES (4, 'x', :n)`, "n", strings.Repeat("a", 257))
	if !strings.Contains(aws.ToString(d.Error), "character varying(256)") {
		t.Errorf("257-byte TEXT value: %s %q", d.Status, aws.ToString(d.Error))
	}
	r.ok(`INSERT INTO orders (id, name, amount) VALUES (5, 'x', 1.6)`)
	if got := r.scalar(`SELECT amount FROM orders WHERE id = 5`); got != "2" {
		t.Errorf("NUMERIC without precision stored 1.6 as %s, want 2 (NUMERIC(18,0))", got)
	}
	// CHAR holds single-byte characters; VARBYTE counts bytes.
	d = r.exec(`INSERT INTO orders (id, name, code) VALUES (6, 'x', 'é')`)
	if !strings.Contains(aws.ToString(d.Error), "Multibyte character not supported for CHAR") {
		t.Errorf("multibyte CHAR: %s %q", d.Status, aws.ToString(d.Error))
	}
	d = r.exec(`INSERT INTO orders (id, name, raw) VALUES (6, 'x', 'abcde')`)
	if !strings.Contains(aws.ToString(d.Error), "binary varying(4)") {
		t.Errorf("5-byte VARBYTE(4): %s %q", d.Status, aws.ToString(d.Error))
	}
	// SUPER holds JSON.
	r.ok(`INSERT INTO orders (id, name, payload, raw, created) VALUES (7, 'x', json_parse(:p), 'ab', '2024-05-06 07:08:09+02')`, "p", `{"a": [1, "b"]}`)

	// Typed fields through GetStatementResult, with paging (2 rows a page).
	d = r.ok(`SELECT id, name, payload, raw, created, amount, id > 1 AS big, note FROM orders WHERE id >= 2 ORDER BY id`)
	recs, meta := r.rows(d.Id)
	if len(recs) != 3 {
		t.Fatalf("%d records, want 3 over two pages", len(recs))
	}
	wantTypes := []string{"int4", "varchar", "super", "varbyte", "timestamptz", "numeric", "bool", "varchar"}
	for i, m := range meta {
		if aws.ToString(m.TypeName) != wantTypes[i] {
			t.Errorf("column %s has typeName %s, want %s", aws.ToString(m.Name), aws.ToString(m.TypeName), wantTypes[i])
		}
	}
	last := recs[2]
	if v, ok := last[0].(*types.FieldMemberLongValue); !ok || v.Value != 7 {
		t.Errorf("id field %#v, want longValue 7", last[0])
	}
	if v, ok := last[2].(*types.FieldMemberStringValue); !ok || v.Value != `{"a": [1, "b"]}` {
		t.Errorf("payload field %#v", last[2])
	}
	if v, ok := last[3].(*types.FieldMemberBlobValue); !ok || string(v.Value) != "ab" {
		t.Errorf("raw field %#v, want blob ab", last[3])
	}
	if v, ok := last[4].(*types.FieldMemberStringValue); !ok || v.Value != "2024-05-06 05:08:09+00" {
		t.Errorf("created field %#v, want UTC text", last[4])
	}
	if v, ok := last[6].(*types.FieldMemberBooleanValue); !ok || !v.Value {
		t.Errorf("bool field %#v", last[6])
	}
	if _, ok := last[7].(*types.FieldMemberIsNull); !ok {
		t.Errorf("NULL note field %#v, want isNull", last[7])
	}

	// Parameters: typed by their use, text where nothing says otherwise.
	if got := r.scalar(`SELECT name FROM orders WHERE id = :id`, "id", "2"); got != "éé" {
		t.Errorf("parameterised SELECT: %q", got)
	}
	if got := r.scalar(`SELECT :greeting`, "greeting", "hi"); got != "hi" {
		t.Errorf("SELECT :greeting = %q", got)
	}
	// Redshift functions the stand-in provides.
	if got := r.scalar(`SELECT nvl(note, 'none') FROM orders WHERE id = 7`); got != "none" {
		t.Errorf("nvl: %q", got)
	}
	r.ok(`SELECT getdate(), sysdate`)

	// ALTER TABLE, the Redshift way.
	r.ok(`ALTER TABLE orders ADD COLUMN tag varchar(3) ENCODE zstd`)
	d = r.exec(`UPDATE orders SET tag = 'éé' WHERE id = 7`)
	if !strings.Contains(aws.ToString(d.Error), "character varying(3)") {
		t.Errorf("ADD COLUMN varchar(3) does not check bytes: %s %q", d.Status, aws.ToString(d.Error))
	}
	r.ok(`ALTER TABLE orders ALTER COLUMN tag TYPE varchar(4)`) // outside a transaction block
	r.ok(`UPDATE orders SET tag = 'éé' WHERE id = 7`)
	d = r.exec(`UPDATE orders SET tag = 'ééé' WHERE id = 7`)
	if aws.ToString(d.Error) != "ERROR: value too long for type character varying(4)" {
		t.Errorf("after widening to varchar(4): %s %q", d.Status, aws.ToString(d.Error))
	}
	r.ok(`ALTER TABLE orders ALTER DISTSTYLE EVEN`)
	r.ok(`ALTER TABLE orders ALTER SORTKEY (id)`)
	r.ok(`ALTER TABLE orders ADD CONSTRAINT orders_pk PRIMARY KEY (id)`)
	r.ok(`ALTER TABLE orders DROP COLUMN code`)
	r.ok(`ALTER TABLE orders RENAME COLUMN note TO remark`)
	r.ok(`ANALYZE orders`)
	r.ok(`VACUUM DELETE ONLY orders`)

	// NUMERIC(19,s) stops at 2^63-1 unscaled, as in Redshift.
	r.ok(`CREATE TABLE money19 (v numeric(19, 8))`)
	r.ok(`INSERT INTO money19 VALUES (92233720368.54775807), (-92233720368.54775807)`)
	if d = r.exec(`INSERT INTO money19 VALUES (92233720368.54775808)`); aws.ToString(d.Error) != "ERROR: Numeric data overflow (result precision)" {
		t.Errorf("NUMERIC(19,8) above 2^63-1 unscaled: %s %q", d.Status, aws.ToString(d.Error))
	}
	// Names that differ only in case are the same name.
	if d = r.exec(`CREATE TABLE mixed ("A" int, "a" int)`); !strings.Contains(aws.ToString(d.Error), `column "a" specified more than once`) {
		t.Errorf("mixed-case duplicate columns: %s %q", d.Status, aws.ToString(d.Error))
	}

	// The text PostgreSQL parses keeps comments and line breaks.
	r.ok("CREATE TABLE big (a varchar(max), -- the longest\n b int /* c */) BACKUP NO DISTKEY (b) COMPOUND SORTKEY (b, a)")
	if n := r.backendCount(`SELECT count(*) FROM pg_attribute WHERE attrelid = 'big'::regclass AND format_type(atttypid, atttypmod) = 'character varying(65535)'`); n != 1 {
		t.Error("VARCHAR(MAX) is not VARCHAR(65535)")
	}
	if got := r.scalar("SELECT 'a'\n'b' AS s -- adjacent literals on two lines are one"); got != "ab" {
		t.Errorf("string continuation: %q", got)
	}

	// MERGE as Redshift takes it.
	r.ok(`CREATE TABLE src (id int, name varchar(5))`)
	r.ok(`INSERT INTO src VALUES (2, 'new'), (99, 'ins')`)
	r.ok(`MERGE INTO orders USING src ON orders.id = src.id
		WHEN MATCHED THEN UPDATE SET name = src.name
		WHEN NOT MATCHED THEN INSERT (id, name) VALUES (src.id, src.name)`)
	if got := r.scalar(`SELECT name FROM orders WHERE id = 2`); got != "new" {
		t.Errorf("after MERGE, id 2 has name %q", got)
	}
	if n := r.backendCount("SELECT count(*) FROM orders WHERE id = 99"); n != 1 {
		t.Errorf("MERGE inserted %d rows with id 99", n)
	}
}

func TestStandinBatchIsOneTransaction(t *testing.T) {
	r := newRS(t, 1000)
	r.ok(`CREATE TABLE t (id int, v varchar(3))`)
	d := r.batch(`INSERT INTO t VALUES (1, 'a')`, `INSERT INTO t VALUES (2, 'abcd')`, `INSERT INTO t VALUES (3, 'c')`)
	if d.Status != types.StatusStringFailed || !strings.Contains(aws.ToString(d.Error), "character varying(3)") {
		t.Fatalf("batch: %s %q", d.Status, aws.ToString(d.Error))
	}
	if got := []types.StatementStatusString{d.SubStatements[0].Status, d.SubStatements[1].Status, d.SubStatements[2].Status}; got[0] != "ABORTED" || got[1] != "FAILED" || got[2] != "ABORTED" {
		t.Errorf("sub-statement states %v, want ABORTED FAILED ABORTED", got)
	}
	if n := r.backendCount("SELECT count(*) FROM t"); n != 0 {
		t.Fatalf("a failed batch left %d rows", n)
	}
	d = r.batch(`INSERT INTO t VALUES (1, 'a')`, `INSERT INTO t VALUES (2, 'b')`, `SELECT count(*) FROM t`)
	if d.Status != types.StatusStringFinished {
		t.Fatalf("batch: %s %q", d.Status, aws.ToString(d.Error))
	}
	recs, _ := r.rows(d.SubStatements[2].Id)
	if got := fieldText(recs[0][0]); got != "2" {
		t.Errorf("count inside the batch: %s", got)
	}
	if _, err := r.client.GetStatementResult(context.Background(), &redshiftdata.GetStatementResultInput{Id: d.Id}); err == nil {
		t.Error("GetStatementResult on a batch's own Id succeeded; it takes a sub-statement Id")
	}
}

func putGzip(t *testing.T, c *s3.Client, bucket, key, body string) {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write([]byte(body))
	_ = zw.Close()
	if _, err := c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(buf.Bytes())}); err != nil {
		t.Fatalf("put s3://%s/%s: %v", bucket, key, err)
	}
}

func TestStandinCopiesGzipCSVFromS3(t *testing.T) {
	r := newRS(t, 1000)
	bucket := testenv.Name("rsstandin")
	if _, err := r.s3.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
		t.Fatal(err)
	}
	putGzip(t, r.s3, bucket, "b1/part-0.csv.gz", "1,alpha,\"has, comma\"\n2,\"a\nb\",\\N\n")
	putGzip(t, r.s3, bucket, "b1/part-1.csv.gz", "3,,\"\"\n4,ééé,x\r\n")
	manifest := `{"entries":[{"url":"s3://` + bucket + `/b1/part-0.csv.gz","mandatory":true},{"url":"s3://` + bucket + `/b1/part-1.csv.gz","mandatory":true},{"url":"s3://` + bucket + `/b1/gone.csv.gz","mandatory":false}]}`
	if _, err := r.s3.PutObject(context.Background(), &s3.PutObjectInput{Bucket: &bucket, Key: aws.String("b1/manifest"), Body: strings.NewReader(manifest)}); err != nil {
		t.Fatal(err)
	}
	r.ok(`CREATE TABLE items (id int PRIMARY KEY, name varchar(5), note varchar(20)) DISTSTYLE AUTO SORTKEY AUTO`)
	r.ok(`INSERT INTO items VALUES (1, 'old', 'stale'), (9, 'keep', 'kept')`)

	copySQL := `COPY stage (id, name, note) FROM 's3://` + bucket + `/b1/manifest' IAM_ROLE 'arn:aws:iam::123456789012:role/copy'
		FORMAT AS CSV GZIP MANIFEST NULL AS '\N' TRUNCATECOLUMNS TIMEFORMAT 'auto' COMPUPDATE OFF STATUPDATE OFF REGION 'us-east-1'`
	d := r.batch(
		`CREATE TEMP TABLE stage (LIKE items)`,
		copySQL,
		`SELECT pg_last_copy_count()`,
		`DELETE FROM items USING stage WHERE items.id = stage.id`,
		`INSERT INTO items (id, name, note) SELECT id, name, note FROM stage`,
		`UPDATE items SET note = s.note || '!' FROM stage s WHERE items.id = s.id AND s.id = 2`,
		`DROP TABLE stage`,
	)
	if d.Status != types.StatusStringFinished {
		t.Fatalf("apply batch: %s %q", d.Status, aws.ToString(d.Error))
	}
	if got := d.SubStatements[1].ResultRows; got != 4 {
		t.Errorf("COPY ResultRows %d, want 4", got)
	}
	recs, _ := r.rows(d.SubStatements[2].Id)
	if got := fieldText(recs[0][0]); got != "4" {
		t.Errorf("pg_last_copy_count() = %s, want 4", got)
	}
	if got := d.SubStatements[3].ResultRows; got != 1 {
		t.Errorf("DELETE … USING removed %d rows, want 1", got)
	}
	type row struct{ name, note *string }
	want := map[int]row{
		1: {ptr("alpha"), ptr("has, comma")},
		2: {ptr("a\nb"), nil},    // \N is NULL, and NULL || '!' stays NULL
		3: {ptr(""), ptr("")},    // empty VARCHAR fields load as '' (no EMPTYASNULL)
		4: {ptr("éé"), ptr("x")}, // TRUNCATECOLUMNS cuts by bytes at a character boundary
		9: {ptr("keep"), ptr("kept")},
	}
	rows, err := r.pg.Query(context.Background(), "SELECT id, name, note FROM items ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	got := map[int]row{}
	for rows.Next() {
		var id int
		var x row
		if err := rows.Scan(&id, &x.name, &x.note); err != nil {
			t.Fatal(err)
		}
		got[id] = x
	}
	if len(got) != len(want) {
		t.Fatalf("items has ids %v, want %v", keys(got), keys(want))
	}
	for id, w := range want {
		if g := got[id]; deref(g.name) != deref(w.name) || deref(g.note) != deref(w.note) {
			t.Errorf("id %d: (%s, %s), want (%s, %s)", id, deref(g.name), deref(g.note), deref(w.name), deref(w.note))
		}
	}

	// Without TRUNCATECOLUMNS an over-long value fails the load, the
	// batch rolls back, and the message says what Redshift's would.
	d = r.batch(`CREATE TEMP TABLE stage (LIKE items)`,
		`COPY stage FROM 's3://`+bucket+`/b1/part-1' IAM_ROLE 'arn:aws:iam::123456789012:role/copy' CSV GZIP`,
		`INSERT INTO items SELECT * FROM stage`)
	if d.Status != types.StatusStringFailed || !strings.Contains(aws.ToString(d.Error), "Load into table 'stage' failed") ||
		!strings.Contains(aws.ToString(d.Error), "String length exceeds DDL length") {
		t.Errorf("COPY of a too-long value: %s %q", d.Status, aws.ToString(d.Error))
	}
	// A prefix loads every object under it.
	d = r.batch(`CREATE TEMP TABLE stage (id int, name varchar(20), note varchar(20))`,
		`COPY stage FROM 's3://`+bucket+`/b1/part-' IAM_ROLE 'arn:aws:iam::123456789012:role/copy' CSV GZIP`,
		`SELECT count(*) FROM stage`)
	if d.Status != types.StatusStringFinished || d.SubStatements[1].ResultRows != 4 {
		t.Errorf("COPY from a prefix: %s %q, %d rows", d.Status, aws.ToString(d.Error), d.SubStatements[1].ResultRows)
	}
	// A mandatory manifest entry that is missing fails the load.
	if _, err := r.s3.PutObject(context.Background(), &s3.PutObjectInput{Bucket: &bucket, Key: aws.String("b1/bad-manifest"),
		Body: strings.NewReader(`{"entries":[{"url":"s3://` + bucket + `/b1/nope.gz","mandatory":true}]}`)}); err != nil {
		t.Fatal(err)
	}
	d = r.batch(`CREATE TEMP TABLE stage (LIKE items)`,
		`COPY stage FROM 's3://`+bucket+`/b1/bad-manifest' IAM_ROLE 'arn:aws:iam::123456789012:role/copy' CSV GZIP MANIFEST`)
	if d.Status != types.StatusStringFailed || !strings.Contains(aws.ToString(d.Error), "mandatory") {
		t.Errorf("missing mandatory entry: %s %q", d.Status, aws.ToString(d.Error))
	}
	// COPY without credentials is refused, as Redshift refuses it.
	d = r.exec(`COPY items FROM 's3://` + bucket + `/b1/part-' CSV GZIP`)
	if !strings.Contains(aws.ToString(d.Error), "copy-credentials") {
		t.Errorf("COPY without IAM_ROLE: %s %q", d.Status, aws.ToString(d.Error))
	}
}

func ptr(s string) *string { return &s }

func deref(s *string) string {
	if s == nil {
		return "NULL"
	}
	return *s
}

func keys[V any](m map[int]V) []int {
	var out []int
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestStandinSessionKeepsTempTables(t *testing.T) {
	r := newRS(t, 1000)
	ctx := context.Background()
	out, err := r.client.ExecuteStatement(ctx, &redshiftdata.ExecuteStatementInput{Sql: aws.String("CREATE TEMP TABLE s (a int)"),
		Database: aws.String(r.db), WorkgroupName: aws.String("wg"), SessionKeepAliveSeconds: aws.Int32(60)})
	if err != nil {
		t.Fatal(err)
	}
	if out.SessionId == nil {
		t.Fatal("no SessionId for SessionKeepAliveSeconds")
	}
	if d := r.wait(out.Id); d.Status != types.StatusStringFinished {
		t.Fatalf("%s %q", d.Status, aws.ToString(d.Error))
	}
	in := func(sql string) *redshiftdata.DescribeStatementOutput {
		o, err := r.client.ExecuteStatement(ctx, &redshiftdata.ExecuteStatementInput{Sql: aws.String(sql), SessionId: out.SessionId})
		if err != nil {
			t.Fatal(err)
		}
		return r.wait(o.Id)
	}
	in("INSERT INTO s VALUES (1), (2)")
	d := in("SELECT count(*) FROM s")
	recs, _ := r.rows(d.Id)
	if got := fieldText(recs[0][0]); got != "2" {
		t.Errorf("count in the session: %s", got)
	}
	// Without the session, the temporary table does not exist.
	d = r.exec("SELECT count(*) FROM s")
	if d.Status != types.StatusStringFailed || !strings.Contains(aws.ToString(d.Error), `relation "s" does not exist`) {
		t.Errorf("outside the session: %s %q", d.Status, aws.ToString(d.Error))
	}

	// A statement blocked by the session's lock can be cancelled.
	r.ok("CREATE TABLE locked (a int)")
	in("BEGIN")
	in("LOCK locked")
	o, err := r.client.ExecuteStatement(ctx, &redshiftdata.ExecuteStatementInput{Sql: aws.String("SELECT count(*) FROM locked"),
		Database: aws.String(r.db), WorkgroupName: aws.String("wg")})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if dd, _ := r.client.DescribeStatement(ctx, &redshiftdata.DescribeStatementInput{Id: o.Id}); dd.Status != types.StatusStringStarted {
		t.Fatalf("blocked statement is %s, want STARTED", dd.Status)
	}
	if _, err := r.client.CancelStatement(ctx, &redshiftdata.CancelStatementInput{Id: o.Id}); err != nil {
		t.Fatal(err)
	}
	if d := r.wait(o.Id); d.Status != types.StatusStringAborted {
		t.Errorf("cancelled statement: %s %q", d.Status, aws.ToString(d.Error))
	}
	// ALTER COLUMN TYPE inside the session's transaction block is refused.
	r.ok("CREATE TABLE w (v varchar(3))")
	if d := in("ALTER TABLE w ALTER COLUMN v TYPE varchar(9)"); !strings.Contains(aws.ToString(d.Error), "alter-type-in-transaction") {
		t.Errorf("ALTER COLUMN TYPE in BEGIN … : %s %q", d.Status, aws.ToString(d.Error))
	}
	in("ROLLBACK")
}

func TestStandinAPIErrors(t *testing.T) {
	r := newRS(t, 1000)
	ctx := context.Background()
	_, err := r.client.DescribeStatement(ctx, &redshiftdata.DescribeStatementInput{Id: aws.String("00000000-0000-4000-8000-000000000000")})
	var nf *types.ResourceNotFoundException
	if !errors.As(err, &nf) {
		t.Errorf("unknown Id: %v, want ResourceNotFoundException", err)
	}
	_, err = r.client.ExecuteStatement(ctx, &redshiftdata.ExecuteStatementInput{Sql: aws.String("SELECT 1"), Database: aws.String(r.db)})
	var ve *types.ValidationException
	if !errors.As(err, &ve) {
		t.Errorf("neither cluster nor workgroup: %v, want ValidationException", err)
	}
	_, err = r.client.ExecuteStatement(ctx, &redshiftdata.ExecuteStatementInput{Sql: aws.String("SELECT :a"), Database: aws.String(r.db),
		WorkgroupName: aws.String("wg")})
	if !errors.As(err, &ve) {
		t.Errorf("parameter without a value: %v, want ValidationException", err)
	}
	d := r.exec("SELEC 1")
	if d.Status != types.StatusStringFailed || !strings.HasPrefix(aws.ToString(d.Error), `ERROR: syntax error at or near "SELEC"`) {
		t.Errorf("syntax error: %s %q", d.Status, aws.ToString(d.Error))
	}
	d = r.exec("SELECT * FROM nowhere")
	if aws.ToString(d.Error) != `ERROR: relation "nowhere" does not exist` {
		t.Errorf("missing table: %q", aws.ToString(d.Error))
	}
}

func TestStandinWithoutBackendNamesTheVariable(t *testing.T) {
	testenv.AWS(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	hs := httptest.NewServer(newServer(newBackend("", nil, log), log, 1000))
	t.Cleanup(hs.Close)
	client := redshiftdata.NewFromConfig(testenv.AWSConfig(t), func(o *redshiftdata.Options) { o.BaseEndpoint = aws.String(hs.URL) })
	r := &rs{t: t, client: client, db: "dev"}
	d := r.exec("SELECT 1")
	if d.Status != types.StatusStringFailed || !strings.Contains(aws.ToString(d.Error), "PGFERRY_REDSHIFT_BACKEND") {
		t.Fatalf("%s %q, want a failure naming PGFERRY_REDSHIFT_BACKEND", d.Status, aws.ToString(d.Error))
	}
}
