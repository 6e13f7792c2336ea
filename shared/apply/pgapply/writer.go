package pgapply

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgferry/pgferry/shared/apply"
	"github.com/pgferry/pgferry/shared/batch"
)

// writer applies the epochs of one batch inside its transaction.
type writer struct {
	a      *Applier
	tx     pgx.Tx
	stages int
	rows   int
	held   int        // row changes held back for loading tables
	load   *loadState // nil while replaying held changes

	// pending holds merge statements of small segments, sent together
	// (one round trip) by flush; what names each for errors. Anything that
	// uses tx directly and could see or change their rows flushes first,
	// so statements still run in the order the epoch gives them.
	pending pgx.Batch
	what    []string
	// staged sends every segment through a staging table (see apply: a
	// value the target rejects is named by row and column only by COPY).
	staged bool
}

// queue adds a statement to the pending pipeline; what names it in errors.
func (w *writer) queue(what, sql string, args ...any) {
	w.pending.Queue(sql, args...)
	w.what = append(w.what, what)
}

// flush sends the pending statements and reads their results in order.
// Without a transaction (applyPipelined) it keeps them: they go out with
// the rest of the batch.
func (w *writer) flush(ctx context.Context) error {
	if len(w.what) == 0 || w.tx == nil {
		return nil
	}
	b, what := w.pending, w.what
	w.pending, w.what = pgx.Batch{}, nil
	br := w.tx.SendBatch(ctx, &b)
	for _, wh := range what {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return fmt.Errorf("%s: %w", wh, err)
		}
	}
	return br.Close()
}

// info returns t's catalog data; without a transaction only what is
// cached.
func (w *writer) info(ctx context.Context, t batch.Table) (*tableInfo, error) {
	if w.tx == nil {
		w.a.mu.Lock()
		ti, ok := w.a.tables[t]
		w.a.mu.Unlock()
		if !ok {
			return nil, errFullPath
		}
		return ti, nil
	}
	return w.a.info(ctx, w.tx, t)
}

func ident(t batch.Table) string { return pgx.Identifier{t.Schema, t.Name}.Sanitize() }

func (w *writer) epoch(ctx context.Context, ep batch.Epoch) error {
	if w.load != nil {
		var err error
		if ep, err = w.divert(ctx, ep); err != nil {
			return err
		}
	}
	if len(ep.Truncate) > 0 {
		names := make([]string, len(ep.Truncate))
		for i, t := range ep.Truncate {
			names[i] = ident(t)
		}
		// One statement, so tables that reference each other empty together.
		w.queue("truncate "+strings.Join(names, ", "), "TRUNCATE "+strings.Join(names, ", "))
	}
	// Deletes children-first (reverse order of first appearance), then
	// upserts parents-first: the order foreign keys need when the target
	// enforces them.
	for i := len(ep.Segments) - 1; i >= 0; i-- {
		if s := &ep.Segments[i]; len(s.Deletes) > 0 {
			if err := w.deletes(ctx, s); err != nil {
				return fmt.Errorf("delete from %s: %w", s.Table, err)
			}
		}
	}
	for i := range ep.Segments {
		if s := &ep.Segments[i]; len(s.Upserts) > 0 {
			if s.Update {
				if err := w.updates(ctx, s); err != nil {
					return fmt.Errorf("update %s: %w", s.Table, err)
				}
				continue
			}
			if err := w.upserts(ctx, s); err != nil {
				return fmt.Errorf("upsert into %s: %w", s.Table, err)
			}
		}
	}
	return w.flush(ctx)
}

// resolve maps segment columns to the target: it returns the indexes of
// the columns to write (generated ones are skipped) and fails with
// ErrSchemaBehind if the target lacks any.
func resolve(ti *tableInfo, s *batch.Segment, names []string) ([]int, error) {
	var idx []int
	var missing []string
	for i, n := range names {
		c, ok := ti.cols[n]
		switch {
		case !ok:
			missing = append(missing, strconv.Quote(n))
		case !c.generated:
			idx = append(idx, i)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: %s lacks column %s", apply.ErrSchemaBehind, s.Table, strings.Join(missing, ", "))
	}
	return idx, nil
}

func pick(names []string, idx []int) []string {
	out := make([]string, len(idx))
	for i, j := range idx {
		out[i] = names[j]
	}
	return out
}

func quoteCols(names []string, prefix string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = prefix + pgx.Identifier{n}.Sanitize()
	}
	return strings.Join(q, ", ")
}

// nextStage names a new temporary staging table, unique within the
// transaction (the tables are dropped at commit).
func (w *writer) nextStage() string {
	w.stages++
	return pgx.Identifier{"pgferry_stage_" + strconv.Itoa(w.stages)}.Sanitize()
}

func (w *writer) upserts(ctx context.Context, s *batch.Segment) error {
	ti, err := w.info(ctx, s.Table)
	if err != nil {
		return err
	}
	idx, err := resolve(ti, s, s.Columns)
	if err != nil {
		return err
	}
	cols := pick(s.Columns, idx)
	src, err := w.columnsSource(ctx, s.Table, ti, cols, idx, s.Upserts)
	if err != nil {
		return err
	}
	w.rows += len(s.Upserts)
	overriding := ""
	var set []string
	for _, c := range cols {
		col := ti.cols[c]
		if col.always {
			overriding = " OVERRIDING SYSTEM VALUE"
		}
		if !col.always && !slices.Contains(s.Key, c) {
			set = append(set, pgx.Identifier{c}.Sanitize()+" = EXCLUDED."+pgx.Identifier{c}.Sanitize())
		}
	}
	// Managed columns the batch predates get, on insert only, the value
	// old rows have (see tableInfo.fill); they are not in the SET list,
	// so an existing row keeps its own.
	into := []string{quoteCols(cols, "")}
	sel := []string{quoteCols(cols, "")}
	args := src.args
	for _, c := range ti.fill(s.Columns) {
		into = append(into, pgx.Identifier{c.name}.Sanitize())
		if c.hasMissing {
			args = append(args, c.missing)
			// text to any type is an I/O conversion: the type's own input
			// function reads the value, as it does in COPY.
			sel = append(sel, fmt.Sprintf("CAST($%d::text AS %s)", len(args), c.typ))
		} else {
			sel = append(sel, fmt.Sprintf("CAST(NULL AS %s)", c.typ))
		}
	}
	insert := fmt.Sprintf("INSERT INTO %s (%s)%s SELECT %s FROM %s", ident(s.Table),
		strings.Join(into, ", "), overriding, strings.Join(sel, ", "), src.from)
	what := fmt.Sprintf("upsert into %s", s.Table)
	replace := func() {
		w.queue(what, fmt.Sprintf("DELETE FROM %s t USING %s WHERE %s", ident(s.Table), src.from, keyMatch(s.Key)), src.args...)
		w.queue(what, insert, args...)
	}
	switch {
	case len(s.Key) == 0:
		// Keyless: every entry is one row; duplicates stay duplicates.
		w.queue(what, insert, args...)
		return nil
	case !sameSet(ti.pk, s.Key):
		// The target has no matching primary key to conflict on: replace
		// rows by key instead.
		replace()
		return nil
	}
	merge := insert
	if len(set) == 0 {
		merge += fmt.Sprintf(" ON CONFLICT (%s) DO NOTHING", quoteCols(s.Key, ""))
	} else {
		merge += fmt.Sprintf(" ON CONFLICT (%s) DO UPDATE SET %s", quoteCols(s.Key, ""), strings.Join(set, ", "))
	}
	if !ti.otherUnique {
		w.queue(what, merge, args...)
		return nil
	}
	// Rows of one batch may swap the values of another unique column
	// (compaction nets the transactions that did it). Merged one row at a
	// time, a row meets the other's old value; replacing the segment's
	// rows (delete, then insert) does not. Replacing is the fallback only:
	// it resets the columns a batch does not carry and, where the target
	// refuses session_replication_role, fires ON DELETE actions.
	if w.tx == nil {
		return errFullPath // needs a savepoint
	}
	if err := w.flush(ctx); err != nil {
		return err
	}
	sp, err := w.tx.Begin(ctx)
	if err != nil {
		return err
	}
	_, err = sp.Exec(ctx, merge, args...)
	var pgErr *pgconn.PgError
	if err == nil || !errors.As(err, &pgErr) || (pgErr.Code != "23505" && pgErr.Code != "23P01") {
		if err != nil {
			_ = sp.Rollback(ctx)
			return err
		}
		return sp.Commit(ctx)
	}
	if err := sp.Rollback(ctx); err != nil {
		return err
	}
	replace()
	return w.flush(ctx)
}

func (w *writer) deletes(ctx context.Context, s *batch.Segment) error {
	ti, err := w.info(ctx, s.Table)
	if err != nil {
		return err
	}
	w.rows += len(s.Deletes)
	if len(s.Key) > 0 {
		if _, err := resolve(ti, s, s.Key); err != nil {
			return err
		}
		idx := make([]int, len(s.Key))
		for i := range idx {
			idx[i] = i
		}
		src, err := w.columnsSource(ctx, s.Table, ti, s.Key, idx, s.Deletes)
		if err != nil {
			return err
		}
		w.queue(fmt.Sprintf("delete from %s", s.Table),
			fmt.Sprintf("DELETE FROM %s t USING %s WHERE %s", ident(s.Table), src.from, keyMatch(s.Key)), src.args...)
		return nil
	}
	return w.keylessDeletes(ti, s)
}

// keylessDeletes removes one matching row per entry. Rows are matched on
// every column's text form (every type has one, unlike equality), and one
// physical row is picked so that duplicates are removed one at a time.
func (w *writer) keylessDeletes(ti *tableInfo, s *batch.Segment) error {
	var conds []string
	var idx []int
	for i, n := range s.Columns {
		if _, ok := ti.cols[n]; !ok {
			return fmt.Errorf("%w: %s lacks column %q", apply.ErrSchemaBehind, s.Table, n)
		}
		idx = append(idx, i)
		conds = append(conds, fmt.Sprintf("x.%s::text IS NOT DISTINCT FROM $%d", pgx.Identifier{n}.Sanitize(), len(idx)))
	}
	q := fmt.Sprintf("DELETE FROM %[1]s t WHERE (t.tableoid, t.ctid) = (SELECT x.tableoid, x.ctid FROM %[1]s x WHERE %[2]s LIMIT 1)",
		ident(s.Table), strings.Join(conds, " AND "))
	what := fmt.Sprintf("delete from %s", s.Table)
	for _, r := range s.Deletes {
		args := make([]any, len(idx))
		for i, j := range idx {
			args[i] = r[j]
		}
		w.queue(what, q, args...)
	}
	return nil
}

func keyMatch(key []string) string {
	conds := make([]string, len(key))
	for i, k := range key {
		q := pgx.Identifier{k}.Sanitize()
		conds[i] = "t." + q + " = s." + q
	}
	return strings.Join(conds, " AND ")
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}
