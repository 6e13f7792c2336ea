package trigger

import "testing"

func mustSnap(t *testing.T, s string) Snapshot {
	t.Helper()
	snap, err := ParseSnapshot(s)
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

func TestWindowKeepsTransactionThatCommitsLate(t *testing.T) {
	// 100 is in progress at the first snapshot while 101 commits; the
	// window (prev, cur] takes 101, the next one takes 100 once it commits.
	prev := mustSnap(t, "100:100:")
	cur := mustSnap(t, "100:102:100")
	w1 := Window{prev, cur}
	if w1.Contains(100) {
		t.Fatal("in-progress transaction 100 shipped early")
	}
	if !w1.Contains(101) {
		t.Fatal("committed transaction 101 missing from its window")
	}
	next := mustSnap(t, "102:102:")
	w2 := Window{cur, next}
	if !w2.Contains(100) {
		t.Fatal("late committer 100 missing from the next window")
	}
	if w2.Contains(101) {
		t.Fatal("101 shipped twice")
	}
}

func TestWindowsPartitionTransactions(t *testing.T) {
	snaps := []string{"10:10:", "10:15:10,12", "12:18:12,16", "16:20:16", "20:20:"}
	seen := map[uint64]int{}
	for i := 0; i+1 < len(snaps); i++ {
		w := Window{mustSnap(t, snaps[i]), mustSnap(t, snaps[i+1])}
		for x := uint64(0); x < 25; x++ {
			if w.Contains(x) {
				seen[x]++
			}
		}
	}
	for x := uint64(10); x < 20; x++ {
		if seen[x] != 1 {
			t.Errorf("transaction %d appears in %d windows, want exactly 1", x, seen[x])
		}
	}
}

func TestWindowEmpty(t *testing.T) {
	cases := []struct {
		prev, cur string
		empty     bool
	}{
		{"5:5:", "5:5:", true},
		{"5:8:5,6", "5:8:5,6", true},
		{"5:8:5,6", "6:8:6", false},
		{"5:5:", "5:6:5", false},
	}
	for _, c := range cases {
		if got := (Window{mustSnap(t, c.prev), mustSnap(t, c.cur)}).Empty(); got != c.empty {
			t.Errorf("Window{%s, %s}.Empty() = %v, want %v", c.prev, c.cur, got, c.empty)
		}
	}
}

func TestParseSnapshotRejectsMalformed(t *testing.T) {
	for _, s := range []string{"", "1:2", "5:3:", "1:5:9", "a:b:"} {
		if _, err := ParseSnapshot(s); err == nil {
			t.Errorf("ParseSnapshot(%q) accepted", s)
		}
	}
}
