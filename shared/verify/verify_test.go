package verify_test

import (
	"context"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/testenv"
	"github.com/pgferry/pgferry/shared/verify"
)

// TestCompareCatchesEveryDifferenceAndOnlyThose builds a source and a
// target by hand (no replication) and checks which tables Compare calls
// equal: layout differences that keep the values (column order, a plain
// table for a partitioned one, apply_schema) must match; any difference
// in the values, even one that keeps the row count, must not.
func TestCompareCatchesEveryDifferenceAndOnlyThose(t *testing.T) {
	baseIn := func(schema string) string {
		return strings.ReplaceAll(`CREATE TABLE s.t (a int PRIMARY KEY, b text, c numeric);
		INSERT INTO s.t SELECT g, 'b' || g, g * 1.5 FROM generate_series(1, 50) g;`, "s.t", schema+".t")
	}
	base := baseIn("public")
	cases := []struct {
		name        string
		src, dst    string
		applySchema string
		want        map[string]string // source table -> "match" or an error/mismatch fragment
	}{
		{
			name: "same rows match",
			src:  base, dst: base,
			want: map[string]string{"public.t": "match"},
		},
		{
			name: "columns in another order on the target match",
			src:  base,
			dst: `CREATE TABLE t (c numeric, b text, a int PRIMARY KEY);
				INSERT INTO t (a, b, c) SELECT g, 'b' || g, g * 1.5 FROM generate_series(1, 50) g;`,
			want: map[string]string{"public.t": "match"},
		},
		{
			name: "a changed value with the same row count is caught by the checksum",
			src:  base, dst: base + `UPDATE t SET c = c + 0.5 WHERE a = 17;`,
			want: map[string]string{"public.t": "checksum"},
		},
		{
			name: "a value of the same numeric worth but another scale differs",
			src:  base, dst: base + `UPDATE t SET c = 25.50 WHERE a = 17;`, // 17 * 1.5 = 25.5
			want: map[string]string{"public.t": "checksum"},
		},
		{
			name: "a missing row is caught",
			src:  base, dst: base + `DELETE FROM t WHERE a = 3;`,
			want: map[string]string{"public.t": "rows"},
		},
		{
			name: "an extra row is caught",
			src:  base, dst: base + `INSERT INTO t VALUES (51, 'b51', 76.5);`,
			want: map[string]string{"public.t": "rows"},
		},
		{
			name: "NULL and the empty string differ",
			src:  base + `UPDATE t SET b = '' WHERE a = 9;`,
			dst:  base + `UPDATE t SET b = NULL WHERE a = 9;`,
			want: map[string]string{"public.t": "checksum"},
		},
		{
			name: "a row's values moved to another row differ",
			src:  base,
			dst:  base + `UPDATE t SET b = CASE a WHEN 1 THEN 'b2' ELSE 'b1' END WHERE a IN (1, 2);`,
			want: map[string]string{"public.t": "checksum"},
		},
		{
			name: "generated columns compare their values",
			src: `CREATE TABLE g (a int PRIMARY KEY, twice int GENERATED ALWAYS AS (a * 2) STORED);
				INSERT INTO g (a) SELECT generate_series(1, 20);`,
			dst: `CREATE TABLE g (a int PRIMARY KEY, twice int);
				INSERT INTO g SELECT a, a * 2 FROM generate_series(1, 20) a;
				UPDATE g SET twice = 0 WHERE a = 5;`,
			want: map[string]string{"public.g": "checksum"},
		},
		{
			name: "a partitioned table is compared once, through its root, against any layout",
			src: `CREATE TABLE p (id int, region text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
				CREATE TABLE p_eu PARTITION OF p FOR VALUES IN ('eu');
				CREATE TABLE p_us PARTITION OF p FOR VALUES IN ('us');
				INSERT INTO p SELECT g, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END FROM generate_series(1, 30) g;`,
			dst: `CREATE TABLE p (id int, region text, PRIMARY KEY (id, region));
				INSERT INTO p SELECT g, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END FROM generate_series(1, 30) g;`,
			want: map[string]string{"public.p": "match"},
		},
		{
			name: "a table the target lacks is an error for that table only",
			src:  base + `CREATE TABLE u (id int PRIMARY KEY);`,
			dst:  base,
			want: map[string]string{"public.t": "match", "public.u": `target replica, table public.u`},
		},
		{
			name:        "with apply_schema the tables are compared where the applier writes them",
			applySchema: "rep",
			src: base + `CREATE SCHEMA shop; CREATE TABLE shop.o (id int PRIMARY KEY, t text);
				INSERT INTO shop.o SELECT g, 'o' || g FROM generate_series(1, 10) g;`,
			// public.t on the target holds other rows: a decoy that only a
			// comparison ignoring apply_schema would read.
			dst: `CREATE TABLE t (a int PRIMARY KEY, b text, c numeric);
				CREATE SCHEMA rep;` + baseIn("rep") + `
				CREATE TABLE rep.o (id int PRIMARY KEY, t text);
				INSERT INTO rep.o SELECT g, 'o' || g FROM generate_series(1, 10) g;`,
			want: map[string]string{"public.t": "match", "shop.o": "match"},
		},
		{
			name:        "with apply_schema a damaged table is named",
			applySchema: "rep",
			src:         base,
			dst:         `CREATE SCHEMA rep;` + baseIn("rep") + `UPDATE rep.t SET b = 'x' WHERE a = 50;`,
			want:        map[string]string{"public.t": "checksum"},
		},
	}
	// One pair of databases, emptied for each case (creating databases is
	// the slow part).
	srcDSN, dstDSN := testenv.NewDB(t, "vsrc"), testenv.NewDB(t, "vdst")
	src, dst := testenv.Pool(t, srcDSN), testenv.Pool(t, dstDSN)
	const empty = `DROP SCHEMA IF EXISTS public, shop, rep CASCADE; CREATE SCHEMA public;`
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			testenv.Exec(t, src, empty+c.src)
			testenv.Exec(t, dst, empty+c.dst)
			cfg, err := config.Parse([]byte(`
name: v
source: {dsn: "`+srcDSN+`", tables: ["public.*", "shop.*"]}
targets:
  replica: {kind: postgres, dsn: "`+dstDSN+`", apply_schema: "`+c.applySchema+`"}
`), os.LookupEnv)
			if err != nil {
				t.Fatal(err)
			}
			res, err := verify.Compare(context.Background(), src, map[string]verify.Target{"replica": verify.Postgres{Pool: dst}}, cfg)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, r := range res {
				if r.Target != "replica" {
					t.Errorf("%s: target %q, want replica", r.Table, r.Target)
				}
				if want := c.applySchema; want != "" && r.TargetTable.Schema != want {
					t.Errorf("%s: compared with %s, want a table in %s", r.Table, r.TargetTable, want)
				}
				if _, dup := got[r.Table.String()]; dup {
					t.Errorf("%s compared twice", r.Table)
				}
				got[r.Table.String()] = outcome(r)
			}
			if keys(got) != keys(c.want) {
				t.Fatalf("compared tables %s, want %s", keys(got), keys(c.want))
			}
			for tbl, want := range c.want {
				if !strings.Contains(got[tbl], want) {
					t.Errorf("%s: %s, want %s", tbl, got[tbl], want)
				}
			}
		})
	}
}

// outcome names what a comparison found: "match", "rows" (the counts
// differ), "checksum" (same count, different values) or the error.
func outcome(r verify.Table) string {
	switch {
	case r.Err != nil:
		return "error: " + r.Err.Error()
	case r.OK():
		return "match"
	case r.SourceRows != r.TargetRows:
		return "rows"
	default:
		return "checksum"
	}
}

func keys(m map[string]string) string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}
