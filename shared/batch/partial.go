package batch

import (
	"fmt"
	"strconv"
	"strings"
)

// Unchanged stands for a value the source did not send because the
// statement did not change it: an unchanged TOASTed column in an UPDATE
// read from a logical slot. Compare by identity (v == Unchanged). It never
// reaches the wire: the compactor fills it from an earlier image of the
// row in the same batch, or ships the row in an update segment without
// that column, so the target keeps its own value. Its text would make any
// COPY fail loudly, should one ever leak.
var Unchanged Value = func() Value { s := "\x00pgferry:unchanged\x00"; return &s }()

func hasUnchanged(rows []Row) bool {
	for _, r := range rows {
		for _, v := range r {
			if v == Unchanged {
				return true
			}
		}
	}
	return false
}

// fill returns r with each Unchanged value taken from img (which may
// itself hold Unchanged values).
func fill(r, img Row) Row {
	out := make(Row, len(r))
	for i, v := range r {
		if v == Unchanged {
			v = img[i]
		}
		out[i] = v
	}
	return out
}

// full reports whether the state holds a whole row image.
func (st *rowState) full() bool {
	return !st.deleted && !st.absent && st.match == nil && st.row != nil
}

// addPartial folds in a one-row UPDATE whose new row has Unchanged values.
//
// With a whole image of the row earlier in the batch (it was inserted, or
// updated with every value) the missing values are taken from it and the
// row becomes an ordinary upsert: insert+update stays an insert. Otherwise
// the row becomes a partial image that updates, on the target, the row
// whose key was match at the batch's start; two partial updates of one
// row merge. A key change moves the target row: match keeps the old key,
// and the old key is claimed (any later row there is a new row). If the
// new key still has business in this epoch (its old row was deleted, say)
// the update opens a new epoch, which the target applies after this one.
func (c *Compactor) addPartial(ch Change, seg *segState) error {
	if seg.keyed == nil {
		return fmt.Errorf("compact: %s: an update without some values needs a key (give the table a primary key or REPLICA IDENTITY FULL)", ch.Table)
	}
	if len(ch.New) != 1 || len(ch.Old) > 1 {
		return fmt.Errorf("compact: %s: an update with unchanged values must carry one row, got %d old and %d new", ch.Table, len(ch.Old), len(ch.New))
	}
	for _, r := range append(ch.Old, ch.New...) {
		if len(r) != len(ch.Columns) {
			return fmt.Errorf("compact: %s: row has %d values for %d columns", ch.Table, len(r), len(ch.Columns))
		}
	}
	c.events += len(ch.Old) + len(ch.New)
	r := ch.New[0]
	k, key := seg.keyString(r), seg.keyOf(r)
	k0, key0 := k, key
	if len(ch.Old) == 1 {
		k0, key0 = seg.keyString(ch.Old[0]), seg.keyOf(ch.Old[0])
	}
	for _, v := range key {
		if v == Unchanged {
			return fmt.Errorf("compact: %s: key column value missing from an update", ch.Table)
		}
	}
	old := seg.keyed[k0]
	switch {
	case old != nil && old.full():
		merged := fill(r, old.row)
		if k0 != k {
			seg.remove(k0, key0)
		}
		seg.upsert(k, merged, false)
		return nil
	case old != nil && (old.deleted || old.absent):
		return fmt.Errorf("compact: %s: update of a row that is not there (deleted earlier in the batch)", ch.Table)
	}
	match, row := key0, r
	if old != nil {
		match, row = old.match, fill(r, old.row)
	}
	if k0 == k {
		if old != nil {
			old.row = row
			return nil
		}
		seg.keyed[k] = &rowState{row: row, match: match}
		seg.order = append(seg.order, k)
		return nil
	}
	if st := seg.keyed[k]; st != nil && !st.absent {
		seg = c.reopen(seg)
		old, match, row = nil, key0, r
	}
	if old != nil {
		*old = rowState{absent: true, born: true}
	} else {
		seg.keyed[k0] = &rowState{absent: true, born: true}
		seg.order = append(seg.order, k0)
	}
	st := seg.keyed[k]
	if st == nil {
		st = &rowState{}
		seg.keyed[k] = st
		seg.order = append(seg.order, k)
	}
	*st = rowState{row: row, match: match}
	return nil
}

// reopen starts a new epoch holding an empty segment of s's table and
// shape, and returns that segment.
func (c *Compactor) reopen(s *segState) *segState {
	e := c.newEpoch()
	n := &segState{seg: Segment{Table: s.seg.Table, Columns: s.seg.Columns, Key: s.seg.Key}, keyIdx: s.keyIdx, keyed: map[string]*rowState{}}
	e.byTable[s.seg.Table] = n
	e.segs = append(e.segs, n)
	return n
}

// supersede is called when a whole row replaces the partial image st at
// key k. If the partial image was a move, the target row it would have
// moved stays where it was and must now go: the key it started at is
// released from its claim.
func (s *segState) supersede(k string, st *rowState) {
	m := st.match
	st.match = nil
	mk := keyTupleString(m)
	if mk == k {
		return
	}
	ms := s.keyed[mk]
	switch {
	case ms == nil:
		s.keyed[mk] = &rowState{deleted: true, key: m}
		s.order = append(s.order, mk)
	case ms.absent:
		*ms = rowState{deleted: true, key: m}
	case ms.deleted:
	default:
		// A new row was written at the old key: its upsert overwrites the
		// target row that stayed there, and a later delete must remove it.
		ms.born = false
	}
}

// keyTupleString encodes a key tuple exactly as segState.keyString encodes
// the key of a row.
func keyTupleString(key Row) string {
	var b strings.Builder
	for _, v := range key {
		writeValue(&b, v)
	}
	return b.String()
}

// partials groups a segment's partial images by the columns they carry.
type partials struct {
	order []string
	by    map[string]*Segment
	cols  map[string][]int
}

func (p *partials) add(st *rowState) {
	var mask strings.Builder
	var idx []int
	for i, v := range st.row {
		if v != Unchanged {
			mask.WriteString(strconv.Itoa(i))
			mask.WriteByte(',')
			idx = append(idx, i)
		}
	}
	m := mask.String()
	if p.by == nil {
		p.by, p.cols = map[string]*Segment{}, map[string][]int{}
	}
	if _, ok := p.by[m]; !ok {
		p.order = append(p.order, m)
		p.by[m] = &Segment{}
		p.cols[m] = idx
	}
	row := make(Row, len(idx))
	for i, j := range idx {
		row[i] = st.row[j]
	}
	seg := p.by[m]
	seg.Upserts = append(seg.Upserts, row)
	seg.Match = append(seg.Match, st.match)
}

// segments returns one update segment per column set, shaped after base.
func (p *partials) segments(base Segment) []Segment {
	out := make([]Segment, 0, len(p.order))
	for _, m := range p.order {
		s := p.by[m]
		cols := make([]string, len(p.cols[m]))
		for i, j := range p.cols[m] {
			cols[i] = base.Columns[j]
		}
		out = append(out, Segment{Table: base.Table, Columns: cols, Key: base.Key, Update: true, Upserts: s.Upserts, Match: s.Match})
	}
	return out
}
