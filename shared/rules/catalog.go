package rules

import (
	"context"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/pgferry/pgferry/shared/batch"
)

// Column is a source column as rules need it.
type Column struct {
	Name string
	Type string // format_type, for messages
	// Category is pg_type.typcategory (a domain has its base type's):
	// 'S' string, 'N' numeric, 'D' date/time, 'B' boolean …
	Category byte
}

// TableInfo is a source table as rules need it.
type TableInfo struct {
	Table   batch.Table
	Columns []Column
	// Key is the primary key, or the replica identity index's columns.
	Key []string
	// IdentityFull: REPLICA IDENTITY FULL, so slot capture sends whole
	// old rows and fills unchanged TOAST values from them.
	IdentityFull bool
}

// Column returns the named column; ok is false if there is none.
func (t TableInfo) Column(name string) (Column, bool) {
	for _, c := range t.Columns {
		if c.Name == name {
			return c, true
		}
	}
	return Column{}, false
}

// Catalog reads a source table's columns. Not found is found == false
// and no error.
type Catalog interface {
	Table(ctx context.Context, t batch.Table) (info TableInfo, found bool, err error)
}

// Querier runs a query (a pool, a connection or a transaction).
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// PG reads tables from a source database. It caches nothing: see Cached.
type PG struct{ Q Querier }

var _ Catalog = PG{}

// Table implements Catalog.
func (p PG) Table(ctx context.Context, t batch.Table) (TableInfo, bool, error) {
	rows, err := p.Q.Query(ctx, `
		SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), ty.typcategory::text,
		       c.relreplident = 'f',
		       coalesce((SELECT array_agg(k.attname::text ORDER BY x.ord)
		                 FROM pg_index i
		                 CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY x(attnum, ord)
		                 JOIN pg_attribute k ON k.attrelid = i.indrelid AND k.attnum = x.attnum
		                 WHERE i.indrelid = c.oid AND (i.indisprimary OR (i.indisreplident AND c.relreplident = 'i'))
		                 GROUP BY i.indexrelid, i.indisprimary ORDER BY i.indisprimary DESC LIMIT 1), '{}')
		FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
		JOIN pg_type ty ON ty.oid = a.atttypid
		WHERE n.nspname = $1 AND c.relname = $2
		ORDER BY a.attnum`, t.Schema, t.Name)
	if err != nil {
		return TableInfo{}, false, fmt.Errorf("rules: read columns of %s: %w", t, err)
	}
	defer rows.Close()
	info := TableInfo{Table: t}
	for rows.Next() {
		var c Column
		var cat string
		if err := rows.Scan(&c.Name, &c.Type, &cat, &info.IdentityFull, &info.Key); err != nil {
			return TableInfo{}, false, fmt.Errorf("rules: read columns of %s: %w", t, err)
		}
		if cat != "" {
			c.Category = cat[0]
		}
		info.Columns = append(info.Columns, c)
	}
	if err := rows.Err(); err != nil {
		return TableInfo{}, false, fmt.Errorf("rules: read columns of %s: %w", t, err)
	}
	return info, len(info.Columns) > 0, nil
}

// Cached remembers what Next returned per table until Forget.
type Cached struct {
	Next Catalog
	mu   sync.Mutex
	m    map[batch.Table]TableInfo
}

// Table implements Catalog.
func (c *Cached) Table(ctx context.Context, t batch.Table) (TableInfo, bool, error) {
	c.mu.Lock()
	info, ok := c.m[t]
	c.mu.Unlock()
	if ok {
		return info, true, nil
	}
	info, found, err := c.Next.Table(ctx, t)
	if err != nil || !found {
		return info, found, err
	}
	c.mu.Lock()
	if c.m == nil {
		c.m = map[batch.Table]TableInfo{}
	}
	c.m[t] = info
	c.mu.Unlock()
	return info, true, nil
}

// Forget drops t from the cache (its shape changed).
func (c *Cached) Forget(t batch.Table) {
	c.mu.Lock()
	delete(c.m, t)
	c.mu.Unlock()
}
