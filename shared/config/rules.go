package config

import (
	"fmt"
	"regexp"
	"slices"

	"gopkg.in/yaml.v3"
)

// Per-target selection and rules (targets.<name>.tables, exclude, deletes,
// rules). Only what can be checked without a database is checked here;
// what needs the source catalog (a rule matching no table, an unknown
// column, a mask on a column that is not text, a key column removed or
// changed) is checked by rules.Check when the pipeline starts.

// Deletes modes of targets.<name>.deletes.
const (
	DeletesHard = "hard"
	DeletesSoft = "soft"
)

// DeletedAtColumn is the column a soft-delete target's tables carry: NULL
// while the row exists on the source, the source commit time of its
// deletion once it does not.
const DeletedAtColumn = "_pgferry_deleted_at"

// Rule is one entry of targets.<name>.rules: what the target gets of the
// tables matching Table.
type Rule struct {
	Table   string                    `yaml:"table"`
	Columns RuleColumns               `yaml:"columns"`
	Mask    map[string]MaskSpec       `yaml:"mask"`
	Hash    []string                  `yaml:"hash"`
	Replace map[string]ReplaceSpec    `yaml:"replace"`
	Filter  []FilterSpec              `yaml:"filter"`
	Ops     []string                  `yaml:"operations"`
	Pattern Pattern                   `yaml:"-"`
	Regexps map[string]*regexp.Regexp `yaml:"-"` // compiled Replace (and regex filters, by "filter[i]")
}

// RuleColumns keeps (Include) or removes (Exclude) columns; at most one.
type RuleColumns struct {
	Include []string `yaml:"include"`
	Exclude []string `yaml:"exclude"`
}

// MaskSpec keeps the first and last characters of a text value and
// replaces the others with '*'.
type MaskSpec struct {
	KeepFirst int `yaml:"keep_first"`
	KeepLast  int `yaml:"keep_last"`
}

// ReplaceSpec rewrites a text value: every match of Regex becomes With
// (Go regexp syntax; $1 names a group).
type ReplaceSpec struct {
	Regex string `yaml:"regex"`
	With  string `yaml:"with"`
}

// FilterSpec is one condition a row must meet to reach the target.
type FilterSpec struct {
	Column string      `yaml:"column"`
	Op     string      `yaml:"op"`
	Value  FilterValue `yaml:"value"`
}

// FilterValue is a filter's operand: a scalar, or a list for in and
// not_in. Values are compared with the column's text form (see rules).
type FilterValue struct {
	Set    bool
	List   bool
	Values []string
}

// UnmarshalYAML accepts a scalar or a sequence of scalars.
func (v *FilterValue) UnmarshalYAML(n *yaml.Node) error {
	v.Set = true
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return fmt.Errorf("line %d: a null value: use op is_null or not_null", n.Line)
		}
		v.Values = []string{n.Value}
	case yaml.SequenceNode:
		v.List = true
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode || c.Tag == "!!null" {
				return fmt.Errorf("line %d: a list of values must hold plain values", c.Line)
			}
			v.Values = append(v.Values, c.Value)
		}
	default:
		return fmt.Errorf("line %d: a value or a list of values", n.Line)
	}
	return nil
}

// Filter operators.
var filterOps = []string{"eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "regex", "is_null", "not_null"}

// Operations a rule may let through.
const (
	OpInsert   = "insert"
	OpUpdate   = "update"
	OpDelete   = "delete"
	OpTruncate = "truncate"
)

var ruleOps = []string{OpInsert, OpUpdate, OpDelete, OpTruncate}

// Gets reports whether this target gets the replicated table
// schema.table: it matches the target's tables (all when empty) and none
// of its exclude patterns. The caller has checked Config.Replicated.
func (t Target) Gets(schema, table string) bool {
	if len(t.TablePatterns) > 0 && !slices.ContainsFunc(t.TablePatterns, func(p Pattern) bool { return p.Match(schema, table) }) {
		return false
	}
	return !slices.ContainsFunc(t.ExcludePatterns, func(p Pattern) bool { return p.Match(schema, table) })
}

// SoftDeletes reports whether the target keeps deleted rows (deletes: soft).
func (t Target) SoftDeletes() bool { return t.Deletes == DeletesSoft }

// HasRules reports whether the target gets anything else than every
// replicated table, whole, with hard deletes.
func (t Target) HasRules() bool {
	return len(t.TablePatterns)+len(t.ExcludePatterns)+len(t.Rules) > 0 || t.SoftDeletes()
}

// UsesHash reports whether a rule of any target hashes a column.
func (c *Config) UsesHash() bool {
	for _, t := range c.Targets {
		for _, r := range t.Rules {
			if len(r.Hash) > 0 {
				return true
			}
		}
	}
	return false
}

// validateRules checks targets.<name>.tables, exclude, deletes and rules,
// and hash_salt, and fills the parsed forms.
func (c *Config) validateRules() []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("config: %s: "+format, append([]any{key}, args...)...))
	}
	for _, name := range c.TargetNames() {
		t := c.Targets[name]
		key := "targets." + name
		t.TablePatterns, t.ExcludePatterns = nil, nil
		for i, p := range t.Tables {
			pat, err := ParsePattern(p)
			if err != nil {
				bad(fmt.Sprintf("%s.tables[%d]", key, i), "%v", err)
				continue
			}
			t.TablePatterns = append(t.TablePatterns, pat)
		}
		for i, p := range t.Exclude {
			pat, err := ParsePattern(p)
			if err != nil {
				bad(fmt.Sprintf("%s.exclude[%d]", key, i), "%v", err)
				continue
			}
			t.ExcludePatterns = append(t.ExcludePatterns, pat)
		}
		switch t.Deletes {
		case "":
			t.Deletes = DeletesHard
		case DeletesHard, DeletesSoft:
		default:
			bad(key+".deletes", "%q is not one of hard, soft", t.Deletes)
		}
		for i := range t.Rules {
			errs = append(errs, t.Rules[i].validate(fmt.Sprintf("%s.rules[%d]", key, i))...)
		}
		if a := t.AcceptRulesChange; a != "" && !rulesFPRE.MatchString(a) {
			bad(key+".accept_rules_change", "%q is not a rules fingerprint (16 hex digits, as the drain's refusal prints it)", a)
		}
		c.Targets[name] = t
	}
	switch {
	case c.HashSaltSecret != "" && c.HashSalt != "":
		bad("hash_salt_secret", "set either hash_salt or hash_salt_secret, not both")
	case c.HashSaltSecret != "" && !secretARNRE.MatchString(c.HashSaltSecret) && !secretNameRE.MatchString(c.HashSaltSecret):
		bad("hash_salt_secret", "%q is neither a Secrets Manager secret ARN nor a secret name", c.HashSaltSecret)
	case c.HashSaltSecret != "":
		// Resolved at start (runner.ResolveHashSalt), which checks its length.
	case c.UsesHash() && len(c.HashSalt) < 16:
		bad("hash_salt", "a rule hashes a column: set hash_salt (at least 16 characters, e.g. \"${PGFERRY_HASH_SALT}\") or hash_salt_secret (a Secrets Manager secret holding it) so that hashed values cannot be reversed by a dictionary")
	}
	return errs
}

func (r *Rule) validate(key string) []error {
	var errs []error
	bad := func(k, format string, args ...any) {
		errs = append(errs, fmt.Errorf("config: %s: "+format, append([]any{k}, args...)...))
	}
	if r.Table == "" {
		bad(key+".table", "required: the pattern of the tables the rule applies to")
	} else if p, err := ParsePattern(r.Table); err != nil {
		bad(key+".table", "%v", err)
	} else {
		r.Pattern = p
	}
	if len(r.Columns.Include) > 0 && len(r.Columns.Exclude) > 0 {
		bad(key+".columns", "set include or exclude, not both")
	}
	for col, m := range r.Mask {
		if m.KeepFirst < 0 || m.KeepLast < 0 {
			bad(key+".mask."+col, "keep_first and keep_last must not be negative")
		}
	}
	r.Regexps = map[string]*regexp.Regexp{}
	for col, rep := range r.Replace {
		re, err := regexp.Compile(rep.Regex)
		if err != nil {
			bad(key+".replace."+col+".regex", "does not compile: %v", err)
			continue
		}
		if rep.Regex == "" {
			bad(key+".replace."+col+".regex", "required")
			continue
		}
		r.Regexps[col] = re
	}
	// One column, one change: a value masked and then hashed would be a
	// hash of the mask, which no reader could rely on.
	seen := map[string]string{}
	claim := func(col, what string) {
		if prev, ok := seen[col]; ok {
			bad(key+"."+what, "column %q is already changed by %s in the same rule", col, prev)
		}
		seen[col] = what
	}
	for col := range r.Mask {
		claim(col, "mask")
	}
	for _, col := range r.Hash {
		claim(col, "hash")
	}
	for col := range r.Replace {
		claim(col, "replace")
	}
	for col, what := range seen {
		if slices.Contains(r.Columns.Exclude, col) || (len(r.Columns.Include) > 0 && !slices.Contains(r.Columns.Include, col)) {
			bad(key+"."+what, "column %q is removed by %s.columns", col, key)
		}
	}
	for i, f := range r.Filter {
		fk := fmt.Sprintf("%s.filter[%d]", key, i)
		if f.Column == "" {
			bad(fk+".column", "required")
		}
		if !slices.Contains(filterOps, f.Op) {
			bad(fk+".op", "%q is not one of %v", f.Op, filterOps)
			continue
		}
		switch f.Op {
		case "is_null", "not_null":
			if f.Value.Set {
				bad(fk+".value", "op %s takes no value", f.Op)
			}
		case "in", "not_in":
			if !f.Value.List {
				bad(fk+".value", "op %s takes a list of values, like [DE, FR]", f.Op)
			}
		default:
			if !f.Value.Set || f.Value.List {
				bad(fk+".value", "op %s takes one value", f.Op)
				continue
			}
			if f.Op == "regex" {
				re, err := regexp.Compile(f.Value.Values[0])
				if err != nil {
					bad(fk+".value", "does not compile: %v", err)
					continue
				}
				r.Regexps[fmt.Sprintf("filter[%d]", i)] = re
			}
		}
	}
	for i, op := range r.Ops {
		if !slices.Contains(ruleOps, op) {
			bad(fmt.Sprintf("%s.operations[%d]", key, i), "%q is not one of %v", op, ruleOps)
		}
	}
	if r.Ops != nil && len(r.Ops) == 0 {
		bad(key+".operations", "an empty list lets nothing through; leave it out to let every operation through")
	}
	return errs
}

// Lets reports whether the rule lets operation op (OpInsert …) through.
func (r *Rule) Lets(op string) bool { return len(r.Ops) == 0 || slices.Contains(r.Ops, op) }
