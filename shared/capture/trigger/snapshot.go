// Package trigger captures changes with statement-level triggers that fill
// an event table, and drains it in commit-order-safe snapshot windows.
package trigger

import (
	"fmt"
	"strconv"
	"strings"
)

// Snapshot is a parsed pg_snapshot ("xmin:xmax:xip,xip,…"): transactions
// below Xmin are finished, those at or above Xmax had not started, and Xip
// lists the ones in progress between them.
type Snapshot struct {
	Xmin, Xmax uint64
	Xip        map[uint64]bool
	text       string
}

// ParseSnapshot parses the text form of pg_snapshot.
func ParseSnapshot(s string) (Snapshot, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return Snapshot{}, fmt.Errorf("trigger: malformed snapshot %q", s)
	}
	xmin, err1 := strconv.ParseUint(parts[0], 10, 64)
	xmax, err2 := strconv.ParseUint(parts[1], 10, 64)
	if err1 != nil || err2 != nil || xmin > xmax {
		return Snapshot{}, fmt.Errorf("trigger: malformed snapshot %q", s)
	}
	snap := Snapshot{Xmin: xmin, Xmax: xmax, Xip: map[uint64]bool{}, text: s}
	if parts[2] != "" {
		for _, x := range strings.Split(parts[2], ",") {
			v, err := strconv.ParseUint(x, 10, 64)
			if err != nil || v < xmin || v >= xmax {
				return Snapshot{}, fmt.Errorf("trigger: malformed snapshot %q", s)
			}
			snap.Xip[v] = true
		}
	}
	return snap, nil
}

func (s Snapshot) String() string { return s.text }

// Visible reports whether a committed transaction's effects are visible in
// the snapshot, as pg_visible_in_snapshot does.
func (s Snapshot) Visible(xid uint64) bool {
	if xid < s.Xmin {
		return true
	}
	if xid >= s.Xmax {
		return false
	}
	return !s.Xip[xid]
}

// Window is the set of transactions that became visible between two
// snapshots: visible in Cur and not in Prev. Consecutive windows partition
// the committed transactions exactly, whatever order they committed in, so
// a transaction that took low event ids but committed late lands in the
// window of its commit, never before and never twice.
type Window struct{ Prev, Cur Snapshot }

// Contains reports whether a committed transaction belongs to the window.
func (w Window) Contains(xid uint64) bool { return w.Cur.Visible(xid) && !w.Prev.Visible(xid) }

// Empty reports whether no transaction can be in the window: nothing
// finished between Prev and Cur.
func (w Window) Empty() bool {
	if w.Cur.Xmax != w.Prev.Xmax {
		return false
	}
	for x := range w.Prev.Xip {
		if !w.Cur.Xip[x] {
			return false
		}
	}
	return true
}
