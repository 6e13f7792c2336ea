package pgapply

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/pgtext"
)

// SmallSegment is the largest segment (in rows) that reaches the merge as
// text arrays unnested in the statement itself instead of through a
// staging table. Creating a temporary table writes the catalog (and drops
// it again at commit), which dominates the cost of a small segment; the
// arrays cost nothing per table, so a pipeline of many tables pays only
// for the rows it moves. Above it, COPY into a staging table is cheaper
// than binding the arrays. A variable so benchmarks can compare both.
var SmallSegment = 4000

// inline is a segment's rows as a FROM item: either a staging table or a
// subquery that unnests one text array per column and casts each element
// to the column's type.
type inline struct {
	from string // a FROM item, aliased s
	args []any  // its parameters, $1..$len(args)
}

// rowsSource returns rows as a FROM item aliased s with columns named
// names (quoted) and typed like the target columns cols (nil for an
// expression column of type typs[i]). get(r, i) is row r's value of
// output column i. Small segments are unnested from text arrays; larger
// ones are COPYed into a staging table created AS SELECT sel FROM t.
func (w *writer) rowsSource(ctx context.Context, t batch.Table, sel, names, types []string, n int, get func(r, i int) batch.Value) (inline, error) {
	if n <= SmallSegment && !w.staged {
		cast := make([]string, len(names))
		arrs := make([]string, len(names))
		alias := make([]string, len(names))
		args := make([]any, len(names))
		var buf []byte
		for i := range names {
			buf = buf[:0]
			buf = append(buf, '{')
			for r := 0; r < n; r++ {
				if r > 0 {
					buf = append(buf, ',')
				}
				buf = appendArrayElem(buf, get(r, i))
			}
			// A string argument goes out in text format as it is: the
			// server reads the array literal, and nothing is encoded per
			// element on this side.
			args[i] = string(append(buf, '}'))
			u := "c" + strconv.Itoa(i)
			alias[i] = u
			arrs[i] = fmt.Sprintf("$%d::text[]", i+1)
			// text to any type is an I/O conversion: the type's own input
			// function reads the value, as it does in COPY.
			cast[i] = fmt.Sprintf("CAST(u.%s AS %s) AS %s", u, types[i], names[i])
		}
		return inline{
			from: fmt.Sprintf("(SELECT %s FROM unnest(%s) AS u(%s)) s",
				strings.Join(cast, ", "), strings.Join(arrs, ", "), strings.Join(alias, ", ")),
			args: args,
		}, nil
	}
	if w.tx == nil {
		return inline{}, errFullPath
	}
	// The staging table is created and filled at once: statements queued
	// before it run first.
	if err := w.flush(ctx); err != nil {
		return inline{}, err
	}
	name := w.nextStage()
	if _, err := w.tx.Exec(ctx, fmt.Sprintf("CREATE TEMP TABLE %s ON COMMIT DROP AS SELECT %s FROM %s WITH NO DATA",
		name, strings.Join(sel, ", "), ident(t))); err != nil {
		return inline{}, err
	}
	var buf []byte
	row := make(batch.Row, len(names))
	for r := 0; r < n; r++ {
		for i := range row {
			row[i] = get(r, i)
		}
		buf = pgtext.AppendCopyRow(buf, row)
	}
	if _, err := w.tx.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(buf),
		fmt.Sprintf("COPY %s (%s) FROM STDIN", name, strings.Join(names, ", "))); err != nil {
		return inline{}, err
	}
	return inline{from: name + " s"}, nil
}

// columnsSource is rowsSource for target columns cols of t, taken from
// rows at positions idx.
func (w *writer) columnsSource(ctx context.Context, t batch.Table, ti *tableInfo, cols []string, idx []int, rows []batch.Row) (inline, error) {
	names := make([]string, len(cols))
	types := make([]string, len(cols))
	for i, c := range cols {
		names[i] = pgx.Identifier{c}.Sanitize()
		types[i] = ti.cols[c].base
	}
	return w.rowsSource(ctx, t, names, names, types, len(rows), func(r, i int) batch.Value { return rows[r][idx[i]] })
}

// appendArrayElem appends v as an element of a text array literal: NULL,
// or the value double-quoted with " and \ escaped, which array input
// reads back exactly whatever the value holds (braces, commas, blanks,
// the word NULL).
func appendArrayElem(buf []byte, v batch.Value) []byte {
	if v == nil {
		return append(buf, "NULL"...)
	}
	buf = append(buf, '"')
	s := *v
	for {
		i := strings.IndexAny(s, `"\`)
		if i < 0 {
			break
		}
		buf = append(append(buf, s[:i]...), '\\', s[i])
		s = s[i+1:]
	}
	return append(append(buf, s...), '"')
}
