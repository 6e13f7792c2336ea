package pgapply

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/pgferry/pgferry/shared/apply"
	"github.com/pgferry/pgferry/shared/batch"
)

// column is a target column as the applier needs it.
type column struct {
	name      string
	generated bool // never written: the target computes it
	always    bool // GENERATED ALWAYS AS IDENTITY: needs OVERRIDING SYSTEM VALUE, cannot be SET
	identity  bool // any identity column
	notNull   bool
	typ       string // format_type: the column's type as SQL
	// base is the type without its modifier (format_type with typmod -1):
	// a cast to it never truncates or rounds, so the modifier is applied
	// by the assignment into the column, which fails on overflow as COPY
	// into a typed staging table does.
	base string
	// hasMissing and missing are the column's missing value (the value
	// rows that existed when it was added with a constant default read),
	// in its type's text form.
	hasMissing bool
	missing    string
	// managed: schema sync manages the column (it stands for a source
	// column); see Applier.SetManagedColumns.
	managed bool
}

type tableInfo struct {
	cols  map[string]column
	order []string // column names in attnum order
	pk    []string
	// otherUnique: a unique index or exclusion constraint other than the
	// primary key, which rows of one batch may meet in the middle of a
	// swap (see writer.upserts).
	otherUnique bool
}

// fill returns the columns an upsert of a segment carrying names writes
// although the segment lacks them: the managed columns the batch predates
// (it was captured before the source added them; schema jobs are ordered
// only approximately, so such a batch can arrive after the job that added
// the column). A new row from such a batch existed on the source when
// the column was added, so it holds what the source gave every row that
// existed then: the missing value, or NULL. The target's current default
// would be wrong (ADD COLUMN c, then SET DEFAULT 5 leaves old rows NULL).
// Generated and identity columns are the target's to compute; a NOT NULL
// column without a missing value (added with a volatile default, which
// rewrote the source's rows with values no capture saw) keeps its default,
// as NULL would only fail. Columns the user added on the target alone are
// not managed and keep their own defaults.
func (ti *tableInfo) fill(names []string) []column {
	var out []column
	for _, n := range ti.order {
		c := ti.cols[n]
		if !c.managed || c.generated || c.identity || (c.notNull && !c.hasMissing) || slices.Contains(names, n) {
			continue
		}
		out = append(out, c)
	}
	return out
}

// lookup reads a target table's columns and primary key (in key order:
// indkey is an int2vector, whose array form starts at index 0, hence the
// array_lower in the position). A missing table is apply.ErrSchemaBehind.
func lookup(ctx context.Context, tx pgx.Tx, t batch.Table) (*tableInfo, error) {
	rows, err := tx.Query(ctx, `
		SELECT a.attname::text, a.attgenerated <> '', a.attidentity = 'a', a.attidentity <> '', a.attnotnull,
		       format_type(a.atttypid, a.atttypmod), format_type(a.atttypid, -1), a.atthasmissing, coalesce((a.attmissingval::text::text[])[1], ''),
		       coalesce(a.attnum = ANY (i.indkey::int2[]), false), coalesce(array_position(i.indkey::int2[], a.attnum) + 1 - array_lower(i.indkey::int2[], 1), 0)
		FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
		LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
		WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')
		ORDER BY a.attnum`, t.Schema, t.Name)
	if err != nil {
		return nil, fmt.Errorf("pgapply: read target catalog for %s: %w", t, err)
	}
	defer rows.Close()
	info := &tableInfo{cols: map[string]column{}}
	pk := map[int]string{}
	for rows.Next() {
		var c column
		var inPK bool
		var pos int
		if err := rows.Scan(&c.name, &c.generated, &c.always, &c.identity, &c.notNull,
			&c.typ, &c.base, &c.hasMissing, &c.missing, &inPK, &pos); err != nil {
			return nil, err
		}
		info.cols[c.name] = c
		info.order = append(info.order, c.name)
		if inPK {
			pk[pos] = c.name
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgapply: read target catalog for %s: %w", t, err)
	}
	if len(info.cols) == 0 {
		return nil, fmt.Errorf("%w: table %s does not exist on the target", apply.ErrSchemaBehind, t)
	}
	for i := 1; i <= len(pk); i++ {
		info.pk = append(info.pk, pk[i])
	}
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2 AND (i.indisunique OR i.indisexclusion) AND NOT i.indisprimary)`,
		t.Schema, t.Name).Scan(&info.otherUnique); err != nil {
		return nil, fmt.Errorf("pgapply: read target catalog for %s: %w", t, err)
	}
	return info, nil
}
