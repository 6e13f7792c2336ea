package runner_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/schema/schematest"
)

// userRelations excludes system schemas and pgferry's own (as schematest
// does).
const userRelations = `n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%' AND n.nspname NOT LIKE 'pgferry%'`

// moreCatalogQueries add to schematest's kinds what a real schema also
// has: domains with their defaults and checks, partition keys and bounds,
// and views (plain and materialized). Rows are strings; order does not
// matter.
var moreCatalogQueries = map[string]string{
	"domains (base type, default, NOT NULL, checks)": `
		SELECT format('%s.%s %s default=%s notnull=%s %s', n.nspname, t.typname, format_type(t.typbasetype, t.typtypmod),
		              coalesce(t.typdefault, ''), t.typnotnull,
		              (SELECT string_agg(k.conname || ' ' || pg_get_constraintdef(k.oid), ', ' ORDER BY k.conname) FROM pg_constraint k WHERE k.contypid = t.oid))
		FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.typtype = 'd' AND ` + userRelations,
	"tables and partitions (kind, partition key, parent, bounds)": `
		SELECT format('%s %s key=%s parent=%s bounds=%s', c.oid::regclass, c.relkind, coalesce(pg_get_partkeydef(c.oid), ''),
		              coalesce((SELECT i.inhparent::regclass::text FROM pg_inherits i WHERE i.inhrelid = c.oid), ''),
		              coalesce(pg_get_expr(c.relpartbound, c.oid), ''))
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') AND ` + userRelations,
	"views and materialized views": `
		SELECT format('%s %s %s', c.oid::regclass, c.relkind, pg_get_viewdef(c.oid))
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('v', 'm') AND ` + userRelations,
}

// sequenceQuery lists each user sequence with its last value (0 if never
// used).
const sequenceQuery = `
	SELECT c.oid::regclass::text, coalesce(pg_sequence_last_value(c.oid), 0)
	FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'S' AND ` + userRelations

// catalogRows reads schematest's catalog kinds and moreCatalogQueries.
func catalogRows(ctx context.Context, p *pgxpool.Pool) (map[string][]string, map[string]int64, error) {
	out, err := schematest.Rows(ctx, p)
	if err != nil {
		return nil, nil, err
	}
	more, err := schematest.RowsOf(ctx, p, moreCatalogQueries)
	if err != nil {
		return nil, nil, err
	}
	maps.Copy(out, more)
	seqs := map[string]int64{}
	err = pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL search_path = ''"); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, sequenceQuery)
		if err != nil {
			return fmt.Errorf("sequences: %w", err)
		}
		var name string
		var v int64
		_, err = pgx.ForEachRow(rows, []any{&name, &v}, func() error { seqs[name] = v; return nil })
		return err
	})
	return out, seqs, err
}

// catalogDiff compares the catalogs of src and dst (pgferry's own schemas
// left out): columns with types, defaults, NOT NULL, identity and
// generation; enum labels; domains; composite types; tables, partition
// keys and bounds; constraints; indexes (names and definitions);
// functions; extensions; views; and sequences, which must be on dst at
// least at src's value. It returns "" when they are the same, otherwise a
// readable diff, kind by kind.
func catalogDiff(ctx context.Context, src, dst *pgxpool.Pool) (string, error) {
	a, aSeq, err := catalogRows(ctx, src)
	if err != nil {
		return "", fmt.Errorf("source catalog: %w", err)
	}
	b, bSeq, err := catalogRows(ctx, dst)
	if err != nil {
		return "", fmt.Errorf("target catalog: %w", err)
	}
	// Long definitions (functions, views) show as their first line and a
	// digest of the whole text.
	for _, rows := range []map[string][]string{a, b} {
		for kind, xs := range rows {
			for i, x := range xs {
				if first, _, multi := strings.Cut(x, "\n"); multi {
					xs[i] = fmt.Sprintf("%s … [%d lines, md5 %x]", first, strings.Count(x, "\n")+1, md5.Sum([]byte(x)))
				}
			}
			slices.Sort(xs)
			rows[kind] = xs
		}
	}
	var out strings.Builder
	for _, kind := range slices.Sorted(maps.Keys(a)) {
		var lines []string
		for _, x := range a[kind] {
			if _, ok := slices.BinarySearch(b[kind], x); !ok {
				lines = append(lines, "  only on source: "+x)
			}
		}
		for _, x := range b[kind] {
			if _, ok := slices.BinarySearch(a[kind], x); !ok {
				lines = append(lines, "  only on target: "+x)
			}
		}
		if len(lines) > 0 {
			fmt.Fprintf(&out, "%s:\n%s\n", kind, strings.Join(lines, "\n"))
		}
	}
	var seqLines []string
	for _, name := range slices.Sorted(maps.Keys(aSeq)) {
		got, ok := bSeq[name]
		switch {
		case !ok:
			seqLines = append(seqLines, fmt.Sprintf("  %s: missing on the target (source at %d)", name, aSeq[name]))
		case got < aSeq[name]:
			seqLines = append(seqLines, fmt.Sprintf("  %s: target at %d, behind the source's %d", name, got, aSeq[name]))
		}
	}
	if len(seqLines) > 0 {
		fmt.Fprintf(&out, "sequences (target at least at the source's value):\n%s\n", strings.Join(seqLines, "\n"))
	}
	return out.String(), nil
}

// rowsDiff compares every user table (each partition on its own) of src
// and dst row by row: the text of each row, built from the source's
// columns in order, sorted. It returns "" when they are equal, otherwise
// per table the row counts and the first rows that differ.
func rowsDiff(ctx context.Context, src, dst *pgxpool.Pool) (string, error) {
	rows, err := src.Query(ctx, `
		SELECT c.oid::regclass::text, array_agg(quote_ident(a.attname) ORDER BY a.attnum)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
		WHERE c.relkind = 'r' AND `+userRelations+` GROUP BY c.oid ORDER BY 1`)
	if err != nil {
		return "", err
	}
	type table struct {
		name string
		cols []string
	}
	var tables []table
	var tb table
	if _, err := pgx.ForEachRow(rows, []any{&tb.name, &tb.cols}, func() error { tables = append(tables, tb); return nil }); err != nil {
		return "", err
	}
	var out strings.Builder
	for _, tb := range tables {
		// Names come from the source's catalog, quoted by the server
		// (regclass output and quote_ident).
		q := fmt.Sprintf(`COPY (SELECT ROW(%s)::text FROM ONLY %s) TO STDOUT`, strings.Join(tb.cols, ", "), tb.name)
		a, err := copyOut(ctx, src, q)
		if err != nil {
			return "", fmt.Errorf("source %s: %w", tb.name, err)
		}
		b, err := copyOut(ctx, dst, q)
		if err != nil {
			fmt.Fprintf(&out, "%s: cannot read it on the target: %v\n", tb.name, err)
			continue
		}
		al, bl := lines(a), lines(b)
		if slices.Equal(al, bl) {
			continue
		}
		fmt.Fprintf(&out, "%s: %d rows on the source, %d on the target\n", tb.name, len(al), len(bl))
		shown := 0
		for _, x := range al {
			if _, ok := slices.BinarySearch(bl, x); !ok && shown < 3 {
				fmt.Fprintf(&out, "  only on source: %.200s\n", x)
				shown++
			}
		}
		shown = 0
		for _, x := range bl {
			if _, ok := slices.BinarySearch(al, x); !ok && shown < 3 {
				fmt.Fprintf(&out, "  only on target: %.200s\n", x)
				shown++
			}
		}
	}
	return out.String(), nil
}

func copyOut(ctx context.Context, p *pgxpool.Pool, q string) ([]byte, error) {
	c, err := p.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Release()
	var buf bytes.Buffer
	_, err = c.Conn().PgConn().CopyTo(ctx, &buf, q)
	return buf.Bytes(), err
}

// lines splits COPY output into its lines, sorted.
func lines(b []byte) []string {
	s := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(s) == 1 && s[0] == "" {
		return nil
	}
	slices.Sort(s)
	return s
}
