package pgapply

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/schema"
)

// The secondary indexes a load drops and rebuilds (pgferry.load_indexes).
//
// A load drops a table's unique indexes and constraints (chunks copied at
// different moments may collide on them) and, with load.drop_indexes, its
// other secondary indexes (a bulk copy into an unindexed table is faster),
// and rebuilds them when the copy is done. Schema sync keeps the same
// table's indexes in step with the source, concurrently. The hand-off is
// made safe, whatever order sync, chunk retries, crashes and concurrent
// chunks come in, by three rules:
//
//   - A held object belongs to the load. Schema sync reads
//     pgferry.load_indexes (HeldIndexes) and treats each held object as
//     present with the source's definition: it neither re-creates it
//     under the load nor drops it. If the source changed or dropped it
//     meanwhile, sync rewrites or forgets the held row instead
//     (SetHeldIndex, ForgetHeldIndex), so the rebuild makes exactly what
//     the source has.
//   - Dropping and saving happen in one transaction that holds schema
//     sync's lock (SchemaSyncLock), so a sync sees either the index or
//     its held row, never neither. Rebuilding and forgetting happen in one
//     transaction, under row locks that a sync also takes first.
//   - The rebuild is idempotent: an object already there under the held
//     name with the held definition is kept (an earlier attempt or another
//     process made it); one with another definition is replaced; a missing
//     one is created.

// SchemaSyncLock is the transaction-level advisory lock key that
// serialises schema syncs on a target database (pgsync takes it); a load
// takes it while it drops indexes.
const SchemaSyncLock int64 = 0x7067_6665_7272_7953 // "pgferrySc"…

// HeldIndex is a secondary index or a unique or exclusion constraint that
// a load in progress dropped and will rebuild.
type HeldIndex struct {
	Pipeline   string
	Table      batch.Table
	Name       string
	Constraint bool
	// Unique: a unique index (constraints are rebuilt at hand-over too).
	Unique bool
	// Def is what follows USING in an index's definition, or a
	// constraint's pg_get_constraintdef; empty if unknown (saved by an
	// older version).
	Def string
}

// ddl renders the statement that rebuilds h.
func (h HeldIndex) ddl() string {
	tbl := pgx.Identifier{h.Table.Schema, h.Table.Name}.Sanitize()
	if h.Constraint {
		return fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT %s %s", tbl, pgx.Identifier{h.Name}.Sanitize(), h.Def)
	}
	u := ""
	if h.Unique {
		u = "UNIQUE "
	}
	return fmt.Sprintf("CREATE %sINDEX %s ON %s USING %s", u, pgx.Identifier{h.Name}.Sanitize(), tbl, h.Def)
}

func (h HeldIndex) drop() string {
	if h.Constraint {
		return fmt.Sprintf("ALTER TABLE %s DROP CONSTRAINT IF EXISTS %s", pgx.Identifier{h.Table.Schema, h.Table.Name}.Sanitize(), pgx.Identifier{h.Name}.Sanitize())
	}
	return "DROP INDEX IF EXISTS " + pgx.Identifier{h.Table.Schema, h.Name}.Sanitize()
}

func (h HeldIndex) kind() string {
	if h.Constraint {
		return "constraint"
	}
	return "index"
}

// HeldIndexes returns every object held by a load on the target, of any
// pipeline (none if the load tables are not installed). With forUpdate it
// locks their rows, so that a rebuild in flight finishes first and a
// rebuild that starts waits for tx.
func HeldIndexes(ctx context.Context, tx pgx.Tx, forUpdate bool) ([]HeldIndex, error) {
	var exists bool
	if err := tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", pgx.Identifier{Schema, "load_indexes"}.Sanitize()).Scan(&exists); err != nil || !exists {
		return nil, err
	}
	lock := ""
	if forUpdate {
		lock = " FOR UPDATE"
	}
	return scanHeld(tx.Query(ctx, fmt.Sprintf(`SELECT pipeline, tbl_schema, tbl_name, index_name, ddl, at_handover, kind, def
		FROM %s.load_indexes ORDER BY pipeline, tbl_schema, tbl_name, index_name%s`, pgx.Identifier{Schema}.Sanitize(), lock)))
}

func scanHeld(rows pgx.Rows, err error) ([]HeldIndex, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []HeldIndex
	for rows.Next() {
		var h HeldIndex
		var ddl string
		var handover bool
		var kind, def *string
		if err := rows.Scan(&h.Pipeline, &h.Table.Schema, &h.Table.Name, &h.Name, &ddl, &handover, &kind, &def); err != nil {
			return nil, err
		}
		switch {
		case kind != nil:
			h.Constraint = *kind == "constraint"
		default: // an older row: its ddl says what it is
			h.Constraint = len(ddl) > 11 && ddl[:11] == "ALTER TABLE"
		}
		h.Unique = handover && !h.Constraint
		if def != nil {
			h.Def = *def
		}
		out = append(out, h)
	}
	return out, rows.Err()
}

// SetHeldIndex rewrites the held row of h (same pipeline, table and name)
// to h's kind and definition: the load then rebuilds h as given. Schema
// sync calls it when the source changed a held object.
func SetHeldIndex(ctx context.Context, tx pgx.Tx, h HeldIndex) error {
	_, err := tx.Exec(ctx, fmt.Sprintf(`UPDATE %s.load_indexes SET ddl = $4, at_handover = $5, kind = $6, def = $7
		WHERE pipeline = $1 AND tbl_schema = $2 AND index_name = $3`, pgx.Identifier{Schema}.Sanitize()),
		h.Pipeline, h.Table.Schema, h.Name, h.ddl(), h.Unique || h.Constraint, h.kind(), h.Def)
	if err != nil {
		return fmt.Errorf("pgapply: update held index %s of %s: %w", h.Name, h.Table, err)
	}
	return nil
}

// ForgetHeldIndex deletes the held row of h: the load will not rebuild it.
// Schema sync calls it when the source dropped a held object.
func ForgetHeldIndex(ctx context.Context, tx pgx.Tx, h HeldIndex) error {
	_, err := tx.Exec(ctx, fmt.Sprintf(`DELETE FROM %s.load_indexes WHERE pipeline = $1 AND tbl_schema = $2 AND index_name = $3`,
		pgx.Identifier{Schema}.Sanitize()), h.Pipeline, h.Table.Schema, h.Name)
	if err != nil {
		return fmt.Errorf("pgapply: forget held index %s of %s: %w", h.Name, h.Table, err)
	}
	return nil
}

// dropIndexesForLoad saves and drops t's secondary indexes: always the
// unique ones (rebuilt at hand-over), the others with all. A unique
// constraint that a foreign key depends on is kept. It holds schema
// sync's lock until tx ends (see above). Safe to run again: an object
// already dropped is not there to be listed.
func dropIndexesForLoad(ctx context.Context, tx pgx.Tx, pipeline string, t batch.Table, all bool) error {
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", SchemaSyncLock); err != nil {
		return fmt.Errorf("schema sync lock: %w", err)
	}
	rows, err := tx.Query(ctx, `
		SELECT ic.relname::text, pg_get_indexdef(i.indexrelid), i.indisunique OR con.oid IS NOT NULL,
		       con.conname::text, CASE WHEN con.oid IS NULL THEN '' ELSE pg_get_constraintdef(con.oid) END,
		       EXISTS (SELECT 1 FROM pg_constraint f WHERE f.contype = 'f' AND f.conindid = i.indexrelid)
		FROM pg_index i
		JOIN pg_class ic ON ic.oid = i.indexrelid
		LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid AND con.contype IN ('u', 'x')
		WHERE i.indrelid = to_regclass($1) AND NOT i.indisprimary`, ident(t))
	if err != nil {
		return err
	}
	type idx struct {
		name, def, con, condef string
		unique, referenced     bool
	}
	var found []idx
	for rows.Next() {
		var x idx
		var con *string
		if err := rows.Scan(&x.name, &x.def, &x.unique, &con, &x.condef, &x.referenced); err != nil {
			rows.Close()
			return err
		}
		if con != nil {
			x.con = *con
		}
		found = append(found, x)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	save := fmt.Sprintf(`INSERT INTO %s.load_indexes (pipeline, tbl_schema, tbl_name, index_name, ddl, at_handover, kind, def)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (pipeline, tbl_schema, index_name)
		DO UPDATE SET ddl = EXCLUDED.ddl, at_handover = EXCLUDED.at_handover, kind = EXCLUDED.kind, def = EXCLUDED.def`,
		pgx.Identifier{Schema}.Sanitize())
	for _, x := range found {
		h := HeldIndex{Pipeline: pipeline, Table: t, Name: x.name}
		switch {
		case x.referenced:
			continue
		case x.con != "":
			h.Constraint, h.Def = true, x.condef
		case x.unique || all:
			using, ok := schema.SplitUsing(x.def)
			if !ok {
				return fmt.Errorf("index %s: unexpected definition %q", x.name, x.def)
			}
			h.Unique, h.Def = x.unique, using
		default:
			continue
		}
		if _, err := tx.Exec(ctx, save, pipeline, t.Schema, t.Name, h.Name, h.ddl(), x.unique, h.kind(), h.Def); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, h.drop()); err != nil {
			return fmt.Errorf("drop index %s for the load: %w", x.name, err)
		}
	}
	return nil
}

// rebuildIndexes makes t's held objects (only those not kept for
// hand-over, unless handover) exist as held, and forgets them, in tx. An
// object of the held name that is already there is kept if its
// definition is the held one and replaced otherwise, so a retry, a rebuild
// after a crash, or a rebuild after another process made the object never
// fails on it and never leaves a second copy.
func rebuildIndexes(ctx context.Context, tx pgx.Tx, log *slog.Logger, pipeline string, t batch.Table, handover bool) error {
	// FOR UPDATE: a concurrent rebuild, or a schema sync rewriting the
	// held rows, goes first; this one then reads the rows as they left
	// them (gone, or rewritten).
	held, err := scanHeld(tx.Query(ctx, fmt.Sprintf(`SELECT pipeline, tbl_schema, tbl_name, index_name, ddl, at_handover, kind, def
		FROM %s.load_indexes
		WHERE pipeline = $1 AND tbl_schema = $2 AND tbl_name = $3 AND (NOT at_handover OR $4) ORDER BY index_name
		FOR UPDATE`, pgx.Identifier{Schema}.Sanitize()), pipeline, t.Schema, t.Name, handover))
	if err != nil {
		return err
	}
	for _, h := range held {
		have, def, err := existing(ctx, tx, h)
		if err != nil {
			return fmt.Errorf("rebuild index %s of %s: %w", h.Name, t, err)
		}
		switch {
		case have && (def == h.Def || h.Def == ""):
			// Already as it should be (or, for a row of an older version,
			// not comparable: the object there is kept).
			log.Info("index the load held is already there; kept", "table", t, "index", h.Name)
		case have:
			log.Warn("index the load held is there with another definition; replacing it", "table", t, "index", h.Name, "there", def, "held", h.Def)
			if _, err := tx.Exec(ctx, h.drop()); err != nil {
				return fmt.Errorf("rebuild index %s of %s: drop the one there: %w", h.Name, t, err)
			}
			fallthrough
		default:
			if _, err := tx.Exec(ctx, h.ddl()); err != nil {
				return fmt.Errorf("rebuild index %s of %s: %w", h.Name, t, err)
			}
		}
		if err := ForgetHeldIndex(ctx, tx, h); err != nil {
			return err
		}
	}
	return nil
}

// existing reports whether h's table has an object named as h of h's
// kind, and its definition in the form HeldIndex.Def has.
func existing(ctx context.Context, tx pgx.Tx, h HeldIndex) (bool, string, error) {
	var def string
	var err error
	if h.Constraint {
		err = tx.QueryRow(ctx, `SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = to_regclass($1) AND conname = $2`,
			ident(h.Table), h.Name).Scan(&def)
	} else {
		var full string
		var unique bool
		err = tx.QueryRow(ctx, `SELECT pg_get_indexdef(i.indexrelid), i.indisunique FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
			WHERE i.indrelid = to_regclass($1) AND c.relname = $2`, ident(h.Table), h.Name).Scan(&full, &unique)
		if err == nil {
			def, _ = schema.SplitUsing(full)
			if unique != h.Unique {
				def = "(unique: " + fmt.Sprint(unique) + ") " + def // never equal to the held one
			}
		}
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return false, "", nil
	}
	return err == nil, def, err
}
