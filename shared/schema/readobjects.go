package schema

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// A routine or view read from the catalog, with what it depends on.
type object struct {
	oid  uint32
	fn   *Function
	view *View
	deps []dependency
	// missing says why the object is left out ("" while it is synced).
	missing string
	// needs are the candidate routines and views it depends on.
	needs []*object
}

func (o *object) String() string {
	if o.view != nil {
		return strings.ToLower(o.view.Kind()) + " " + o.view.String()
	}
	kind := map[byte]string{KindProcedure: "procedure", KindAggregate: "aggregate"}[o.fn.Kind]
	if kind == "" {
		kind = "function"
	}
	return fmt.Sprintf("%s %s(%s)", kind, o.fn.QName, o.fn.Args)
}

// dependency is one pg_depend row of a routine or view, resolved: an
// array type stands for its element type, a relation's row type for the
// relation.
type dependency struct {
	class string // pg_class, pg_proc, pg_type, pg_constraint, …
	ref   uint32
	// external objects come with the server or an extension.
	external bool
	desc     string // pg_describe_object
	conrel   uint32 // a constraint's table
	column   string // the column of a table a view uses, if one
}

// routinesAndViews reads the functions, procedures, aggregates, views and
// materialized views to sync, and resolves their dependencies:
//   - every routine and view of a covered schema;
//   - every routine that a replicated table (default, generated column,
//     check, index, partition key), a synced domain, a view or another
//     synced routine uses, wherever it lives;
//   - extension members never: they come with their extension.
//
// On a source, an object that depends on something the target will not
// have — a table that is not replicated, a routine written in C, an
// object kind sync does not copy — is left out and named in
// Catalog.Unsynced, and so is everything that depends on it.
func (r *reader) routinesAndViews(ctx context.Context) error {
	views, err := r.readViews(ctx)
	if err != nil {
		return err
	}
	var viewOIDs []uint32
	for _, v := range views {
		viewOIDs = append(viewOIDs, v.oid)
	}
	fns, err := r.readRoutines(ctx, viewOIDs)
	if err != nil {
		return err
	}
	all := append(slices.Clone(fns), views...)
	byOID := map[uint32]*object{}
	for _, o := range all {
		byOID[o.oid] = o // pg_proc and pg_class oids never collide
	}
	var fnOIDs []uint32
	for _, o := range fns {
		fnOIDs = append(fnOIDs, o.oid)
	}
	if err := r.readDependencies(ctx, fnOIDs, viewOIDs, byOID); err != nil {
		return err
	}
	source := r.sel.Table != nil
	for _, o := range all {
		var deps []string
		for _, d := range o.deps {
			key, need, missing := r.resolve(d, byOID)
			if missing != "" && o.missing == "" && source {
				o.missing = missing
			}
			if need != nil && need != o {
				o.needs = append(o.needs, need)
			}
			if key != "" && !slices.Contains(deps, key) {
				deps = append(deps, key)
			}
		}
		if o.fn != nil {
			o.fn.Deps = deps
		} else {
			o.view.Deps = deps
		}
	}
	// Whatever needs a left-out object is left out too.
	for changed := source; changed; {
		changed = false
		for _, o := range all {
			if o.missing != "" {
				continue
			}
			for _, n := range o.needs {
				if n.missing != "" {
					o.missing = fmt.Sprintf("it depends on %s, which is not synced", n)
					changed = true
					break
				}
			}
		}
	}
	keys := map[uint32]string{}
	var bring []uint32
	for _, o := range all {
		if o.missing != "" {
			r.c.Unsynced = append(r.c.Unsynced, fmt.Sprintf("%s is not synced: %s", o, o.missing))
			continue
		}
		if o.fn != nil {
			r.c.Functions = append(r.c.Functions, o.fn)
			keys[o.oid] = o.fn.Key()
		} else {
			r.c.Views = append(r.c.Views, o.view)
		}
		for _, d := range o.deps {
			if _, ok := r.types[d.ref]; ok && d.class == "pg_type" && !d.external {
				bring = append(bring, d.ref)
			}
		}
	}
	// A routine or view may use a type no table uses: bring it along,
	// with the types it needs.
	for _, oid := range bring {
		r.typeVisit(oid)
	}
	var more []uint32
	for _, oid := range r.typeOrder {
		if r.typeNeed[oid] && !slices.Contains(r.typeOIDs, oid) {
			more = append(more, oid)
		}
	}
	if err := r.useTypes(ctx, more); err != nil {
		return err
	}
	for oid, t := range r.types {
		keys[oid] = t.Key()
	}
	// Domains whose checks call a function depend on it.
	return r.domainFunctionDeps(ctx, keys)
}

// resolve turns a dependency into a dependency key (empty when nothing
// needs ordering), the candidate object it names, and why it cannot be
// met on a target (empty when it can).
func (r *reader) resolve(d dependency, objs map[uint32]*object) (key string, need *object, missing string) {
	if d.external {
		return "", nil, ""
	}
	switch d.class {
	case "pg_class":
		if t := r.byOID[d.ref]; t != nil {
			if d.column != "" {
				return ColumnKey(t.QName, d.column), nil, ""
			}
			return RelKey(t.QName), nil, ""
		}
		if o := objs[d.ref]; o != nil && o.view != nil {
			return o.view.Key(), o, ""
		}
		return "", nil, fmt.Sprintf("it depends on %s, which is not replicated", d.desc)
	case "pg_proc":
		if o := objs[d.ref]; o != nil && o.fn != nil {
			return o.fn.Key(), o, ""
		}
	case "pg_type":
		if t, ok := r.types[d.ref]; ok {
			return t.Key(), nil, ""
		}
	case "pg_constraint":
		// A view that groups by a primary key needs that key.
		if r.byOID[d.conrel] != nil {
			return "", nil, ""
		}
		return "", nil, fmt.Sprintf("it depends on %s, which is not replicated", d.desc)
	}
	return "", nil, fmt.Sprintf("it depends on %s, which schema sync does not copy", d.desc)
}

// readViews reads the views and materialized views of the covered
// schemas, with their columns, options and (materialized) indexes.
func (r *reader) readViews(ctx context.Context) ([]*object, error) {
	rows, err := r.tx.Query(ctx, `
		SELECT c.oid, n.nspname, c.relname, c.relkind = 'm',
		       CASE WHEN c.relkind = 'v' THEN coalesce(c.reloptions, '{}') ELSE '{}' END, pg_get_viewdef(c.oid)
		FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('v', 'm') AND n.nspname = ANY($2) AND `+userNS+`
		  AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_class'::regclass AND e.objid = c.oid AND e.deptype = 'e')
		ORDER BY n.nspname, c.relname`, r.sel.Skip, r.covered)
	if err != nil {
		return nil, err
	}
	var out []*object
	byOID := map[uint32]*View{}
	for rows.Next() {
		v := &View{}
		if err := rows.Scan(&v.ID, &v.Schema, &v.Name, &v.Materialized, &v.Options, &v.Def); err != nil {
			rows.Close()
			return nil, err
		}
		v.Def = strings.TrimSuffix(strings.TrimSpace(v.Def), ";")
		out = append(out, &object{oid: v.ID, view: v})
		byOID[v.ID] = v
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, nil
	}
	oids := make([]uint32, len(out))
	for i, o := range out {
		oids[i] = o.oid
	}
	rows, err = r.tx.Query(ctx, `SELECT attrelid, attname, format_type(atttypid, atttypmod) FROM pg_attribute
		WHERE attrelid = ANY($1) AND attnum > 0 AND NOT attisdropped ORDER BY attrelid, attnum`, oids)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var rel uint32
		var a Attr
		if err := rows.Scan(&rel, &a.Name, &a.Type); err != nil {
			rows.Close()
			return nil, err
		}
		byOID[rel].Columns = append(byOID[rel].Columns, a)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	idx, err := r.readIndexes(ctx, oids)
	if err != nil {
		return nil, err
	}
	for rel, ixs := range idx {
		byOID[rel].Indexes = ixs
	}
	return out, nil
}

// readRoutines reads the functions, procedures and aggregates to sync
// (see routinesAndViews); views are the candidate views' oids.
func (r *reader) readRoutines(ctx context.Context, views []uint32) ([]*object, error) {
	rows, err := r.tx.Query(ctx, `
		WITH RECURSIVE used(oid) AS (
		    SELECT d.refobjid FROM pg_depend d
		    WHERE d.refclassid = 'pg_proc'::regclass AND (
		          (d.classid = 'pg_attrdef'::regclass AND d.objid IN (SELECT oid FROM pg_attrdef WHERE adrelid = ANY($2)))
		       OR (d.classid = 'pg_constraint'::regclass AND d.objid IN (SELECT oid FROM pg_constraint WHERE conrelid = ANY($2) OR contypid = ANY($3)))
		       OR (d.classid = 'pg_class'::regclass AND (d.objid = ANY($2) OR d.objid IN (SELECT indexrelid FROM pg_index WHERE indrelid = ANY($2))))
		       OR (d.classid = 'pg_rewrite'::regclass AND d.objid IN (SELECT oid FROM pg_rewrite WHERE ev_class = ANY($5))))
		  UNION
		    SELECT p.oid FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = ANY($4)
		  UNION
		    SELECT d.refobjid FROM pg_depend d JOIN used u ON d.classid = 'pg_proc'::regclass AND d.objid = u.oid
		    WHERE d.refclassid = 'pg_proc'::regclass
		)
		SELECT p.oid, n.nspname, p.proname, p.prokind::text, pg_get_function_identity_arguments(p.oid),
		       CASE WHEN p.prokind <> 'a' THEN pg_get_functiondef(p.oid) ELSE '' END,
		       coalesce(pg_get_function_result(p.oid), ''), coalesce(p.proargnames, '{}'), p.pronargdefaults,
		       l.lanname IN ('c', 'internal') AND p.prokind <> 'a'
		FROM pg_proc p
		JOIN pg_namespace n ON n.oid = p.pronamespace
		JOIN pg_language l ON l.oid = p.prolang
		WHERE p.oid IN (SELECT oid FROM used) AND p.prokind IN ('f', 'p', 'a') AND `+userNS+`
		  AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_proc'::regclass AND e.objid = p.oid AND e.deptype = 'e')
		ORDER BY n.nspname, p.proname, 5`, r.sel.Skip, r.oids, r.typeOIDs, r.covered, views)
	if err != nil {
		return nil, err
	}
	var out []*object
	var aggs []uint32
	byOID := map[uint32]*object{}
	for rows.Next() {
		o := &object{fn: &Function{}}
		var kind string
		var native bool
		if err := rows.Scan(&o.oid, &o.fn.Schema, &o.fn.Name, &kind, &o.fn.Args, &o.fn.Def, &o.fn.Result, &o.fn.ArgNames,
			&o.fn.Defaults, &native); err != nil {
			rows.Close()
			return nil, err
		}
		o.fn.Kind = kind[0]
		if native {
			o.missing = "it is written in C (install its library and create it on the target by hand)"
		}
		if o.fn.Kind == KindAggregate {
			aggs = append(aggs, o.oid)
		}
		out = append(out, o)
		byOID[o.oid] = o
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, r.aggregates(ctx, aggs, byOID)
}

// aggregates renders the CREATE OR REPLACE AGGREGATE statement of each
// aggregate in oids from pg_aggregate (pg_get_functiondef refuses
// aggregates). Ordered-set and hypothetical-set aggregates are left out.
func (r *reader) aggregates(ctx context.Context, oids []uint32, objs map[uint32]*object) error {
	if len(oids) == 0 {
		return nil
	}
	rows, err := r.tx.Query(ctx, `
		SELECT a.aggfnoid::oid, a.aggkind::text, quote_ident(pn.nspname) || '.' || quote_ident(p.proname),
		       a.aggtransfn::regproc::text, format_type(a.aggtranstype, NULL), a.aggtransspace,
		       a.aggfinalfn::regproc::text, a.aggfinalextra, a.aggfinalmodify::text,
		       a.aggcombinefn::regproc::text, a.aggserialfn::regproc::text, a.aggdeserialfn::regproc::text, a.agginitval,
		       a.aggmtransfn::regproc::text, a.aggminvtransfn::regproc::text,
		       CASE WHEN a.aggmtranstype <> 0 THEN format_type(a.aggmtranstype, NULL) ELSE '' END, a.aggmtransspace,
		       a.aggmfinalfn::regproc::text, a.aggmfinalextra, a.aggmfinalmodify::text, a.aggminitval,
		       CASE WHEN a.aggsortop = 0 THEN ''
		            WHEN o.oprnamespace = 'pg_catalog'::regnamespace THEN o.oprname
		            ELSE 'OPERATOR(' || quote_ident(on_.nspname) || '.' || o.oprname || ')' END,
		       p.proparallel::text
		FROM pg_aggregate a
		JOIN pg_proc p ON p.oid = a.aggfnoid
		JOIN pg_namespace pn ON pn.oid = p.pronamespace
		LEFT JOIN pg_operator o ON o.oid = a.aggsortop
		LEFT JOIN pg_namespace on_ ON on_.oid = o.oprnamespace
		WHERE a.aggfnoid::oid = ANY($1)`, oids)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var oid uint32
		var kind, name, sfunc, stype, ffunc, fmodify, combine, serial, deserial, msfunc, minv, mstype, mffunc, mfmodify, sortop, parallel string
		var sspace, msspace int32
		var fextra, mfextra bool
		var initcond, minitcond *string
		if err := rows.Scan(&oid, &kind, &name, &sfunc, &stype, &sspace, &ffunc, &fextra, &fmodify, &combine, &serial, &deserial,
			&initcond, &msfunc, &minv, &mstype, &msspace, &mffunc, &mfextra, &mfmodify, &minitcond, &sortop, &parallel); err != nil {
			return err
		}
		o := objs[oid]
		if kind != "n" {
			o.missing = "ordered-set and hypothetical-set aggregates are not copied"
			continue
		}
		var opts []string
		opt := func(name, value string) {
			if value != "" && value != "-" {
				opts = append(opts, name+" = "+value)
			}
		}
		opt("SFUNC", sfunc)
		opt("STYPE", stype)
		if sspace != 0 {
			opt("SSPACE", fmt.Sprint(sspace))
		}
		opt("FINALFUNC", ffunc)
		if fextra {
			opts = append(opts, "FINALFUNC_EXTRA")
		}
		if ffunc != "-" && fmodify != "r" {
			opt("FINALFUNC_MODIFY", modifyName(fmodify))
		}
		opt("COMBINEFUNC", combine)
		opt("SERIALFUNC", serial)
		opt("DESERIALFUNC", deserial)
		if initcond != nil {
			opt("INITCOND", quoteLiteral(*initcond))
		}
		if msfunc != "-" {
			opt("MSFUNC", msfunc)
			opt("MINVFUNC", minv)
			opt("MSTYPE", mstype)
			if msspace != 0 {
				opt("MSSPACE", fmt.Sprint(msspace))
			}
			opt("MFINALFUNC", mffunc)
			if mfextra {
				opts = append(opts, "MFINALFUNC_EXTRA")
			}
			if mffunc != "-" && mfmodify != "r" {
				opt("MFINALFUNC_MODIFY", modifyName(mfmodify))
			}
			if minitcond != nil {
				opt("MINITCOND", quoteLiteral(*minitcond))
			}
		}
		opt("SORTOP", sortop)
		if parallel != "u" {
			opt("PARALLEL", map[string]string{"s": "SAFE", "r": "RESTRICTED"}[parallel])
		}
		args := o.fn.Args
		if args == "" {
			args = "*"
		}
		// The name is written as quote_ident writes it, the way an
		// apply_schema rewrite writes it too, so source and target
		// renderings compare equal.
		o.fn.Def = fmt.Sprintf("CREATE OR REPLACE AGGREGATE %s(%s) (\n    %s\n)", name, args, strings.Join(opts, ",\n    "))
	}
	return rows.Err()
}

func modifyName(c string) string {
	return map[string]string{"r": "READ_ONLY", "s": "SHAREABLE", "w": "READ_WRITE"}[c]
}

// readDependencies fills each object's dependencies (see dependency).
func (r *reader) readDependencies(ctx context.Context, fns, views []uint32, objs map[uint32]*object) error {
	rows, err := r.tx.Query(ctx, `
		WITH raw AS (
		    SELECT d.objid AS owner, d.refclassid, d.refobjid, d.refobjsubid FROM pg_depend d
		    WHERE d.classid = 'pg_proc'::regclass AND d.objid = ANY($1) AND d.deptype = 'n'
		  UNION
		    SELECT rw.ev_class, d.refclassid, d.refobjid, d.refobjsubid FROM pg_depend d
		    JOIN pg_rewrite rw ON d.classid = 'pg_rewrite'::regclass AND d.objid = rw.oid
		    WHERE rw.ev_class = ANY($2) AND d.deptype = 'n'
		), res AS (
		    SELECT raw.owner, CASE WHEN raw.refclassid = 'pg_class'::regclass THEN raw.refobjsubid ELSE 0 END AS col,
		           CASE WHEN rc.relkind IN ('r', 'p', 'v', 'm', 'f') THEN 'pg_class'::regclass ELSE raw.refclassid::regclass END AS cls,
		           CASE WHEN rc.relkind IN ('r', 'p', 'v', 'm', 'f') THEN rc.oid
		                WHEN raw.refclassid = 'pg_type'::regclass THEN et.oid ELSE raw.refobjid END AS ref
		    FROM raw
		    LEFT JOIN pg_type t ON raw.refclassid = 'pg_type'::regclass AND t.oid = raw.refobjid
		    LEFT JOIN pg_type et ON et.oid = CASE WHEN t.typcategory = 'A' AND t.typelem <> 0 THEN t.typelem ELSE t.oid END
		    LEFT JOIN pg_class rc ON rc.oid = et.typrelid
		    WHERE raw.refclassid <> 'pg_namespace'::regclass
		)
		SELECT DISTINCT owner, cls::text, ref,
		       coalesce((SELECT a.attname::text FROM pg_attribute a WHERE col > 0 AND a.attrelid = ref AND a.attnum = col), ''),
		       ref < 16384
		       OR EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = cls AND e.objid = ref AND e.deptype = 'e')
		       OR (cls = 'pg_type'::regclass AND EXISTS (SELECT 1 FROM pg_type x JOIN pg_depend e ON e.classid = 'pg_class'::regclass
		                                               AND e.objid = x.typrelid AND e.deptype = 'e' WHERE x.oid = ref)),
		       coalesce(pg_describe_object(cls, ref, 0), ''),
		       coalesce((SELECT k.conrelid FROM pg_constraint k WHERE cls = 'pg_constraint'::regclass AND k.oid = ref), 0)
		FROM res
		WHERE NOT (cls = 'pg_class'::regclass AND ref = owner)
		ORDER BY 1, 2, 3, 4`, fns, views)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var owner uint32
		var d dependency
		if err := rows.Scan(&owner, &d.class, &d.ref, &d.column, &d.external, &d.desc, &d.conrel); err != nil {
			return err
		}
		if o := objs[owner]; o != nil {
			o.deps = append(o.deps, d)
		}
	}
	return rows.Err()
}
