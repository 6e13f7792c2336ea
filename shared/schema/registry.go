package schema

import "slices"

// Registry records, on a target, which objects schema sync manages and
// which source object each one stands for. It is what makes a stateless
// diff safe and rename-aware:
//   - a table is tied to its source table's oid, a column to the source
//     column's (oid, attnum), so a rename on the source is a rename on
//     the target, never a drop plus an add;
//   - so is a composite type's attribute, in Columns under its row
//     type's (typrelid, attnum) (typrelid is a pg_class oid, so it never
//     collides with a table's);
//   - only registered objects are ever dropped: an index, constraint,
//     column, table, function or view that exists only on the target
//     (added by hand) is left alone.
//
// Types, sequences and extensions are never dropped, so they are not
// registered (only composite attributes are, for their renames).
type Registry struct {
	Tables map[uint32]QName
	// FormerTables are the earlier target names of renamed tables, oldest
	// first: a batch captured before a rename may still use one.
	FormerTables map[uint32][]QName
	Columns      map[ColumnID]RegColumn
	Constraints  map[ObjectID]bool
	// Indexes of tables and of materialized views (by the view's ID).
	Indexes map[ObjectID]bool
	// Functions are the target routines sync created or adopted, by
	// their target signature.
	Functions map[FuncID]bool
	// Views are the target views and materialized views sync manages,
	// by source identity.
	Views map[uint32]QName
}

// FuncID is a routine's signature on a target.
type FuncID struct {
	QName
	Args string
}

// ID is the function's signature.
func (f *Function) ID() FuncID { return FuncID{f.QName, f.Args} }

// Equal reports whether r and o register the same objects.
func (r *Registry) Equal(o *Registry) bool {
	if len(r.Tables) != len(o.Tables) || len(r.Columns) != len(o.Columns) || len(r.Constraints) != len(o.Constraints) ||
		len(r.Indexes) != len(o.Indexes) || len(r.Functions) != len(o.Functions) || len(r.Views) != len(o.Views) {
		return false
	}
	for k, v := range r.Tables {
		if w, ok := o.Tables[k]; !ok || w != v || !slices.Equal(r.FormerTables[k], o.FormerTables[k]) {
			return false
		}
	}
	for k, v := range r.Columns {
		w, ok := o.Columns[k]
		if !ok || w.Name != v.Name || !slices.Equal(w.Former, v.Former) {
			return false
		}
	}
	for k := range r.Constraints {
		if !o.Constraints[k] {
			return false
		}
	}
	for k := range r.Indexes {
		if !o.Indexes[k] {
			return false
		}
	}
	for k := range r.Functions {
		if !o.Functions[k] {
			return false
		}
	}
	for k, v := range r.Views {
		if w, ok := o.Views[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// ColumnID is a source column's identity.
type ColumnID struct {
	Table uint32
	Num   int16
}

// ObjectID names a constraint or index of a source table.
type ObjectID struct {
	Table uint32
	Name  string
}

// RegColumn is a registered column's target name and the names it had
// before (oldest first): a batch captured before a rename may still use one.
type RegColumn struct {
	Name   string
	Former []string
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{Tables: map[uint32]QName{}, FormerTables: map[uint32][]QName{}, Columns: map[ColumnID]RegColumn{},
		Constraints: map[ObjectID]bool{}, Indexes: map[ObjectID]bool{}, Functions: map[FuncID]bool{}, Views: map[uint32]QName{}}
}

// tableID returns the source id registered for the target table q.
func (r *Registry) tableID(q QName) (uint32, bool) {
	for id, n := range r.Tables {
		if n == q {
			return id, true
		}
	}
	return 0, false
}

// FormerNames maps, for the target table q, each earlier name of a
// renamed column to its current name.
func (r *Registry) FormerNames(q QName) map[string]string {
	id, ok := r.tableID(q)
	if !ok {
		return nil
	}
	out := map[string]string{}
	for k, c := range r.Columns {
		if k.Table == id {
			for _, f := range c.Former {
				out[f] = c.Name
			}
		}
	}
	return out
}

// RenamedTo returns the current target name of the table that was named q
// before a rename, if sync renamed one.
func (r *Registry) RenamedTo(q QName) (QName, bool) {
	for id, former := range r.FormerTables {
		if cur, ok := r.Tables[id]; ok && cur != q && slices.Contains(former, q) {
			return cur, true
		}
	}
	return QName{}, false
}
