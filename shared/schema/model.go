// Package schema models the part of a PostgreSQL catalog that replicated
// tables need, reads it from a database, and diffs a source catalog
// against a target catalog into ordered DDL.
//
// Every text field that is SQL (types, defaults, constraint and index
// definitions, function definitions) is the server's own deparsed form,
// read with an empty search_path so that every name outside pg_catalog is
// schema-qualified. Two catalogs read that way compare as text, and a
// Mapper can move objects to another schema by rewriting qualified names.
package schema

import "github.com/jackc/pgx/v5"

// QName is a schema-qualified name.
type QName struct {
	Schema string `json:"s"`
	Name   string `json:"n"`
}

func (q QName) String() string { return q.Schema + "." + q.Name }

// Catalog is what replicating a set of tables needs on a target.
type Catalog struct {
	Schemas    []string    `json:"schemas,omitempty"`
	Extensions []Extension `json:"extensions,omitempty"`
	Types      []*Type     `json:"types,omitempty"`
	Functions  []*Function `json:"functions,omitempty"`
	Sequences  []*Sequence `json:"sequences,omitempty"`
	Tables     []*Table    `json:"tables,omitempty"`
	Views      []*View     `json:"views,omitempty"`
	// Unsynced names the functions and views of the covered schemas that
	// are left out, each with the reason (a dependency that is not
	// replicated): a target could not hold them. Only a source read
	// fills it.
	Unsynced []string `json:"unsynced,omitempty"`
}

// Extension is an installed extension (plpgsql is left out: every
// database has it).
type Extension struct {
	Name   string `json:"name"`
	Schema string `json:"schema"`
}

// Type kinds, as pg_type.typtype.
const (
	KindEnum      = 'e'
	KindComposite = 'c'
	KindDomain    = 'd'
)

// Type is a user-defined enum, composite type or domain.
type Type struct {
	QName
	Kind byte `json:"k"`
	// ID is a composite type's row type (pg_type.typrelid, a pg_class
	// oid like a table's) in the database it was read from: on the
	// source, with an attribute's Num, the attribute's identity.
	ID uint32 `json:"id,omitempty"`
	// Labels of an enum, in sort order.
	Labels []string `json:"labels,omitempty"`
	// Attrs of a composite type.
	Attrs []Attr `json:"attrs,omitempty"`
	// Domain: base type, NOT NULL, default expression, CHECK constraints.
	Base    string  `json:"base,omitempty"`
	NotNull bool    `json:"notnull,omitempty"`
	Default string  `json:"default,omitempty"`
	Checks  []Check `json:"checks,omitempty"`
	// Deps are the keys (see Key) of the types and functions this type
	// needs to exist first.
	Deps []string `json:"deps,omitempty"`
}

// Attr is one attribute of a composite type. Num is its attnum in the
// database it was read from (see Type.ID).
type Attr struct {
	Num  int16  `json:"num,omitempty"`
	Name string `json:"n"`
	Type string `json:"t"`
}

// Check is a named constraint definition (pg_get_constraintdef).
type Check struct {
	Name string `json:"n"`
	Def  string `json:"d"`
}

// Routine kinds, as pg_proc.prokind.
const (
	KindFunction  = 'f'
	KindProcedure = 'p'
	KindAggregate = 'a'
)

// Function is a function, procedure or aggregate: every one of a covered
// schema (see Selection.Schema), and any other that a replicated table,
// a synced type or view, or another synced function uses.
type Function struct {
	QName
	// Args are the identity arguments (pg_get_function_identity_arguments):
	// with the name they identify the function.
	Args string `json:"args"`
	Kind byte   `json:"kind,omitempty"`
	// Def is a complete CREATE OR REPLACE statement: pg_get_functiondef,
	// or for an aggregate one rendered from pg_aggregate.
	Def string `json:"def"`
	// Result (pg_get_function_result), ArgNames (proargnames) and Defaults
	// (pronargdefaults) decide whether CREATE OR REPLACE may change the
	// function in place: PostgreSQL refuses a new result type, renamed
	// parameters or fewer defaults.
	Result   string   `json:"result,omitempty"`
	ArgNames []string `json:"argnames,omitempty"`
	Defaults int16    `json:"defaults,omitempty"`
	// Deps are the keys of the types, functions and relations (tables,
	// views: RelKey) it needs to exist first.
	Deps []string `json:"deps,omitempty"`
}

// View is a view or materialized view of a covered schema whose every
// dependency is replicated.
type View struct {
	QName
	// ID is the view's oid in the database it was read from.
	ID           uint32 `json:"id"`
	Materialized bool   `json:"mat,omitempty"`
	// Columns are the view's output columns: CREATE OR REPLACE VIEW may
	// only add columns at the end.
	Columns []Attr `json:"cols,omitempty"`
	// Options are a plain view's reloptions (security_barrier,
	// check_option, security_invoker) as name=value.
	Options []string `json:"options,omitempty"`
	// Def is pg_get_viewdef: the query, without a trailing semicolon.
	Def string `json:"def"`
	// Indexes of a materialized view.
	Indexes []*Index `json:"indexes,omitempty"`
	// Deps are the keys of the relations (RelKey), functions and types
	// it uses.
	Deps []string `json:"deps,omitempty"`
}

// Sequence is a sequence a replicated column uses or owns.
type Sequence struct {
	QName
	Type                       string `json:"type"`
	Start, Increment, Min, Max int64
	Cache                      int64 `json:"cache"`
	Cycle                      bool  `json:"cycle"`
	// OwnedBy is the owning column (serial columns), if any.
	OwnedTable *QName `json:"owned_table,omitempty"`
	OwnedCol   string `json:"owned_col,omitempty"`
}

// Table is a replicated table (ordinary, partitioned, or a partition).
type Table struct {
	QName
	// ID is the table's oid in the database it was read from: on the
	// source it is the table's identity, which survives a rename.
	ID       uint32 `json:"id"`
	Kind     byte   `json:"kind"` // 'r' or 'p'
	Unlogged bool   `json:"unlogged,omitempty"`
	// PartKey is pg_get_partkeydef for a partitioned table.
	PartKey string `json:"partkey,omitempty"`
	// Parent and Bound describe a partition (Bound is "FOR VALUES …" or
	// "DEFAULT"). A partition's columns come from its parent.
	Parent      *QName        `json:"parent,omitempty"`
	Bound       string        `json:"bound,omitempty"`
	Columns     []*Column     `json:"columns,omitempty"`
	Constraints []*Constraint `json:"constraints,omitempty"`
	Indexes     []*Index      `json:"indexes,omitempty"`
}

// Column is one column. Num is its attnum in the database it was read
// from: on the source, with the table's ID, its identity.
type Column struct {
	Num       int16  `json:"num"`
	Name      string `json:"name"`
	Type      string `json:"type"`
	NotNull   bool   `json:"notnull,omitempty"`
	Default   string `json:"default,omitempty"`   // expression; empty when none (or generated)
	Identity  byte   `json:"identity,omitempty"`  // 'a' always, 'd' by default, 0 none
	Generated string `json:"generated,omitempty"` // stored generation expression
	Collation string `json:"collation,omitempty"` // quoted, when not the type's default
	// HasMissing and Missing are pg_attribute.atthasmissing and the text
	// of attmissingval: the value rows that existed when the column was
	// added with a non-volatile default read for it (the default was
	// evaluated once, then, and may since have changed or been dropped).
	// A column added without a default, or with one set later, has none:
	// its existing rows read NULL. A table rewrite clears it.
	HasMissing bool   `json:"hasmissing,omitempty"`
	Missing    string `json:"missing,omitempty"`
	// VolatileDefault is set when the default calls a volatile function
	// (clock_timestamp(), random(), nextval …): adding such a column
	// rewrote every existing row with values no capture saw.
	VolatileDefault bool `json:"volatile_default,omitempty"`
}

// Constraint is a primary key, unique, check, exclusion or foreign key.
type Constraint struct {
	Name string `json:"name"`
	Kind byte   `json:"kind"` // p u c x f
	Def  string `json:"def"`
	// Refs is the referenced table of a foreign key.
	Refs *QName `json:"refs,omitempty"`
}

// Index is an index that no constraint owns.
type Index struct {
	Name   string `json:"name"`
	Unique bool   `json:"unique,omitempty"`
	// Using is the definition after "USING": access method, key columns
	// or expressions, INCLUDE, WITH, WHERE.
	Using string `json:"using"`
}

// Key identifies a type or function among dependencies.
func (t *Type) Key() string { return typeKey(t.QName) }
func (f *Function) Key() string {
	return funcKey(f.QName, f.Args)
}

// Key identifies a view among dependencies.
func (v *View) Key() string { return RelKey(v.QName) }

// Kind is "VIEW" or "MATERIALIZED VIEW", as DDL spells it.
func (v *View) Kind() string {
	if v.Materialized {
		return "MATERIALIZED VIEW"
	}
	return "VIEW"
}

// RelKey identifies a relation (a table or a view) among dependencies;
// tables and views share PostgreSQL's relation namespace.
func RelKey(q QName) string { return "rel\x00" + q.Schema + "\x00" + q.Name }

// ColumnKey identifies a column of a relation among a view's
// dependencies: a column a view uses cannot be dropped or retyped.
func ColumnKey(q QName, col string) string { return RelKey(q) + "\x00" + col }

func typeKey(q QName) string { return "type\x00" + q.Schema + "\x00" + q.Name }
func funcKey(q QName, args string) string {
	return "function\x00" + q.Schema + "\x00" + q.Name + "\x00" + args
}

// Ident is the quoted, qualified name.
func (q QName) Ident() string { return pgx.Identifier{q.Schema, q.Name}.Sanitize() }

// Table returns the table named q, or nil.
func (c *Catalog) Table(q QName) *Table {
	for _, t := range c.Tables {
		if t.QName == q {
			return t
		}
	}
	return nil
}

// Column returns the column named name, or nil.
func (t *Table) Column(name string) *Column {
	for _, c := range t.Columns {
		if c.Name == name {
			return c
		}
	}
	return nil
}
