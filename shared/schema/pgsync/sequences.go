package pgsync

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/pgferry/pgferry/shared/schema"
)

// seqValue is a source sequence's position and where it lives on the
// target: by owning column (serial and identity sequences, whose names a
// target may choose differently) or by name.
type seqValue struct {
	seq        schema.QName
	table      schema.QName
	column     string
	last, step int64
}

// SyncSequences moves every target sequence of the replicated tables to
// at least its source's value (at most, for a descending sequence), so
// that after a failover to the target new keys do not collide with
// replicated ones. It never moves a sequence backwards and skips
// sequences the source never used or the target lacks. It returns how
// many sequences it moved.
func (s *Syncer) SyncSequences(ctx context.Context) (int, error) {
	rows, err := s.src.Query(ctx, `
		SELECT n.nspname, c.relname, tn.nspname, tc.relname, coalesce(a.attname::text, ''),
		       pg_sequence_last_value(c.oid), sq.seqincrement
		FROM pg_sequence sq
		JOIN pg_class c ON c.oid = sq.seqrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
		JOIN pg_class tc ON tc.oid = d.refobjid
		JOIN pg_namespace tn ON tn.oid = tc.relnamespace
		LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
		WHERE pg_sequence_last_value(c.oid) IS NOT NULL
		UNION
		SELECT n.nspname, c.relname, tn.nspname, tc.relname, '', pg_sequence_last_value(c.oid), sq.seqincrement
		FROM pg_attrdef ad
		JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid AND d.refclassid = 'pg_class'::regclass
		JOIN pg_sequence sq ON sq.seqrelid = d.refobjid
		JOIN pg_class c ON c.oid = sq.seqrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_class tc ON tc.oid = ad.adrelid
		JOIN pg_namespace tn ON tn.oid = tc.relnamespace
		WHERE pg_sequence_last_value(c.oid) IS NOT NULL
		  AND NOT EXISTS (SELECT 1 FROM pg_depend o WHERE o.classid = 'pg_class'::regclass AND o.objid = c.oid AND o.deptype IN ('a', 'i'))`)
	if err != nil {
		return 0, fmt.Errorf("source: read sequences: %w", err)
	}
	var vals []seqValue
	for rows.Next() {
		var v seqValue
		if err := rows.Scan(&v.seq.Schema, &v.seq.Name, &v.table.Schema, &v.table.Name, &v.column, &v.last, &v.step); err != nil {
			rows.Close()
			return 0, fmt.Errorf("source: read sequences: %w", err)
		}
		if s.sel.Table(v.table) {
			vals = append(vals, v)
		}
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("source: read sequences: %w", err)
	}
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
			FROM (SELECT CASE WHEN $3 = '' THEN to_regclass($2)
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
			return moved, fmt.Errorf("targets.%s: advance sequence %s: %w", s.target, v.seq, err)
		}
		moved += n
	}
	return moved, br.Close()
}
