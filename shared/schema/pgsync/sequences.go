package pgsync

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgferry/pgferry/shared/schema"
)

// ErrSequenceUnreadable reports sequences of replicated tables that the
// source role may not read (it needs SELECT or USAGE on them). The other
// sequences are still moved; these stay where they are on the target
// until the privilege is granted.
var ErrSequenceUnreadable = errors.New("sequences of replicated tables are not readable by the source role")

// seqValue is a source sequence's position and where it lives on the
// target: by owning column (serial and identity sequences, whose names a
// target may choose differently) or by name.
type seqValue struct {
	seq        schema.QName
	table      schema.QName
	column     string
	last, step int64
}

// sourceSequences lists, for every sequence a table owns (serial,
// identity) or whose nextval a column default calls, the sequence, its
// table and owning column, its increment, whether the source role may read
// it and, if so, its last value (NULL if never used).
//
// pg_sequence_last_value and has_sequence_privilege raise an error on any
// relation that is not a sequence (SQLSTATE 42809). Called in a WHERE
// clause of the joins, the planner may evaluate them on pg_class rows
// before the joins have narrowed them to sequences (it does, once the
// catalogs have statistics, as after a restore and ANALYZE: on a toast
// table or an index). So the inner query only selects catalog rows, and
// is kept from being flattened (OFFSET 0; a UNION is not flattened
// either); the functions are called in the outer select list, which is
// evaluated on the inner query's output rows only, and are guarded by
// relkind = 'S' besides. Nothing filters on their result in SQL.
//
// Temporary sequences are left out: no replicated table is temporary, and
// those of other sessions cannot be read.
const sourceSequences = `
	SELECT s.seq_schema, s.seq_name, s.tbl_schema, s.tbl_name, s.col, s.step,
	       coalesce(CASE WHEN s.relkind = 'S' THEN has_sequence_privilege(s.oid, 'SELECT,USAGE') END, false),
	       CASE WHEN s.relkind = 'S' AND has_sequence_privilege(s.oid, 'SELECT,USAGE') THEN pg_sequence_last_value(s.oid) END,
	       current_user
	FROM (
		SELECT c.oid, c.relkind, n.nspname AS seq_schema, c.relname AS seq_name, tn.nspname AS tbl_schema, tc.relname AS tbl_name,
		       coalesce(a.attname::text, '') AS col, sq.seqincrement AS step
		FROM pg_sequence sq
		JOIN pg_class c ON c.oid = sq.seqrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
		JOIN pg_class tc ON tc.oid = d.refobjid
		JOIN pg_namespace tn ON tn.oid = tc.relnamespace
		LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
		WHERE c.relpersistence <> 't'
		UNION
		SELECT c.oid, c.relkind, n.nspname, c.relname, tn.nspname, tc.relname, '', sq.seqincrement
		FROM pg_attrdef ad
		JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid AND d.refclassid = 'pg_class'::regclass
		JOIN pg_sequence sq ON sq.seqrelid = d.refobjid
		JOIN pg_class c ON c.oid = sq.seqrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_class tc ON tc.oid = ad.adrelid
		JOIN pg_namespace tn ON tn.oid = tc.relnamespace
		WHERE c.relpersistence <> 't'
		  AND NOT EXISTS (SELECT 1 FROM pg_depend o WHERE o.classid = 'pg_class'::regclass AND o.objid = c.oid AND o.deptype IN ('a', 'i'))
		OFFSET 0
	) s`

// SyncSequences moves every target sequence of the replicated tables to
// at least its source's value (at most, for a descending sequence), so
// that after a failover to the target new keys do not collide with
// replicated ones. It never moves a sequence backwards and skips
// sequences the source never used or the target lacks. It returns how
// many sequences it moved.
//
// A sequence of a replicated table that the source role cannot read is
// not skipped in silence: the others are moved, then ErrSequenceUnreadable
// names it and the grant that fixes it. (A source role that owns its
// tables owns their serial and identity sequences; this concerns
// standalone sequences owned by another role.) Sequences of tables that
// are not replicated are never read.
func (s *Syncer) SyncSequences(ctx context.Context) (int, error) {
	rows, err := s.src.Query(ctx, sourceSequences)
	if err != nil {
		return 0, fmt.Errorf("source: read sequences: %w", err)
	}
	var (
		vals       []seqValue
		unreadable []schema.QName
		role       string
	)
	for rows.Next() {
		var (
			v        seqValue
			readable bool
			last     *int64
		)
		if err := rows.Scan(&v.seq.Schema, &v.seq.Name, &v.table.Schema, &v.table.Name, &v.column, &v.step, &readable, &last, &role); err != nil {
			rows.Close()
			return 0, fmt.Errorf("source: read sequences: %w", err)
		}
		switch {
		case !s.sel.Table(v.table):
		case !readable:
			if !slices.Contains(unreadable, v.seq) {
				unreadable = append(unreadable, v.seq)
			}
		case last != nil:
			v.last = *last
			vals = append(vals, v)
		}
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("source: read sequences: %w", err)
	}
	moved, err := s.advance(ctx, vals)
	if err != nil || len(unreadable) == 0 {
		return moved, err
	}
	names, idents := make([]string, len(unreadable)), make([]string, len(unreadable))
	for i, q := range unreadable {
		names[i], idents[i] = q.String(), q.Ident()
	}
	return moved, fmt.Errorf("source: %w: %s (their target copies are not moved; GRANT SELECT ON SEQUENCE %s TO %s)",
		ErrSequenceUnreadable, strings.Join(names, ", "), strings.Join(idents, ", "), pgx.Identifier{role}.Sanitize())
}

// advance moves the target's copies of vals, in one round trip.
func (s *Syncer) advance(ctx context.Context, vals []seqValue) (int, error) {
	if len(vals) == 0 {
		return 0, nil
	}
	var b pgx.Batch
	for _, v := range vals {
		table, seq := v.table, v.seq
		if s.applySchema != "" {
			table.Schema, seq.Schema = s.applySchema, s.applySchema
		}
		b.Queue(`
			SELECT count(setval(q.seq, x.v, true))
			FROM (SELECT CASE WHEN $3 = '' THEN (SELECT c.oid::regclass FROM pg_class c WHERE c.oid = to_regclass($2) AND c.relkind = 'S')
			                  WHEN to_regclass($1) IS NOT NULL THEN pg_get_serial_sequence($1, $3)::regclass END AS seq) q,
			     LATERAL (SELECT CASE WHEN $5::bigint > 0 THEN greatest($4::bigint, coalesce(pg_sequence_last_value(q.seq), $4::bigint))
			                          ELSE least($4::bigint, coalesce(pg_sequence_last_value(q.seq), $4::bigint)) END AS v) x
			WHERE q.seq IS NOT NULL AND pg_sequence_last_value(q.seq) IS DISTINCT FROM x.v`,
			table.Ident(), seq.Ident(), v.column, v.last, v.step)
	}
	moved := 0
	br := s.dst.SendBatch(ctx, &b)
	defer br.Close()
	for _, v := range vals {
		var n int
		if err := br.QueryRow().Scan(&n); err != nil {
			hint := ""
			if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) && pgErr.Code == "42501" {
				hint = " (the target role needs SELECT and UPDATE on it)"
			}
			return moved, fmt.Errorf("targets.%s: advance sequence %s%s: %w", s.target, v.seq, hint, err)
		}
		moved += n
	}
	return moved, br.Close()
}
