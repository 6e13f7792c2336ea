package rules

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/config"
)

// Check refuses, before anything is shipped, rules that cannot be
// honoured against the source as it is: a rule matching no table the
// target gets, a column that does not exist, a key column removed or
// changed, a mask or replace on a column that is not text, a filter value
// that is not of its column's type, a filter under slot capture on a table
// without REPLICA IDENTITY FULL, soft deletes of a table without a key.
// Every error names its key. tables are the replicated tables.
func (s *Set) Check(ctx context.Context, capture string, tables []batch.Table) error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("config: %s: "+format, append([]any{key}, args...)...))
	}
	infos := map[batch.Table]TableInfo{}
	info := func(t batch.Table) (TableInfo, error) {
		if i, ok := infos[t]; ok {
			return i, nil
		}
		i, found, err := s.cat.Table(ctx, t)
		if err != nil {
			return i, err
		}
		if !found {
			return i, fmt.Errorf("rules: table %s is not on the source", t)
		}
		infos[t] = i
		return i, nil
	}
	for _, name := range sortedKeys(s.targets) {
		t := s.Target(name)
		if t == nil {
			continue
		}
		key := "targets." + name
		var gets []batch.Table
		for _, tab := range tables {
			if t.Gets(tab) {
				gets = append(gets, tab)
			}
		}
		if t.SoftDeletes() {
			for _, tab := range gets {
				i, err := info(tab)
				if err != nil {
					return err
				}
				if len(i.Key) == 0 {
					bad(key+".deletes", "soft deletes need a key, and %s has no primary key: give it one, or leave it out of %s.tables", tab, key)
				}
			}
		}
		for ri := range t.cfg.Rules {
			r := &t.cfg.Rules[ri]
			rk := fmt.Sprintf("%s.rules[%d]", key, ri)
			matched := 0
			for _, tab := range gets {
				if !r.Pattern.Match(tab.Schema, tab.Name) {
					continue
				}
				matched++
				i, err := info(tab)
				if err != nil {
					return err
				}
				errs = append(errs, checkRule(rk, r, tab, i, capture)...)
			}
			if matched == 0 {
				bad(rk+".table", "%q matches no table that %s gets", r.Table, key)
			}
		}
	}
	return errors.Join(errs...)
}

func checkRule(rk string, r *config.Rule, tab batch.Table, i TableInfo, capture string) []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("config: %s: "+format, append([]any{key}, args...)...))
	}
	exists := func(k, col string) (Column, bool) {
		c, ok := i.Column(col)
		if !ok {
			bad(k, "column %q is not a column of %s", col, tab)
		}
		return c, ok
	}
	changes := func(k, col string) (Column, bool) {
		c, ok := exists(k, col)
		if ok && slices.Contains(i.Key, col) {
			bad(k, "%q is a key column of %s: keys cannot be removed or changed (a filter on a key is fine)", col, tab)
			return c, false
		}
		return c, ok
	}
	for _, col := range r.Columns.Exclude {
		changes(rk+".columns.exclude", col)
	}
	for _, col := range r.Columns.Include {
		exists(rk+".columns.include", col)
	}
	if len(r.Columns.Include) > 0 {
		for _, k := range i.Key {
			if !slices.Contains(r.Columns.Include, k) {
				bad(rk+".columns.include", "leaves out key column %q of %s: keys cannot be removed", k, tab)
			}
		}
	}
	for _, col := range sortedKeys(r.Mask) {
		if c, ok := changes(rk+".mask."+col, col); ok && c.Category != 'S' {
			bad(rk+".mask."+col, "masks text-like columns only; %s.%s is %s", tab, col, c.Type)
		}
	}
	for _, col := range r.Hash {
		changes(rk+".hash", col)
	}
	for _, col := range sortedKeys(r.Replace) {
		if c, ok := changes(rk+".replace."+col, col); ok && c.Category != 'S' {
			bad(rk+".replace."+col, "replaces in text-like columns only; %s.%s is %s", tab, col, c.Type)
		}
	}
	for fi, f := range r.Filter {
		fk := fmt.Sprintf("%s.filter[%d]", rk, fi)
		c, ok := exists(fk+".column", f.Column)
		if !ok {
			continue
		}
		if _, err := compileCond(f, c, r.Regexps[fmt.Sprintf("filter[%d]", fi)]); err != nil {
			bad(fk+".value", "%v", err)
		}
	}
	if len(r.Filter) > 0 && capture == config.CaptureSlot && !i.IdentityFull {
		bad(rk+".filter", "slot capture sends an update without the values it left unchanged in TOAST, and a row entering the filter must reach the target whole: run ALTER TABLE %s REPLICA IDENTITY FULL", pgx.Identifier{tab.Schema, tab.Name}.Sanitize())
	}
	return errs
}

// ReplicatedTables lists the source's replicated tables (plain tables
// and partitioned roots matching cfg's patterns), in name order.
func ReplicatedTables(ctx context.Context, q Querier, cfg *config.Config) ([]batch.Table, error) {
	rows, err := q.Query(ctx, `
		SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
		  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
		ORDER BY 1, 2`)
	if err != nil {
		return nil, fmt.Errorf("rules: list tables: %w", err)
	}
	defer rows.Close()
	var out []batch.Table
	for rows.Next() {
		var t batch.Table
		if err := rows.Scan(&t.Schema, &t.Name); err != nil {
			return nil, err
		}
		if cfg.Replicated(t.Schema, t.Name) {
			out = append(out, t)
		}
	}
	return out, rows.Err()
}
