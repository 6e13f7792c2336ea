package pgapply_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/pgferry/pgferry/shared/apply/pgapply"
	"github.com/pgferry/pgferry/shared/batch"
)

// bothPaths runs f once with segments unnested from arrays and once with
// every segment COPYed into a staging table.
func bothPaths(t *testing.T, f func(t *testing.T)) {
	for _, c := range []struct {
		name  string
		small int
	}{{"unnest", 1 << 30}, {"staging", 0}} {
		t.Run(c.name, func(t *testing.T) {
			old := pgapply.SmallSegment
			pgapply.SmallSegment = c.small
			t.Cleanup(func() { pgapply.SmallSegment = old })
			f(t)
		})
	}
}

const typesDDL = `CREATE TYPE mood AS ENUM ('sad', 'ok');
	CREATE DOMAIN posint AS int CHECK (VALUE > 0);
	CREATE TABLE ty (id bigint PRIMARY KEY, c char(4), vc varchar(5), b bit(3), vb varbit, n numeric(6,2), nn numeric,
		f float8, ts timestamp(0), j json, arr int[], tarr text[], m mood, d posint, rg int4range, bx bytea, iv interval)`

// Values go through each column type's own input function whichever path
// they take, and the column's modifier applies as it does to COPY.
func TestSegmentValuesKeepTheirTypesTextOnBothPaths(t *testing.T) {
	bothPaths(t, func(t *testing.T) {
		a, pool := newTarget(t, typesDDL)
		cols := []string{"id", "c", "vc", "b", "vb", "n", "nn", "f", "ts", "j", "arr", "tarr", "m", "d", "rg", "bx", "iv"}
		// char(4) pads to "ab  "; its text form drops the padding again.
		want := []string{"1", "ab", "x,y\"z", "101", "10110", "1.50", "NaN", "-Infinity", "2024-05-01 10:00:01",
			`{"a" :  [1, 2]}`, "{1,NULL,3}", `{"a b","c\"d",NULL}`, "ok", "7", "[1,5)", `\x00ff`, "1 day 02:00:00"}
		row := make(batch.Row, len(want))
		for i := range want {
			row[i] = v(want[i])
		}
		nulls := make(batch.Row, len(want))
		nulls[0] = v("2")
		seg := batch.Segment{Table: batch.Table{Schema: "public", Name: "ty"}, Columns: cols, Key: []string{"id"},
			Upserts: []batch.Row{row, nulls}}
		mustApply(t, a, mk(1, pos(0, 0), pos(1, 0), seg))
		sel := make([]string, len(cols))
		for i, c := range cols {
			sel[i] = c + "::text"
		}
		vals := make([]any, len(cols))
		got := make([]*string, len(cols))
		for i := range vals {
			vals[i] = &got[i]
		}
		if err := pool.QueryRow(context.Background(), "SELECT "+strings.Join(sel, ", ")+" FROM ty WHERE id = 1").Scan(vals...); err != nil {
			t.Fatal(err)
		}
		for i := range want {
			if got[i] == nil || *got[i] != want[i] {
				t.Errorf("%s = %v, want %q", cols[i], deref(got[i]), want[i])
			}
		}
		if got := contents(t, pool, "ty"); !strings.Contains(got, "(2,,,,,,,,,,,,,,,,)") {
			t.Errorf("row of NULLs: ty = %s", got)
		}
		// An update segment and a delete take the same path.
		upd := batch.Segment{Table: seg.Table, Columns: []string{"id", "vc", "arr"}, Key: []string{"id"}, Update: true,
			Match: []batch.Row{{v("1")}}, Upserts: []batch.Row{{v("1"), v("new"), v("{9}")}}}
		mustApply(t, a, mk(2, pos(1, 0), pos(2, 0), upd,
			batch.Segment{Table: seg.Table, Columns: cols, Key: []string{"id"}, Deletes: []batch.Row{{v("2")}}}))
		var vc, arr, c string
		if err := pool.QueryRow(context.Background(), "SELECT vc, arr::text, c::text FROM ty").Scan(&vc, &arr, &c); err != nil {
			t.Fatal(err)
		}
		if vc != "new" || arr != "{9}" || c != "ab" {
			t.Errorf("after update: vc=%q arr=%q c=%q, want new, {9}, kept", vc, arr, c)
		}
	})
}

func deref(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}

// A value longer than a varchar(n) column fails the batch, as COPY does;
// an explicit cast to varchar(n) would silently truncate it.
func TestOverlongValueFailsOnBothPaths(t *testing.T) {
	bothPaths(t, func(t *testing.T) {
		a, pool := newTarget(t, `CREATE TABLE t (id int PRIMARY KEY, v varchar(3))`)
		_, err := a.Apply(context.Background(), mk(1, pos(0, 0), pos(1, 0), upsert("1", "abcd")))
		if err == nil || !strings.Contains(err.Error(), "too long") {
			t.Fatalf("apply of an overlong value: err = %v, want value too long", err)
		}
		if got := contents(t, pool, "t"); got != "" {
			t.Fatalf("t = %s, want empty", got)
		}
	})
}

// Small segments reach the merge without creating any table: a batch
// touching many tables writes nothing to the catalog for staging.
func TestSmallSegmentsCreateNoStagingTable(t *testing.T) {
	var ddl strings.Builder
	var segs []batch.Segment
	for i := range 20 {
		fmt.Fprintf(&ddl, "CREATE TABLE t%d (id int PRIMARY KEY, v text);", i)
		segs = append(segs, batch.Segment{Table: batch.Table{Schema: "public", Name: fmt.Sprintf("t%d", i)},
			Columns: []string{"id", "v"}, Key: []string{"id"}, Upserts: []batch.Row{{v("1"), v("a")}, {v("2"), v("b")}}},
			batch.Segment{Table: batch.Table{Schema: "public", Name: fmt.Sprintf("t%d", i)},
				Columns: []string{"id", "v"}, Key: []string{"id"}, Deletes: []batch.Row{{v("3")}}})
	}
	ddl.WriteString(`CREATE TABLE created (tag text);
		CREATE FUNCTION note_create() RETURNS event_trigger LANGUAGE plpgsql AS $$
		BEGIN INSERT INTO created VALUES (tg_tag); END $$;
		CREATE EVENT TRIGGER note_create ON ddl_command_end EXECUTE FUNCTION note_create();
		ALTER EVENT TRIGGER note_create ENABLE ALWAYS;`) // the applier runs as a replica
	a, pool := newTarget(t, ddl.String())
	count := func() (n int) {
		if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM created").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	base := count()
	mustApply(t, a, mk(1, pos(0, 0), pos(1, 0), segs...))
	if n := count() - base; n != 0 {
		t.Fatalf("a batch of 20 two-row segments created %d tables, want 0", n)
	}
	if got := contents(t, pool, "t19"); got != "(1,a),(2,b)" {
		t.Fatalf("t19 = %s", got)
	}
	// Above the threshold, segments are staged (and the event trigger sees it).
	old := pgapply.SmallSegment
	pgapply.SmallSegment = 1
	defer func() { pgapply.SmallSegment = old }()
	mustApply(t, a, mk(2, pos(1, 0), pos(2, 0), segs[:2]...))
	if n := count() - base; n != 1 {
		t.Fatalf("one two-row segment above the threshold created %d tables, want 1", n)
	}
}

// Small segments reach the server as array literals: text that array
// input treats specially arrives exactly as it was.
func TestArrayLiteralKeepsAwkwardTextExactly(t *testing.T) {
	a, pool := newTarget(t, `CREATE TABLE aw (id int PRIMARY KEY, s text)`)
	vals := []string{"", "NULL", "null", " lead", "trail ", "{", "}", "{a,b}", "a,b", `\`, `"`, `\"`, `"\\"`,
		"tab\there", "new\nline", "ünïcødé ✓", `\N`, "'quoted'", "  "}
	seg := batch.Segment{Table: batch.Table{Schema: "public", Name: "aw"}, Columns: []string{"id", "s"}, Key: []string{"id"}}
	for i, s := range vals {
		seg.Upserts = append(seg.Upserts, batch.Row{v(fmt.Sprint(i)), v(s)})
	}
	seg.Upserts = append(seg.Upserts, batch.Row{v("100"), nil})
	mustApply(t, a, mk(1, pos(0, 0), pos(1, 0), seg))
	rows, err := pool.Query(context.Background(), `SELECT id, s FROM aw ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var id int
		var s *string
		if err := rows.Scan(&id, &s); err != nil {
			t.Fatal(err)
		}
		switch {
		case id == 100:
			if s != nil {
				t.Errorf("row 100 = %q, want NULL", *s)
			}
		case s == nil:
			t.Errorf("row %d = NULL, want %q", id, vals[id])
		case *s != vals[id]:
			t.Errorf("row %d = %q, want %q", id, *s, vals[id])
		}
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n != len(vals)+1 {
		t.Fatalf("%d rows, want %d", n, len(vals)+1)
	}
}
