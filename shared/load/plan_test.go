package load_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/load"
	"github.com/pgferry/pgferry/shared/testenv"
)

func TestQuantilesCutEvenlyAndNeverRepeat(t *testing.T) {
	var sample [][]string
	for i := range 100 {
		sample = append(sample, []string{fmt.Sprintf("%03d", i)})
	}
	cases := []struct {
		name   string
		sample [][]string
		n      int
		want   []string
	}{
		{"one chunk needs no bound", sample, 1, nil},
		{"four parts", sample, 4, []string{"025", "050", "075"}},
		{"empty sample", nil, 4, nil},
		{"repeats dropped", [][]string{{"a"}, {"a"}, {"a"}, {"a"}, {"b"}, {"b"}}, 3, []string{"a", "b"}},
		{"more parts than keys", [][]string{{"x"}, {"y"}}, 5, []string{"x", "y"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got []string
			for _, b := range load.Quantiles(c.sample, c.n) {
				got = append(got, b[0])
			}
			if !slices.Equal(got, c.want) {
				t.Fatalf("Quantiles(%d) = %q, want %q", c.n, got, c.want)
			}
		})
	}
}

func TestWhereRendersEscapedRanges(t *testing.T) {
	cases := []struct {
		key  []string
		c    load.Chunk
		want string
	}{
		{[]string{"id"}, load.Chunk{}, "true"},
		{[]string{"id"}, load.Chunk{Hi: []string{"10"}}, `"id" < E'10'`},
		{[]string{"id"}, load.Chunk{Lo: []string{"10"}, Hi: []string{"20"}}, `"id" >= E'10' AND "id" < E'20'`},
		{[]string{"a", `b"c`}, load.Chunk{Lo: []string{`it's`, `back\slash`}},
			`("a", "b""c") >= (E'it''s', E'back\\slash')`},
	}
	for _, c := range cases {
		if got := load.Where(c.key, c.c); got != c.want {
			t.Errorf("Where(%q, %+v) = %s, want %s", c.key, c.c, got, c.want)
		}
	}
}

// TestChunksCoverEveryRowOnce plans real tables — integer keys, composite
// text keys with quotes and backslashes, timestamps, a partitioned table,
// an empty table — and checks that the chunks' predicates select every
// row exactly once, whatever rows were added after planning.
func TestChunksCoverEveryRowOnce(t *testing.T) {
	ctx := context.Background()
	pool := testenv.Pool(t, testenv.NewDB(t, "plan"))
	testenv.Exec(t, pool, `
		CREATE TABLE ints (id bigint PRIMARY KEY, v text);
		INSERT INTO ints SELECT g, 'v' FROM generate_series(1, 50000) g;
		CREATE TABLE texts (a text, b text, ts timestamptz, PRIMARY KEY (a, b, ts));
		INSERT INTO texts SELECT chr(33 + g % 90) || E'\\' || g, 'it''s ' || (g % 7), '2024-01-01'::timestamptz + g * interval '1.5 s'
		FROM generate_series(1, 30000) g;
		CREATE TABLE parts (region text, id int, PRIMARY KEY (region, id)) PARTITION BY LIST (region);
		CREATE TABLE parts_a PARTITION OF parts FOR VALUES IN ('a');
		CREATE TABLE parts_b PARTITION OF parts FOR VALUES IN ('b');
		INSERT INTO parts SELECT r, g FROM generate_series(1, 20000) g, unnest(ARRAY['a', 'b']) r;
		CREATE TABLE empty (id int PRIMARY KEY);
		ANALYZE ints; ANALYZE texts; ANALYZE parts_a; ANALYZE parts_b;`)
	for _, c := range []struct {
		table     string
		minChunks int
	}{{"ints", 8}, {"texts", 4}, {"parts", 6}, {"empty", 1}} {
		t.Run(c.table, func(t *testing.T) {
			tbl, err := load.Describe(ctx, pool, batch.Table{Schema: "public", Name: c.table})
			if err != nil {
				t.Fatal(err)
			}
			chunks, err := load.PlanChunks(ctx, pool, tbl, 5000)
			if err != nil {
				t.Fatal(err)
			}
			if len(chunks) < c.minChunks {
				t.Fatalf("%d chunks for ~%d rows, want at least %d", len(chunks), tbl.EstRows, c.minChunks)
			}
			if len(chunks[0].Lo) != 0 || len(chunks[len(chunks)-1].Hi) != 0 {
				t.Fatal("the first chunk must start open and the last end open")
			}
			for i := 1; i < len(chunks); i++ {
				if !slices.Equal(chunks[i].Lo, chunks[i-1].Hi) {
					t.Fatalf("chunk %d starts at %q, the one before ends at %q", i, chunks[i].Lo, chunks[i-1].Hi)
				}
			}
			// Rows added after planning land in some chunk too.
			switch c.table {
			case "ints":
				testenv.Exec(t, pool, `INSERT INTO ints VALUES (-5, 'x'), (999999, 'y')`)
			case "empty":
				testenv.Exec(t, pool, `INSERT INTO empty VALUES (1), (2)`)
			}
			rel := pgx.Identifier{"public", c.table}.Sanitize()
			var total, covered, biggest int64
			if err := pool.QueryRow(ctx, "SELECT count(*) FROM "+rel).Scan(&total); err != nil {
				t.Fatal(err)
			}
			for _, ch := range chunks {
				var n int64
				err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					// Bounds are printed and parsed under the same settings.
					if _, err := tx.Exec(ctx, "SET LOCAL timezone = 'Pacific/Chatham'; SET LOCAL standard_conforming_strings = off"); err != nil {
						return err
					}
					return tx.QueryRow(ctx, "SELECT count(*) FROM "+rel+" WHERE "+load.Where(tbl.Key, ch)).Scan(&n)
				})
				if err != nil {
					t.Fatalf("chunk %d (%s): %v", ch.N, load.Where(tbl.Key, ch), err)
				}
				covered += n
				biggest = max(biggest, n)
			}
			if covered != total {
				t.Fatalf("chunks select %d rows in all, the table has %d", covered, total)
			}
			if len(chunks) > 1 && biggest > 3*5000 {
				t.Errorf("largest chunk has %d rows, planned 5000", biggest)
			}
		})
	}
}
