// Package rules shapes the change stream per target, as configured in
// targets.<name>.tables, exclude, deletes and rules: which tables a target
// gets, which columns, with which values masked, hashed or rewritten,
// which rows (filters, which follow rows across their boundary) and which
// operations, and whether deletes are soft. The drain applies them to
// every captured change before it is compacted into the target's batch,
// so nothing a rule removes ever leaves the source side; the initial load
// and --verify apply the same plans to the rows they copy and compare.
//
// Everything here is pure but for reading column types from a Catalog.
package rules

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/config"
)

// Set holds the compiled rules of every target of a pipeline. It is safe
// for concurrent use.
type Set struct {
	cfg      *config.Config
	pipeline string
	salt     string
	cat      Catalog
	src      Querier // lists the replicated tables for Ready; nil in unit tests
	targets  map[string]*Target
	mu       sync.Mutex
	ready    bool
}

// ForSource returns cfg's rules reading the source through src, or nil
// when no target has any (then the drain ships every change to every
// target as captured).
func ForSource(cfg *config.Config, src Querier) *Set {
	has := false
	for _, t := range cfg.Targets {
		has = has || t.HasRules()
	}
	if !has {
		return nil
	}
	s := New(cfg, &Cached{Next: PG{Q: src}})
	s.src = src
	return s
}

// Ready checks the rules against the source (Check, with the capture
// mode and replicated tables of the configuration) the first time it is
// called, and again after a failure. A nil Set is ready.
func (s *Set) Ready(ctx context.Context) error {
	if s == nil || s.src == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ready {
		return nil
	}
	tables, err := ReplicatedTables(ctx, s.src, s.cfg)
	if err != nil {
		return err
	}
	if err := s.Check(ctx, s.cfg.Source.Capture, tables); err != nil {
		return err
	}
	s.ready = true
	return nil
}

// New compiles cfg's per-target rules; column types come from cat when a
// table's plan is first needed.
func New(cfg *config.Config, cat Catalog) *Set {
	s := &Set{cfg: cfg, pipeline: cfg.Name, salt: cfg.HashSalt, cat: cat, targets: map[string]*Target{}}
	for _, name := range cfg.TargetNames() {
		s.targets[name] = &Target{Name: name, cfg: cfg.Targets[name], set: s, plans: map[string]*Plan{}}
	}
	return s
}

// Target returns the named target's rules, or nil for a target without
// any, or when s is nil (it gets every replicated table whole, with hard deletes).
func (s *Set) Target(name string) *Target {
	if s == nil {
		return nil
	}
	t := s.targets[name]
	if t == nil || !t.cfg.HasRules() {
		return nil
	}
	return t
}

// Target is one target's rules.
type Target struct {
	Name  string
	cfg   config.Target
	set   *Set
	mu    sync.Mutex
	plans map[string]*Plan
}

// Gets reports whether the target gets table t at all.
func (t *Target) Gets(tab batch.Table) bool { return t.cfg.Gets(tab.Schema, tab.Name) }

// SoftDeletes reports deletes: soft.
func (t *Target) SoftDeletes() bool { return t.cfg.SoftDeletes() }

// NeedsOldRow reports whether the rules need, for table tab, an old row
// image beyond what capture keeps without them (the old key, and the
// whole old row of a table without a key). They do not: a filter is
// evaluated on the new row, and a new row that fails it becomes a delete
// by key, which is a no-op on a target that never had the row. The old
// row only spares such no-op deletes. Capture may call this to decide
// what to keep; it is here so that a rule that needs more says so.
func (t *Target) NeedsOldRow(tab batch.Table) bool { return false }

// NeedsWholeRow reports whether the rules need every value of every new
// row of tab: a filtered table does (a row that enters the filter must be
// inserted whole). Trigger capture always writes whole rows; slot capture
// does only under REPLICA IDENTITY FULL, which fills the values an UPDATE
// left unchanged in TOAST from the old row.
func (t *Target) NeedsWholeRow(tab batch.Table) bool {
	for _, r := range t.cfg.Rules {
		if len(r.Filter) > 0 && r.Pattern.Match(tab.Schema, tab.Name) {
			return true
		}
	}
	return false
}

// RowsDiffer says why the target's row count of tab may differ from the
// source's by design (soft deletes, a row filter, deletes or truncates
// left out by operations), or returns "" when the counts must be equal.
func (t *Target) RowsDiffer(tab batch.Table) string {
	if t.SoftDeletes() {
		return "soft deletes"
	}
	for i := range t.cfg.Rules {
		r := &t.cfg.Rules[i]
		switch {
		case !r.Pattern.Match(tab.Schema, tab.Name):
		case len(r.Filter) > 0:
			return "row filter"
		case !r.Lets(config.OpDelete):
			return "deletes not replicated"
		case !r.Lets(config.OpTruncate):
			return "truncates not replicated"
		}
	}
	return ""
}

// Plan is the compiled rules of one table in one column shape.
type Plan struct {
	Table batch.Table
	// Skip: the target does not get the table.
	Skip bool
	// In and Key are the shape the plan was compiled for; Columns the
	// columns the target gets (deleted-at last, when soft).
	In, Key, Columns []string
	keep             []int // In index of each Columns entry (-1: deleted-at)
	fns              [][]func(string) string
	conds            []cond
	condKeys         []string // the rule key of each cond, for messages
	ops              map[string]bool
	soft             bool
	keyIdx           []int // In index of each Key column
	target           string
}

// Plan returns the plan for tab with columns cols keyed by key (as
// capture delivers them), compiling it on first use. An error names the
// rule that cannot be honoured (a column it names is gone, say): the
// caller must stop rather than ship rows the rule did not shape.
func (t *Target) Plan(ctx context.Context, tab batch.Table, cols, key []string) (*Plan, error) {
	k := planKey(tab, cols, key)
	t.mu.Lock()
	p, ok := t.plans[k]
	t.mu.Unlock()
	if ok {
		return p, nil
	}
	p, err := t.compile(ctx, tab, cols, key)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	t.plans[k] = p
	t.mu.Unlock()
	return p, nil
}

func planKey(tab batch.Table, cols, key []string) string {
	var b strings.Builder
	for _, s := range append([]string{tab.Schema, tab.Name}, cols...) {
		b.WriteString(s)
		b.WriteByte(0)
	}
	b.WriteByte(1)
	for _, s := range key {
		b.WriteString(s)
		b.WriteByte(0)
	}
	return b.String()
}

func (t *Target) compile(ctx context.Context, tab batch.Table, cols, key []string) (*Plan, error) {
	p := &Plan{Table: tab, In: cols, Key: key, target: t.Name, soft: t.cfg.SoftDeletes()}
	if tab.Schema == batch.CaptureSchema(t.set.pipeline) {
		// Load marks and the like: pgferry's own, never shaped.
		p.Columns, p.fns = cols, make([][]func(string) string, len(cols))
		for i := range cols {
			p.keep = append(p.keep, i)
		}
		for _, k := range key {
			p.keyIdx = append(p.keyIdx, slices.Index(cols, k))
		}
		p.soft = false
		return p, nil
	}
	if !t.Gets(tab) {
		p.Skip = true
		return p, nil
	}
	for _, k := range key {
		i := slices.Index(cols, k)
		if i < 0 {
			return nil, fmt.Errorf("rules: targets.%s: %s: key column %q is not among the captured columns", t.Name, tab, k)
		}
		p.keyIdx = append(p.keyIdx, i)
	}
	var info TableInfo
	var haveInfo bool
	column := func(rk, name string) (int, error) {
		i := slices.Index(cols, name)
		if i < 0 {
			return -1, fmt.Errorf("rules: %s: column %q of %s is not among the source's columns (dropped or renamed?): nothing after this change is shipped until the rule is changed", rk, name, tab)
		}
		return i, nil
	}
	notKey := func(rk, name string) error {
		if slices.Contains(key, name) {
			return fmt.Errorf("rules: %s: %q is a key column of %s: keys cannot be removed or changed (a filter on a key is fine)", rk, name, tab)
		}
		return nil
	}
	drop := make([]bool, len(cols))
	fns := make([][]func(string) string, len(cols))
	p.ops = map[string]bool{config.OpInsert: true, config.OpUpdate: true, config.OpDelete: true, config.OpTruncate: true}
	for ri := range t.cfg.Rules {
		r := &t.cfg.Rules[ri]
		if !r.Pattern.Match(tab.Schema, tab.Name) {
			continue
		}
		rk := fmt.Sprintf("targets.%s.rules[%d]", t.Name, ri)
		for op := range p.ops {
			if !r.Lets(op) {
				p.ops[op] = false
			}
		}
		for _, c := range r.Columns.Exclude {
			i, err := column(rk+".columns.exclude", c)
			if err != nil {
				return nil, err
			}
			if err := notKey(rk+".columns.exclude", c); err != nil {
				return nil, err
			}
			drop[i] = true
		}
		if len(r.Columns.Include) > 0 {
			for _, c := range r.Columns.Include {
				if _, err := column(rk+".columns.include", c); err != nil {
					return nil, err
				}
			}
			for _, k := range key {
				if !slices.Contains(r.Columns.Include, k) {
					return nil, fmt.Errorf("rules: %s.columns.include: leaves out key column %q of %s: keys cannot be removed", rk, k, tab)
				}
			}
			for i, c := range cols {
				if !slices.Contains(r.Columns.Include, c) {
					drop[i] = true
				}
			}
		}
		for _, c := range sortedKeys(r.Mask) {
			m := r.Mask[c]
			i, err := column(rk+".mask", c)
			if err != nil {
				return nil, err
			}
			if err := notKey(rk+".mask", c); err != nil {
				return nil, err
			}
			fns[i] = append(fns[i], func(s string) string { return Mask(s, m.KeepFirst, m.KeepLast) })
		}
		for _, c := range r.Hash {
			i, err := column(rk+".hash", c)
			if err != nil {
				return nil, err
			}
			if err := notKey(rk+".hash", c); err != nil {
				return nil, err
			}
			salt := t.set.salt
			if salt == "" {
				// hash_salt_secret not resolved in this process: never
				// hash without a salt.
				return nil, fmt.Errorf("config: %s.hash: no salt: hash_salt_secret has not been resolved in this process", rk)
			}
			fns[i] = append(fns[i], func(s string) string { return Hash(salt, s) })
		}
		for _, c := range sortedKeys(r.Replace) {
			i, err := column(rk+".replace", c)
			if err != nil {
				return nil, err
			}
			if err := notKey(rk+".replace", c); err != nil {
				return nil, err
			}
			re, with := r.Regexps[c], r.Replace[c].With
			fns[i] = append(fns[i], func(s string) string { return re.ReplaceAllString(s, with) })
		}
		for fi, f := range r.Filter {
			fk := fmt.Sprintf("%s.filter[%d]", rk, fi)
			i, err := column(fk+".column", f.Column)
			if err != nil {
				return nil, err
			}
			if !haveInfo {
				var found bool
				info, found, err = t.set.cat.Table(ctx, tab)
				if err != nil {
					return nil, err
				}
				if !found {
					return nil, fmt.Errorf("rules: %s: table %s is not on the source", fk, tab)
				}
				haveInfo = true
			}
			col, ok := info.Column(f.Column)
			if !ok {
				return nil, fmt.Errorf("rules: %s.column: column %q of %s is not on the source", fk, f.Column, tab)
			}
			c, err := compileCond(f, col, r.Regexps[fmt.Sprintf("filter[%d]", fi)])
			if err != nil {
				return nil, fmt.Errorf("rules: %s.value: %w", fk, err)
			}
			c.idx = i
			p.conds = append(p.conds, c)
			p.condKeys = append(p.condKeys, fk)
		}
	}
	for i, c := range cols {
		if drop[i] {
			continue
		}
		p.Columns = append(p.Columns, c)
		p.keep = append(p.keep, i)
		p.fns = append(p.fns, fns[i])
	}
	if p.soft {
		if len(key) == 0 {
			return nil, fmt.Errorf("rules: targets.%s.deletes: soft deletes need a key, and %s has no primary key or replica identity index", t.Name, tab)
		}
		p.Columns = append(p.Columns, config.DeletedAtColumn)
		p.keep = append(p.keep, -1)
		p.fns = append(p.fns, nil)
	}
	return p, nil
}

func compileCond(f config.FilterSpec, col Column, re *regexp.Regexp) (cond, error) {
	c := cond{op: f.Op, kind: kindOf(col.Category)}
	switch f.Op {
	case "contains", "regex":
		if c.kind != cmpText {
			return c, fmt.Errorf("op %s needs a text column; %s is %s", f.Op, col.Name, col.Type)
		}
	}
	for _, v := range f.Value.Values {
		k := c.kind
		if f.Op == "contains" || f.Op == "regex" {
			k = cmpText
		}
		o, err := parseOperand(k, v)
		if err != nil {
			return c, fmt.Errorf("column %s is %s: %w", col.Name, col.Type, err)
		}
		c.vals = append(c.vals, o)
	}
	if f.Op == "regex" {
		if re == nil {
			return c, fmt.Errorf("regex not compiled")
		}
		c.re = re
	}
	return c, nil
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
