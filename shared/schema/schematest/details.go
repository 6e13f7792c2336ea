package schematest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
)

// detailQueries compare what catalogQueries leave out: attribute order
// and names of composite types, domain defaults and NOT NULL, the schemas
// that hold objects, sequences and their owners, column collations,
// partition bounds and table kinds.
var detailQueries = map[string]string{
	"composite attributes (in order)": `
		SELECT format('%s.%s %s', n.nspname, t.typname, string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum))
		FROM pg_type t JOIN pg_class c ON c.oid = t.typrelid AND c.relkind = 'c' JOIN pg_namespace n ON n.oid = t.typnamespace
		JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
		WHERE ` + userObjects + ` GROUP BY n.nspname, t.typname`,
	"domains (base, NOT NULL, default)": `
		SELECT format('%s.%s %s notnull=%s default=%s', n.nspname, t.typname, format_type(t.typbasetype, t.typtypmod), t.typnotnull, coalesce(t.typdefault, ''))
		FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.typtype = 'd' AND ` + userObjects,
	"schemas that hold objects": `
		SELECT n.nspname FROM pg_namespace n WHERE ` + userObjects + `
		  AND (EXISTS (SELECT 1 FROM pg_class c WHERE c.relnamespace = n.oid) OR EXISTS (SELECT 1 FROM pg_type t WHERE t.typnamespace = n.oid))`,
	"sequences (options, owner)": `
		SELECT format('%s %s start=%s inc=%s min=%s max=%s cache=%s cycle=%s owner=%s', s.seqrelid::regclass, format_type(s.seqtypid, NULL),
		              s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache, s.seqcycle,
		              coalesce((SELECT d.refobjid::regclass::text || '.' || a.attname FROM pg_depend d
		                        JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
		                        WHERE d.classid = 'pg_class'::regclass AND d.objid = s.seqrelid AND d.deptype IN ('a', 'i')), ''))
		FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ` + userObjects,
	"column collations": `
		SELECT format('%s.%s.%s %s', n.nspname, c.relname, a.attname, co.collname)
		FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_type t ON t.oid = a.atttypid JOIN pg_collation co ON co.oid = a.attcollation
		WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped AND a.attcollation <> t.typcollation AND ` + userObjects,
	"tables (kind, parent, bound)": `
		SELECT format('%s.%s %s %s %s', n.nspname, c.relname, c.relkind, c.relpersistence,
		              coalesce((SELECT i.inhparent::regclass::text FROM pg_inherits i WHERE i.inhrelid = c.oid), '') || ' ' ||
		              coalesce(pg_get_expr(c.relpartbound, c.oid), ''))
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') AND ` + userObjects,
}

// CatalogDiff returns what differs between the catalogs of src and dst,
// kind by kind (everything AssertSameCatalog compares and the details
// above), or "" when they match.
func CatalogDiff(ctx context.Context, src, dst *pgxpool.Pool) (string, error) {
	var out []string
	for _, qs := range []map[string]string{catalogQueries, detailQueries} {
		a, err := RowsOf(ctx, src, qs)
		if err != nil {
			return "", fmt.Errorf("source: %w", err)
		}
		b, err := RowsOf(ctx, dst, qs)
		if err != nil {
			return "", fmt.Errorf("target: %w", err)
		}
		for _, kind := range slices.Sorted(maps.Keys(qs)) {
			if d := diffRows(a[kind], b[kind]); d != "" {
				out = append(out, kind+" differ between source and target:\n"+d)
			}
		}
	}
	return strings.Join(out, "\n"), nil
}

// AssertSameDetails fails t unless src and dst match in CatalogDiff.
func AssertSameDetails(t testing.TB, src, dst *pgxpool.Pool) {
	t.Helper()
	d, err := CatalogDiff(context.Background(), src, dst)
	if err != nil {
		t.Fatal(err)
	}
	if d != "" {
		t.Error(d)
	}
}
