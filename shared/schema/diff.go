package schema

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Step is one DDL statement of a plan.
type Step struct {
	SQL string
	// Optional steps may fail without failing the plan (CREATE EXTENSION
	// on a target that does not offer the extension or the privilege);
	// they run under a savepoint and a failure is reported as a warning.
	Optional bool
	// CommitFirst steps must be committed before later steps of the plan
	// may use what they make (see txsafety.go); a runner that can commit
	// runs them in a transaction of their own ahead of the rest.
	CommitFirst bool
	// Tightening steps only add a rule the existing rows must satisfy
	// (SET NOT NULL, a constraint, an index, a domain's NOT NULL or
	// CHECK); no other step and no row needs them to apply. Schema jobs
	// are ordered with the data only approximately, so such a rule can
	// reach a target before the rows of the backfill that made the source
	// satisfy it. A runner runs each under a savepoint and, when the
	// target's rows violate it, rolls it back, reports it and leaves it
	// to a later sync (the diff is stateless: every later plan holds it
	// until it succeeds). See Deferrable.
	Tightening bool
	// RowsWarning, when set, is logged if Table holds rows when the step
	// runs (a column added with a volatile default).
	RowsWarning string
	Table       QName
	// Move, when set, is run by the runner instead of SQL (which then only
	// describes it): see RowMove.
	Move *RowMove
}

// RowMove moves the rows of From, a default partition the plan detached
// from Parent, that fall within the bounds of To, a partition the plan
// just created, into To (they are deleted from From and inserted through
// Parent). PostgreSQL refuses to create a partition while the default
// partition holds rows of its range, and the stream may have put rows of
// the new range there first. The condition is the new partition's
// constraint (pg_get_partition_constraintdef) on the target, so it can
// only be built when the step runs.
type RowMove struct {
	Parent, From, To QName
}

// Deferrable reports whether a failed Tightening step with SQLSTATE code
// may be left for a later sync: a violation by existing rows (class 23),
// a data error while checking them (class 22), or a foreign key whose
// referenced unique constraint was itself deferred (42830).
func Deferrable(code string) bool {
	return strings.HasPrefix(code, "23") || strings.HasPrefix(code, "22") || code == "42830"
}

// Plan is the ordered DDL that brings a target from its current catalog
// to the desired one, and the registry as it stands once the DDL ran.
type Plan struct {
	Steps    []Step
	Registry *Registry
	// Warnings name differences the plan leaves alone (a dropped enum
	// label, a changed partition bound …).
	Warnings []string
	// Deferred are the Tightening steps a runner planned but left for a
	// later sync because the target's rows violate them; Steps then holds
	// only what ran.
	Deferred []Step
}

// Empty reports whether the target already matches.
func (p *Plan) Empty() bool { return len(p.Steps) == 0 }

// SQL renders the plan as a script.
func (p *Plan) SQL() string {
	var b strings.Builder
	for _, s := range p.Steps {
		b.WriteString(s.SQL)
		b.WriteString(";\n")
	}
	return b.String()
}

// Diff plans the DDL that turns current (a target, read with Read) into
// desired (a source catalog already passed through a Mapper), using reg
// to recognise renames and the objects sync manages. It is pure: the same
// inputs give the same plan. Running the plan and then diffing again gives
// an empty plan.
//
// Order: schemas, extensions, enums and new labels, drops of the views
// and routines that are rebuilt or gone (dependents first), other types
// and the functions that need no relation in dependency order,
// sequences, then drops (foreign keys, constraints, indexes, tables),
// renames, new tables (parents before partitions), column changes,
// sequence ownership, constraints, indexes, foreign keys, then views,
// materialized views with their indexes and the functions that need a
// relation (row types, SQL-standard bodies) in dependency order, and the
// drops of routines the source dropped last.
func Diff(desired, current *Catalog, reg *Registry) *Plan {
	if reg == nil {
		reg = NewRegistry()
	}
	d := &differ{des: desired, cur: current, reg: reg, next: NewRegistry(), reshaped: map[string]map[string]bool{}}
	d.run()
	return &Plan{Steps: d.steps(), Registry: d.next, Warnings: append(slices.Clone(desired.Unsynced), d.warnings...)}
}

type differ struct {
	des, cur  *Catalog
	reg, next *Registry
	warnings  []string
	regCols   map[uint32]map[string]int16
	// typeNodes are the composite types and domains to create, sorted
	// with the functions that need no relation into typesFuncs.
	typeNodes []node
	// reshaped are the columns the plan drops or retypes, by the target
	// table's RelKey ("" stands for a dropped table): a view that uses
	// one must be dropped first and rebuilt.
	reshaped map[string]map[string]bool

	schemas, exts, enums, dropObjs, typesFuncs, seqs        []Step
	dropFKs, dropCons, dropIdx, dropTables, renames         []Step
	creates, columns, owned, addCons, addIdx, addFKs, alter []Step
	late, dropFuncs                                         []Step
}

func (d *differ) steps() []Step {
	var out []Step
	for _, part := range [][]Step{d.schemas, d.exts, d.enums, d.dropObjs, d.typesFuncs, d.alter, d.seqs,
		d.dropFKs, d.dropCons, d.dropIdx, d.dropTables, d.renames, d.creates, d.columns,
		d.owned, d.addCons, d.addIdx, d.addFKs, d.late, d.dropFuncs} {
		out = append(out, part...)
	}
	return out
}

func add(list *[]Step, sql string) { *list = append(*list, Step{SQL: sql}) }

// tighten appends a Tightening step.
func tighten(list *[]Step, sql string) { *list = append(*list, Step{SQL: sql, Tightening: true}) }

func (d *differ) warn(format string, args ...any) {
	d.warnings = append(d.warnings, fmt.Sprintf(format, args...))
}

func (d *differ) run() {
	d.planSchemas()
	d.planExtensions()
	d.planTypes()
	d.planSequences()
	d.planTables()
	d.planRoutinesAndViews()
}

func (d *differ) planSchemas() {
	want := map[string]bool{}
	for _, s := range d.des.Schemas {
		want[s] = true
	}
	for _, e := range d.des.Extensions {
		want[e.Schema] = true
	}
	for _, t := range d.des.Types {
		want[t.Schema] = true
	}
	for _, f := range d.des.Functions {
		want[f.Schema] = true
	}
	for _, s := range d.des.Sequences {
		want[s.Schema] = true
	}
	for _, v := range d.des.Views {
		want[v.Schema] = true
	}
	for _, t := range d.des.Tables {
		want[t.Schema] = true
	}
	var names []string
	for s := range want {
		if !slices.Contains(d.cur.Schemas, s) {
			names = append(names, s)
		}
	}
	sort.Strings(names)
	for _, s := range names {
		add(&d.schemas, createSchema(s))
	}
}

func (d *differ) planExtensions() {
	for _, e := range d.des.Extensions {
		if !slices.ContainsFunc(d.cur.Extensions, func(c Extension) bool { return c.Name == e.Name }) {
			d.exts = append(d.exts, Step{SQL: createExtension(e), Optional: true})
		}
	}
}

func (d *differ) curType(q QName) *Type {
	for _, t := range d.cur.Types {
		if t.QName == q {
			return t
		}
	}
	return nil
}

func (d *differ) curFunction(f *Function) *Function {
	for _, c := range d.cur.Functions {
		if c.QName == f.QName && c.Args == f.Args {
			return c
		}
	}
	return nil
}

func (d *differ) planTypes() {
	// Enums first: they depend on nothing.
	for _, t := range d.des.Types {
		if t.Kind != KindEnum {
			continue
		}
		c := d.curType(t.QName)
		switch {
		case c == nil:
			add(&d.enums, createType(t))
		case c.Kind != KindEnum:
			d.warn("type %s is an enum on the source but not on the target; left alone", t)
		default:
			d.enumLabels(t, c)
		}
	}
	// Composite types and domains, sorted with functions later.
	for _, t := range d.des.Types {
		if t.Kind == KindEnum {
			continue
		}
		c := d.curType(t.QName)
		switch {
		case c == nil:
			d.typeNodes = append(d.typeNodes, node{key: t.Key(), deps: t.Deps, sql: []string{createType(t)}})
		case c.Kind != t.Kind:
			d.warn("type %s is a different kind of type on the target; left alone", t)
			continue
		case t.Kind == KindComposite:
			d.alterComposite(t, c)
		default:
			d.alterDomain(t, c)
		}
		// Once the plan ran, the target's attributes are the source's.
		for _, a := range t.Attrs {
			if t.Kind == KindComposite && t.ID != 0 {
				d.next.Columns[ColumnID{t.ID, a.Num}] = RegColumn{Name: a.Name}
			}
		}
	}
}

func (d *differ) enumLabels(t, c *Type) {
	for i, l := range t.Labels {
		if slices.Contains(c.Labels, l) {
			continue
		}
		switch {
		case i > 0:
			addCommitFirst(&d.enums, addEnumLabel(t.QName, l, "", t.Labels[i-1]))
		case len(c.Labels) > 0:
			addCommitFirst(&d.enums, addEnumLabel(t.QName, l, c.Labels[0], ""))
		default:
			addCommitFirst(&d.enums, addEnumLabel(t.QName, l, "", ""))
		}
	}
	for _, l := range c.Labels {
		if !slices.Contains(t.Labels, l) {
			d.warn("enum %s has label %q only on the target (PostgreSQL cannot drop a label); left alone", t, l)
		}
	}
}

func (d *differ) alterComposite(t, c *Type) {
	pre := "ALTER TYPE " + t.Ident() + " "
	match := d.matchAttrs(t, c)
	claimed := map[string]bool{}
	for _, j := range match {
		if j >= 0 {
			claimed[c.Attrs[j].Name] = true
		}
	}
	// Drops first: a dropped attribute may free a name a rename takes.
	for _, a := range c.Attrs {
		if !claimed[a.Name] {
			add(&d.alter, pre+"DROP ATTRIBUTE IF EXISTS "+qi(a.Name))
		}
	}
	// Renames, through temporary names when one rename takes a name
	// another frees (a swap).
	type rename struct{ from, to, tmp string }
	var renames []rename
	swap := false
	for i, a := range t.Attrs {
		if j := match[i]; j >= 0 && c.Attrs[j].Name != a.Name {
			renames = append(renames, rename{c.Attrs[j].Name, a.Name, tmpColumn(int16(i + 1))})
			swap = swap || claimed[a.Name]
		}
	}
	if swap {
		for i, r := range renames {
			add(&d.alter, pre+"RENAME ATTRIBUTE "+qi(r.from)+" TO "+qi(r.tmp))
			renames[i].from = r.tmp
		}
	}
	for _, r := range renames {
		add(&d.alter, pre+"RENAME ATTRIBUTE "+qi(r.from)+" TO "+qi(r.to))
	}
	for i, a := range t.Attrs {
		switch j := match[i]; {
		case j < 0:
			add(&d.alter, pre+"ADD ATTRIBUTE "+qi(a.Name)+" "+a.Type)
		case c.Attrs[j].Type != a.Type:
			add(&d.alter, pre+"ALTER ATTRIBUTE "+qi(a.Name)+" TYPE "+a.Type)
		}
	}
}

// matchAttrs matches each source attribute of a composite type to a
// target attribute (the index in c.Attrs, or -1 for none). By registered
// identity first, as columns are, because one plan may cover several
// changes (a schema job runs after every DDL that committed before it)
// and an attribute renamed among them must stay a rename: composite
// values travel as text, by position, so a drop plus an add would move it
// to the end and empty it in rows no batch rewrites. Then by name, unless
// the target attribute is registered for another source attribute (one
// the source dropped: a new attribute of the same name is not it). A type
// with no registered attribute (a registry from before attributes were
// registered, or a type sync adopted) falls back to renamedAttr.
func (d *differ) matchAttrs(t, c *Type) []int {
	match := make([]int, len(t.Attrs))
	claimed := map[string]bool{}
	registered := map[string]bool{}
	find := func(name string) int { return slices.IndexFunc(c.Attrs, func(x Attr) bool { return x.Name == name }) }
	if t.ID != 0 {
		for k, rc := range d.reg.Columns {
			if k.Table == t.ID {
				registered[rc.Name] = true
			}
		}
	}
	for i, a := range t.Attrs {
		match[i] = -1
		if rc, ok := d.reg.Columns[ColumnID{t.ID, a.Num}]; ok && t.ID != 0 && !claimed[rc.Name] {
			if j := find(rc.Name); j >= 0 {
				match[i], claimed[rc.Name] = j, true
			}
		}
	}
	if len(registered) == 0 {
		if from, to, ok := renamedAttr(t.Attrs, c.Attrs); ok {
			match[slices.IndexFunc(t.Attrs, func(x Attr) bool { return x.Name == to })], claimed[from] = find(from), true
		}
	}
	for i, a := range t.Attrs {
		if match[i] >= 0 || claimed[a.Name] || registered[a.Name] {
			continue
		}
		if j := find(a.Name); j >= 0 {
			match[i], claimed[a.Name] = j, true
		}
	}
	return match
}

// renamedAttr recognises a renamed composite attribute when the registry
// has no identities for the type's attributes: exactly one attribute only
// the target has and one only the source has, at the same position and of
// the same type. Any other combination stays drops and adds.
func renamedAttr(want, have []Attr) (from, to string, ok bool) {
	only := func(a, b []Attr) []int {
		var out []int
		for i, x := range a {
			if !slices.ContainsFunc(b, func(y Attr) bool { return y.Name == x.Name }) {
				out = append(out, i)
			}
		}
		return out
	}
	w, h := only(want, have), only(have, want)
	if len(w) != 1 || len(h) != 1 || w[0] != h[0] || want[w[0]].Type != have[h[0]].Type {
		return "", "", false
	}
	return have[h[0]].Name, want[w[0]].Name, true
}

func (d *differ) alterDomain(t, c *Type) {
	pre := "ALTER DOMAIN " + t.Ident() + " "
	if t.Base != c.Base {
		d.warn("domain %s has base type %s on the source and %s on the target; a domain's base type cannot be changed in place", t, t.Base, c.Base)
	}
	if t.Default != c.Default {
		if t.Default == "" {
			add(&d.alter, pre+"DROP DEFAULT")
		} else {
			add(&d.alter, pre+"SET DEFAULT "+t.Default)
		}
	}
	if t.NotNull != c.NotNull {
		if t.NotNull {
			tighten(&d.alter, pre+"SET NOT NULL")
		} else {
			add(&d.alter, pre+"DROP NOT NULL")
		}
	}
	for _, k := range c.Checks {
		i := slices.IndexFunc(t.Checks, func(x Check) bool { return x.Name == k.Name })
		if i < 0 || t.Checks[i].Def != k.Def {
			add(&d.alter, pre+"DROP CONSTRAINT IF EXISTS "+qi(k.Name))
		}
	}
	for _, k := range t.Checks {
		i := slices.IndexFunc(c.Checks, func(x Check) bool { return x.Name == k.Name })
		if i < 0 || c.Checks[i].Def != k.Def {
			tighten(&d.alter, pre+"ADD CONSTRAINT "+qi(k.Name)+" "+k.Def)
		}
	}
}

func (d *differ) planSequences() {
	for _, s := range d.des.Sequences {
		var c *Sequence
		for _, x := range d.cur.Sequences {
			if x.QName == s.QName {
				c = x
			}
		}
		if c == nil {
			add(&d.seqs, createSequence(s))
		}
		if s.OwnedTable != nil && (c == nil || c.OwnedTable == nil || *c.OwnedTable != *s.OwnedTable || c.OwnedCol != s.OwnedCol) {
			add(&d.owned, sequenceOwnedBy(s))
		}
	}
}

// node is an object's statements in a dependency graph.
type node struct {
	key  string
	deps []string
	sql  []string
}

// topoSort orders nodes so each comes after the nodes it depends on
// (dependencies outside the set are already there). Ties, and any cycle,
// fall back to key order, so the result is deterministic.
func topoSort(nodes []node) []node {
	sort.SliceStable(nodes, func(i, j int) bool { return nodes[i].key < nodes[j].key })
	in := map[string]bool{}
	for _, n := range nodes {
		in[n.key] = true
	}
	done := map[string]bool{}
	var out []node
	for len(out) < len(nodes) {
		progressed := false
		for _, n := range nodes {
			if done[n.key] {
				continue
			}
			ready := true
			for _, dep := range n.deps {
				if dep != n.key && in[dep] && !done[dep] {
					ready = false
					break
				}
			}
			if ready {
				done[n.key] = true
				out = append(out, n)
				progressed = true
			}
		}
		if !progressed { // a cycle: emit the rest in key order
			for _, n := range nodes {
				if !done[n.key] {
					done[n.key] = true
					out = append(out, n)
				}
			}
		}
	}
	return out
}
