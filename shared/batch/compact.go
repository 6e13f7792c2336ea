package batch

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Op is the kind of a captured statement.
type Op byte

const (
	Insert   Op = 'I'
	Update   Op = 'U'
	Delete   Op = 'D'
	Truncate Op = 'T'
)

// Change is one captured statement on one table: the rows it removed (Old)
// and the rows it produced (New), each aligned with Columns. Old and New of
// an UPDATE need not be paired: the net effect of a statement is "remove
// Old, then add New", which is exact for any primary-key change.
type Change struct {
	Table   Table
	Op      Op
	Columns []string
	Key     []string // primary-key column names; empty for keyless tables
	Old     []Row
	New     []Row
}

// Compactor folds changes, in source order, into the net changes of a
// batch: one operation per row, insert+update → insert, insert+delete →
// nothing, update+delete → delete. It is not safe for concurrent use.
type Compactor struct {
	epochs []*epochState
	events int
}

type epochState struct {
	truncate []Table
	segs     []*segState
	byTable  map[Table]*segState
}

type segState struct {
	seg    Segment
	keyIdx []int
	keyed  map[string]*rowState
	order  []string
	counts map[string]*multiRow
}

type rowState struct {
	deleted bool
	absent  bool // born and then deleted: nothing to ship
	born    bool // did not exist before the batch (first seen as an INSERT)
	row     Row
	key     Row
	// match is set while the row is a partial image (see partial.go): the
	// key of the target row, as of the batch's start, that it updates.
	match Row
}

type multiRow struct {
	n   int
	row Row
}

// Events returns the number of row events added since the last Reset.
func (c *Compactor) Events() int { return c.events }

// Add folds one change in. It returns an error if a row does not match its
// columns or a key column is missing.
func (c *Compactor) Add(ch Change) error {
	if ch.Op == Truncate {
		c.truncate(ch.Table)
		return nil
	}
	seg, err := c.segment(ch)
	if err != nil {
		return err
	}
	for _, r := range append(ch.Old, ch.New...) {
		if len(r) != len(ch.Columns) {
			return fmt.Errorf("compact: %s: row has %d values for %d columns", ch.Table, len(r), len(ch.Columns))
		}
	}
	if ch.Op == Update && hasUnchanged(ch.New) {
		return c.addPartial(ch, seg)
	}
	c.events += len(ch.Old) + len(ch.New)
	if seg.keyed == nil {
		for _, r := range ch.Old {
			seg.count(r, -1)
		}
		for _, r := range ch.New {
			seg.count(r, +1)
		}
		return nil
	}
	var newKeys map[string]bool
	if ch.Op == Update {
		newKeys = make(map[string]bool, len(ch.New))
		for _, r := range ch.New {
			newKeys[seg.keyString(r)] = true
		}
	}
	for _, r := range ch.Old {
		if k := seg.keyString(r); !newKeys[k] {
			seg.remove(k, seg.keyOf(r))
		}
	}
	for _, r := range ch.New {
		seg.upsert(seg.keyString(r), r, ch.Op == Insert)
	}
	return nil
}

func (c *Compactor) current() *epochState {
	if len(c.epochs) == 0 {
		c.newEpoch()
	}
	return c.epochs[len(c.epochs)-1]
}

func (c *Compactor) newEpoch() *epochState {
	e := &epochState{byTable: map[Table]*segState{}}
	c.epochs = append(c.epochs, e)
	return e
}

// truncate voids the table's pending changes (it is emptied anyway) and
// schedules the TRUNCATE after whatever else the current epoch holds, by
// opening a new epoch if needed: a partition's truncate must still run
// after earlier changes to its root that may have landed in it.
func (c *Compactor) truncate(t Table) {
	for _, e := range c.epochs {
		if s, ok := e.byTable[t]; ok {
			delete(e.byTable, t)
			e.segs = slices.DeleteFunc(e.segs, func(x *segState) bool { return x == s })
		}
	}
	e := c.current()
	if len(e.segs) > 0 {
		e = c.newEpoch()
	}
	if !slices.Contains(e.truncate, t) {
		e.truncate = append(e.truncate, t)
	}
}

// segment returns the table's segment in the current epoch, opening a new
// epoch when the table's shape (columns or key) changed mid-batch.
func (c *Compactor) segment(ch Change) (*segState, error) {
	e := c.current()
	if s, ok := e.byTable[ch.Table]; ok {
		if slices.Equal(s.seg.Columns, ch.Columns) && slices.Equal(s.seg.Key, ch.Key) {
			return s, nil
		}
		e = c.newEpoch()
	}
	s := &segState{seg: Segment{Table: ch.Table, Columns: slices.Clone(ch.Columns), Key: slices.Clone(ch.Key)}}
	if len(ch.Key) == 0 {
		s.counts = map[string]*multiRow{}
	} else {
		s.keyed = map[string]*rowState{}
		for _, k := range ch.Key {
			i := slices.Index(ch.Columns, k)
			if i < 0 {
				return nil, fmt.Errorf("compact: %s: key column %q is not among the captured columns", ch.Table, k)
			}
			s.keyIdx = append(s.keyIdx, i)
		}
	}
	e.byTable[ch.Table] = s
	e.segs = append(e.segs, s)
	return s, nil
}

func (s *segState) keyOf(r Row) Row {
	k := make(Row, len(s.keyIdx))
	for i, j := range s.keyIdx {
		k[i] = r[j]
	}
	return k
}

func (s *segState) keyString(r Row) string {
	var b strings.Builder
	for _, j := range s.keyIdx {
		writeValue(&b, r[j])
	}
	return b.String()
}

// writeValue appends an unambiguous encoding of v (length-prefixed, with a
// distinct marker for NULL) so that tuples can be map keys.
func writeValue(b *strings.Builder, v Value) {
	if v == nil {
		b.WriteString("N;")
		return
	}
	b.WriteString(strconv.Itoa(len(*v)))
	b.WriteByte(':')
	b.WriteString(*v)
}

func (s *segState) upsert(k string, r Row, insert bool) {
	st, ok := s.keyed[k]
	if !ok {
		st = &rowState{born: insert}
		s.keyed[k] = st
		s.order = append(s.order, k)
	}
	if st.match != nil {
		s.supersede(k, st)
	}
	st.deleted, st.absent, st.row, st.key = false, false, r, nil
}

func (s *segState) remove(k string, key Row) {
	st, ok := s.keyed[k]
	if !ok {
		s.keyed[k] = &rowState{deleted: true, key: key}
		s.order = append(s.order, k)
		return
	}
	if st.born {
		// Inserted and deleted within the batch: the target never needs it.
		st.absent, st.row = true, nil
		return
	}
	if st.match != nil {
		// A partial image: the target row to delete is where it started.
		key, st.match = st.match, nil
	}
	st.deleted, st.row, st.key = true, nil, key
}

func (s *segState) count(r Row, d int) {
	var b strings.Builder
	for _, v := range r {
		writeValue(&b, v)
	}
	k := b.String()
	m, ok := s.counts[k]
	if !ok {
		m = &multiRow{row: r}
		s.counts[k] = m
		s.order = append(s.order, k)
	}
	m.n += d
}

// Epochs returns the compacted epochs; empty segments and epochs are left
// out.
func (c *Compactor) Epochs() []Epoch {
	var out []Epoch
	for _, e := range c.epochs {
		ep := Epoch{Truncate: e.truncate}
		for _, s := range e.segs {
			seg := s.seg
			var parts partials
			for _, k := range s.order {
				if s.keyed != nil {
					switch st := s.keyed[k]; {
					case st.absent:
					case st.deleted:
						seg.Deletes = append(seg.Deletes, st.key)
					case st.match != nil:
						parts.add(st)
					default:
						seg.Upserts = append(seg.Upserts, st.row)
					}
					continue
				}
				m := s.counts[k]
				for i := 0; i < m.n; i++ {
					seg.Upserts = append(seg.Upserts, m.row)
				}
				for i := 0; i > m.n; i-- {
					seg.Deletes = append(seg.Deletes, m.row)
				}
			}
			// Partial updates go before the table's upserts: a row inserted
			// at a key that a partial update moves away from must land
			// after the move.
			ep.Segments = append(ep.Segments, parts.segments(s.seg)...)
			if len(seg.Upserts)+len(seg.Deletes) > 0 {
				ep.Segments = append(ep.Segments, seg)
			}
		}
		if len(ep.Truncate)+len(ep.Segments) > 0 {
			out = append(out, ep)
		}
	}
	return out
}

// Reset empties the compactor for the next batch.
func (c *Compactor) Reset() { *c = Compactor{} }
