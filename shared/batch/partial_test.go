package batch

import (
	"fmt"
	"strings"
	"testing"
)

// A table with a big TOASTable column: slot capture sends Unchanged for
// "big" when an UPDATE leaves it alone.
var (
	docs    = Table{"public", "docs"}
	docCols = []string{"id", "n", "big"}
	U       = "<unchanged>"
)

func drow(vals ...string) Row {
	r := make(Row, len(vals))
	for i, x := range vals {
		if x == U {
			r[i] = Unchanged
		} else {
			r[i] = v(x)
		}
	}
	return r
}

func dins(r Row) Change {
	return Change{Table: docs, Op: Insert, Columns: docCols, Key: key, New: []Row{r}}
}
func dupd(oldKey string, r Row) Change {
	ch := Change{Table: docs, Op: Update, Columns: docCols, Key: key, New: []Row{r}}
	if oldKey != "" {
		ch.Old = []Row{{v(oldKey), nil, nil}} // pgoutput's 'K' tuple: key columns only
	}
	return ch
}
func ddel(id string) Change {
	return Change{Table: docs, Op: Delete, Columns: docCols, Key: key, Old: []Row{{v(id), nil, nil}}}
}

// describePartial renders epochs as "epoch: seg; seg" with update segments
// as "~cols[match→values]", upserts "+values" and deletes "-key".
func describePartial(eps []Epoch) string {
	var out []string
	for _, e := range eps {
		var segs []string
		for _, s := range e.Segments {
			var b strings.Builder
			if s.Update {
				fmt.Fprintf(&b, "~%s", strings.Join(s.Columns, ","))
				for i, r := range s.Upserts {
					fmt.Fprintf(&b, "[%s→%s]", vals(s.Match[i]), vals(r))
				}
			}
			for _, r := range s.Upserts {
				if !s.Update {
					fmt.Fprintf(&b, "+%s ", vals(r))
				}
			}
			for _, r := range s.Deletes {
				fmt.Fprintf(&b, "-%s ", vals(r))
			}
			segs = append(segs, strings.TrimSpace(b.String()))
		}
		out = append(out, strings.Join(segs, "; "))
	}
	return strings.Join(out, " | ")
}

func vals(r Row) string {
	var p []string
	for _, x := range r {
		switch {
		case x == nil:
			p = append(p, "null")
		case x == Unchanged:
			p = append(p, "?")
		default:
			p = append(p, *x)
		}
	}
	return strings.Join(p, "=")
}

func TestCompactMergesUnchangedValues(t *testing.T) {
	cases := []struct {
		name    string
		changes []Change
		want    string
	}{
		{"insert then update keeps the inserted big value",
			[]Change{dins(drow("1", "a", "BIG")), dupd("", drow("1", "b", U))},
			"+1=b=BIG"},
		{"update without an earlier image ships only what was sent",
			[]Change{dupd("", drow("1", "b", U))},
			"~id,n[1→1=b]"},
		{"two partial updates merge",
			[]Change{dupd("", drow("1", "b", U)), dupd("", drow("1", "c", U))},
			"~id,n[1→1=c]"},
		{"a later whole row replaces the partial one",
			[]Change{dupd("", drow("1", "b", U)), dupd("", drow("1", "c", "NEW"))},
			"+1=c=NEW"},
		{"update then delete deletes",
			[]Change{dupd("", drow("1", "b", U)), ddel("1")},
			"-1"},
		{"key change without an image moves the target row",
			[]Change{dupd("1", drow("2", "b", U))},
			"~id,n[1→2=b]"},
		{"key change with an image is a delete and an upsert",
			[]Change{dins(drow("1", "a", "BIG")), dupd("1", drow("2", "b", U))},
			"+2=b=BIG"},
		{"a new row at the old key lands after the move",
			[]Change{dupd("1", drow("2", "b", U)), dins(drow("1", "new", "X"))},
			"~id,n[1→2=b]; +1=new=X"},
		{"moved then deleted deletes where the row started",
			[]Change{dupd("1", drow("2", "b", U)), ddel("2")},
			"-1"},
		{"moved twice is one move",
			[]Change{dupd("1", drow("2", "b", U)), dupd("2", drow("3", "c", U))},
			"~id,n[1→3=c]"},
		{"moved then rewritten whole releases the old key",
			[]Change{dupd("1", drow("2", "b", U)), dupd("", drow("2", "c", "NEW"))},
			"+2=c=NEW -1"},
		{"moving onto a key whose row was deleted waits for the next epoch",
			[]Change{ddel("2"), dupd("1", drow("2", "b", U))},
			"-2 | ~id,n[1→2=b]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var comp Compactor
			for _, ch := range c.changes {
				if err := comp.Add(ch); err != nil {
					t.Fatal(err)
				}
			}
			if got := describePartial(comp.Epochs()); got != c.want {
				t.Fatalf("got  %s\nwant %s", got, c.want)
			}
		})
	}
}

func TestCompactRefusesUnchangedValuesItCannotPlace(t *testing.T) {
	keyless := Change{Table: docs, Op: Update, Columns: docCols, New: []Row{drow("1", "b", U)}, Old: []Row{drow("1", "a", "BIG")}}
	var comp Compactor
	if err := comp.Add(keyless); err == nil || !strings.Contains(err.Error(), "needs a key") {
		t.Fatalf("keyless update with an unchanged value: got %v, want a refusal", err)
	}
	comp.Reset()
	if err := comp.Add(ddel("1")); err != nil {
		t.Fatal(err)
	}
	if err := comp.Add(dupd("", drow("1", "b", U))); err == nil {
		t.Fatal("update of a row deleted earlier in the batch was accepted")
	}
}

func TestUpdateSegmentsNeedTheirOwnEnvelopeVersion(t *testing.T) {
	var comp Compactor
	if err := comp.Add(dupd("1", drow("2", "b", U))); err != nil {
		t.Fatal(err)
	}
	b := Batch{Version: Version, From: Position{1, 0}, To: Position{2, 0}, Epochs: comp.Epochs()}
	data, err := b.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != VersionUpdates || describePartial(got.Epochs) != "~id,n[1→2=b]" {
		t.Fatalf("round trip: version %d, %s", got.Version, describePartial(got.Epochs))
	}
	forged := strings.Replace(string(data), fmt.Sprintf(`"v":%d`, VersionUpdates), fmt.Sprintf(`"v":%d`, Version), 1)
	if _, err := Decode([]byte(forged)); err == nil {
		t.Fatal("a version 1 envelope with update segments was accepted")
	}
	plain := Batch{From: Position{1, 0}, To: Position{2, 0}}
	if data, _ := plain.Encode(); !strings.Contains(string(data), `"v":1`) {
		t.Fatalf("a batch without update segments must stay version 1: %s", data)
	}
}
