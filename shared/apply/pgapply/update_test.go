package pgapply_test

import (
	"context"
	"strings"
	"testing"

	"github.com/pgferry/pgferry/shared/batch"
)

// TestUpdateSegmentKeepsColumnsItDoesNotCarry applies the segments slot
// capture makes for UPDATEs that left a TOASTed column unchanged: the
// target keeps its big value, a key change moves the row with it, a row
// the target does not have stays absent, and a plain upsert in the same
// epoch lands after the move.
func TestUpdateSegmentKeepsColumnsItDoesNotCarry(t *testing.T) {
	a, pool := newTarget(t, `CREATE TABLE docs (id int PRIMARY KEY, n text, big text NOT NULL,
		twice int GENERATED ALWAYS AS (id * 2) STORED)`)
	big := strings.Repeat("x", 200<<10)
	docs := batch.Table{Schema: "public", Name: "docs"}
	full := batch.Segment{Table: docs, Columns: []string{"id", "n", "big"}, Key: []string{"id"},
		Upserts: []batch.Row{{v("1"), v("a"), v(big)}, {v("2"), v("b"), v(big)}}}
	mustApply(t, a, mk(1, pos(0, 0), pos(1, 0), full))

	upd := batch.Segment{Table: docs, Columns: []string{"id", "n"}, Key: []string{"id"}, Update: true,
		Match:   []batch.Row{{v("1")}, {v("2")}, {v("99")}},
		Upserts: []batch.Row{{v("1"), v("a2")}, {v("20"), v("moved")}, {v("100"), v("absent")}}}
	reuse := batch.Segment{Table: docs, Columns: []string{"id", "n", "big"}, Key: []string{"id"},
		Upserts: []batch.Row{{v("2"), v("new at old key"), v("small")}}}
	res := mustApply(t, a, mk(2, pos(1, 0), pos(2, 0), upd, reuse))
	if !res.Applied {
		t.Fatal("batch 2 was not applied")
	}
	got := map[int]string{}
	rows, err := pool.Query(context.Background(), `SELECT id, n, length(big), twice FROM docs ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var summary []string
	for rows.Next() {
		var id, n, twice int
		var s string
		if err := rows.Scan(&id, &s, &n, &twice); err != nil {
			t.Fatal(err)
		}
		got[id] = s
		summary = append(summary, strings.Join([]string{s, itoa(n), itoa(twice)}, "/"))
	}
	want := []string{"a2/204800/2", "new at old key/5/4", "moved/204800/40"}
	if strings.Join(summary, " ") != strings.Join(want, " ") {
		t.Fatalf("target rows = %v, want %v", summary, want)
	}
	if _, ok := got[100]; ok {
		t.Fatal("an update of a row the target lacks inserted it")
	}
}

func itoa(n int) string {
	var b []byte
	if n == 0 {
		return "0"
	}
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}
