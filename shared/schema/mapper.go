package schema

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Mapper decides where source objects live on a target. Without an apply
// schema every object keeps its schema. With one (targets.<name>.
// apply_schema), every replicated table and every type, function, view and
// sequence it brings along moves into that schema; extensions and their
// objects stay where they are.
type Mapper struct {
	ApplySchema string
	// QuotedSchema is ApplySchema as the server's quote_ident writes it,
	// so that rewritten text compares equal to the target's own deparse;
	// empty means quote only when the name is not a plain lower-case
	// identifier.
	QuotedSchema string
	moved        map[QName]bool
}

// ErrClash reports source objects that would share a name on the target.
var ErrClash = errors.New("schema: objects from different source schemas would get the same name in apply_schema")

// Map returns the target's desired catalog: c with objects moved and every
// qualified reference to a moved object rewritten. It fails with ErrClash,
// naming every clash, when two source objects would get the same name.
// Object IDs and column numbers keep their source values.
func (m *Mapper) Map(c *Catalog) (*Catalog, error) {
	if m.ApplySchema == "" {
		return c, nil
	}
	m.moved = map[QName]bool{}
	for _, t := range c.Tables {
		m.moved[t.QName] = true
	}
	for _, t := range c.Types {
		m.moved[t.QName] = true
	}
	for _, f := range c.Functions {
		m.moved[f.QName] = true
	}
	for _, s := range c.Sequences {
		m.moved[s.QName] = true
	}
	for _, v := range c.Views {
		m.moved[v.QName] = true
	}
	if err := m.clashes(c); err != nil {
		return nil, err
	}
	out := &Catalog{Extensions: c.Extensions, Unsynced: c.Unsynced}
	schemas := []string{m.ApplySchema}
	for _, e := range c.Extensions {
		schemas = append(schemas, e.Schema)
	}
	slices.Sort(schemas)
	out.Schemas = slices.Compact(schemas)
	for _, t := range c.Types {
		n := *t
		n.QName = m.name(t.QName)
		n.Base, n.Default = m.rw(t.Base), m.rw(t.Default)
		n.Attrs = nil
		for _, a := range t.Attrs {
			n.Attrs = append(n.Attrs, Attr{Num: a.Num, Name: a.Name, Type: m.rw(a.Type)})
		}
		n.Checks = nil
		for _, k := range t.Checks {
			n.Checks = append(n.Checks, Check{Name: k.Name, Def: m.rw(k.Def)})
		}
		n.Deps = m.deps(t.Deps)
		out.Types = append(out.Types, &n)
	}
	for _, f := range c.Functions {
		n := *f
		n.QName = m.name(f.QName)
		n.Args, n.Def, n.Result = m.rw(f.Args), m.rw(f.Def), m.rw(f.Result)
		n.Deps = m.deps(f.Deps)
		out.Functions = append(out.Functions, &n)
	}
	for _, s := range c.Sequences {
		n := *s
		n.QName = m.name(s.QName)
		if s.OwnedTable != nil {
			o := m.name(*s.OwnedTable)
			n.OwnedTable = &o
		}
		out.Sequences = append(out.Sequences, &n)
	}
	for _, t := range c.Tables {
		n := *t
		n.QName = m.name(t.QName)
		n.PartKey = m.rw(t.PartKey)
		if t.Parent != nil {
			p := m.name(*t.Parent)
			n.Parent = &p
		}
		n.Columns = nil
		for _, col := range t.Columns {
			cc := *col
			cc.Type, cc.Default, cc.Generated = m.rw(col.Type), m.rw(col.Default), m.rw(col.Generated)
			n.Columns = append(n.Columns, &cc)
		}
		n.Constraints = nil
		for _, k := range t.Constraints {
			kk := *k
			kk.Def = m.rw(k.Def)
			if k.Refs != nil {
				r := m.name(*k.Refs)
				kk.Refs = &r
			}
			n.Constraints = append(n.Constraints, &kk)
		}
		n.Indexes = nil
		for _, ix := range t.Indexes {
			ii := *ix
			ii.Using = m.rw(ix.Using)
			n.Indexes = append(n.Indexes, &ii)
		}
		out.Tables = append(out.Tables, &n)
	}
	for _, v := range c.Views {
		n := *v
		n.QName = m.name(v.QName)
		n.Def = m.rw(v.Def)
		n.Columns = nil
		for _, a := range v.Columns {
			n.Columns = append(n.Columns, Attr{Name: a.Name, Type: m.rw(a.Type)})
		}
		n.Indexes = nil
		for _, ix := range v.Indexes {
			ii := *ix
			ii.Using = m.rw(ix.Using)
			n.Indexes = append(n.Indexes, &ii)
		}
		n.Deps = m.deps(v.Deps)
		out.Views = append(out.Views, &n)
	}
	return out, nil
}

func (m *Mapper) name(q QName) QName {
	if m.moved[q] {
		return QName{Schema: m.ApplySchema, Name: q.Name}
	}
	return q
}

func (m *Mapper) rw(sql string) string {
	if sql == "" {
		return sql
	}
	return rewriteNames(sql, func(schema, name string) (string, bool) {
		if m.moved[QName{schema, name}] {
			return m.quoted(), true
		}
		return "", false
	})
}

// deps maps dependency keys (see typeKey, funcKey) to the target's.
func (m *Mapper) deps(keys []string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		p := strings.Split(k, "\x00")
		switch {
		case len(p) == 3 && p[0] == "rel":
			out[i] = RelKey(m.name(QName{p[1], p[2]}))
		case len(p) == 4 && p[0] == "rel":
			out[i] = ColumnKey(m.name(QName{p[1], p[2]}), p[3])
		case len(p) == 3:
			out[i] = typeKey(m.name(QName{p[1], p[2]}))
		case len(p) == 4:
			out[i] = funcKey(m.name(QName{p[1], p[2]}), m.rw(p[3]))
		default:
			out[i] = k
		}
	}
	return out
}

// clashes finds source objects that would share a name in the apply
// schema, in each of PostgreSQL's namespaces: relations (tables,
// sequences, indexes, constraint indexes, composite types), types (every
// table, sequence and composite also has a row type) and functions (by
// name and arguments).
func (m *Mapper) clashes(c *Catalog) error {
	type owner struct{ what, src string }
	rels := map[string][]owner{}
	types := map[string][]owner{}
	funcs := map[string][]owner{}
	add := func(ns map[string][]owner, name, what string, src QName) {
		ns[name] = append(ns[name], owner{what, src.String()})
	}
	for _, t := range c.Tables {
		add(rels, t.Name, "table", t.QName)
		add(types, t.Name, "table", t.QName)
		for _, k := range t.Constraints {
			if k.Kind == 'p' || k.Kind == 'u' || k.Kind == 'x' {
				add(rels, k.Name, "index of constraint on "+t.Name, QName{t.Schema, k.Name})
			}
		}
		for _, ix := range t.Indexes {
			add(rels, ix.Name, "index on "+t.Name, QName{t.Schema, ix.Name})
		}
	}
	for _, s := range c.Sequences {
		add(rels, s.Name, "sequence", s.QName)
		add(types, s.Name, "sequence", s.QName)
	}
	for _, t := range c.Types {
		what := map[byte]string{KindEnum: "enum", KindComposite: "composite type", KindDomain: "domain"}[t.Kind]
		if t.Kind == KindComposite {
			add(rels, t.Name, what, t.QName)
		}
		add(types, t.Name, what, t.QName)
	}
	for _, f := range c.Functions {
		add(funcs, f.Name+"("+m.rw(f.Args)+")", "function", f.QName)
	}
	for _, v := range c.Views {
		what := strings.ToLower(v.Kind())
		add(rels, v.Name, what, v.QName)
		add(types, v.Name, what, v.QName)
		for _, ix := range v.Indexes {
			add(rels, ix.Name, "index on "+v.Name, QName{v.Schema, ix.Name})
		}
	}
	var msgs []string
	for _, ns := range []map[string][]owner{rels, types, funcs} {
		for name, owners := range ns {
			if len(owners) < 2 {
				continue
			}
			// The same object listed twice (a table as relation and type)
			// is not a clash; two different sources are.
			srcs := map[string]bool{}
			var parts []string
			for _, o := range owners {
				if !srcs[o.src] {
					srcs[o.src] = true
					parts = append(parts, fmt.Sprintf("%s (%s)", o.src, o.what))
				}
			}
			if len(srcs) > 1 {
				sort.Strings(parts)
				msgs = append(msgs, fmt.Sprintf("%s would all become %s.%s", strings.Join(parts, " and "), m.ApplySchema, name))
			}
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	sort.Strings(msgs)
	msgs = slices.Compact(msgs)
	return fmt.Errorf("%w: %s; rename one of each, exclude one (source.exclude), or leave apply_schema empty", ErrClash, strings.Join(msgs, "; "))
}

func (m *Mapper) quoted() string {
	if m.QuotedSchema != "" {
		return m.QuotedSchema
	}
	for i := 0; i < len(m.ApplySchema); i++ {
		c := m.ApplySchema[i]
		if !(c == '_' || (c >= 'a' && c <= 'z') || (i > 0 && c >= '0' && c <= '9')) {
			return qi(m.ApplySchema)
		}
	}
	return m.ApplySchema
}
