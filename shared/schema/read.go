package schema

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Selection says which tables a catalog holds.
type Selection struct {
	// Table reports whether a table is replicated, given its partition
	// root (the table itself when it is not a partition). Nil selects
	// every table.
	Table func(root QName) bool
	// Schema reports whether a schema is covered even when no replicated
	// table is in it (a pattern names it with "*"). The standalone
	// objects of a covered schema — every function, procedure and
	// aggregate, every view and materialized view whose dependencies are
	// replicated, every enum, composite type and domain — are read. A
	// schema that holds a replicated table is always covered. Nil covers
	// only those.
	Schema func(schema string) bool
	// Skip lists schemas never read (pgferry's own).
	Skip []string
}

// userNS is the condition for a namespace n that holds user objects.
const userNS = `n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%' AND NOT n.nspname = ANY($1::text[])`

// Read reads the catalog of the selected tables and of what they need.
// It runs inside tx (a repeatable-read transaction gives one consistent
// view) and sets the transaction's search_path to empty, so that every
// deparsed name outside pg_catalog is schema-qualified.
func Read(ctx context.Context, tx pgx.Tx, sel Selection) (*Catalog, error) {
	if _, err := tx.Exec(ctx, "SET LOCAL search_path = ''"); err != nil {
		return nil, fmt.Errorf("schema: read catalog: %w", err)
	}
	r := &reader{tx: tx, sel: sel, c: &Catalog{}, byOID: map[uint32]*Table{}, types: map[uint32]*Type{}}
	if sel.Skip == nil {
		r.sel.Skip = []string{}
	}
	for _, step := range []func(context.Context) error{r.tables, r.columns, r.constraints, r.indexes,
		r.coveredSchemas, r.userTypes, r.routinesAndViews, r.sequences, r.extensions, r.schemas} {
		if err := step(ctx); err != nil {
			return nil, fmt.Errorf("schema: read catalog: %w", err)
		}
	}
	return r.c, nil
}

type reader struct {
	tx    pgx.Tx
	sel   Selection
	c     *Catalog
	oids  []uint32
	byOID map[uint32]*Table
	// colTypes are the (element) types of the tables' columns.
	colTypes []uint32
	types    map[uint32]*Type
	attrs    map[uint32][]typedAttr
	typeOIDs []uint32
	// typeVisit marks a type and the types it needs in typeNeed; typeOrder
	// lists every user type in catalog order (userTypes sets them).
	typeVisit func(uint32)
	typeNeed  map[uint32]bool
	typeOrder []uint32
	// covered are the schemas whose standalone objects are read.
	covered []string
}

func (r *reader) tables(ctx context.Context) error {
	rows, err := r.tx.Query(ctx, `
		SELECT c.oid, n.nspname, c.relname, c.relkind::text, c.relpersistence = 'u',
		       CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END,
		       CASE WHEN c.relispartition THEN pg_get_expr(c.relpartbound, c.oid) END,
		       pn.nspname, pc.relname, rn.nspname, rc.relname
		FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		LEFT JOIN pg_inherits i ON i.inhrelid = c.oid AND c.relispartition
		LEFT JOIN pg_class pc ON pc.oid = i.inhparent
		LEFT JOIN pg_namespace pn ON pn.oid = pc.relnamespace
		JOIN pg_class rc ON rc.oid = coalesce(pg_partition_root(c.oid), c.oid)
		JOIN pg_namespace rn ON rn.oid = rc.relnamespace
		WHERE c.relkind IN ('r', 'p') AND `+userNS+`
		ORDER BY n.nspname, c.relname`, r.sel.Skip)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		t := &Table{}
		var kind string
		var partKey, bound, pSchema, pName *string
		var root QName
		if err := rows.Scan(&t.ID, &t.Schema, &t.Name, &kind, &t.Unlogged, &partKey, &bound, &pSchema, &pName, &root.Schema, &root.Name); err != nil {
			return err
		}
		if r.sel.Table != nil && !r.sel.Table(root) {
			continue
		}
		t.Kind = kind[0]
		if partKey != nil {
			t.PartKey = *partKey
		}
		if bound != nil && pSchema != nil {
			t.Bound = *bound
			t.Parent = &QName{*pSchema, *pName}
		}
		r.c.Tables = append(r.c.Tables, t)
		r.byOID[t.ID] = t
		r.oids = append(r.oids, t.ID)
	}
	return rows.Err()
}

func (r *reader) columns(ctx context.Context) error {
	rows, err := r.tx.Query(ctx, `
		SELECT a.attrelid, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
		       coalesce(pg_get_expr(d.adbin, d.adrelid), ''), a.attidentity::text, a.attgenerated::text,
		       CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation
		            THEN quote_ident(cn.nspname) || '.' || quote_ident(co.collname) ELSE '' END,
		       CASE WHEN t.typcategory = 'A' THEN t.typelem ELSE t.oid END,
		       a.atthasmissing, coalesce((a.attmissingval::text::text[])[1], ''),
		       coalesce((SELECT bool_or(p.provolatile = 'v')
		                 FROM regexp_matches(d.adbin::text, ':(?:op)?funcid (\d+)', 'g') f
		                 JOIN pg_proc p ON p.oid = f[1]::oid), false)
		FROM pg_attribute a
		JOIN pg_type t ON t.oid = a.atttypid
		LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
		LEFT JOIN pg_collation co ON co.oid = a.attcollation
		LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
		WHERE a.attrelid = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped
		ORDER BY a.attrelid, a.attnum`, r.oids)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var rel, typ uint32
		var identity, generated string
		c := &Column{}
		if err := rows.Scan(&rel, &c.Num, &c.Name, &c.Type, &c.NotNull, &c.Default, &identity, &generated, &c.Collation, &typ,
			&c.HasMissing, &c.Missing, &c.VolatileDefault); err != nil {
			return err
		}
		if identity != "" {
			c.Identity = identity[0]
		}
		if generated != "" {
			c.Generated, c.Default = c.Default, ""
		}
		r.byOID[rel].Columns = append(r.byOID[rel].Columns, c)
		r.colTypes = append(r.colTypes, typ)
	}
	return rows.Err()
}

func (r *reader) constraints(ctx context.Context) error {
	rows, err := r.tx.Query(ctx, `
		SELECT conrelid, conname, contype::text, pg_get_constraintdef(oid), confrelid
		FROM pg_constraint
		WHERE conrelid = ANY($1) AND contype IN ('p', 'u', 'c', 'f', 'x') AND conparentid = 0 AND conislocal
		ORDER BY conrelid, conname`, r.oids)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var rel, ref uint32
		var kind string
		k := &Constraint{}
		if err := rows.Scan(&rel, &k.Name, &kind, &k.Def, &ref); err != nil {
			return err
		}
		k.Kind = kind[0]
		if k.Kind == 'f' {
			rt := r.byOID[ref]
			if rt == nil {
				// References a table that is not replicated: the target
				// could not hold it.
				continue
			}
			q := rt.QName
			k.Refs = &q
		}
		r.byOID[rel].Constraints = append(r.byOID[rel].Constraints, k)
	}
	return rows.Err()
}

func (r *reader) indexes(ctx context.Context) error {
	byRel, err := r.readIndexes(ctx, r.oids)
	if err != nil {
		return err
	}
	for rel, ixs := range byRel {
		r.byOID[rel].Indexes = ixs
	}
	return nil
}

// readIndexes reads the indexes no constraint owns (and that are not an
// index partition) of the relations rels.
func (r *reader) readIndexes(ctx context.Context, rels []uint32) (map[uint32][]*Index, error) {
	rows, err := r.tx.Query(ctx, `
		SELECT i.indrelid, ic.relname, i.indisunique, pg_get_indexdef(i.indexrelid)
		FROM pg_index i
		JOIN pg_class ic ON ic.oid = i.indexrelid
		WHERE i.indrelid = ANY($1)
		  AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid AND k.contype IN ('p', 'u', 'x'))
		  AND NOT EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhrelid = i.indexrelid)
		ORDER BY i.indrelid, ic.relname`, rels)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[uint32][]*Index{}
	for rows.Next() {
		var rel uint32
		var def string
		ix := &Index{}
		if err := rows.Scan(&rel, &ix.Name, &ix.Unique, &def); err != nil {
			return nil, err
		}
		using, ok := SplitUsing(def)
		if !ok {
			return nil, fmt.Errorf("index %s: unexpected definition %q", ix.Name, def)
		}
		ix.Using = using
		out[rel] = append(out[rel], ix)
	}
	return out, rows.Err()
}

// coveredSchemas decides which schemas' standalone objects are read: on
// a target (no table selection) every user schema; on a source those
// holding a replicated table and those Selection.Schema covers.
func (r *reader) coveredSchemas(ctx context.Context) error {
	rows, err := r.tx.Query(ctx, `SELECT n.nspname FROM pg_namespace n WHERE `+userNS+` ORDER BY 1`, r.sel.Skip)
	if err != nil {
		return err
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	withTables := map[string]bool{}
	for _, t := range r.c.Tables {
		withTables[t.Schema] = true
	}
	r.covered = []string{}
	for _, n := range names {
		if r.sel.Table == nil || withTables[n] || (r.sel.Schema != nil && r.sel.Schema(n)) {
			r.covered = append(r.covered, n)
		}
	}
	return nil
}

// SplitUsing returns what follows the first " USING " outside quoted
// identifiers in an index definition (pg_get_indexdef).
func SplitUsing(def string) (string, bool) {
	inQuote := false
	for i := 0; i < len(def); i++ {
		switch {
		case def[i] == '"':
			inQuote = !inQuote // "" inside a quoted name toggles twice
		case !inQuote && strings.HasPrefix(def[i:], " USING "):
			return def[i+len(" USING "):], true
		}
	}
	return "", false
}

// userTypes reads the enums, composite types and domains the tables need
// (through column types, domain base types and composite attributes),
// plus every such type in a covered schema (new types).
func (r *reader) userTypes(ctx context.Context) error {
	rows, err := r.tx.Query(ctx, `
		SELECT t.oid, n.nspname, t.typname, t.typtype::text, t.typrelid,
		       coalesce(CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END, ''),
		       t.typnotnull, coalesce(pg_get_expr(t.typdefaultbin, 0), ''),
		       coalesce((SELECT CASE WHEN b.typcategory = 'A' THEN b.typelem ELSE b.oid END FROM pg_type b WHERE b.oid = t.typbasetype), 0)
		FROM pg_type t
		JOIN pg_namespace n ON n.oid = t.typnamespace
		LEFT JOIN pg_class c ON c.oid = t.typrelid
		WHERE (t.typtype IN ('e', 'd') OR (t.typtype = 'c' AND c.relkind = 'c')) AND `+userNS+`
		  AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.objid IN (t.oid, t.typrelid) AND e.deptype = 'e')
		ORDER BY n.nspname, t.typname`, r.sel.Skip)
	if err != nil {
		return err
	}
	all := map[uint32]*Type{}
	base := map[uint32]uint32{}
	var order []uint32
	for rows.Next() {
		t := &Type{}
		var kind string
		var oid, b uint32
		if err := rows.Scan(&oid, &t.Schema, &t.Name, &kind, &t.ID, &t.Base, &t.NotNull, &t.Default, &b); err != nil {
			rows.Close()
			return err
		}
		t.Kind = kind[0]
		all[oid], base[oid] = t, b
		order = append(order, oid)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	attrs, err := r.compositeAttrs(ctx, order)
	if err != nil {
		return err
	}
	r.attrs = attrs
	// Needed: the closure of column types through domains and composites.
	covered := map[string]bool{}
	for _, s := range r.covered {
		covered[s] = true
	}
	need := map[uint32]bool{}
	var visit func(uint32)
	visit = func(oid uint32) {
		t, ok := all[oid]
		if !ok || need[oid] {
			return
		}
		need[oid] = true
		if b := base[oid]; b != 0 {
			visit(b)
			if bt, ok := all[b]; ok {
				t.Deps = append(t.Deps, bt.Key())
			}
		}
		for _, a := range attrs[oid] {
			visit(a.elem)
			if at, ok := all[a.elem]; ok {
				t.Deps = append(t.Deps, at.Key())
			}
		}
	}
	for _, oid := range r.colTypes {
		visit(oid)
	}
	for _, oid := range order {
		if covered[all[oid].Schema] {
			visit(oid)
		}
	}
	r.types = all
	r.typeVisit, r.typeNeed, r.typeOrder = visit, need, order
	var chosen []uint32
	for _, oid := range order {
		if need[oid] {
			chosen = append(chosen, oid)
		}
	}
	return r.useTypes(ctx, chosen)
}

// useTypes adds the given types to the catalog with their attributes,
// labels and checks.
func (r *reader) useTypes(ctx context.Context, oids []uint32) error {
	oids = slices.DeleteFunc(slices.Clone(oids), func(oid uint32) bool { return slices.Contains(r.typeOIDs, oid) })
	for _, oid := range oids {
		t := r.types[oid]
		for _, a := range r.attrs[oid] {
			t.Attrs = append(t.Attrs, a.Attr)
		}
		r.c.Types = append(r.c.Types, t)
		r.typeOIDs = append(r.typeOIDs, oid)
	}
	return r.typeDetails(ctx, oids)
}

type typedAttr struct {
	Attr
	elem uint32
}

func (r *reader) compositeAttrs(ctx context.Context, oids []uint32) (map[uint32][]typedAttr, error) {
	rows, err := r.tx.Query(ctx, `
		SELECT t.oid, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod),
		       CASE WHEN at.typcategory = 'A' THEN at.typelem ELSE at.oid END
		FROM pg_type t
		JOIN pg_attribute a ON a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped
		JOIN pg_type at ON at.oid = a.atttypid
		WHERE t.oid = ANY($1) AND t.typtype = 'c'
		ORDER BY t.oid, a.attnum`, oids)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[uint32][]typedAttr{}
	for rows.Next() {
		var oid uint32
		var a typedAttr
		if err := rows.Scan(&oid, &a.Num, &a.Name, &a.Type, &a.elem); err != nil {
			return nil, err
		}
		out[oid] = append(out[oid], a)
	}
	return out, rows.Err()
}

// typeDetails reads enum labels and domain checks of the chosen types.
func (r *reader) typeDetails(ctx context.Context, oids []uint32) error {
	rows, err := r.tx.Query(ctx, `SELECT enumtypid, enumlabel FROM pg_enum WHERE enumtypid = ANY($1) ORDER BY enumtypid, enumsortorder`, oids)
	if err != nil {
		return err
	}
	for rows.Next() {
		var oid uint32
		var l string
		if err := rows.Scan(&oid, &l); err != nil {
			rows.Close()
			return err
		}
		r.types[oid].Labels = append(r.types[oid].Labels, l)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	rows, err = r.tx.Query(ctx, `SELECT contypid, conname, pg_get_constraintdef(oid) FROM pg_constraint
		WHERE contypid = ANY($1) AND contype = 'c' ORDER BY contypid, conname`, oids)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var oid uint32
		var k Check
		if err := rows.Scan(&oid, &k.Name, &k.Def); err != nil {
			return err
		}
		r.types[oid].Checks = append(r.types[oid].Checks, k)
	}
	return rows.Err()
}

func (r *reader) domainFunctionDeps(ctx context.Context, keys map[uint32]string) error {
	rows, err := r.tx.Query(ctx, `
		SELECT k.contypid, d.refobjid FROM pg_constraint k
		JOIN pg_depend d ON d.classid = 'pg_constraint'::regclass AND d.objid = k.oid AND d.refclassid = 'pg_proc'::regclass
		WHERE k.contypid = ANY($1)`, r.typeOIDs)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var typ, proc uint32
		if err := rows.Scan(&typ, &proc); err != nil {
			return err
		}
		if k, ok := keys[proc]; ok {
			r.types[typ].Deps = append(r.types[typ].Deps, k)
		}
	}
	return rows.Err()
}

// sequences reads sequences the tables own (serial) or whose nextval a
// column default calls. Identity sequences come with their column.
func (r *reader) sequences(ctx context.Context) error {
	rows, err := r.tx.Query(ctx, `
		SELECT s.seqrelid, n.nspname, c.relname, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement,
		       s.seqmin, s.seqmax, s.seqcache, s.seqcycle, coalesce(own.refobjid, 0), coalesce(own.refobjsubid, 0)
		FROM pg_sequence s
		JOIN pg_class c ON c.oid = s.seqrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		LEFT JOIN pg_depend own ON own.classid = 'pg_class'::regclass AND own.objid = s.seqrelid
		     AND own.refclassid = 'pg_class'::regclass AND own.deptype = 'a'
		WHERE s.seqrelid IN (
		        SELECT objid FROM pg_depend WHERE classid = 'pg_class'::regclass AND refclassid = 'pg_class'::regclass
		               AND deptype = 'a' AND refobjid = ANY($1)
		        UNION
		        SELECT refobjid FROM pg_depend WHERE classid = 'pg_attrdef'::regclass AND refclassid = 'pg_class'::regclass
		               AND objid IN (SELECT oid FROM pg_attrdef WHERE adrelid = ANY($1)))
		  AND NOT EXISTS (SELECT 1 FROM pg_depend i WHERE i.classid = 'pg_class'::regclass AND i.objid = s.seqrelid AND i.deptype = 'i')
		ORDER BY n.nspname, c.relname`, r.oids)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		s := &Sequence{}
		var oid, owner uint32
		var col int16
		if err := rows.Scan(&oid, &s.Schema, &s.Name, &s.Type, &s.Start, &s.Increment, &s.Min, &s.Max, &s.Cache, &s.Cycle, &owner, &col); err != nil {
			return err
		}
		if t := r.byOID[owner]; t != nil {
			for _, c := range t.Columns {
				if c.Num == col {
					q := t.QName
					s.OwnedTable, s.OwnedCol = &q, c.Name
				}
			}
		}
		r.c.Sequences = append(r.c.Sequences, s)
	}
	return rows.Err()
}

func (r *reader) extensions(ctx context.Context) error {
	rows, err := r.tx.Query(ctx, `SELECT e.extname, n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
		WHERE e.extname <> 'plpgsql' ORDER BY e.extname`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var e Extension
		if err := rows.Scan(&e.Name, &e.Schema); err != nil {
			return err
		}
		r.c.Extensions = append(r.c.Extensions, e)
	}
	return rows.Err()
}

// schemas lists every schema when the whole database is read (a target),
// and the replicated tables' schemas otherwise (a source).
func (r *reader) schemas(ctx context.Context) error {
	if r.sel.Table != nil {
		seen := map[string]bool{}
		for _, t := range r.c.Tables {
			if !seen[t.Schema] {
				seen[t.Schema] = true
				r.c.Schemas = append(r.c.Schemas, t.Schema)
			}
		}
		sort.Strings(r.c.Schemas)
		return nil
	}
	rows, err := r.tx.Query(ctx, `SELECT nspname FROM pg_namespace ORDER BY 1`)
	if err != nil {
		return err
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	r.c.Schemas = names
	return err
}
