package verify

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/load"
	"github.com/pgferry/pgferry/shared/pgtext"
	"github.com/pgferry/pgferry/shared/rules"
)

// errNotComparable: the rules leave out an operation, so the target is
// meant to differ from the source.
var errNotComparable = errors.New("verify: the target's rules leave out an operation")

// compareShaped compares table t of the source, through target tr's
// rules, with its copy on on: the source's rows filtered and shaped as
// the drain ships them, the target's rows that are not soft-deleted, each
// over the columns the target gets. Both sides are summed here, row by
// row, with the same function, so their text need only agree.
func compareShaped(ctx context.Context, src *pgxpool.Pool, dst Target, tr *rules.Target, t, on batch.Table) (sRows int64, sSum string, dRows int64, dSum string, err error) {
	desc, err := load.Describe(ctx, src, t)
	if err != nil {
		return 0, "", 0, "", err
	}
	p, err := tr.Plan(ctx, t, desc.Columns, desc.Key)
	if err != nil {
		return 0, "", 0, "", err
	}
	for _, op := range []string{config.OpInsert, config.OpUpdate, config.OpDelete, config.OpTruncate} {
		if !p.Lets(op) {
			return 0, "", 0, "", errNotComparable
		}
	}
	cols := slices.DeleteFunc(slices.Clone(p.Columns), func(c string) bool { return c == config.DeletedAtColumn })
	mapped := func(r batch.Row) (batch.Row, error) { return r, nil }
	if m, ok := dst.(Mapper); ok {
		if mapped, err = m.MapRow(ctx, on, cols); err != nil {
			return 0, "", 0, "", err
		}
	}
	sRows, sSum, err = sumRows(ctx, src, t, desc.Columns, "", func(r batch.Row) (batch.Row, error) {
		ok, err := p.Pass(r)
		if err != nil || !ok {
			return nil, err
		}
		return mapped(p.Row(r)[:len(cols)])
	})
	if err != nil {
		return 0, "", 0, "", fmt.Errorf("source: %w", err)
	}
	dRows, dSum, err = dst.SumRows(ctx, on, cols, tr.SoftDeletes())
	return sRows, sSum, dRows, dSum, err
}

// SumRows sums the rows of t over cols as compareShaped sums the
// source's; with live it leaves out soft-deleted rows.
func (p Postgres) SumRows(ctx context.Context, t batch.Table, cols []string, live bool) (int64, string, error) {
	where := ""
	if live {
		where = pgx.Identifier{config.DeletedAtColumn}.Sanitize() + " IS NULL"
	}
	return sumRows(ctx, p.Pool, t, cols, where, func(r batch.Row) (batch.Row, error) { return r, nil })
}

// sumRows reads cols of t (rows meeting where, if set) as COPY text under
// pgtext.SessionSettings, maps each row (nil drops it) and sums the
// first 60 bits of the md5 of each mapped row's COPY text.
func sumRows(ctx context.Context, pool *pgxpool.Pool, t batch.Table, cols []string, where string, fn func(batch.Row) (batch.Row, error)) (int64, string, error) {
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = pgx.Identifier{c}.Sanitize()
	}
	sql := "COPY (SELECT " + strings.Join(q, ", ") + " FROM " + pgx.Identifier{t.Schema, t.Name}.Sanitize()
	if where != "" {
		sql += " WHERE " + where
	}
	sql += ") TO STDOUT"
	lw := &rowSummer{fn: fn}
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, pgtext.SessionSettings); err != nil {
			return err
		}
		_, err := tx.Conn().PgConn().CopyTo(ctx, lw, sql)
		return err
	})
	if err != nil {
		return 0, "", err
	}
	return lw.n, strconv.FormatUint(lw.sum, 10), nil
}

// rowSummer sums COPY text rows as they stream in.
type rowSummer struct {
	fn   func(batch.Row) (batch.Row, error)
	part []byte
	line []byte
	n    int64
	sum  uint64
}

func (s *rowSummer) Write(b []byte) (int, error) {
	total := len(b)
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			s.part = append(s.part, b...)
			return total, nil
		}
		row := b[:i]
		if len(s.part) > 0 {
			row = append(s.part, row...)
		}
		if err := s.add(row); err != nil {
			return 0, err
		}
		s.part = s.part[:0]
		b = b[i+1:]
	}
}

func (s *rowSummer) add(text []byte) error {
	r, err := pgtext.ParseCopyRow(text)
	if err != nil {
		return err
	}
	if r, err = s.fn(r); err != nil || r == nil {
		return err
	}
	s.sum1(r)
	return nil
}

// sum1 adds one row: the first 60 bits of the md5 of its COPY text.
func (s *rowSummer) sum1(r batch.Row) {
	s.line = pgtext.AppendCopyRow(s.line[:0], r)
	h := md5.Sum(s.line)
	s.sum += binary.BigEndian.Uint64(h[:8]) >> 4
	s.n++
}
