package slot

import (
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/jackc/pglogrepl"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/pgtext"
)

// decode turns one pgoutput message (protocol version 1) into an event;
// ok is false for messages that only update the stream's state.
func (s *Stream) decode(data []byte) (ev Event, ok bool, err error) {
	if len(data) == 0 {
		return ev, false, fmt.Errorf("slot: empty pgoutput message")
	}
	switch data[0] {
	case 'B':
		var m pglogrepl.BeginMessage
		if err := m.Decode(data[1:]); err != nil {
			return ev, false, fmt.Errorf("slot: %w", err)
		}
		s.inTxn, s.skipping, s.heartbeat = true, LSN(m.FinalLSN) < s.skipBefore, ""
		s.commitTime = m.CommitTime.UnixMilli()
		return ev, false, nil
	case 'C':
		var m pglogrepl.CommitMessage
		if err := m.Decode(data[1:]); err != nil {
			return ev, false, fmt.Errorf("slot: %w", err)
		}
		skipped := s.skipping
		s.inTxn, s.skipping = false, false
		if skipped {
			return ev, false, nil
		}
		return Event{Kind: EventCommit, End: LSN(m.TransactionEndLSN), Time: m.CommitTime.UnixMilli(), Heartbeat: s.heartbeat}, true, nil
	case 'R':
		var m pglogrepl.RelationMessage
		if err := m.Decode(data[1:]); err != nil {
			return ev, false, fmt.Errorf("slot: %w", err)
		}
		r, err := s.c.lookup(s.ctx, m.RelationID)
		if err != nil {
			return ev, false, err
		}
		if r.gone {
			r.self = batch.Table{Schema: m.Namespace, Name: m.RelationName}
		}
		for _, col := range m.Columns {
			r.cols = append(r.cols, col.Name)
		}
		s.rels[m.RelationID] = &r
		return ev, false, nil
	case 'I', 'U', 'D':
		if s.skipping {
			return ev, false, nil
		}
		return s.rowChange(data)
	case 'T':
		if s.skipping {
			return ev, false, nil
		}
		return s.truncate(data)
	case 'M':
		if s.skipping {
			return ev, false, nil
		}
		return s.message(data)
	case 'Y', 'O':
		// Type and origin messages: nothing to do.
		return ev, false, nil
	}
	return ev, false, fmt.Errorf("slot: unexpected pgoutput message %q", data[0])
}

func (s *Stream) rel(relid uint32) (*relation, error) {
	r, ok := s.rels[relid]
	if !ok {
		return nil, fmt.Errorf("slot: change for relation %d arrived before its relation message", relid)
	}
	return r, nil
}

// rowChange decodes an INSERT, UPDATE or DELETE of one row.
func (s *Stream) rowChange(data []byte) (Event, bool, error) {
	op := data[0]
	if len(data) < 6 {
		return Event{}, false, fmt.Errorf("slot: short %c message", op)
	}
	r, err := s.rel(binary.BigEndian.Uint32(data[1:]))
	if err != nil {
		return Event{}, false, err
	}
	if r.gone {
		s.c.log.Warn("skipping a change of a dropped table", "table", r.self.String(), "op", string(op))
		return Event{}, false, nil
	}
	p := 5
	var old, newr batch.Row
	var oldKind byte
	if data[p] == 'K' || data[p] == 'O' {
		oldKind = data[p]
		n := 0
		if old, n, err = decodeTuple(data[p+1:], len(r.cols)); err != nil {
			return Event{}, false, fmt.Errorf("slot: %s: %w", r.self, err)
		}
		p += 1 + n
	}
	if op != 'D' {
		if p >= len(data) || data[p] != 'N' {
			return Event{}, false, fmt.Errorf("slot: %s: %c message without a new row", r.self, op)
		}
		if newr, _, err = decodeTuple(data[p+1:], len(r.cols)); err != nil {
			return Event{}, false, fmt.Errorf("slot: %s: %w", r.self, err)
		}
	}
	ch := batch.Change{Table: r.table, Columns: r.cols, Key: r.key}
	switch op {
	case 'I':
		ch.Op, ch.New = batch.Insert, []batch.Row{newr}
	case 'U':
		ch.Op, ch.New = batch.Update, []batch.Row{newr}
		if old != nil {
			ch.Old = []batch.Row{old}
			if oldKind == 'O' {
				// REPLICA IDENTITY FULL: the old row is whole (PostgreSQL
				// inlines its TOASTed values), so nothing is missing.
				for i, v := range newr {
					if v == batch.Unchanged {
						newr[i] = old[i]
					}
				}
			}
		}
	case 'D':
		if old == nil {
			return Event{}, false, fmt.Errorf("slot: %s: DELETE without an old row (no replica identity?)", r.self)
		}
		ch.Op, ch.Old = batch.Delete, []batch.Row{old}
	}
	return Event{Kind: EventChange, Change: ch, Bytes: len(data)}, true, nil
}

// decodeTuple decodes pgoutput TupleData of want columns. Text values
// share one string per tuple, and their headers one allocation.
func decodeTuple(src []byte, want int) (batch.Row, int, error) {
	if len(src) < 2 {
		return nil, 0, fmt.Errorf("short tuple")
	}
	n := int(binary.BigEndian.Uint16(src))
	if n != want {
		return nil, 0, fmt.Errorf("tuple has %d columns, the relation %d", n, want)
	}
	// First pass: find the end, so that all values can live in one string.
	p := 2
	for i := 0; i < n; i++ {
		if p >= len(src) {
			return nil, 0, fmt.Errorf("truncated tuple")
		}
		switch src[p] {
		case 'n', 'u':
			p++
		case 't':
			if p+5 > len(src) {
				return nil, 0, fmt.Errorf("truncated tuple")
			}
			p += 5 + int(binary.BigEndian.Uint32(src[p+1:]))
		default:
			return nil, 0, fmt.Errorf("unexpected tuple column kind %q", src[p])
		}
	}
	if p > len(src) {
		return nil, 0, fmt.Errorf("truncated tuple")
	}
	all := string(src[:p])
	row := make(batch.Row, n)
	vals := make([]string, n)
	p = 2
	for i := 0; i < n; i++ {
		switch all[p] {
		case 'n':
			p++
		case 'u':
			row[i] = batch.Unchanged
			p++
		case 't':
			l := int(binary.BigEndian.Uint32(src[p+1:]))
			vals[i] = all[p+5 : p+5+l]
			row[i] = &vals[i]
			p += 5 + l
		}
	}
	return row, p, nil
}

func (s *Stream) truncate(data []byte) (Event, bool, error) {
	var m pglogrepl.TruncateMessage
	if err := m.Decode(data[1:]); err != nil {
		return Event{}, false, fmt.Errorf("slot: %w", err)
	}
	// One statement may truncate several relations (a root and its
	// partitions, or CASCADE); each empties itself, not its root.
	ev := Event{Kind: EventTruncate}
	for _, relid := range m.RelationIDs {
		r, err := s.rel(relid)
		if err != nil {
			return Event{}, false, err
		}
		if !r.gone {
			ev.Truncate = append(ev.Truncate, r.self)
		}
	}
	return ev, len(ev.Truncate) > 0, nil
}

// wireMessage is the content of pgferry's own logical decoding messages.
type wireMessage struct {
	Heartbeat string       `json:"heartbeat"`
	Copy      uint32       `json:"copy"`
	Cols      []string     `json:"cols"`
	Rows      []string     `json:"rows"`
	Mark      *loadMessage `json:"mark"`
}

// loadMessage is an initial-load mark (see Capture.Mark).
type loadMessage struct {
	ID     string `json:"id"`
	Target string `json:"target"`
	Schema string `json:"schema"`
	Table  string `json:"table"`
	LoadID string `json:"load_id"`
}

// message handles pgferry's own messages: a heartbeat token, or rows
// copied when a table joined the publication (an INSERT of those rows).
func (s *Stream) message(data []byte) (Event, bool, error) {
	var m pglogrepl.LogicalDecodingMessage
	if err := m.Decode(data[1:]); err != nil {
		return Event{}, false, fmt.Errorf("slot: %w", err)
	}
	if m.Prefix != s.c.prefix || !m.Transactional {
		return Event{}, false, nil
	}
	var w wireMessage
	if err := json.Unmarshal(m.Content, &w); err != nil {
		return Event{}, false, fmt.Errorf("slot: pgferry message at %s: %w", m.LSN, err)
	}
	if w.Heartbeat != "" {
		s.heartbeat = w.Heartbeat
		return Event{}, false, nil
	}
	if mk := w.Mark; mk != nil {
		// The same change trigger capture delivers for a row inserted into
		// the marks table: the applier reads marks by column name.
		v := func(s string) batch.Value { return &s }
		return Event{Kind: EventChange, Bytes: len(m.Content), Change: batch.Change{
			Table:   batch.LoadMarks(s.c.cfg.Name),
			Op:      batch.Insert,
			Columns: []string{"id", batch.MarkTarget, batch.MarkSchema, batch.MarkTable, batch.MarkLoadID},
			Key:     []string{"id"},
			New:     []batch.Row{{v(mk.ID), v(mk.Target), v(mk.Schema), v(mk.Table), v(mk.LoadID)}},
		}}, true, nil
	}
	if w.Copy == 0 || len(w.Rows) == 0 {
		return Event{}, false, nil
	}
	r, err := s.c.lookup(s.ctx, w.Copy)
	if err != nil {
		return Event{}, false, err
	}
	if r.gone {
		return Event{}, false, nil
	}
	ch := batch.Change{Table: r.table, Op: batch.Insert, Columns: w.Cols, Key: r.key, New: make([]batch.Row, 0, len(w.Rows))}
	for _, rec := range w.Rows {
		row, err := pgtext.ParseRecordN(rec, len(w.Cols))
		if err != nil {
			return Event{}, false, fmt.Errorf("slot: copy of %s: %w", r.table, err)
		}
		ch.New = append(ch.New, row)
	}
	return Event{Kind: EventChange, Change: ch, Bytes: len(m.Content)}, true, nil
}
