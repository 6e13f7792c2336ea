package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/redshift"
	"github.com/pgferry/pgferry/shared/redshift/rstype"
)

// Mapper is a Target whose columns hold the source's values converted
// (a type map, as on Redshift), so the source's own text cannot be
// compared with them. Compare then renders the source side through
// MapRow, row by row in Go, and compares the result with the target's
// SumRows, which renders its values the same way: a value the map
// truncated, saturated or replaced compares as what the target holds, and
// one that the target holds differently from what the map makes of the
// source's value shows as a difference.
type Mapper interface {
	// MapRow returns the function that turns a source row over cols (in
	// PostgreSQL text form) into what target table t should hold, rendered
	// as SumRows renders t's values.
	MapRow(ctx context.Context, t batch.Table, cols []string) (func(batch.Row) (batch.Row, error), error)
}

// Redshift reads a Redshift target through its SQL port (the Data API or
// a direct connection). Every read goes through Exec.Query and brings
// the table's rows to this process: verifying a large table through the
// Data API is slow and counts against its quotas.
type Redshift struct{ Ex redshift.Exec }

var (
	_ Target = Redshift{}
	_ Mapper = Redshift{}
)

// Checksum is SumRows over every row: Compare reaches a Redshift target
// through MapRow, so its checksum is comparable only with a source side
// mapped the same way.
func (r Redshift) Checksum(ctx context.Context, t batch.Table, cols []string) (int64, string, error) {
	return r.SumRows(ctx, t, cols, false)
}

// Count returns t's row count.
func (r Redshift) Count(ctx context.Context, t batch.Table) (int64, error) {
	rows, err := r.Ex.Query(ctx, "SELECT count(*) FROM "+pgx.Identifier{t.Schema, t.Name}.Sanitize())
	if err != nil {
		return 0, err
	}
	if len(rows) != 1 || len(rows[0]) != 1 || rows[0][0] == nil {
		return 0, fmt.Errorf("verify: count of %s: unexpected answer", t)
	}
	return strconv.ParseInt(*rows[0][0], 10, 64)
}

// SumRows reads cols of t (with live, only rows whose
// _pgferry_deleted_at is NULL), renders each value canonically for its
// Redshift type (see canon) and sums the rows as sumRows does.
func (r Redshift) SumRows(ctx context.Context, t batch.Table, cols []string, live bool) (int64, string, error) {
	types, names, err := r.columns(ctx, t, cols)
	if err != nil {
		return 0, "", err
	}
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = pgx.Identifier{n}.Sanitize()
	}
	sql := "SELECT " + strings.Join(q, ", ") + " FROM " + pgx.Identifier{t.Schema, t.Name}.Sanitize()
	if live {
		sql += " WHERE " + pgx.Identifier{config.DeletedAtColumn}.Sanitize() + " IS NULL"
	}
	rows, err := r.Ex.Query(ctx, sql)
	if err != nil {
		return 0, "", err
	}
	s := &rowSummer{fn: func(r batch.Row) (batch.Row, error) { return r, nil }}
	for _, row := range rows {
		out := make(batch.Row, len(row))
		for i, v := range row {
			out[i] = canon(types[i], v)
		}
		s.sum1(out)
	}
	return s.n, strconv.FormatUint(s.sum, 10), nil
}

// MapRow converts each value with its target column's rstype conversion,
// the one the applier and the loader use, and renders it with canon.
func (r Redshift) MapRow(ctx context.Context, t batch.Table, cols []string) (func(batch.Row) (batch.Row, error), error) {
	types, _, err := r.columns(ctx, t, cols)
	if err != nil {
		return nil, err
	}
	return func(row batch.Row) (batch.Row, error) {
		if len(row) != len(types) {
			return nil, fmt.Errorf("verify: %d values for %d columns of %s", len(row), len(types), t)
		}
		out := make(batch.Row, len(row))
		for i, v := range row {
			c, _ := types[i].Convert(v)
			out[i] = canon(types[i], c)
		}
		return out, nil
	}, nil
}

// columns returns the Redshift types and catalog names of cols on t.
// Redshift folds identifiers to lower case, so a column is found by its
// name or, failing that, its lower-cased name.
func (r Redshift) columns(ctx context.Context, t batch.Table, cols []string) ([]rstype.Column, []string, error) {
	rows, err := redshift.Columns(ctx, r.Ex, t)
	if err != nil {
		return nil, nil, fmt.Errorf("verify: columns of %s: %w", t, err)
	}
	if len(rows) == 0 {
		return nil, nil, fmt.Errorf("verify: table %s does not exist on the target", t)
	}
	byName, folded := map[string]rstype.Column{}, map[string]string{}
	for _, row := range rows {
		if len(row) != 5 || row[0] == nil || row[1] == nil {
			return nil, nil, fmt.Errorf("verify: columns of %s: unexpected row", t)
		}
		byName[*row[0]] = rstype.ParseColumn(*row[1], redshift.Int(row[2]), redshift.Int(row[3]), redshift.Int(row[4]))
		folded[strings.ToLower(*row[0])] = *row[0]
	}
	types, names := make([]rstype.Column, len(cols)), make([]string, len(cols))
	for i, c := range cols {
		name := c
		if _, ok := byName[c]; !ok {
			if name, ok = folded[strings.ToLower(c)]; !ok {
				return nil, nil, fmt.Errorf("verify: %s has no column %q on the target", t, c)
			}
		}
		types[i], names[i] = byName[name], name
	}
	return types, names, nil
}

// canon renders a value of a Redshift column the same way whichever side
// it comes from: JSON (SUPER) re-encoded compactly with sorted keys,
// VARBYTE as lower-case hex without \x, TIMESTAMPTZ in UTC. Other values
// are compared as their text.
func canon(c rstype.Column, v *string) *string {
	if v == nil {
		return nil
	}
	s := *v
	switch c.Kind {
	case rstype.Super:
		d := json.NewDecoder(strings.NewReader(s))
		d.UseNumber()
		var x any
		if d.Decode(&x) == nil {
			var b bytes.Buffer
			e := json.NewEncoder(&b)
			e.SetEscapeHTML(false)
			if e.Encode(x) == nil {
				s = strings.TrimSuffix(b.String(), "\n")
			}
		}
	case rstype.Varbyte:
		s = strings.ToLower(strings.TrimPrefix(s, `\x`))
	case rstype.TimestampTZ:
		for _, layout := range []string{"2006-01-02 15:04:05.999999999-07", "2006-01-02 15:04:05.999999999-07:00", "2006-01-02 15:04:05.999999999-07:00:00"} {
			if ts, err := time.Parse(layout, s); err == nil {
				s = ts.UTC().Format("2006-01-02 15:04:05.999999") + "+00"
				break
			}
		}
	}
	return &s
}
