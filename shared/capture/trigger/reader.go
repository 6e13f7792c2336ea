package trigger

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/capture"
	"github.com/pgferry/pgferry/shared/drain"
	"github.com/pgferry/pgferry/shared/pgtext"
)

// The drain reads windows through its Source port, in its own Txn type.
var _ drain.Source = (*Capture)(nil)

// InitialSnapshot returns the snapshot recorded when capture was installed.
func (c *Capture) InitialSnapshot(ctx context.Context) (string, error) {
	var s string
	err := c.pool.QueryRow(ctx, fmt.Sprintf("SELECT initial_snapshot FROM %s.state", pgx.Identifier{c.schema}.Sanitize())).Scan(&s)
	if err != nil {
		return "", fmt.Errorf("trigger: read initial snapshot (is capture installed?): %w", err)
	}
	return s, nil
}

// CurrentSnapshot returns the source's current snapshot. Every transaction
// visible in it has committed, so any later read sees all its events.
func (c *Capture) CurrentSnapshot(ctx context.Context) (string, error) {
	var s string
	if err := c.pool.QueryRow(ctx, "SELECT pg_current_snapshot()::text").Scan(&s); err != nil {
		return "", fmt.Errorf("trigger: take snapshot: %w", err)
	}
	return s, nil
}

// ReadWindow calls fn for each transaction in the window (prev, cur] whose
// largest event id is above after, in increasing order of that id. The
// result depends only on its arguments (events are immutable and every
// transaction in the window has committed), so a crashed drain re-reads
// exactly the same sequence. fn's error stops the read and is returned.
func (c *Capture) ReadWindow(ctx context.Context, prev, cur string, after int64, fn func(*drain.Txn) error) error {
	w, err := parseWindow(prev, cur)
	if err != nil {
		return err
	}
	if w.Empty() {
		return nil
	}
	clear(c.rels) // names and keys may have changed since the last window
	if err := c.loadShapes(ctx, prev, cur); err != nil {
		return err
	}
	rows, err := c.pool.Query(ctx, fmt.Sprintf(`
		SELECT txmax, ev_txid::text::bigint, ev_relid, ev_op::text, ev_shape, ev_cols, ev_old, ev_new,
		       (extract(epoch FROM ev_time) * 1000)::bigint
		FROM (SELECT e.*, max(ev_id) OVER (PARTITION BY ev_txid) AS txmax
		      FROM %s.events e
		      WHERE ev_txid >= pg_snapshot_xmin($1::pg_snapshot)
		        AND ev_txid < pg_snapshot_xmax($2::pg_snapshot)
		        AND pg_visible_in_snapshot(ev_txid, $2::pg_snapshot)
		        AND NOT pg_visible_in_snapshot(ev_txid, $1::pg_snapshot)) w
		WHERE txmax > $3
		ORDER BY txmax, ev_id`, pgx.Identifier{c.schema}.Sanitize()), prev, cur, after)
	if err != nil {
		return fmt.Errorf("trigger: read window: %w", err)
	}
	defer rows.Close()
	var txn *drain.Txn
	for rows.Next() {
		var (
			txmax, ms       int64
			xid             uint64
			relid           uint32
			op              string
			shape           *int64
			cols, old, newr []string
		)
		if err := rows.Scan(&txmax, &xid, &relid, &op, &shape, &cols, &old, &newr, &ms); err != nil {
			return fmt.Errorf("trigger: read window: %w", err)
		}
		if !w.Contains(xid) {
			return fmt.Errorf("trigger: event of transaction %d is outside window %s..%s", xid, prev, cur)
		}
		if txn != nil && txn.Max != txmax {
			if err := fn(txn); err != nil {
				return err
			}
			txn = nil
		}
		if txn == nil {
			txn = &drain.Txn{Max: txmax}
		}
		txn.Time = max(txn.Time, ms)
		var key []string
		if shape != nil {
			sh, ok := c.shapes[shapeID{relid, *shape}]
			if !ok {
				return fmt.Errorf("trigger: event of relation %d names shape %d, which %s.shapes does not hold "+
					"(a session set the setting pgferry.s*x%x itself?)", relid, *shape, c.schema, uint64(*shape))
			}
			cols, key = sh.cols, sh.key
		}
		ch, n, err := c.change(ctx, relid, batch.Op(op[0]), cols, key, old, newr)
		if err != nil {
			return err
		}
		if ch == nil {
			continue
		}
		txn.Changes = append(txn.Changes, *ch)
		txn.Events += len(ch.Old) + len(ch.New)
		txn.Bytes += n
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("trigger: read window: %w", err)
	}
	rows.Close()
	if txn != nil {
		return fn(txn)
	}
	return nil
}

func parseWindow(prev, cur string) (Window, error) {
	p, err := ParseSnapshot(prev)
	if err != nil {
		return Window{}, err
	}
	q, err := ParseSnapshot(cur)
	if err != nil {
		return Window{}, err
	}
	return Window{Prev: p, Cur: q}, nil
}

// change turns one event row into a Change; it returns nil for a relation
// dropped since (its target table goes with it). n is the payload size.
// cols are the columns the rows were written with; key is the replica
// identity key of the event's shape: empty (no key when written, or an
// event of capture version 2) takes the primary key of the current
// catalog, as version 2 always did.
func (c *Capture) change(ctx context.Context, relid uint32, op batch.Op, cols, key, old, newr []string) (*batch.Change, int, error) {
	rel, err := c.rel(ctx, relid)
	if err != nil {
		return nil, 0, err
	}
	if rel.Gone {
		c.log.Warn("skipping event of a dropped table", "relid", relid, "op", string(op))
		return nil, 0, nil
	}
	if op == batch.Truncate {
		return &batch.Change{Table: rel.Self, Op: op}, 0, nil
	}
	if len(key) == 0 {
		key = rel.PK
	}
	ch := &batch.Change{Table: rel.Table, Op: op, Columns: cols, Key: key}
	n := 0
	parse := func(recs []string) ([]batch.Row, error) {
		out := make([]batch.Row, 0, len(recs))
		for _, r := range recs {
			row, err := pgtext.ParseRecordN(r, len(cols))
			if err != nil {
				return nil, fmt.Errorf("trigger: %s: %w", rel.Self, err)
			}
			n += len(r)
			out = append(out, row)
		}
		return out, nil
	}
	if ch.Old, err = parse(old); err != nil {
		return nil, 0, err
	}
	if ch.New, err = parse(newr); err != nil {
		return nil, 0, err
	}
	return ch, n, nil
}

// shapeID names a table shape (capture version 3): see the shapes table in
// sql/source/capture.sql.
type shapeID struct {
	relid uint32
	id    int64
}

type shape struct {
	cols, key []string
}

// loadShapes reads the shapes that events of the window (prev, cur] name
// and the cache lacks. A shape never changes once written, and it commits
// with (or before) the first event that names it, so it is visible
// wherever that event is.
func (c *Capture) loadShapes(ctx context.Context, prev, cur string) error {
	rows, err := c.pool.Query(ctx, fmt.Sprintf(`
		SELECT s.sh_relid, s.sh_id, s.sh_cols, s.sh_key
		FROM %[1]s.shapes s
		WHERE (s.sh_relid, s.sh_id) IN (
			SELECT DISTINCT ev_relid, ev_shape FROM %[1]s.events
			WHERE ev_shape IS NOT NULL
			  AND ev_txid >= pg_snapshot_xmin($1::pg_snapshot)
			  AND ev_txid < pg_snapshot_xmax($2::pg_snapshot))`, pgx.Identifier{c.schema}.Sanitize()), prev, cur)
	if err != nil {
		return fmt.Errorf("trigger: read table shapes: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id shapeID
		var sh shape
		if err := rows.Scan(&id.relid, &id.id, &sh.cols, &sh.key); err != nil {
			return fmt.Errorf("trigger: read table shapes: %w", err)
		}
		c.shapes[id] = sh
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("trigger: read table shapes: %w", err)
	}
	return nil
}

func (c *Capture) rel(ctx context.Context, relid uint32) (capture.Relation, error) {
	if r, ok := c.rels[relid]; ok {
		return r, nil
	}
	r, err := capture.LookupRelation(ctx, c.pool, relid)
	if err != nil {
		return r, err
	}
	c.rels[relid] = r
	return r, nil
}

// Purge deletes events of transactions that finished before prev was
// taken; the window that ends at prev has shipped them all.
func (c *Capture) Purge(ctx context.Context, prev string) (int64, error) {
	tag, err := c.pool.Exec(ctx, fmt.Sprintf("DELETE FROM %s.events WHERE ev_txid < pg_snapshot_xmin($1::pg_snapshot)",
		pgx.Identifier{c.schema}.Sanitize()), prev)
	if err != nil {
		return 0, fmt.Errorf("trigger: purge shipped events: %w", err)
	}
	return tag.RowsAffected(), nil
}
