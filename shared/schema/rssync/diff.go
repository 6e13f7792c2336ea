package rssync

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pgferry/pgferry/shared/redshift/rstype"
	"github.com/pgferry/pgferry/shared/schema"
)

// A Redshift target holds one plain table per replicated table (a
// partitioned table is one table: its partitions' rows are captured under
// its name), with the source's columns typed through rstype.Map. Names are
// folded to lower case, as Redshift folds identifiers.

// desTable is a table as the target should hold it.
type desTable struct {
	id   uint32
	q    schema.QName
	cols []desCol
	pk   []string
}

type desCol struct {
	num  int16
	name string
	typ  string // Redshift type, canonical (see canonical)
}

// curTable is a table as the target holds it.
type curTable struct {
	q    schema.QName
	cols []curCol
}

type curCol struct {
	name string
	typ  string // canonical
}

func (t *curTable) col(name string) *curCol {
	for i := range t.cols {
		if t.cols[i].name == name {
			return &t.cols[i]
		}
	}
	return nil
}

// current is the target's catalog: its schemas and tables (pgferry's own
// schema left out).
type current struct {
	schemas map[string]bool
	tables  map[schema.QName]*curTable
}

// unit is statements that run together: in one transaction with the rest
// of the plan (tx), or alone outside any transaction (Redshift changes a
// column's type, only a VARCHAR's length, only there).
type unit struct {
	stmts []string
	outTx bool
}

// rsPlan is a diff's result.
type rsPlan struct {
	units    []unit
	reg      *schema.Registry
	warnings []string
	// regOnly: no DDL, but the registry differs from the saved one.
	regOnly bool
}

func (p *rsPlan) plan() *schema.Plan {
	out := &schema.Plan{Registry: p.reg, Warnings: p.warnings}
	for _, u := range p.units {
		for _, s := range u.stmts {
			out.Steps = append(out.Steps, schema.Step{SQL: s})
		}
	}
	return out
}

func qi(q schema.QName) string { return pgx.Identifier{q.Schema, q.Name}.Sanitize() }
func ci(name string) string    { return pgx.Identifier{name}.Sanitize() }

// retypeSuffix names the column a type change builds before it takes the
// old column's place.
const retypeSuffix = "__pgferry_retype"

// shape turns a desired source catalog (rules shaped, apply_schema mapped)
// into the target's tables, and warns about every object a Redshift
// target leaves alone.
func shape(des *schema.Catalog, o rstype.Options) ([]*desTable, []string, error) {
	var out []*desTable
	warnings := slices.Clone(des.Unsynced)
	seen := map[schema.QName]uint32{}
	for _, t := range des.Tables {
		if t.Parent != nil {
			continue // a partition's rows are replicated under its root
		}
		dt := &desTable{id: t.ID, q: fold(t.QName)}
		if other, ok := seen[dt.q]; ok && other != t.ID {
			return nil, nil, fmt.Errorf("tables %s and another table are both %s on Redshift, which folds names to lower case", t.QName, dt.q)
		}
		seen[dt.q] = t.ID
		names := map[string]bool{}
		for _, c := range t.Columns {
			n := strings.ToLower(c.Name)
			if names[n] {
				return nil, nil, fmt.Errorf("table %s: two columns are both %q on Redshift, which folds names to lower case", t.QName, n)
			}
			names[n] = true
			dt.cols = append(dt.cols, desCol{num: c.Num, name: n, typ: canonicalMapped(rstype.Map(c.Type, o))})
		}
		for _, k := range t.Constraints {
			switch k.Kind {
			case 'p':
				dt.pk = pkColumns(k.Def)
			default:
				warnings = append(warnings, fmt.Sprintf("constraint %s on %s: Redshift does not enforce it; not created", k.Name, t.QName))
			}
		}
		for _, ix := range t.Indexes {
			warnings = append(warnings, fmt.Sprintf("index %s on %s: Redshift has no secondary indexes; not created", ix.Name, t.QName))
		}
		out = append(out, dt)
	}
	for _, v := range des.Views {
		warnings = append(warnings, fmt.Sprintf("%s %s: not synced to Redshift", strings.ToLower(v.Kind()), v.QName))
	}
	for _, f := range des.Functions {
		warnings = append(warnings, fmt.Sprintf("function %s(%s): not synced to Redshift", f.QName, f.Args))
	}
	for _, ty := range des.Types {
		what := map[byte]string{schema.KindEnum: "enum", schema.KindComposite: "composite type", schema.KindDomain: "domain"}[ty.Kind]
		warnings = append(warnings, fmt.Sprintf("%s %s: Redshift has no user-defined types; its columns are varchar", what, ty.QName))
	}
	for _, s := range des.Sequences {
		warnings = append(warnings, fmt.Sprintf("sequence %s: Redshift has no sequences; not created", s.QName))
	}
	return out, warnings, nil
}

func fold(q schema.QName) schema.QName {
	return schema.QName{Schema: strings.ToLower(q.Schema), Name: strings.ToLower(q.Name)}
}

// pkColumns reads the column list of "PRIMARY KEY (a, "B c")".
func pkColumns(def string) []string {
	open, end := strings.Index(def, "("), strings.LastIndex(def, ")")
	if open < 0 || end < open {
		return nil
	}
	var cols []string
	for _, p := range splitIdents(def[open+1 : end]) {
		cols = append(cols, strings.ToLower(p))
	}
	return cols
}

// splitIdents splits a comma-separated list of (possibly quoted)
// identifiers and unquotes them.
func splitIdents(s string) []string {
	var out []string
	var cur strings.Builder
	quoted := false
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '"' && quoted && i+1 < len(s) && s[i+1] == '"':
			cur.WriteByte('"')
			i++
		case ch == '"':
			quoted = !quoted
		case ch == ',' && !quoted:
			out = append(out, strings.TrimSpace(cur.String()))
			cur.Reset()
		case ch == ' ' && !quoted:
		default:
			cur.WriteByte(ch)
		}
	}
	if cur.Len() > 0 {
		out = append(out, strings.TrimSpace(cur.String()))
	}
	return out
}

// canonicalMapped spells a type rstype.Map returned as canonical does.
func canonicalMapped(t string) string {
	if strings.HasPrefix(t, "varbyte") {
		return "varbyte"
	}
	return t
}

// canonical spells a column type read from information_schema.columns
// the way canonicalMapped spells rstype.Map's, so the two compare as text
// (the stand-in keeps SUPER as jsonb and VARBYTE as bytea).
func canonical(dataType string, charLen, precision, scale int) string {
	switch strings.ToLower(dataType) {
	case "character varying", "varchar", "nvarchar", "text":
		if charLen == 0 {
			charLen = rstype.MaxVarcharBytes
		}
		return fmt.Sprintf("varchar(%d)", charLen)
	case "numeric", "decimal":
		return fmt.Sprintf("numeric(%d,%d)", precision, scale)
	case "time without time zone", "time":
		return "time"
	case "time with time zone", "timetz":
		return "timetz"
	case "timestamp without time zone", "timestamp":
		return "timestamp"
	case "timestamp with time zone", "timestamptz":
		return "timestamptz"
	case "super", "jsonb", "json":
		return "super"
	case "varbyte", "bytea", "binary varying", "varbinary":
		return "varbyte"
	}
	return strings.ToLower(dataType)
}

// renderType is the type as DDL spells it.
func renderType(canon string) string {
	if canon == "varbyte" {
		return fmt.Sprintf("varbyte(%d)", rstype.MaxVarbyteBytes)
	}
	return canon
}

// varcharLen returns n of "varchar(n)".
func varcharLen(t string) (int, bool) {
	var n int
	if _, err := fmt.Sscanf(t, "varchar(%d)", &n); err != nil {
		return 0, false
	}
	return n, true
}

// differ plans one target.
type differ struct {
	des  []*desTable
	cur  *current
	reg  *schema.Registry
	next *schema.Registry

	schemas, tableDrops, tableRenames, colDrops, colRenames []unit
	creates, columns, widen                                 []unit
	warnings                                                []string
	dropped                                                 map[schema.QName]bool
}

// diff plans the DDL that turns cur into des, using reg (the registry as
// saved by the last sync) to recognise renames and what sync manages: a
// table or column is tied to its source identity (table oid, attnum), so
// a rename on the source renames on the target and keeps the data; only
// registered tables and columns are ever dropped. It is pure.
//
// Order: schemas, table drops, table renames, column drops, column
// renames, new tables, new columns and type changes (add a column of the
// new type, copy, drop the old, rename), all in one transaction; then
// each VARCHAR widening alone outside it.
func diff(des []*desTable, cur *current, reg *schema.Registry) *rsPlan {
	if reg == nil {
		reg = schema.NewRegistry()
	}
	d := &differ{des: des, cur: cur, reg: reg, next: schema.NewRegistry(), dropped: map[schema.QName]bool{}}
	d.run()
	p := &rsPlan{reg: d.next, warnings: d.warnings}
	for _, list := range [][]unit{d.schemas, d.tableDrops, d.tableRenames, d.colDrops, d.colRenames, d.creates, d.columns, d.widen} {
		p.units = append(p.units, list...)
	}
	return p
}

func (d *differ) run() {
	wanted := map[uint32]bool{}
	for _, t := range d.des {
		wanted[t.id] = true
	}
	// Tables sync made whose source table is gone or no longer
	// replicated here.
	for _, id := range slices.Sorted(maps.Keys(d.reg.Tables)) {
		q := d.reg.Tables[id]
		if !wanted[id] && d.cur.tables[q] != nil {
			d.dropped[q] = true
			d.tableDrops = append(d.tableDrops, unit{stmts: []string{"DROP TABLE " + qi(q)}})
		}
	}
	newSchemas := map[string]bool{}
	for _, t := range d.des {
		if !d.cur.schemas[t.q.Schema] && !newSchemas[t.q.Schema] {
			newSchemas[t.q.Schema] = true
			d.schemas = append(d.schemas, unit{stmts: []string{"CREATE SCHEMA IF NOT EXISTS " + ci(t.q.Schema)}})
		}
		d.table(t)
	}
}

// table plans one desired table.
func (d *differ) table(t *desTable) {
	var ct *curTable
	former := d.reg.FormerTables[t.id]
	if old, ok := d.reg.Tables[t.id]; ok && d.cur.tables[old] != nil {
		ct = d.cur.tables[old]
		if old != t.q {
			switch {
			case old.Schema != t.q.Schema:
				d.warnings = append(d.warnings, fmt.Sprintf("table %s moved to schema %s on the source: Redshift cannot move a table between schemas; left as %s", old, t.q.Schema, old))
				t.q = old
			case d.cur.tables[t.q] != nil:
				d.warnings = append(d.warnings, fmt.Sprintf("table %s was renamed to %s on the source, but the target already has a %s; left as %s", old, t.q.Name, t.q, old))
				t.q = old
			default:
				d.tableRenames = append(d.tableRenames, unit{stmts: []string{"ALTER TABLE " + qi(old) + " RENAME TO " + ci(t.q.Name)}})
				former = appendUnique(former, old)
			}
		}
	} else if c := d.cur.tables[t.q]; c != nil && !d.dropped[t.q] {
		ct = c // adopted: made by an earlier sync whose registry was not saved, or by hand
	}
	d.next.Tables[t.id] = t.q
	if len(former) > 0 {
		d.next.FormerTables[t.id] = former
	}
	if ct == nil {
		d.creates = append(d.creates, unit{stmts: []string{createTable(t)}})
		for _, c := range t.cols {
			d.next.Columns[schema.ColumnID{Table: t.id, Num: c.num}] = schema.RegColumn{Name: c.name}
		}
		return
	}
	d.columns2(t, ct)
}

func appendUnique(list []schema.QName, q schema.QName) []schema.QName {
	if slices.Contains(list, q) {
		return list
	}
	return append(list, q)
}

func createTable(t *desTable) string {
	var b strings.Builder
	b.WriteString("CREATE TABLE " + qi(t.q) + " (\n")
	for i, c := range t.cols {
		if i > 0 {
			b.WriteString(",\n")
		}
		b.WriteString("    " + ci(c.name) + " " + renderType(c.typ))
	}
	if len(t.pk) > 0 {
		keys := make([]string, len(t.pk))
		for i, k := range t.pk {
			keys[i] = ci(k)
		}
		b.WriteString(",\n    PRIMARY KEY (" + strings.Join(keys, ", ") + ")")
	}
	b.WriteString("\n) DISTSTYLE AUTO SORTKEY AUTO")
	return b.String()
}

// columns2 plans the columns of a table the target has (under t.q once
// the renames ran; ct is as read).
func (d *differ) columns2(t *desTable, ct *curTable) {
	tq := qi(t.q)
	wanted := map[int16]bool{}
	for _, c := range t.cols {
		wanted[c.num] = true
	}
	// Registered columns whose source column is gone.
	for _, k := range slices.SortedFunc(maps.Keys(d.reg.Columns), func(a, b schema.ColumnID) int { return int(a.Num) - int(b.Num) }) {
		if k.Table != t.id || wanted[k.Num] {
			continue
		}
		name := d.reg.Columns[k].Name
		if ct.col(name) != nil {
			d.colDrops = append(d.colDrops, unit{stmts: []string{"ALTER TABLE " + tq + " DROP COLUMN " + ci(name)}})
		}
	}
	// What each current column becomes: its new name (renames run
	// before columns are added, and a name freed by a drop or rename may
	// be taken again).
	taken := map[string]bool{}
	for _, c := range ct.cols {
		taken[c.name] = true
	}
	for _, c := range t.cols {
		id := schema.ColumnID{Table: t.id, Num: c.num}
		rc, registered := d.reg.Columns[id]
		var have *curCol
		if registered {
			have = ct.col(rc.Name)
		}
		former := rc.Former
		switch {
		case have != nil && have.name != c.name:
			if taken[c.name] && ct.col(c.name) != nil && !d.freed(t, ct, c.name) {
				d.warnings = append(d.warnings, fmt.Sprintf("column %s.%s was renamed to %s on the source, but the target already has a column %s; left as %s", t.q, have.name, c.name, c.name, have.name))
				c.name = have.name
			} else {
				d.colRenames = append(d.colRenames, unit{stmts: []string{"ALTER TABLE " + tq + " RENAME COLUMN " + ci(have.name) + " TO " + ci(c.name)}})
				if !slices.Contains(former, have.name) {
					former = append(slices.Clone(former), have.name)
				}
			}
		case have == nil:
			have = ct.col(c.name) // adopted
			if have != nil && registered {
				have = nil // the registered column is gone; this one is someone else's
			}
		}
		d.next.Columns[id] = schema.RegColumn{Name: c.name, Former: former}
		if have == nil {
			d.columns = append(d.columns, unit{stmts: []string{"ALTER TABLE " + tq + " ADD COLUMN " + ci(c.name) + " " + renderType(c.typ)}})
			continue
		}
		d.retype(t, c, have.typ)
	}
}

// freed reports whether the current column name is dropped or renamed
// away by this plan (so the name may be taken by another column).
func (d *differ) freed(t *desTable, ct *curTable, name string) bool {
	for k, rc := range d.reg.Columns {
		if k.Table != t.id || rc.Name != name {
			continue
		}
		for _, c := range t.cols {
			if c.num == k.Num {
				return c.name != name
			}
		}
		return true // dropped
	}
	return false
}

// retype plans a type change of column c (under its new name) from have.
func (d *differ) retype(t *desTable, c desCol, have string) {
	if have == c.typ {
		return
	}
	tq := qi(t.q)
	hn, hv := varcharLen(have)
	wn, wv := varcharLen(c.typ)
	if hv && wv {
		if wn > hn {
			// Redshift changes only this, and only outside a transaction.
			d.widen = append(d.widen, unit{outTx: true, stmts: []string{
				"ALTER TABLE " + tq + " ALTER COLUMN " + ci(c.name) + " TYPE " + c.typ}})
		}
		// A narrower source column fits the wider target column.
		return
	}
	tmp := c.name + retypeSuffix
	d.columns = append(d.columns, unit{stmts: []string{
		"ALTER TABLE " + tq + " ADD COLUMN " + ci(tmp) + " " + renderType(c.typ),
		"UPDATE " + tq + " SET " + ci(tmp) + " = " + convert(ci(c.name), have, c.typ),
		"ALTER TABLE " + tq + " DROP COLUMN " + ci(c.name),
		"ALTER TABLE " + tq + " RENAME COLUMN " + ci(tmp) + " TO " + ci(c.name),
	}})
}

// convert is the expression that turns col of type from into type to.
func convert(col, from, to string) string {
	switch {
	case to == "super" && strings.HasPrefix(from, "varchar"):
		return "JSON_PARSE(" + col + ")"
	case from == "super" && strings.HasPrefix(to, "varchar"):
		// Quoted: a parser of PostgreSQL 16 or later (the stand-in's)
		// reads bare JSON_SERIALIZE(…) as SQL/JSON syntax, not as
		// Redshift's function of that name. Not yet run on a real Redshift.
		return `"json_serialize"(` + col + ")"
	}
	return "CAST(" + col + " AS " + renderType(to) + ")"
}
