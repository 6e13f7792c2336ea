package pgsync

import (
	"context"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/pgferry/pgferry/shared/apply/pgapply"
	"github.com/pgferry/pgferry/shared/schema"
)

// An initial load drops a table's secondary indexes and unique
// constraints while it copies and rebuilds them afterwards; until then it
// lists them in pgferry.load_indexes (see pgapply's loadindexes.go). Sync
// must not fight it: re-creating a held unique index under the load would
// make chunks copied at different moments collide, and any re-created
// index makes the load's rebuild meet an object it did not expect. So a
// held object counts as present on the target, with the source's
// definition, and the diff neither creates nor drops it. What the source
// did to it meanwhile goes into the load's list instead: a changed
// definition rewrites the held row, a dropped object is forgotten. The
// load then rebuilds exactly what the source has.

// holdForLoad adds the objects loads hold to cur (the target catalog just
// read) as des (the desired catalog) defines them, and with write brings
// the held rows of pipeline in step with des in tx (another pipeline's
// rows are only respected: its tables are not in des).
func holdForLoad(ctx context.Context, tx pgx.Tx, pipeline string, des, cur *schema.Catalog, held []pgapply.HeldIndex, write bool) error {
	for _, h := range held {
		write := write && h.Pipeline == pipeline
		q := schema.QName{Schema: h.Table.Schema, Name: h.Table.Name}
		want, have := findTable(des, q), findTable(cur, q)
		var ix *schema.Index
		var con *schema.Constraint
		if want != nil {
			if i := slices.IndexFunc(want.Indexes, func(x *schema.Index) bool { return x.Name == h.Name }); i >= 0 {
				ix = want.Indexes[i]
			}
			if i := slices.IndexFunc(want.Constraints, func(x *schema.Constraint) bool {
				return x.Name == h.Name && (x.Kind == 'u' || x.Kind == 'x')
			}); i >= 0 {
				con = want.Constraints[i]
			}
		}
		switch {
		case ix == nil && con == nil:
			// The source no longer has it (or no longer has the table).
			if write {
				if err := pgapply.ForgetHeldIndex(ctx, tx, h); err != nil {
					return err
				}
			}
			continue
		case write:
			now := pgapply.HeldIndex{Pipeline: h.Pipeline, Table: h.Table, Name: h.Name}
			if con != nil {
				now.Constraint, now.Def = true, con.Def
			} else {
				now.Unique, now.Def = ix.Unique, ix.Using
			}
			if now != h {
				if err := pgapply.SetHeldIndex(ctx, tx, now); err != nil {
					return err
				}
			}
		}
		if have == nil {
			continue
		}
		if con != nil && !slices.ContainsFunc(have.Constraints, func(x *schema.Constraint) bool { return x.Name == h.Name }) {
			have.Constraints = append(have.Constraints, con)
		}
		if ix != nil && !slices.ContainsFunc(have.Indexes, func(x *schema.Index) bool { return x.Name == h.Name }) {
			have.Indexes = append(have.Indexes, ix)
		}
	}
	return nil
}

func findTable(c *schema.Catalog, q schema.QName) *schema.Table {
	i := slices.IndexFunc(c.Tables, func(t *schema.Table) bool { return t.QName == q })
	if i < 0 {
		return nil
	}
	return c.Tables[i]
}
