package rules

import (
	"regexp"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/schema"
)

// DeletedAtNum is the column number schema sync gives the soft-delete
// column in a desired catalog: no source column has it (PostgreSQL allows
// 1600), so the column keeps its identity across syncs.
const DeletedAtNum = 32767

// ShapeCatalog changes a source catalog (before apply_schema mapping) into
// what target t should hold under its rules (schema sync's desired
// catalog): excluded columns are left out, a hashed column is text (a hex
// SHA-256 fits no other type), and what cannot hold once values are
// removed or changed goes too: constraints, other than the primary key,
// and unique indexes that name a changed column, everything that names a
// removed one, and the views that use either. With deletes: soft every
// table gets _pgferry_deleted_at timestamptz. Table subsets are not
// applied here: they are a schema.Selection (see GetsRoot).
func ShapeCatalog(t config.Target, c *schema.Catalog) {
	if !t.HasRules() {
		return
	}
	byName := map[schema.QName]*schema.Table{}
	for _, tab := range c.Tables {
		byName[tab.QName] = tab
	}
	root := func(tab *schema.Table) schema.QName {
		q := tab.QName
		for p, n := tab.Parent, 0; p != nil && n < 64; n++ {
			q = *p
			pt := byName[*p]
			if pt == nil {
				break
			}
			p = pt.Parent
		}
		return q
	}
	gone := map[string]bool{} // ColumnKey of removed or changed columns
	for _, tab := range c.Tables {
		r := root(tab)
		removed, changed, hashed := map[string]bool{}, map[string]bool{}, map[string]bool{}
		for ri := range t.Rules {
			rule := &t.Rules[ri]
			if !rule.Pattern.Match(r.Schema, r.Name) {
				continue
			}
			for _, col := range tab.Columns {
				if slices.Contains(rule.Columns.Exclude, col.Name) || (len(rule.Columns.Include) > 0 && !slices.Contains(rule.Columns.Include, col.Name)) {
					removed[col.Name] = true
				}
			}
			for col := range rule.Mask {
				changed[col] = true
			}
			for col := range rule.Replace {
				changed[col] = true
			}
			for _, col := range rule.Hash {
				changed[col], hashed[col] = true, true
			}
		}
		tab.Columns = slices.DeleteFunc(tab.Columns, func(col *schema.Column) bool { return removed[col.Name] })
		for _, col := range tab.Columns {
			if hashed[col.Name] {
				col.Type, col.Default, col.Collation, col.HasMissing, col.Missing = "text", "", "", false, ""
			}
		}
		names := func(def string, cols map[string]bool) bool {
			for col := range cols {
				if mentions(def, col) {
					return true
				}
			}
			return false
		}
		tab.Constraints = slices.DeleteFunc(tab.Constraints, func(k *schema.Constraint) bool {
			return names(k.Def, removed) || (k.Kind != 'p' && names(k.Def, changed))
		})
		tab.Indexes = slices.DeleteFunc(tab.Indexes, func(ix *schema.Index) bool {
			return names(ix.Using, removed) || (ix.Unique && names(ix.Using, changed))
		})
		for col := range removed {
			gone[schema.ColumnKey(tab.QName, col)] = true
		}
		for col := range changed {
			gone[schema.ColumnKey(tab.QName, col)] = true
		}
		if t.SoftDeletes() && tab.Column(config.DeletedAtColumn) == nil {
			tab.Columns = append(tab.Columns, &schema.Column{Num: DeletedAtNum, Name: config.DeletedAtColumn, Type: "timestamp with time zone"})
		}
	}
	// Views over what is no longer there, and views over those.
	for changed := true; changed; {
		changed = false
		c.Views = slices.DeleteFunc(c.Views, func(v *schema.View) bool {
			if slices.ContainsFunc(v.Deps, func(d string) bool { return gone[d] }) {
				gone[v.Key()], changed = true, true
				return true
			}
			return false
		})
	}
}

// mentions reports whether SQL text def names column col, quoted or not.
// It may see a name in a string literal: then a constraint or index is
// left out that could have stayed, never the reverse.
func mentions(def, col string) bool {
	q := regexp.QuoteMeta(pgx.Identifier{col}.Sanitize())
	re := `(^|[^A-Za-z0-9_$"])(` + q
	if regexp.MustCompile(`^[a-z_][a-z0-9_$]*$`).MatchString(col) {
		re += `|` + regexp.QuoteMeta(col)
	}
	re += `)($|[^A-Za-z0-9_$"])`
	return regexp.MustCompile(re).MatchString(def)
}
