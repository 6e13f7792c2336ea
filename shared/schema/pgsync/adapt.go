package pgsync

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/schema"
)

// adapt fits a batch captured before a schema change to the target as it
// now is (after a sync), so that it applies instead of being parked:
//   - a column the target lacks under the batch's name but has under a
//     later name (the source renamed it; the registry remembers the old
//     names) is written under the new name;
//   - a column neither the target nor the current source has (the source
//     dropped it, and sync dropped it on the target) is left out;
//   - changes to a table the target has since renamed (the registry
//     remembers former table names) are written to its new name;
//   - changes to a table neither has any more (dropped) are left out.
//
// Nothing else is touched: a column the source still has but the target
// lacks stays, and the retry fails loudly. It returns the adapted batch
// and a description of each change (none: the batch is returned as is).
func (a *Applier) adapt(ctx context.Context, b *batch.Batch) (*batch.Batch, []string, error) {
	des, err := a.sync.Desired(ctx)
	if err != nil {
		return nil, nil, err
	}
	type target struct {
		exists bool
		cols   []string
		former map[string]string
		// renamed is the table's current name when sync renamed it.
		renamed *batch.Table
	}
	targets := map[batch.Table]*target{}
	err = pgx.BeginTxFunc(ctx, a.dst, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		reg, err := loadRegistry(ctx, tx, a.pipeline)
		if err != nil {
			return err
		}
		look := func(t batch.Table) error {
			if _, ok := targets[t]; ok || t.Schema == a.capture {
				return nil
			}
			tg := &target{}
			name := schema.QName{Schema: t.Schema, Name: t.Name}
			for try := 0; try < 2; try++ {
				rows, err := tx.Query(ctx, `SELECT a.attname::text FROM pg_attribute a
				WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped`, name.Ident())
				if err != nil {
					return err
				}
				if tg.cols, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
					return err
				}
				tg.exists = len(tg.cols) > 0
				to, ok := reg.RenamedTo(name)
				if tg.exists || !ok {
					break
				}
				// Captured before a rename the target has since made.
				name = to
				tg.renamed = &batch.Table{Schema: to.Schema, Name: to.Name}
			}
			tg.former = reg.FormerNames(name)
			targets[t] = tg
			return nil
		}
		for _, ep := range b.Epochs {
			for _, t := range ep.Truncate {
				if err := look(t); err != nil {
					return err
				}
			}
			for _, s := range ep.Segments {
				if err := look(s.Table); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("read target tables: %w", err)
	}
	var changes []string
	gone := func(t batch.Table) bool {
		tg := targets[t]
		return tg != nil && !tg.exists && des.Table(schema.QName{Schema: t.Schema, Name: t.Name}) == nil
	}
	// to is the table's name on the target now (renamed or not).
	to := func(t batch.Table) batch.Table {
		if tg := targets[t]; tg != nil && tg.exists && tg.renamed != nil {
			changes = append(changes, fmt.Sprintf("changes to %s written to %s (renamed)", t, *tg.renamed))
			return *tg.renamed
		}
		return t
	}
	out := *b
	out.Epochs = nil
	for _, ep := range b.Epochs {
		var ne batch.Epoch
		for _, t := range ep.Truncate {
			if gone(t) {
				changes = append(changes, fmt.Sprintf("truncate of dropped table %s left out", t))
				continue
			}
			ne.Truncate = append(ne.Truncate, to(t))
		}
		for _, s := range ep.Segments {
			tg := targets[s.Table]
			switch {
			case tg == nil:
				ne.Segments = append(ne.Segments, s)
			case gone(s.Table):
				changes = append(changes, fmt.Sprintf("%d changes to dropped table %s left out", len(s.Upserts)+len(s.Deletes), s.Table))
			case tg.exists:
				s.Table = to(s.Table)
				src := des.Table(schema.QName{Schema: s.Table.Schema, Name: s.Table.Name})
				ns, c := adaptSegment(s, tg.cols, tg.former, src)
				changes = append(changes, c...)
				ne.Segments = append(ne.Segments, ns)
			default:
				ne.Segments = append(ne.Segments, s)
			}
		}
		out.Epochs = append(out.Epochs, ne)
	}
	return &out, changes, nil
}

// adaptSegment renames and drops the columns of one segment (see adapt).
// src is the table in the current source catalog (mapped), or nil.
func adaptSegment(s batch.Segment, cols []string, former map[string]string, src *schema.Table) (batch.Segment, []string) {
	var changes []string
	keep := make([]int, 0, len(s.Columns))
	names := make([]string, 0, len(s.Columns))
	rename := map[string]string{}
	for i, c := range s.Columns {
		switch {
		case slices.Contains(cols, c):
		case former[c] != "" && slices.Contains(cols, former[c]) && !slices.Contains(s.Columns, former[c]):
			rename[c] = former[c]
			changes = append(changes, fmt.Sprintf("column %s of %s written as %s (renamed)", c, s.Table, former[c]))
			c = former[c]
		case (src == nil || src.Column(c) == nil) && !slices.Contains(s.Key, c):
			changes = append(changes, fmt.Sprintf("column %s of %s left out (dropped on the source and the target)", c, s.Table))
			continue
		}
		keep = append(keep, i)
		names = append(names, c)
	}
	if len(changes) == 0 {
		return s, nil
	}
	project := func(rows []batch.Row) []batch.Row {
		out := make([]batch.Row, len(rows))
		for i, r := range rows {
			nr := make(batch.Row, len(keep))
			for j, k := range keep {
				nr[j] = r[k]
			}
			out[i] = nr
		}
		return out
	}
	ns := s
	ns.Columns = names
	ns.Upserts = project(s.Upserts)
	if len(s.Key) == 0 {
		ns.Deletes = project(s.Deletes) // keyless deletes are whole rows
	}
	ns.Key = make([]string, len(s.Key))
	for i, k := range s.Key {
		if to, ok := rename[k]; ok {
			k = to
		}
		ns.Key[i] = k
	}
	return ns, changes
}
