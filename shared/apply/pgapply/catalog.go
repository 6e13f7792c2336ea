package pgapply

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/pgferry/pgferry/shared/apply"
	"github.com/pgferry/pgferry/shared/batch"
)

// column is a target column as the applier needs it.
type column struct {
	name      string
	generated bool // never written: the target computes it
	always    bool // GENERATED ALWAYS AS IDENTITY: needs OVERRIDING SYSTEM VALUE, cannot be SET
}

type tableInfo struct {
	cols map[string]column
	pk   []string
}

// lookup reads a target table's columns and primary key (in key order:
// indkey is an int2vector, whose array form starts at index 0, hence the
// array_lower in the position). A missing table is apply.ErrSchemaBehind.
func lookup(ctx context.Context, tx pgx.Tx, t batch.Table) (*tableInfo, error) {
	rows, err := tx.Query(ctx, `
		SELECT a.attname::text, a.attgenerated <> '', a.attidentity = 'a',
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
		if err := rows.Scan(&c.name, &c.generated, &c.always, &inPK, &pos); err != nil {
			return nil, err
		}
		info.cols[c.name] = c
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
	return info, nil
}
