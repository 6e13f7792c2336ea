package batch

import (
	"fmt"
	"strings"
	"testing"
)

func v(s string) Value { return &s }

func row(vals ...string) Row {
	r := make(Row, len(vals))
	for i, x := range vals {
		if x != "<null>" {
			r[i] = v(x)
		}
	}
	return r
}

var (
	parent = Table{"public", "parent"}
	child  = Table{"public", "child"}
	cols   = []string{"id", "val"}
	key    = []string{"id"}
)

func ins(t Table, rows ...Row) Change {
	return Change{Table: t, Op: Insert, Columns: cols, Key: key, New: rows}
}
func upd(t Table, old, new []Row) Change {
	return Change{Table: t, Op: Update, Columns: cols, Key: key, Old: old, New: new}
}
func del(t Table, rows ...Row) Change {
	return Change{Table: t, Op: Delete, Columns: cols, Key: key, Old: rows}
}

// describe renders epochs compactly: "T[tables] | table: +id=val -id".
func describe(eps []Epoch) string {
	var parts []string
	for _, e := range eps {
		var b strings.Builder
		if len(e.Truncate) > 0 {
			fmt.Fprintf(&b, "T%v ", e.Truncate)
		}
		for _, s := range e.Segments {
			fmt.Fprintf(&b, "%s:", s.Table.Name)
			for _, r := range s.Upserts {
				b.WriteString(" +")
				for i, x := range r {
					if i > 0 {
						b.WriteByte('=')
					}
					if x == nil {
						b.WriteString("null")
					} else {
						b.WriteString(*x)
					}
				}
			}
			for _, r := range s.Deletes {
				b.WriteString(" -" + *r[0])
			}
			b.WriteString("; ")
		}
		parts = append(parts, strings.TrimSpace(b.String()))
	}
	return strings.Join(parts, " | ")
}

func TestCompactionNetEffect(t *testing.T) {
	cases := []struct {
		name    string
		changes []Change
		want    string
	}{
		{"insert then update is an insert of the last image",
			[]Change{ins(parent, row("1", "a")), upd(parent, []Row{row("1", "a")}, []Row{row("1", "b")})},
			"parent: +1=b;"},
		{"insert then delete is nothing",
			[]Change{ins(parent, row("1", "a")), del(parent, row("1", "a"))},
			""},
		{"update then delete is a delete",
			[]Change{upd(parent, []Row{row("1", "a")}, []Row{row("1", "b")}), del(parent, row("1", "b"))},
			"parent: -1;"},
		{"delete then insert is an upsert",
			[]Change{del(parent, row("1", "a")), ins(parent, row("1", "z"))},
			"parent: +1=z;"},
		{"insert, delete, insert again is an insert",
			[]Change{ins(parent, row("1", "a")), del(parent, row("1", "a")), ins(parent, row("1", "c"))},
			"parent: +1=c;"},
		{"primary key change deletes the old key",
			[]Change{upd(parent, []Row{row("1", "a")}, []Row{row("2", "a")})},
			"parent: +2=a -1;"},
		{"key swap inside one statement deletes nothing",
			[]Change{upd(parent, []Row{row("1", "a"), row("2", "b")}, []Row{row("2", "a"), row("1", "b")})},
			"parent: +2=a +1=b;"},
		{"null values survive",
			[]Change{ins(parent, row("1", "<null>"))},
			"parent: +1=null;"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var comp Compactor
			for _, ch := range c.changes {
				if err := comp.Add(ch); err != nil {
					t.Fatal(err)
				}
			}
			if got := describe(comp.Epochs()); got != c.want {
				t.Fatalf("got %q, want %q", got, c.want)
			}
		})
	}
}

func TestCompactionKeepsForeignKeyOrder(t *testing.T) {
	var comp Compactor
	for _, ch := range []Change{
		ins(parent, row("1", "p")),
		ins(child, row("10", "c")),
		upd(parent, []Row{row("1", "p")}, []Row{row("1", "p2")}),
	} {
		if err := comp.Add(ch); err != nil {
			t.Fatal(err)
		}
	}
	eps := comp.Epochs()
	if got, want := describe(eps), "parent: +1=p2; child: +10=c;"; got != want {
		t.Fatalf("got %q, want %q (parent must stay before child)", got, want)
	}
}

func TestCompactionTruncateWipesEarlierChanges(t *testing.T) {
	var comp Compactor
	for _, ch := range []Change{
		ins(parent, row("1", "a")),
		ins(child, row("10", "c")),
		{Table: child, Op: Truncate},
		{Table: parent, Op: Truncate},
		ins(parent, row("2", "b")),
	} {
		if err := comp.Add(ch); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := describe(comp.Epochs()), "T[public.child public.parent] parent: +2=b;"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestCompactionTruncateRunsAfterOtherTablesChanges(t *testing.T) {
	// A partition truncate must not be hoisted above changes to its root.
	root, part := Table{"public", "m"}, Table{"public", "m_1"}
	var comp Compactor
	_ = comp.Add(ins(root, row("1", "a")))
	_ = comp.Add(Change{Table: part, Op: Truncate})
	if got, want := describe(comp.Epochs()), "m: +1=a; | T[public.m_1]"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestCompactionShapeChangeOpensEpoch(t *testing.T) {
	var comp Compactor
	_ = comp.Add(ins(parent, row("1", "a")))
	_ = comp.Add(Change{Table: parent, Op: Insert, Columns: []string{"id", "val", "extra"}, Key: key, New: []Row{row("2", "b", "x")}})
	eps := comp.Epochs()
	if len(eps) != 2 {
		t.Fatalf("got %d epochs, want 2: %s", len(eps), describe(eps))
	}
}

func TestCompactionKeylessKeepsDuplicates(t *testing.T) {
	kl := Table{"public", "log"}
	mk := func(op Op, old, new []Row) Change {
		return Change{Table: kl, Op: op, Columns: cols, Old: old, New: new}
	}
	var comp Compactor
	_ = comp.Add(mk(Insert, nil, []Row{row("1", "a"), row("1", "a"), row("1", "a")}))
	_ = comp.Add(mk(Delete, []Row{row("1", "a")}, nil))
	_ = comp.Add(mk(Delete, []Row{row("2", "b")}, nil))
	eps := comp.Epochs()
	s := eps[0].Segments[0]
	if len(s.Upserts) != 2 || len(s.Deletes) != 1 {
		t.Fatalf("got %d inserts and %d deletes, want 2 and 1", len(s.Upserts), len(s.Deletes))
	}
}

func TestCompactionRejectsMissingKeyColumn(t *testing.T) {
	var comp Compactor
	err := comp.Add(Change{Table: parent, Op: Insert, Columns: []string{"val"}, Key: key, New: []Row{row("a")}})
	if err == nil {
		t.Fatal("a change without its key column was accepted")
	}
}
