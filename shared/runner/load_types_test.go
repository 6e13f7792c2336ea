package runner_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/initload"
	"github.com/pgferry/pgferry/shared/load"
)

// edgeDDL is a table with a column of every built-in type a user table
// can hold (and arrays of several), and edgeRows are rows of their edge
// values: all NULL; empty, zero and minimal; maximal and special.
const edgeDDL = `
CREATE TABLE edge (
  id int PRIMARY KEY,
  c_bool boolean, c_int2 smallint, c_int4 integer, c_int8 bigint, c_oid oid,
  c_float4 real, c_float8 double precision, c_numeric numeric, c_numeric_t numeric(10,3), c_money money,
  c_text text, c_varchar varchar(10), c_char char(5), c_name name, c_bpchar1 "char",
  c_bytea bytea, c_date date, c_time time, c_timetz timetz, c_ts timestamp, c_tstz timestamptz, c_interval interval,
  c_bit bit(3), c_bit1 bit(1), c_varbit varbit,
  c_uuid uuid, c_json json, c_jsonb jsonb, c_jsonpath jsonpath, c_xml xml,
  c_inet inet, c_cidr cidr, c_macaddr macaddr, c_macaddr8 macaddr8,
  c_point point, c_line line, c_lseg lseg, c_box box, c_path path, c_polygon polygon, c_circle circle,
  c_tsvector tsvector, c_tsquery tsquery,
  c_int4range int4range, c_int8range int8range, c_numrange numrange, c_tsrange tsrange, c_tstzrange tstzrange, c_daterange daterange,
  c_int4multirange int4multirange, c_datemultirange datemultirange,
  c_pg_lsn pg_lsn, c_txid_snapshot txid_snapshot, c_pg_snapshot pg_snapshot,
  c_regclass regclass, c_regtype regtype, c_regproc regproc, c_regprocedure regprocedure, c_regoper regoper, c_regoperator regoperator, c_regconfig regconfig, c_regdictionary regdictionary, c_regnamespace regnamespace, c_regrole regrole, c_regcollation regcollation,
  c_xid xid, c_xid8 xid8, c_cid cid, c_tid tid, c_int2vector int2vector, c_oidvector oidvector, c_aclitem aclitem,
  c_int_arr int[], c_text_arr text[], c_int_arr2 int[][], c_tsquery_arr tsquery[], c_tsvector_arr tsvector[], c_jsonb_arr jsonb[], c_numeric_arr numeric[], c_range_arr int4range[]
);`

const edgeRows = `
INSERT INTO edge (id) VALUES (0);
INSERT INTO edge VALUES (1,
  true, -32768, -2147483648, -9223372036854775808, 0,
  '-Infinity', 'NaN', 'NaN', -9999999.999, '-92233720368547758.08',
  '', '', '', '', '',
  '', '-infinity', '00:00', '00:00+1559', '-infinity', '-infinity', '-178000000 years',
  B'000', B'0', B'',
  '00000000-0000-0000-0000-000000000000', '{}', '{}', '$', '',
  '0.0.0.0/0', '0.0.0.0/0', '00:00:00:00:00:00', '00:00:00:00:00:00:00:00',
  '(0,0)', '{1,-1,0}', '[(0,0),(0,0)]', '(0,0),(0,0)', '[(0,0)]', '((0,0))', '<(0,0),0>',
  '', '',
  'empty', 'empty', 'empty', 'empty', 'empty', 'empty',
  '{}', '{}',
  '0/0', '1:1:', '1:1:',
  'pg_class', 'int4', 'now', 'now()', '||/', '+(int4,int4)', 'simple', 'simple', 'public', 'postgres', '"C"',
  '0', '0', '0', '(0,0)', '', '', 'postgres=arwdDxt/postgres',
  '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}');
INSERT INTO edge VALUES (2,
  false, 32767, 2147483647, 9223372036854775807, 4294967295,
  'Infinity', '-Infinity', '-Infinity', 9999999.999, '92233720368547758.07',
  E'\u00e9\\t\n''"', 'ééééééééé', 'ab', repeat('n', 63), 'x',
  '\x00ff', 'infinity', '24:00', '24:00-1559', 'infinity', 'infinity', '178000000 years',
  B'101', B'1', B'1',
  'ffffffff-ffff-ffff-ffff-ffffffffffff', '{"a": [1, null, "\u00e9"]}', '[]', 'strict $.a[*] ? (@ > 1)', '<a b="c">&amp;</a>',
  '::ffff:1.2.3.4/128', '2001:db8::/32', 'ff:ff:ff:ff:ff:ff', 'ff:ff:ff:ff:ff:ff:ff:ff',
  '(1e308,-1e308)', '{0,1,-1e300}', '[(1,2),(3,4)]', '(1e300,1e300),(-1e300,-1e300)', '((0,0),(1,1),(2,0))', '((0,0),(1,1),(2,0))', '<(1,2),1e300>',
  'a:1A b:2B,3C ''x y''', '!(a & b) | c:*AB <-> d <2> e',
  '[-2147483648,2147483647)', '(,)', '[NaN,NaN]', '[-infinity,infinity]', '(,infinity]', '[-infinity,)',
  '{[1,2), [5,10)}', '{(,)}',
  'FFFFFFFF/FFFFFFFF', '10:20:10,14,15', '10:20:10,14,15',
  '-', '-', '-', '-', '0', '0', 'english', 'english_stem', 'pg_catalog', 'pg_signal_backend', 'default',
  '4294967295', '18446744073709551615', '4294967295', '(4294967295,65535)', '1 2 -3', '1 2 4294967295', '=r/postgres',
  '{NULL,1,NULL}', '{NULL,"",a,"b,c","NULL"}', '[0:1][-1:0]={{1,NULL},{3,4}}', '{"",a}', '{"",a:1}', '{"{}","[]",null}', '{NaN,-Infinity,0}', '{empty,"[1,2)",NULL}');`

// edgeBinDDL is edge without the columns whose types need text (made
// after edge's rows are in: on the source it holds them too), so that
// every other type's edge values travel in binary.
const edgeBinDDL = `
CREATE TABLE edge_bin AS SELECT * FROM edge;
ALTER TABLE edge_bin ADD PRIMARY KEY (id), DROP COLUMN c_aclitem, DROP COLUMN c_tsquery, DROP COLUMN c_tsquery_arr,
    DROP COLUMN c_int2vector, DROP COLUMN c_oidvector, DROP COLUMN c_regclass, DROP COLUMN c_regtype, DROP COLUMN c_regproc,
    DROP COLUMN c_regprocedure, DROP COLUMN c_regoper, DROP COLUMN c_regoperator, DROP COLUMN c_regconfig,
    DROP COLUMN c_regdictionary, DROP COLUMN c_regnamespace, DROP COLUMN c_regrole, DROP COLUMN c_regcollation;`

// columnsAsText returns, per column of table, its values as text in id
// order.
func columnsAsText(t *testing.T, ctx context.Context, table string, db interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
	QueryRow(context.Context, string, ...any) pgx.Row
}) map[string]string {
	t.Helper()
	rel := pgx.Identifier{"public", table}.Sanitize()
	rows, err := db.Query(ctx, `SELECT attname::text FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`, rel)
	if err != nil {
		t.Fatal(err)
	}
	cols, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, c := range cols {
		var s string
		col := pgx.Identifier{c}.Sanitize()
		if err := db.QueryRow(ctx, `SELECT count(*) || ':' || coalesce(string_agg(coalesce(`+col+`::text, '<NULL>'), ' | ' ORDER BY id), '') FROM `+rel).Scan(&s); err != nil {
			t.Fatalf("read %s: %v", c, err)
		}
		out[c] = s
	}
	return out
}

func assertEdgeSame(t *testing.T, f *fixture, table string, minCols int) {
	t.Helper()
	ctx := context.Background()
	src, dst := columnsAsText(t, ctx, table, f.src), columnsAsText(t, ctx, table, f.dst)
	if len(src) < minCols {
		t.Fatalf("%s has %d columns, want at least %d", table, len(src), minCols)
	}
	for c, want := range src {
		if !strings.HasPrefix(want, "3:") {
			t.Fatalf("%s.%s holds %s on the source, want 3 rows", table, c, want)
		}
		if got := dst[c]; got != want {
			t.Errorf("%s.%s differs:\n source %s\n target %s", table, c, want, got)
		}
	}
}

// TestInitialLoadCopiesEdgeValuesOfEveryBuiltInType loads a table holding
// every built-in type's edge values (an empty tsquery, an empty
// int2vector, an aclitem, which PostgreSQL cannot read back in binary or
// has no binary form for; NaN, infinities, extremes, empty containers and
// ranges, arrays with NULLs and lower bounds) with --initial-load: no
// chunk fails, and the target holds what the source holds, as text.
func TestInitialLoadCopiesEdgeValuesOfEveryBuiltInType(t *testing.T) {
	f := newFixture(t, edgeDDL+edgeBinDDL, "")
	f.exec(`DROP TABLE edge_bin`)
	f.exec(edgeRows)
	f.exec(edgeBinDDL)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, c := range []struct {
		table  string
		binary bool
	}{{"edge", false}, {"edge_bin", true}} {
		desc, err := load.Describe(ctx, f.src, batch.Table{Schema: "public", Name: c.table})
		if err != nil {
			t.Fatal(err)
		}
		if desc.Binary != c.binary {
			t.Errorf("%s planned binary=%v, want %v (text because %q)", c.table, desc.Binary, c.binary, desc.TextBecause)
		}
	}
	if err := f.initialLoad(ctx, initload.Options{}); err != nil {
		t.Fatalf("initial load: %v", err)
	}
	assertEdgeSame(t, f, "edge", 80)
	assertEdgeSame(t, f, "edge_bin", 65)
}

// TestBinaryChunkTheTargetRejectsIsCopiedAsText copies the edge table
// with a plan that says binary (as a plan saved before the type was known
// to need text says): the chunk the target rejects in binary is copied
// again in text, in a new transaction, and nothing fails.
func TestBinaryChunkTheTargetRejectsIsCopiedAsText(t *testing.T) {
	f := newFixtureMode(t, config.CaptureTrigger, strings.ReplaceAll(edgeDDL, "c_aclitem aclitem,", ""), "")
	// Without the aclitem column, which the source cannot even write in
	// binary: the target's rejection is what this test is about.
	f.exec(strings.NewReplacer("'postgres=arwdDxt/postgres',", "", "'=r/postgres',", "").Replace(edgeRows))
	ctx := context.Background()
	loader := f.loader()
	tables, err := initload.Tables(ctx, f.cfg, f.src, []string{"public.edge"})
	if err != nil {
		t.Fatal(err)
	}
	plans, err := loader.Prepare(ctx, "replica", tables, load.Options{ChunkRows: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(plans) != 1 || plans[0].Table.Binary {
		t.Fatalf("edge planned as %+v, want text", plans)
	}
	p := plans[0]
	p.Table.Binary = true
	for _, j := range p.Jobs(nil) {
		if err := loader.Copy(ctx, j); err != nil {
			t.Fatalf("copy chunk %d: %v", j.Chunk.N, err)
		}
	}
	assertEdgeSame(t, f, "edge", 80)
}
