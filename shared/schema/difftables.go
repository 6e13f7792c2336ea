package schema

import (
	"fmt"
	"slices"
	"sort"
)

// planTables matches each desired table to a target table — through the
// registry by source identity first (which finds a renamed table), then
// by name (adopting a table that already exists) — and plans creates,
// renames, column changes, constraints, indexes and drops.
func (d *differ) planTables() {
	claimed := map[QName]bool{}
	matched := map[*Table]*Table{}
	for _, t := range d.des.Tables {
		var c *Table
		if q, ok := d.reg.Tables[t.ID]; ok {
			c = d.cur.Table(q)
		}
		if c == nil && !claimed[t.QName] {
			if x := d.cur.Table(t.QName); x != nil {
				if id, ok := d.reg.tableID(t.QName); !ok || id == t.ID || !d.desiredID(id) {
					c = x
				}
			}
		}
		if c != nil && !claimed[c.QName] {
			claimed[c.QName] = true
			matched[t] = c
		}
		d.next.Tables[t.ID] = t.QName
		if f := d.reg.FormerTables[t.ID]; len(f) > 0 {
			d.next.FormerTables[t.ID] = slices.Clone(f)
		}
	}
	// Drops: registered target tables whose source table is gone.
	var drops []*Table
	for id, q := range d.reg.Tables {
		c := d.cur.Table(q)
		if c == nil || claimed[q] || d.desiredID(id) {
			continue
		}
		drops = append(drops, c)
	}
	sort.Slice(drops, func(i, j int) bool {
		if a, b := depth(drops[i], d.cur), depth(drops[j], d.cur); a != b {
			return a > b // partitions before their parents
		}
		return drops[i].String() < drops[j].String()
	})
	dropped := map[QName]bool{}
	for _, c := range drops {
		dropped[c.QName] = true
		// Foreign keys of other tables that point at it are gone on the
		// source too, and are dropped below, before this runs.
		add(&d.dropTables, "DROP TABLE IF EXISTS "+c.Ident())
		d.reshape(c.QName, "")
	}
	// New tables: parents before partitions.
	var news []*Table
	for _, t := range d.des.Tables {
		if matched[t] == nil {
			news = append(news, t)
		}
	}
	sort.SliceStable(news, func(i, j int) bool { return depth(news[i], d.des) < depth(news[j], d.des) })
	// A new partition of a parent whose default partition on the target
	// may hold rows of the new range (they reached the target before the
	// schema job): the default is detached first, its rows of each new
	// range moved after the creates (through the parent, into the new
	// partition and its sub-partitions), and it is attached again.
	desiredOf := map[QName]QName{}
	for t, c := range matched {
		desiredOf[c.QName] = t.QName
	}
	detached := map[QName]QName{}
	var parents []QName
	var moves []Step
	for _, t := range news {
		if t.Parent != nil && t.Bound != "DEFAULT" {
			if dflt, ok := d.targetDefault(*t.Parent, matched, desiredOf, dropped); ok {
				if _, done := detached[*t.Parent]; !done {
					detached[*t.Parent] = dflt
					parents = append(parents, *t.Parent)
					add(&d.creates, alterTable(*t.Parent, "DETACH PARTITION "+dflt.Ident()))
				}
				m := &RowMove{Parent: *t.Parent, From: dflt, To: t.QName}
				moves = append(moves, Step{SQL: m.describe(), Move: m})
			}
		}
		add(&d.creates, createTable(t))
		for _, col := range t.Columns {
			d.next.Columns[ColumnID{t.ID, col.Num}] = RegColumn{Name: col.Name}
		}
		d.objects(t, nil)
	}
	d.creates = append(d.creates, moves...)
	for _, p := range parents {
		add(&d.creates, alterTable(p, "ATTACH PARTITION "+detached[p].Ident()+" DEFAULT"))
	}
	for _, t := range d.des.Tables {
		c := matched[t]
		if c == nil {
			continue
		}
		if c.QName != t.QName {
			if !slices.Contains(d.next.FormerTables[t.ID], c.QName) {
				d.next.FormerTables[t.ID] = append(d.next.FormerTables[t.ID], c.QName)
			}
			at := c.QName
			if c.Schema != t.Schema {
				add(&d.renames, alterTable(at, "SET SCHEMA "+qi(t.Schema)))
				at.Schema = t.Schema
			}
			if c.Name != t.Name {
				add(&d.renames, alterTable(at, "RENAME TO "+qi(t.Name)))
			}
		}
		if t.Kind != c.Kind || (t.Parent == nil) != (c.Parent == nil) {
			d.warn("table %s is %s on the source and %s on the target; its kind cannot be changed in place", t, kindName(t), kindName(c))
		}
		if t.Parent != nil && c.Parent != nil && t.Bound != c.Bound {
			d.warn("partition %s has bound %q on the source and %q on the target; left alone", t, t.Bound, c.Bound)
		}
		if t.Parent == nil {
			d.planColumns(t, c)
			for col := range d.reshaped[RelKey(t.QName)] {
				d.reshape(c.QName, col) // target views name it as it was
			}
		}
		d.objects(t, c)
	}
}

// targetDefault returns the name, once the plan's renames ran, of the
// default partition that the target's table matched to the desired
// partitioned table parent has and keeps (one the plan drops does not
// count).
func (d *differ) targetDefault(parent QName, matched map[*Table]*Table, desiredOf map[QName]QName, dropped map[QName]bool) (QName, bool) {
	pt := d.des.Table(parent)
	if pt == nil || matched[pt] == nil {
		return QName{}, false
	}
	c := matched[pt]
	for _, x := range d.cur.Tables {
		if x.Parent == nil || *x.Parent != c.QName || x.Bound != "DEFAULT" {
			continue
		}
		if q, ok := desiredOf[x.QName]; ok {
			return q, true
		}
		if !dropped[x.QName] {
			return x.QName, true
		}
	}
	return QName{}, false
}

func (d *differ) desiredID(id uint32) bool {
	return slices.ContainsFunc(d.des.Tables, func(t *Table) bool { return t.ID == id })
}

func kindName(t *Table) string {
	switch {
	case t.Parent != nil:
		return "a partition"
	case t.Kind == 'p':
		return "partitioned"
	}
	return "an ordinary table"
}

// depth is a table's partition nesting level within c.
func depth(t *Table, c *Catalog) int {
	n := 0
	for p := t.Parent; p != nil && n < 64; n++ {
		pt := c.Table(*p)
		if pt == nil {
			return n + 1
		}
		p = pt.Parent
	}
	return n
}

// planColumns matches desired columns to the target's by registered
// identity, then by name, and plans drops, renames, changes and adds in
// that order (a dropped or renamed column may free a name a later step
// uses).
func (d *differ) planColumns(t, c *Table) {
	claimed := map[string]bool{}
	match := map[*Column]*Column{}
	for _, col := range t.Columns {
		if rc, ok := d.reg.Columns[ColumnID{t.ID, col.Num}]; ok {
			if x := c.Column(rc.Name); x != nil {
				match[col] = x
				claimed[x.Name] = true
			}
		}
	}
	for _, col := range t.Columns {
		if match[col] != nil {
			continue
		}
		if x := c.Column(col.Name); x != nil && !claimed[x.Name] && !d.registeredElsewhere(t.ID, x.Name, col.Num) {
			match[col] = x
			claimed[x.Name] = true
		}
	}
	// Drops: registered target columns no source column claims.
	for _, x := range c.Columns {
		if !claimed[x.Name] && d.registeredColumn(t.ID, x.Name) {
			add(&d.columns, alterTable(t.QName, "DROP COLUMN IF EXISTS "+qi(x.Name)))
			d.reshape(t.QName, x.Name)
		}
	}
	// Renames, through temporary names when one rename takes a name
	// another frees (a swap).
	type rename struct {
		col      *Column
		from, to string
	}
	var renames []rename
	for _, col := range t.Columns {
		if x := match[col]; x != nil && x.Name != col.Name {
			renames = append(renames, rename{col, x.Name, col.Name})
		}
	}
	swap := false
	for _, r := range renames {
		if c.Column(r.to) != nil {
			swap = true
		}
	}
	if swap {
		for i, r := range renames {
			add(&d.columns, alterTable(t.QName, "RENAME COLUMN "+qi(r.from)+" TO "+qi(tmpColumn(r.col.Num))))
			renames[i].from = tmpColumn(r.col.Num)
		}
	}
	for _, r := range renames {
		add(&d.columns, alterTable(t.QName, "RENAME COLUMN "+qi(r.from)+" TO "+qi(r.to)))
	}
	// A generated column whose expression changed is rebuilt (its values
	// are derived): dropped before any other change to the table's columns
	// and added after them, because a column it uses may be retyped, which
	// PostgreSQL refuses while the generated column exists (the source had
	// to drop it first too).
	var rebuilt []*Column
	for _, col := range t.Columns {
		if x := match[col]; x != nil && rebuildGenerated(col, x) {
			add(&d.columns, alterTable(t.QName, "DROP COLUMN "+qi(col.Name)))
			d.reshape(t.QName, col.Name, x.Name)
			rebuilt = append(rebuilt, col)
		}
	}
	for _, col := range t.Columns {
		rc := RegColumn{Name: col.Name}
		if old, ok := d.reg.Columns[ColumnID{t.ID, col.Num}]; ok {
			rc.Former = slices.Clone(old.Former)
		}
		if x := match[col]; x != nil {
			if x.Name != col.Name && !slices.Contains(rc.Former, x.Name) {
				rc.Former = append(rc.Former, x.Name)
			}
			if !rebuildGenerated(col, x) {
				d.alterColumn(t.QName, col, x)
			}
		} else {
			d.addColumn(t.QName, col)
		}
		d.next.Columns[ColumnID{t.ID, col.Num}] = rc
	}
	for _, col := range rebuilt {
		add(&d.columns, alterTable(t.QName, "ADD COLUMN "+columnDef(col)))
	}
}

// registeredColumn reports whether the target column name of table id is
// managed by sync.
func (d *differ) registeredColumn(id uint32, name string) bool {
	_, ok := d.regColumns(id)[name]
	return ok
}

// registeredElsewhere reports whether the target column name belongs to a
// different source column (one that still exists) of table id.
func (d *differ) registeredElsewhere(id uint32, name string, num int16) bool {
	n, ok := d.regColumns(id)[name]
	if !ok || n == num {
		return false
	}
	t := d.desTable(id)
	return t != nil && slices.ContainsFunc(t.Columns, func(x *Column) bool { return x.Num == n })
}

// regColumns maps the registered target column names of table id to
// their source column numbers (built once per diff).
func (d *differ) regColumns(id uint32) map[string]int16 {
	if d.regCols == nil {
		d.regCols = map[uint32]map[string]int16{}
		for k, c := range d.reg.Columns {
			if d.regCols[k.Table] == nil {
				d.regCols[k.Table] = map[string]int16{}
			}
			d.regCols[k.Table][c.Name] = k.Num
		}
	}
	return d.regCols[id]
}

func (d *differ) desTable(id uint32) *Table {
	for _, t := range d.des.Tables {
		if t.ID == id {
			return t
		}
	}
	return nil
}

// rebuildGenerated reports whether a matched column must be dropped and added
// again: a generation expression cannot be set or changed in place.
func rebuildGenerated(want, have *Column) bool {
	return want.Generated != "" && want.Generated != have.Generated
}

// alterColumn plans the changes of one matched column (already renamed and
// not rebuilt).
func (d *differ) alterColumn(t QName, want, have *Column) {
	name := want.Name
	if want.Generated == "" && have.Generated != "" {
		add(&d.columns, alterColumn(t, name, "DROP EXPRESSION"))
	}
	if want.Type != have.Type || want.Collation != have.Collation {
		if have.Default != "" && want.Generated == "" {
			add(&d.columns, alterColumn(t, name, "DROP DEFAULT"))
			have = &Column{Name: have.Name, Type: have.Type, NotNull: have.NotNull, Identity: have.Identity}
		}
		coll := ""
		if want.Collation != "" {
			coll = " COLLATE " + want.Collation
		}
		add(&d.columns, alterColumn(t, name, fmt.Sprintf("TYPE %s%s USING %s::%s", want.Type, coll, qi(name), want.Type)))
		d.reshape(t, name, have.Name)
	}
	if want.Identity != have.Identity {
		switch {
		case have.Identity == 0:
			if have.Default != "" {
				add(&d.columns, alterColumn(t, name, "DROP DEFAULT"))
				have = &Column{Name: have.Name, Type: have.Type, NotNull: have.NotNull}
			}
			if !have.NotNull {
				add(&d.columns, alterColumn(t, name, "SET NOT NULL"))
				have.NotNull = true
			}
			add(&d.columns, alterColumn(t, name, "ADD "+identity(want.Identity)+" AS IDENTITY"))
		case want.Identity == 0:
			add(&d.columns, alterColumn(t, name, "DROP IDENTITY IF EXISTS"))
		default:
			add(&d.columns, alterColumn(t, name, "SET "+identity(want.Identity)))
		}
	}
	if want.Generated == "" && want.Identity == 0 && want.Default != have.Default {
		if want.Default == "" {
			add(&d.columns, alterColumn(t, name, "DROP DEFAULT"))
		} else {
			add(&d.columns, alterColumn(t, name, "SET DEFAULT "+want.Default))
		}
	}
	if want.NotNull != have.NotNull {
		if want.NotNull {
			tighten(&d.columns, alterColumn(t, name, "SET NOT NULL"))
		} else {
			add(&d.columns, alterColumn(t, name, "DROP NOT NULL"))
		}
	}
}

func identity(k byte) string {
	if k == 'a' {
		return "GENERATED ALWAYS"
	}
	return "GENERATED BY DEFAULT"
}

// objects plans the constraints and indexes of desired table t against
// the target's table c (nil when t is new).
func (d *differ) objects(t, c *Table) {
	var have []*Constraint
	var haveIdx []*Index
	if c != nil {
		have, haveIdx = c.Constraints, c.Indexes
	}
	for _, k := range have {
		i := slices.IndexFunc(t.Constraints, func(x *Constraint) bool { return x.Name == k.Name })
		changed := i >= 0 && t.Constraints[i].Def != k.Def
		gone := i < 0 && d.reg.Constraints[ObjectID{t.ID, k.Name}]
		if changed || gone {
			if k.Kind == 'f' {
				add(&d.dropFKs, dropConstraint(c.QName, k.Name))
			} else {
				add(&d.dropCons, dropConstraint(c.QName, k.Name))
			}
		}
	}
	for _, k := range t.Constraints {
		d.next.Constraints[ObjectID{t.ID, k.Name}] = true
		i := slices.IndexFunc(have, func(x *Constraint) bool { return x.Name == k.Name })
		if i >= 0 && have[i].Def == k.Def {
			continue
		}
		if k.Kind == 'f' {
			tighten(&d.addFKs, addConstraint(t.QName, k))
		} else {
			tighten(&d.addCons, addConstraint(t.QName, k))
		}
	}
	for _, ix := range haveIdx {
		i := slices.IndexFunc(t.Indexes, func(x *Index) bool { return x.Name == ix.Name })
		changed := i >= 0 && (t.Indexes[i].Using != ix.Using || t.Indexes[i].Unique != ix.Unique)
		gone := i < 0 && d.reg.Indexes[ObjectID{t.ID, ix.Name}]
		if changed || gone {
			add(&d.dropIdx, dropIndex(c.Schema, ix.Name))
		}
	}
	for _, ix := range t.Indexes {
		d.next.Indexes[ObjectID{t.ID, ix.Name}] = true
		i := slices.IndexFunc(haveIdx, func(x *Index) bool { return x.Name == ix.Name })
		if i >= 0 && haveIdx[i].Using == ix.Using && haveIdx[i].Unique == ix.Unique {
			continue
		}
		tighten(&d.addIdx, createIndex(t.QName, ix))
	}
}

// addColumn adds a source column to an existing target table so that the
// target's existing rows read what the source's read. ADD COLUMN … DEFAULT
// fills them with the default, which is right only when the source's rows
// got a value from the default too: then the source has a missing value
// (atthasmissing), which is what is rendered, since the default may have
// been changed or dropped since (ADD COLUMN c DEFAULT 5, then SET DEFAULT
// 7 leaves 5 in the old rows). A column added without a default and given
// one later (ADD COLUMN c, then SET DEFAULT 5) left its rows NULL: it is
// added without a default, which is set after. A NOT NULL column with a
// default but no missing value (a volatile default, or a table rewritten
// since) must be filled, and is added with its default.
func (d *differ) addColumn(t QName, col *Column) {
	if col.Generated != "" || col.Identity != 0 || (col.Default == "" && !col.HasMissing) {
		add(&d.columns, alterTable(t, "ADD COLUMN "+columnDef(col)))
		return
	}
	first := *col
	switch {
	case col.HasMissing:
		if !sameValue(col.Default, col.Missing, col.Type) {
			first.Default = quoteLiteral(col.Missing) + "::" + col.Type
		}
	case !col.NotNull:
		first.Default = ""
	}
	step := Step{SQL: alterTable(t, "ADD COLUMN "+columnDef(&first))}
	if col.VolatileDefault && !col.HasMissing {
		got := "NULL"
		if first.Default != "" {
			got = "the default as evaluated on the target"
		}
		step.Table = t
		step.RowsWarning = fmt.Sprintf("column %s.%s has a volatile default (%s): adding it rewrote the source's existing rows "+
			"with values no capture sees, so this target's existing rows read %s instead; reload the table to copy them "+
			"(--initial-load --load-tables %s --reload)", t, col.Name, col.Default, got, t)
	}
	d.columns = append(d.columns, step)
	switch {
	case first.Default == col.Default:
	case col.Default == "":
		add(&d.columns, alterColumn(t, col.Name, "DROP DEFAULT"))
	default:
		add(&d.columns, alterColumn(t, col.Name, "SET DEFAULT "+col.Default))
	}
}

// sameValue reports whether the default expression def is the constant
// whose text is missing, as the server deparses one of type typ (5,
// 'x'::text, false), so that the plan can say DEFAULT def once instead of
// the missing value and then the default. A false answer only costs a
// statement.
func sameValue(def, missing, typ string) bool {
	switch {
	case def == "":
		return false
	case def == missing, def == quoteLiteral(missing)+"::"+typ:
		return true
	case typ == "boolean":
		return (def == "true" && missing == "t") || (def == "false" && missing == "f")
	}
	return false
}
