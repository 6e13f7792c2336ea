package pgapply

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/pgferry/pgferry/shared/batch"
)

// While a table is being loaded (pgferry.loads.state = 'loading'), its
// chunks are copied straight into it at different source snapshots. A
// batch must not write the table meanwhile: a chunk copied later from an
// older snapshot would overwrite the change. Instead the batch appends
// the table's part of each epoch to pgferry.load_held, in the batch's own
// transaction and in batch order. The load's mark (batch.LoadMarks), which
// the source commits after every chunk's snapshot was taken, arrives in
// the stream after every change a chunk missed; the batch that carries it
// replays the held parts in order over the finished copy, then its own
// part, rebuilds the unique indexes dropped for the load and sets the
// table 'loaded', all in one transaction. Rows are full images and
// replays are upserts and deletes by key, so the result is the source's
// state as of that batch. Other tables keep flowing throughout.

// heldPart is one epoch's changes of one loading table.
type heldPart struct {
	Truncate []batch.Table  `json:"tr,omitempty"`
	Seg      *batch.Segment `json:"seg,omitempty"`
}

// loadMark is a decoded load mark row.
type loadMark struct {
	table  batch.Table
	loadID string
}

// loadState is what one batch's writer knows about loads on its target.
type loadState struct {
	target  string
	loading map[batch.Table]string // table → load id
	pending map[batch.Table][]heldPart
	order   []batch.Table
	marks   []loadMark
	roots   map[batch.Table]batch.Table
}

// beginLoads reads which tables are loading; called under the watermark
// lock, which BeginLoad and the hand-over also take, so the set cannot
// change while the batch is applied.
func (w *writer) beginLoads(ctx context.Context, b *batch.Batch) error {
	ls := &loadState{target: b.Target, loading: map[batch.Table]string{}, pending: map[batch.Table][]heldPart{}, roots: map[batch.Table]batch.Table{}}
	rows, err := w.tx.Query(ctx, fmt.Sprintf(`SELECT tbl_schema, tbl_name, load_id FROM %s.loads WHERE pipeline = $1 AND state = 'loading'`,
		pgx.Identifier{Schema}.Sanitize()), w.a.pipeline)
	if err != nil {
		return fmt.Errorf("read loading tables: %w", err)
	}
	for rows.Next() {
		var t batch.Table
		var id string
		if err := rows.Scan(&t.Schema, &t.Name, &id); err != nil {
			return err
		}
		ls.loading[t] = id
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read loading tables: %w", err)
	}
	w.load = ls
	return nil
}

// divert takes the load marks and the parts of loading tables out of ep
// and returns what is applied now.
func (w *writer) divert(ctx context.Context, ep batch.Epoch) (batch.Epoch, error) {
	ls := w.load
	marks := batch.LoadMarks(w.a.pipeline)
	out := batch.Epoch{}
	for _, t := range ep.Truncate {
		root, err := w.rootOf(ctx, t)
		if err != nil {
			return out, err
		}
		if _, ok := ls.loading[root]; ok {
			ls.hold(root, heldPart{Truncate: []batch.Table{t}})
			continue
		}
		out.Truncate = append(out.Truncate, t)
	}
	for i := range ep.Segments {
		s := &ep.Segments[i]
		switch _, loading := ls.loading[s.Table]; {
		case s.Table == marks:
			if err := ls.readMarks(s); err != nil {
				return out, err
			}
		case loading:
			ls.hold(s.Table, heldPart{Seg: s})
		default:
			out.Segments = append(out.Segments, *s)
		}
	}
	return out, nil
}

func (ls *loadState) hold(t batch.Table, p heldPart) {
	if !slices.Contains(ls.order, t) {
		ls.order = append(ls.order, t)
	}
	ls.pending[t] = append(ls.pending[t], p)
}

func (ls *loadState) readMarks(s *batch.Segment) error {
	col := func(name string) int { return slices.Index(s.Columns, name) }
	it, is, in, il := col(batch.MarkTarget), col(batch.MarkSchema), col(batch.MarkTable), col(batch.MarkLoadID)
	if it < 0 || is < 0 || in < 0 || il < 0 {
		return fmt.Errorf("load mark has columns %q, want %s, %s, %s, %s", s.Columns, batch.MarkTarget, batch.MarkSchema, batch.MarkTable, batch.MarkLoadID)
	}
	for _, r := range s.Upserts {
		if r[it] == nil || *r[it] != ls.target || r[is] == nil || r[in] == nil || r[il] == nil {
			continue
		}
		t := batch.Table{Schema: *r[is], Name: *r[in]}
		ls.marks = append(ls.marks, loadMark{table: t, loadID: *r[il]})
		if !slices.Contains(ls.order, t) {
			ls.order = append(ls.order, t)
		}
	}
	return nil
}

// rootOf returns the partition root of t on the target (t itself for a
// plain table or a table the target lacks). Only asked while a load runs.
func (w *writer) rootOf(ctx context.Context, t batch.Table) (batch.Table, error) {
	ls := w.load
	if len(ls.loading) == 0 {
		return t, nil
	}
	if r, ok := ls.roots[t]; ok {
		return r, nil
	}
	r := t
	err := w.tx.QueryRow(ctx, `SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.oid = pg_partition_root(to_regclass($1))`, ident(t)).Scan(&r.Schema, &r.Name)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return t, fmt.Errorf("find partition root of %s: %w", t, err)
	}
	ls.roots[t] = r
	return r, nil
}

// finishLoads runs after the batch's epochs: a table whose mark arrived
// is handed over, the other loading tables' parts are held.
func (w *writer) finishLoads(ctx context.Context) error {
	ls := w.load
	for _, t := range ls.order {
		id, loading := ls.loading[t]
		marked := slices.ContainsFunc(ls.marks, func(m loadMark) bool { return m.table == t && m.loadID == id })
		if loading && marked {
			done, err := w.handOver(ctx, t, id, ls.pending[t])
			if err != nil {
				return fmt.Errorf("hand over loaded table %s: %w", t, err)
			}
			if done {
				continue
			}
		}
		if err := w.holdParts(ctx, t, ls.pending[t]); err != nil {
			return fmt.Errorf("hold changes of loading table %s: %w", t, err)
		}
	}
	return nil
}

func (w *writer) holdParts(ctx context.Context, t batch.Table, parts []heldPart) error {
	if len(parts) == 0 {
		return nil
	}
	var b pgx.Batch
	q := fmt.Sprintf(`INSERT INTO %s.load_held (pipeline, tbl_schema, tbl_name, part) VALUES ($1, $2, $3, $4)`, pgx.Identifier{Schema}.Sanitize())
	for _, p := range parts {
		data, err := json.Marshal(p)
		if err != nil {
			return err
		}
		b.Queue(q, w.a.pipeline, t.Schema, t.Name, string(data))
		if p.Seg != nil {
			w.held += len(p.Seg.Upserts) + len(p.Seg.Deletes)
		}
	}
	return w.tx.SendBatch(ctx, &b).Close()
}

// handOver replays t's held parts and then pending (this batch's parts)
// over the copied table, rebuilds the indexes kept for hand-over and marks
// the load finished. It reports false, changing nothing, if the load's
// chunks are not all copied (a mark of a load that was restarted).
func (w *writer) handOver(ctx context.Context, t batch.Table, loadID string, pending []heldPart) (bool, error) {
	sch := pgx.Identifier{Schema}.Sanitize()
	var chunks, done int
	err := w.tx.QueryRow(ctx, fmt.Sprintf(`SELECT l.chunks, (SELECT count(*) FROM %[1]s.load_chunks c WHERE c.load_id = l.load_id)
		FROM %[1]s.loads l WHERE pipeline = $1 AND tbl_schema = $2 AND tbl_name = $3 AND load_id = $4 AND state = 'loading'
		FOR UPDATE`, sch), w.a.pipeline, t.Schema, t.Name, loadID).Scan(&chunks, &done)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if done < chunks {
		w.a.log.Warn("load mark before every chunk was copied; holding on", "table", t, "load", loadID, "copied", done, "chunks", chunks)
		return false, nil
	}
	ls := w.load
	w.load = nil // replayed parts are written, not diverted again
	defer func() { w.load = ls }()
	replay := func(p heldPart) error {
		ep := batch.Epoch{Truncate: p.Truncate}
		if p.Seg != nil {
			ep.Segments = []batch.Segment{*p.Seg}
		}
		return w.epoch(ctx, ep)
	}
	// Held parts, in pages, in order.
	var last int64
	for {
		rows, err := w.tx.Query(ctx, fmt.Sprintf(`SELECT id, part FROM %s.load_held
			WHERE pipeline = $1 AND tbl_schema = $2 AND tbl_name = $3 AND id > $4 ORDER BY id LIMIT 200`, sch),
			w.a.pipeline, t.Schema, t.Name, last)
		if err != nil {
			return false, err
		}
		var page []heldPart
		for rows.Next() {
			var data string
			var p heldPart
			if err := rows.Scan(&last, &data); err != nil {
				rows.Close()
				return false, err
			}
			if err := json.Unmarshal([]byte(data), &p); err != nil {
				rows.Close()
				return false, fmt.Errorf("held change %d: %w", last, err)
			}
			page = append(page, p)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return false, err
		}
		for _, p := range page {
			if err := replay(p); err != nil {
				return false, err
			}
		}
		if len(page) == 0 {
			break
		}
	}
	for _, p := range pending {
		if err := replay(p); err != nil {
			return false, err
		}
	}
	if err := rebuildIndexes(ctx, w.tx, w.a.log, w.a.pipeline, t, true); err != nil {
		return false, err
	}
	if _, err := w.tx.Exec(ctx, fmt.Sprintf(`DELETE FROM %s.load_held WHERE pipeline = $1 AND tbl_schema = $2 AND tbl_name = $3`, sch),
		w.a.pipeline, t.Schema, t.Name); err != nil {
		return false, err
	}
	if _, err := w.tx.Exec(ctx, fmt.Sprintf(`DELETE FROM %s.load_chunks WHERE load_id = $1`, sch), loadID); err != nil {
		return false, err
	}
	if _, err := w.tx.Exec(ctx, fmt.Sprintf(`UPDATE %s.loads SET state = 'loaded', finished_at = now()
		WHERE pipeline = $1 AND tbl_schema = $2 AND tbl_name = $3`, sch), w.a.pipeline, t.Schema, t.Name); err != nil {
		return false, err
	}
	w.a.log.Info("loaded table handed over to the change stream", "table", t, "load", loadID, "held_until", last)
	return true, nil
}
