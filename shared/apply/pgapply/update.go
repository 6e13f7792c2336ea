package pgapply

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pgferry/pgferry/shared/batch"
)

// matchColumn names the staging column that holds the i-th key column of
// the row to update. The dots keep it apart from any real column name
// that a sane schema would have; it is quoted like every identifier.
func matchColumn(i int) string { return "pgferry.match." + strconv.Itoa(i) }

// updates applies an update segment (batch.Segment.Update): it sets only
// the segment's columns on the rows whose key equals each entry of Match,
// so columns the source did not send (unchanged TOAST values) keep the
// target's value. A row the target does not have is left alone.
func (w *writer) updates(ctx context.Context, s *batch.Segment) error {
	ti, err := w.info(ctx, s.Table)
	if err != nil {
		return err
	}
	if _, err := resolve(ti, s, s.Key); err != nil {
		return err
	}
	idx, err := resolve(ti, s, s.Columns)
	if err != nil {
		return err
	}
	cols := pick(s.Columns, idx)
	var set []string
	for _, c := range cols {
		if ti.cols[c].always {
			// GENERATED ALWAYS identity columns cannot be SET; they are
			// key columns in practice and are matched instead.
			continue
		}
		q := pgx.Identifier{c}.Sanitize()
		set = append(set, q+" = s."+q)
	}
	w.rows += len(s.Upserts)
	if len(set) == 0 {
		return nil
	}
	sel := make([]string, 0, len(s.Key)+len(cols))
	names := make([]string, 0, len(s.Key)+len(cols))
	types := make([]string, 0, len(s.Key)+len(cols))
	conds := make([]string, len(s.Key))
	for i, k := range s.Key {
		m := pgx.Identifier{matchColumn(i)}.Sanitize()
		sel = append(sel, pgx.Identifier{k}.Sanitize()+" AS "+m)
		names = append(names, m)
		types = append(types, ti.cols[k].base)
		conds[i] = "t." + pgx.Identifier{k}.Sanitize() + " = s." + m
	}
	for _, c := range cols {
		sel = append(sel, pgx.Identifier{c}.Sanitize())
		names = append(names, pgx.Identifier{c}.Sanitize())
		types = append(types, ti.cols[c].base)
	}
	nk := len(s.Key)
	src, err := w.rowsSource(ctx, s.Table, sel, names, types, len(s.Upserts), func(r, i int) batch.Value {
		if i < nk {
			return s.Match[r][i]
		}
		return s.Upserts[r][idx[i-nk]]
	})
	if err != nil {
		return err
	}
	w.queue(fmt.Sprintf("update %s", s.Table), fmt.Sprintf("UPDATE %s t SET %s FROM %s WHERE %s",
		ident(s.Table), strings.Join(set, ", "), src.from, strings.Join(conds, " AND ")), src.args...)
	return nil
}
