package verify_test

import (
	"context"
	"os"
	"testing"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/testenv"
	"github.com/pgferry/pgferry/shared/verify"
)

// TestCountsFollowApplySchemaAndRules checks the row counts printed after
// an initial load: a target with apply_schema is counted where the
// applier writes, a table a target does not get is not counted for it,
// and a filtered table is reported but not judged (its counts differ by
// design).
func TestCountsFollowApplySchemaAndRules(t *testing.T) {
	srcDSN, dstDSN := testenv.NewDB(t, "csrc"), testenv.NewDB(t, "cdst")
	src, dst := testenv.Pool(t, srcDSN), testenv.Pool(t, dstDSN)
	testenv.Exec(t, src, `
		CREATE TABLE t (a int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 5);
		CREATE TABLE u (a int PRIMARY KEY); INSERT INTO u SELECT generate_series(1, 3);`)
	testenv.Exec(t, dst, `
		CREATE SCHEMA mirror;
		CREATE TABLE mirror.t (a int PRIMARY KEY); INSERT INTO mirror.t SELECT generate_series(1, 5);
		CREATE TABLE mirror.u (a int PRIMARY KEY); INSERT INTO mirror.u SELECT generate_series(1, 3);
		CREATE TABLE t (a int PRIMARY KEY); INSERT INTO t SELECT generate_series(3, 5);
		CREATE TABLE u (a int PRIMARY KEY);`)
	cfg, err := config.Parse([]byte(`
name: c
source: {dsn: "`+srcDSN+`", tables: ["public.*"]}
targets:
  mirror: {kind: postgres, dsn: "`+dstDSN+`", apply_schema: mirror}
  part:
    kind: postgres
    dsn: "`+dstDSN+`"
    tables: ["public.t"]
    rules: [{table: "public.t", filter: [{column: a, op: gte, value: 3}]}]
`), os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	tables := []batch.Table{{Schema: "public", Name: "t"}, {Schema: "public", Name: "u"}}
	on := map[string]verify.Target{"mirror": verify.Postgres{Pool: dst}, "part": verify.Postgres{Pool: dst}}
	got := verify.Counts(context.Background(), src, on, cfg, tables)
	type row struct {
		target, table, on string
		src, dst          int64
		notCounted        bool
	}
	want := []row{
		{"mirror", "public.t", "mirror.t", 5, 5, false},
		{"part", "public.t", "public.t", 5, 3, true},
		{"mirror", "public.u", "mirror.u", 3, 3, false},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d counts %+v, want %d (part does not get public.u)", len(got), got, len(want))
	}
	for i, c := range got {
		w := want[i]
		if c.Err != nil {
			t.Fatalf("%s %s: %v", c.Target, c.Table, c.Err)
		}
		g := row{c.Target, c.Table.String(), c.TargetTable.String(), c.SourceRows, c.TargetRows, c.NotCounted != ""}
		if g != w {
			t.Errorf("count %d: got %+v, want %+v", i, g, w)
		}
		if !c.OK() {
			t.Errorf("%s %s: not OK", c.Target, c.Table)
		}
	}
}
