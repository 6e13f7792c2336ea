// Package load is the initial load: it plans each table into primary-key
// range chunks, copies chunks from the source into a target with COPY
// streamed from one server to the other, keeps per-chunk progress in a
// store, and hands each finished table over to the change stream with a
// load mark (see pgapply's hold.go for the target side).
//
// Capture is installed before any chunk is planned, so every change after
// the copy's snapshots is in the stream; a loading table's changes are
// held on the target until its copy is complete and replayed over it.
// Tables without a primary key cannot be replayed idempotently over a copy
// taken at other moments; capture copies those itself, in the transaction
// that installs their triggers (source.copy_existing), which is exact.
package load

import (
	"context"
	"fmt"
	"math"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/pgtext"
)

// Table describes a source table as the load copies it.
type Table struct {
	Table batch.Table `json:"table"`
	// Key lists the primary-key columns in index order; empty for a
	// keyless table, which the load does not copy.
	Key []string `json:"key,omitempty"`
	// Columns are the copied columns: every column but generated ones,
	// which the target computes.
	Columns []string `json:"columns"`
	// Binary: every column's type has the same binary form on both sides
	// and PostgreSQL reads back whatever it writes in it (see
	// textColumns). Otherwise COPY uses text.
	Binary bool `json:"binary"`
	// TextBecause names each column that makes the table use text, and
	// why (empty when Binary).
	TextBecause []string `json:"text_because,omitempty"`
	// Partitioned: a partitioned root, copied with its partitions.
	Partitioned bool  `json:"partitioned,omitempty"`
	EstRows     int64 `json:"est_rows"`
	EstBytes    int64 `json:"est_bytes"`
}

// Chunk is a range of the primary key: Lo inclusive, Hi exclusive, in the
// key columns' text form. An empty bound is open.
type Chunk struct {
	N  int      `json:"n"`
	Lo []string `json:"lo,omitempty"`
	Hi []string `json:"hi,omitempty"`
}

// Describe reads what the load needs to know about t on the source.
func Describe(ctx context.Context, src *pgxpool.Pool, t batch.Table) (Table, error) {
	out := Table{Table: t}
	var relkind string
	err := src.QueryRow(ctx, `
		WITH rel AS (SELECT to_regclass($1) AS oid),
		     leaves AS (SELECT p.relid FROM rel, pg_partition_tree(rel.oid) p WHERE p.isleaf
		                UNION SELECT rel.oid FROM rel)
		SELECT c.relkind::text,
		       coalesce((SELECT array_agg(a.attname::text ORDER BY k.ord)
		                 FROM pg_index i
		                 CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
		                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
		                 WHERE i.indrelid = c.oid AND i.indisprimary), '{}'),
		       coalesce((SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a
		                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''), '{}'),
		       (SELECT coalesce(sum(CASE WHEN l.reltuples > 0 AND l.relpages > 0
		                    THEN l.reltuples / l.relpages * (pg_relation_size(l.oid) / current_setting('block_size')::int) END), 0)::bigint
		        FROM pg_class l JOIN leaves ON leaves.relid = l.oid),
		       (SELECT coalesce(sum(pg_table_size(leaves.relid)), 0)::bigint FROM leaves)
		FROM rel JOIN pg_class c ON c.oid = rel.oid`, pgx.Identifier{t.Schema, t.Name}.Sanitize()).
		Scan(&relkind, &out.Key, &out.Columns, &out.EstRows, &out.EstBytes)
	if err != nil {
		return out, fmt.Errorf("load: describe %s: %w", t, err)
	}
	out.Partitioned = relkind == "p"
	if out.TextBecause, err = textColumns(ctx, src, t); err != nil {
		return out, err
	}
	out.Binary = len(out.TextBecause) == 0
	// The estimate scales the last measured density (reltuples/relpages)
	// to the table's current size, as the planner does. A table holding
	// pages but never measured (reltuples -1, or 0 from an index built
	// while it was empty) is counted instead, so that a big table is not
	// planned as one chunk.
	var unknown bool
	if err := src.QueryRow(ctx, `
		WITH leaves AS (SELECT relid FROM pg_partition_tree(to_regclass($1)) WHERE isleaf UNION SELECT to_regclass($1))
		SELECT EXISTS (SELECT 1 FROM leaves JOIN pg_class l ON l.oid = leaves.relid
		               WHERE NOT (l.reltuples > 0 AND l.relpages > 0) AND pg_relation_size(l.oid) > 0)`,
		pgx.Identifier{t.Schema, t.Name}.Sanitize()).Scan(&unknown); err != nil {
		return out, fmt.Errorf("load: describe %s: %w", t, err)
	}
	if unknown {
		if err := src.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{t.Schema, t.Name}.Sanitize()).Scan(&out.EstRows); err != nil {
			return out, fmt.Errorf("load: count rows of %s: %w", t, err)
		}
	}
	return out, nil
}

// PlanChunks cuts t into chunks of about chunkRows rows by primary-key
// ranges. Boundaries are quantiles of a sample of keys (TABLESAMPLE SYSTEM
// reads a few random pages, so planning a big table is cheap); a chunk's
// real size varies with the sample. The chunks cover the whole key space,
// from an open start to an open end, whatever rows exist.
func PlanChunks(ctx context.Context, src *pgxpool.Pool, t Table, chunkRows int) ([]Chunk, error) {
	if len(t.Key) == 0 {
		return nil, fmt.Errorf("load: %s has no primary key to plan chunks by", t.Table)
	}
	n := int(math.Ceil(float64(t.EstRows) / float64(chunkRows)))
	if n <= 1 {
		return []Chunk{{N: 0}}, nil
	}
	// SYSTEM sampling reads whole pages, and a page holds neighbouring
	// keys when rows were inserted in key order: sample enough pages (20
	// per chunk) as well as enough rows.
	want := float64(min(n*20, 200000))
	pages := max(float64(t.EstBytes)/8192, 1)
	pct := min(100, max(100*1.5*want/float64(t.EstRows), 100*want/pages))
	keys := make([]string, len(t.Key))
	texts := make([]string, len(t.Key))
	for i, k := range t.Key {
		// Qualified: ORDER BY a bare name would pick the text output column.
		keys[i] = "t." + pgx.Identifier{k}.Sanitize()
		texts[i] = keys[i] + "::text"
	}
	rel := pgx.Identifier{t.Table.Schema, t.Table.Name}.Sanitize()
	sample := fmt.Sprintf("SELECT %s FROM %s t TABLESAMPLE SYSTEM ($1) ORDER BY %s", strings.Join(texts, ", "), rel, strings.Join(keys, ", "))
	if t.Partitioned {
		// TABLESAMPLE does not apply to a partitioned table.
		sample = fmt.Sprintf("SELECT %s FROM %s t WHERE random() * 100 < $1 ORDER BY %s", strings.Join(texts, ", "), rel, strings.Join(keys, ", "))
	}
	var got [][]string
	err := pgx.BeginFunc(ctx, src, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, pgtext.SessionSettings); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, sample, pct)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			vals := make([]string, len(keys))
			ptrs := make([]any, len(keys))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				return err
			}
			got = append(got, vals)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("load: sample keys of %s: %w", t.Table, err)
	}
	bounds := Quantiles(got, n)
	chunks := make([]Chunk, 0, len(bounds)+1)
	var lo []string
	for _, b := range bounds {
		chunks = append(chunks, Chunk{N: len(chunks), Lo: lo, Hi: b})
		lo = b
	}
	return append(chunks, Chunk{N: len(chunks), Lo: lo}), nil
}

// Quantiles picks up to n-1 boundaries that cut the sorted sample into n
// parts of about equal size, dropping repeats, so every boundary is
// strictly greater than the one before.
func Quantiles(sorted [][]string, n int) [][]string {
	var out [][]string
	if n <= 1 || len(sorted) == 0 {
		return nil
	}
	for i := 1; i < n; i++ {
		b := sorted[i*len(sorted)/n]
		if len(out) > 0 && equal(out[len(out)-1], b) {
			continue
		}
		out = append(out, b)
	}
	return out
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Where renders the SQL predicate selecting c's rows of a table keyed by
// key. COPY (query) takes no parameters, so the bounds are string
// literals: E'…' with backslashes and quotes escaped, which reads the same
// whatever standard_conforming_strings is. A literal has no type of its
// own, so each one takes the type of the key column it is compared with,
// and the value is parsed by that type's input function (the bounds are
// the columns' own text form, printed under pgtext.SessionSettings).
func Where(key []string, c Chunk) string {
	var conds []string
	if len(c.Lo) > 0 {
		conds = append(conds, tuple(key, c.Lo, ">="))
	}
	if len(c.Hi) > 0 {
		conds = append(conds, tuple(key, c.Hi, "<"))
	}
	if len(conds) == 0 {
		return "true"
	}
	return strings.Join(conds, " AND ")
}

func tuple(key, vals []string, op string) string {
	cols := make([]string, len(key))
	lits := make([]string, len(key))
	for i := range key {
		cols[i] = pgx.Identifier{key[i]}.Sanitize()
		lits[i] = Literal(vals[i])
	}
	if len(key) == 1 {
		return cols[0] + " " + op + " " + lits[0]
	}
	return "(" + strings.Join(cols, ", ") + ") " + op + " (" + strings.Join(lits, ", ") + ")"
}

// Literal quotes s as an escaped string constant.
func Literal(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	s = strings.ReplaceAll(s, `'`, `''`)
	return "E'" + s + "'"
}

// textColumns returns the columns of t whose type COPY must carry as text,
// each with the reason, by the column's type and, through domains and
// arrays, the types it is made of:
//   - a type that is not built in (but enums, whose binary form is the
//     label): the binary form of arrays and composites names type OIDs,
//     which differ between databases;
//   - a built-in type without binary input or output (aclitem);
//   - a built-in type whose binary input rejects values its binary output
//     writes: tsquery (an empty query: "malformed tsquery: operand not
//     found"), int2vector and oidvector (an empty vector: "invalid
//     int2vector data");
//   - the reg* types, whose binary form is the OID of the object they
//     name: an OID differs between databases, the name does not (and the
//     change stream carries the name too).
//
// The format is the whole COPY's, so one such column makes the table's
// chunks text; a chunk the target still rejects in binary is copied
// again in text (pgapply.CopyChunk), so a value never stops a table.
func textColumns(ctx context.Context, src *pgxpool.Pool, t batch.Table) ([]string, error) {
	rows, err := src.Query(ctx, `
		WITH RECURSIVE parts(col, oid) AS (
		    SELECT a.attname::text, a.atttypid FROM pg_attribute a
		    WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
		    UNION
		    SELECT p.col, CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.typelem END
		    FROM parts p JOIN pg_type t ON t.oid = p.oid
		    WHERE t.typtype = 'd' OR (t.typcategory = 'A' AND t.typelem <> 0))
		SELECT p.col, format_type(t.oid, NULL),
		       CASE WHEN t.oid >= 16384 AND t.typtype <> 'e' AND t.typtype <> 'd' THEN 'is not built in: its binary form names type OIDs, which differ between databases'
		            WHEN t.typreceive = 0 OR t.typsend = 0 THEN 'has no binary input or output'
		            WHEN t.oid IN ('tsquery'::regtype, 'int2vector'::regtype, 'oidvector'::regtype) THEN 'is not always read back from its own binary form (an empty value)'
		            WHEN t.typname LIKE 'reg%' AND t.typnamespace = 'pg_catalog'::regnamespace AND t.typcategory = 'N' AND t.oid < 16384
		                THEN 'is an object OID in binary, which differs between databases'
		       END
		FROM parts p JOIN pg_type t ON t.oid = p.oid
		ORDER BY p.col, t.oid`, pgx.Identifier{t.Schema, t.Name}.Sanitize())
	if err != nil {
		return nil, fmt.Errorf("load: describe column types of %s: %w", t, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var col, typ string
		var why *string
		if err := rows.Scan(&col, &typ, &why); err != nil {
			return nil, fmt.Errorf("load: describe column types of %s: %w", t, err)
		}
		if why != nil {
			out = append(out, fmt.Sprintf("%s: type %s %s", col, typ, *why))
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load: describe column types of %s: %w", t, err)
	}
	return out, nil
}
