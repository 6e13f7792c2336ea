package rules

import (
	"fmt"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/config"
)

// Filtered reports whether the plan has row filters.
func (p *Plan) Filtered() bool { return len(p.conds) > 0 }

// Lets reports whether the plan lets source operation op through.
func (p *Plan) Lets(op string) bool { return p.ops == nil || p.ops[op] }

// Pass reports whether row r (over In) meets every filter. A filter
// column the source did not send (an unchanged TOAST value of slot
// capture without REPLICA IDENTITY FULL) is an error: the row's fate
// cannot be decided.
func (p *Plan) Pass(r batch.Row) (bool, error) {
	for i, c := range p.conds {
		v := r[c.idx]
		if v == batch.Unchanged {
			return false, fmt.Errorf("rules: %s: the source did not send column %s of %s (unchanged TOAST value): give the table REPLICA IDENTITY FULL", p.condKeys[i], p.In[c.idx], p.Table)
		}
		ok, err := c.holds(v)
		if err != nil {
			return false, fmt.Errorf("rules: %s: %s: %w", p.condKeys[i], p.Table, err)
		}
		if !ok {
			return false, nil
		}
	}
	return true, nil
}

// Row returns r (over In) as the target gets it: over Columns, values
// masked, hashed and replaced, deleted-at NULL. NULL stays NULL and a
// value the source did not send stays unsent (the target keeps the value
// it was given, shaped by the same rules).
func (p *Plan) Row(r batch.Row) batch.Row {
	out := make(batch.Row, len(p.keep))
	for i, j := range p.keep {
		if j < 0 {
			continue
		}
		v := r[j]
		if v != nil && v != batch.Unchanged && len(p.fns[i]) > 0 {
			s := *v
			for _, f := range p.fns[i] {
				s = f(s)
			}
			v = &s
		}
		out[i] = v
	}
	return out
}

// softDelete returns the change that marks the target row keyed like r
// (over In) deleted at: an update of the deleted-at column alone, which
// leaves the row's last image in place and is a no-op where the target
// has no such row.
func (p *Plan) softDelete(r batch.Row, at batch.Value) batch.Change {
	row := make(batch.Row, len(p.keep))
	for i, j := range p.keep {
		row[i] = batch.Unchanged
		if j < 0 {
			row[i] = at
		}
	}
	for _, j := range p.keyIdx {
		row[p.out(j)] = r[j]
	}
	return batch.Change{Table: p.Table, Op: batch.Update, Columns: p.Columns, Key: p.Key, New: []batch.Row{row}}
}

// out returns the Columns index of In column j (keys are always kept).
func (p *Plan) out(j int) int {
	for i, k := range p.keep {
		if k == j {
			return i
		}
	}
	return -1
}

// Apply returns what the target gets of ch, in order, for the compactor.
// deletedAt is the source commit time of ch's transaction in PostgreSQL's
// timestamptz text form; a soft-delete target's rows carry the pointer, so
// the caller may fill it in when the commit is read (see Fanout.Commit).
//
// Filters follow rows across their boundary: a new row that meets them
// is an upsert of the whole row (an insert, if the target never had it),
// and one that does not is a delete by key (a no-op, if the target never
// had it). Operations are the source's: an UPDATE let through may arrive
// as either. A keyless table's rows are their own identity, so an old row
// that fails the filters was never sent and is not deleted either.
func (p *Plan) Apply(ch batch.Change, deletedAt batch.Value) ([]batch.Change, error) {
	if p.Skip {
		return nil, nil
	}
	proj := func(rows []batch.Row, filter bool) (pass, fail []batch.Row, err error) {
		for _, r := range rows {
			ok := true
			if filter {
				if ok, err = p.Pass(r); err != nil {
					return nil, nil, err
				}
			}
			if ok {
				pass = append(pass, r)
			} else {
				fail = append(fail, r)
			}
		}
		return pass, fail, nil
	}
	rows := func(rs []batch.Row) []batch.Row {
		out := make([]batch.Row, len(rs))
		for i, r := range rs {
			out[i] = p.Row(r)
		}
		return out
	}
	shaped := func(op batch.Op, old, new []batch.Row) batch.Change {
		return batch.Change{Table: p.Table, Op: op, Columns: p.Columns, Key: p.Key, Old: rows(old), New: rows(new)}
	}
	keyed := len(p.Key) > 0
	filter := p.Filtered()
	switch ch.Op {
	case batch.Truncate:
		if !p.Lets(config.OpTruncate) {
			return nil, nil
		}
		return []batch.Change{ch}, nil
	case batch.Insert:
		if !p.Lets(config.OpInsert) {
			return nil, nil
		}
		pass, _, err := proj(ch.New, filter)
		if err != nil || len(pass) == 0 {
			return nil, err
		}
		return []batch.Change{shaped(batch.Insert, nil, pass)}, nil
	case batch.Delete:
		if !p.Lets(config.OpDelete) {
			return nil, nil
		}
		// An old row of a keyed table may hold only its key (slot capture
		// without REPLICA IDENTITY FULL): delete by key, unfiltered.
		old := ch.Old
		if !keyed {
			var err error
			if old, _, err = proj(ch.Old, filter); err != nil {
				return nil, err
			}
		}
		if len(old) == 0 {
			return nil, nil
		}
		if p.soft {
			out := make([]batch.Change, len(old))
			for i, r := range old {
				out[i] = p.softDelete(r, deletedAt)
			}
			return out, nil
		}
		return []batch.Change{shaped(batch.Delete, old, nil)}, nil
	case batch.Update:
		if !p.Lets(config.OpUpdate) {
			return nil, nil
		}
		pass, fail, err := proj(ch.New, filter)
		if err != nil {
			return nil, err
		}
		if filter && partial(pass) {
			// The row may be entering the filter, and the target would
			// leave a partial update of a row it does not have alone.
			return nil, fmt.Errorf("rules: %s: an update of %s left values unsent (unchanged TOAST) and the target's filters need the whole row: give the table REPLICA IDENTITY FULL", p.condKeys[0], p.Table)
		}
		if !keyed {
			old, _, err := proj(ch.Old, filter)
			if err != nil {
				return nil, err
			}
			if len(old)+len(pass) == 0 {
				return nil, nil
			}
			return []batch.Change{shaped(batch.Update, old, pass)}, nil
		}
		if !p.soft {
			// Rows that fail the filters go out as removals: the compactor
			// deletes every old key the new rows do not carry.
			return []batch.Change{shaped(batch.Update, append(append([]batch.Row{}, ch.Old...), fail...), pass)}, nil
		}
		newKeys := map[string]bool{}
		for _, r := range ch.New {
			newKeys[p.keyString(r)] = true
		}
		var out []batch.Change
		for _, r := range ch.Old {
			if !newKeys[p.keyString(r)] {
				out = append(out, p.softDelete(r, deletedAt))
			}
		}
		for _, r := range fail {
			out = append(out, p.softDelete(r, deletedAt))
		}
		if len(pass) > 0 {
			var old []batch.Row
			if partial(pass) {
				old = ch.Old // the key the target row is found at
			}
			out = append(out, shaped(batch.Update, old, pass))
		}
		return out, nil
	}
	return nil, fmt.Errorf("rules: %s: unknown operation %q", p.Table, ch.Op)
}

func (p *Plan) keyString(r batch.Row) string {
	var s []byte
	for _, j := range p.keyIdx {
		if r[j] == nil {
			s = append(s, 'N', 0)
			continue
		}
		s = fmt.Appendf(s, "%d:%s", len(*r[j]), *r[j])
	}
	return string(s)
}

func partial(rows []batch.Row) bool {
	for _, r := range rows {
		for _, v := range r {
			if v == batch.Unchanged {
				return true
			}
		}
	}
	return false
}
