package schema

import (
	"slices"
	"strings"
)

// What a plan does to one routine or view.
type action int

const (
	keep    action = iota
	create         // new on the target
	replace        // CREATE OR REPLACE changes it in place
	rebuild        // dropped (early) and created again (late)
)

// item is a desired routine or view, the target's (nil when new) and
// what the plan does to it.
type item struct {
	key      string
	fn, cfn  *Function
	view, cv *View
	act      action
}

// planRoutinesAndViews plans functions, procedures, aggregates, views and
// materialized views (after planTables, which marks reshaped tables):
//   - a new one is created; a changed one is replaced in place when
//     PostgreSQL allows it (CREATE OR REPLACE), otherwise dropped and
//     created again, and so is everything on the target that depends on
//     something dropped (a view over a rebuilt view, an aggregate over a
//     rebuilt function) or on a table whose columns are dropped or
//     retyped;
//   - a registered one the source no longer has is dropped;
//   - nothing is ever dropped with CASCADE: an object of the target's own
//     that depends on one of these makes the plan fail loudly rather
//     than vanish.
func (d *differ) planRoutinesAndViews() {
	var items []*item
	byKey := map[string]*item{}
	for _, f := range d.des.Functions {
		d.next.Functions[f.ID()] = true
		it := &item{key: f.Key(), fn: f, cfn: d.curFunction(f)}
		switch {
		case it.cfn == nil:
			it.act = create
		case it.cfn.Def == f.Def:
		case replaceable(it.cfn, f):
			it.act = replace
		default:
			it.act = rebuild
		}
		items = append(items, it)
		byKey[it.key] = it
	}
	for _, v := range d.des.Views {
		d.next.Views[v.ID] = v.QName
		for _, ix := range v.Indexes {
			d.next.Indexes[ObjectID{v.ID, ix.Name}] = true
		}
		it := &item{key: v.Key(), view: v, cv: d.curView(v.QName)}
		switch c := it.cv; {
		case c == nil:
			it.act = create
		case c.Materialized == v.Materialized && c.Def == v.Def && slices.Equal(c.Options, v.Options) && slices.Equal(c.Columns, v.Columns):
		case !v.Materialized && !c.Materialized && columnsExtend(c.Columns, v.Columns):
			it.act = replace
		default:
			it.act = rebuild
		}
		items = append(items, it)
		byKey[it.key] = it
	}
	// Registered views the source no longer has.
	var drops []node
	dropped := map[string]bool{}
	wanted := map[QName]bool{}
	for _, v := range d.des.Views {
		wanted[v.QName] = true
	}
	for _, q := range d.reg.Views {
		if c := d.curView(q); c != nil && !wanted[q] && !dropped[c.Key()] {
			dropped[c.Key()] = true
			drops = append(drops, node{key: c.Key(), deps: c.Deps, sql: []string{dropView(c)}})
		}
	}
	for _, it := range items {
		if it.act == rebuild {
			dropped[it.key] = true
		}
	}
	// Whatever depends on a dropped object, or a view over a reshaped
	// table, is rebuilt too.
	for changed := true; changed; {
		changed = false
		for _, it := range items {
			if it.act == rebuild || (it.cfn == nil && it.cv == nil) {
				continue
			}
			deps := it.cv.depsOrNil()
			if it.cfn != nil {
				deps = it.cfn.Deps
			}
			for _, k := range deps {
				if dropped[k] || (it.cv != nil && d.usesReshaped(k)) {
					it.act = rebuild
					dropped[it.key] = true
					changed = true
					break
				}
			}
		}
	}
	var late []node
	for _, it := range items {
		if it.act == rebuild {
			if it.cv != nil {
				drops = append(drops, node{key: it.key, deps: it.cv.Deps, sql: []string{dropView(it.cv)}})
			} else {
				drops = append(drops, node{key: it.key, deps: it.cfn.Deps, sql: []string{dropFunction(it.cfn)}})
			}
		}
		if it.fn != nil && it.act != keep {
			n := node{key: it.key, deps: it.fn.Deps, sql: []string{it.fn.Def}}
			if needsRelation(it.fn, byKey) {
				late = append(late, n)
			} else {
				d.typeNodes = append(d.typeNodes, n)
			}
		}
		if it.view != nil {
			late = append(late, d.viewNodes(it.view, it.cv, it.act)...)
		}
	}
	// Dependents are dropped before what they depend on.
	sorted := topoSort(drops)
	for i := len(sorted) - 1; i >= 0; i-- {
		for _, s := range sorted[i].sql {
			add(&d.dropObjs, s)
		}
	}
	for _, n := range topoSort(d.typeNodes) {
		for _, s := range n.sql {
			add(&d.typesFuncs, s)
		}
	}
	for _, n := range topoSort(late) {
		for _, s := range n.sql {
			add(&d.late, s)
		}
	}
	d.dropGoneRoutines()
}

// reshape marks columns of target table t as dropped or retyped.
func (d *differ) reshape(t QName, cols ...string) {
	k := RelKey(t)
	if d.reshaped[k] == nil {
		d.reshaped[k] = map[string]bool{}
	}
	for _, c := range cols {
		d.reshaped[k][c] = true
	}
}

// usesReshaped reports whether a view's dependency key names a column
// the plan drops or retypes, or a table it drops. (A whole-row use
// survives both, as PostgreSQL allows.)
func (d *differ) usesReshaped(key string) bool {
	p := strings.Split(key, "\x00")
	if p[0] != "rel" || len(p) < 3 {
		return false
	}
	cols := d.reshaped[RelKey(QName{p[1], p[2]})]
	return cols[""] || (len(p) == 4 && cols[p[3]])
}

func (v *View) depsOrNil() []string {
	if v == nil {
		return nil
	}
	return v.Deps
}

// viewNodes plans one desired view v against the target's c (nil when
// new): its statement and, for a materialized view, its indexes (those a
// rebuild or a change needs; changed or source-dropped registered ones
// are dropped).
func (d *differ) viewNodes(v, c *View, act action) []node {
	var out []node
	if act != keep {
		out = append(out, node{key: v.Key(), deps: v.Deps, sql: []string{createView(v)}})
	}
	if !v.Materialized {
		return out
	}
	var have []*Index
	if c != nil && act != rebuild {
		have = c.Indexes
	}
	for _, ix := range have {
		i := slices.IndexFunc(v.Indexes, func(x *Index) bool { return x.Name == ix.Name })
		changed := i >= 0 && (v.Indexes[i].Using != ix.Using || v.Indexes[i].Unique != ix.Unique)
		gone := i < 0 && d.reg.Indexes[ObjectID{v.ID, ix.Name}]
		if changed || gone {
			add(&d.dropIdx, dropIndex(c.Schema, ix.Name))
		}
	}
	for _, ix := range v.Indexes {
		i := slices.IndexFunc(have, func(x *Index) bool { return x.Name == ix.Name })
		if i >= 0 && have[i].Using == ix.Using && have[i].Unique == ix.Unique {
			continue
		}
		out = append(out, node{key: "index\x00" + v.Schema + "\x00" + ix.Name, deps: []string{v.Key()},
			sql: []string{createIndex(v.QName, ix)}})
	}
	return out
}

// dropGoneRoutines drops the registered routines the source no longer
// has, last (a column default may use one until its column changes),
// dependents first.
func (d *differ) dropGoneRoutines() {
	var gone []node
	for id := range d.reg.Functions {
		if d.next.Functions[id] {
			continue
		}
		for _, c := range d.cur.Functions {
			if c.ID() == id {
				gone = append(gone, node{key: c.Key(), deps: c.Deps, sql: []string{dropFunction(c)}})
			}
		}
	}
	sorted := topoSort(gone)
	for i := len(sorted) - 1; i >= 0; i-- {
		add(&d.dropFuncs, sorted[i].sql[0])
	}
}

func (d *differ) curView(q QName) *View {
	for _, v := range d.cur.Views {
		if v.QName == q {
			return v
		}
	}
	return nil
}

// replaceable reports whether CREATE OR REPLACE can turn routine c into
// f: PostgreSQL refuses another kind of routine, another result type,
// renamed parameters and fewer parameter defaults.
func replaceable(c, f *Function) bool {
	return c.Kind == f.Kind && c.Result == f.Result && slices.Equal(c.ArgNames, f.ArgNames) && f.Defaults >= c.Defaults
}

// columnsExtend reports whether CREATE OR REPLACE VIEW can turn a view
// with columns have into one with want: the old columns must stay, with
// their names and types, in their places; new ones may follow.
func columnsExtend(have, want []Attr) bool {
	return len(want) >= len(have) && slices.Equal(have, want[:len(have)])
}

// needsRelation reports whether a routine can only be created after the
// tables and views: it takes or returns a row type, or its SQL-standard
// body reads a relation (directly or through a routine that does).
func needsRelation(f *Function, fns map[string]*item) bool {
	seen := map[string]bool{}
	var walk func(deps []string) bool
	walk = func(deps []string) bool {
		for _, k := range deps {
			if strings.HasPrefix(k, "rel\x00") {
				return true
			}
			if it, ok := fns[k]; ok && it.fn != nil && !seen[k] {
				seen[k] = true
				if walk(it.fn.Deps) {
					return true
				}
			}
		}
		return false
	}
	return walk(f.Deps)
}
