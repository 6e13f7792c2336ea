package pgapply

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/load"
	"github.com/pgferry/pgferry/shared/pgtext"
)

// The target side of the initial load. See hold.go for how a loading
// table's changes wait for its copy.

// The load writes a target through its Target port, in its own types
// (load.ChunkCopy, load.State).
var _ load.Target = (*Applier)(nil)

// ErrForeignKeys means a table to load takes part in foreign keys and the
// target refuses session_replication_role, so chunks copied in parallel
// at different moments would violate them.
var ErrForeignKeys = errors.New("pgapply: cannot load a table with foreign keys without session_replication_role")

// BeginLoad marks t as loading under loadID, so that from the moment it
// returns every batch holds t's changes back instead of writing t. It
// takes the watermark lock of group (pipeline.target), so no batch is
// being applied meanwhile. It is idempotent for the same loadID (and does
// nothing to a table already loaded under loadID); a different loadID
// restarts t's load. On a new load it drops t's unique secondary indexes
// (chunks copied at different moments may collide on them) and, with
// dropIndexes, its other secondary indexes, saving their definitions in
// pgferry.load_indexes, under schema sync's lock (loadindexes.go says how
// the load and schema sync share them). The primary key stays: chunks are
// deleted and copied by key range.
func (a *Applier) BeginLoad(ctx context.Context, group string, t batch.Table, loadID string, chunks int, dropIndexes bool) error {
	sch := pgx.Identifier{Schema}.Sanitize()
	err := pgx.BeginFunc(ctx, a.pool, func(tx pgx.Tx) error {
		if _, _, err := lockWatermark(ctx, tx, a.pipeline, group); err != nil {
			return err
		}
		if !a.replicaRole {
			var fks []string
			err := tx.QueryRow(ctx, `SELECT coalesce(array_agg(conname::text ORDER BY conname), '{}') FROM pg_constraint
				WHERE contype = 'f' AND (conrelid = to_regclass($1) OR confrelid = to_regclass($1))`, ident(t)).Scan(&fks)
			if err != nil {
				return err
			}
			if len(fks) > 0 {
				var role string
				if err := tx.QueryRow(ctx, `SELECT current_user::text`).Scan(&role); err != nil {
					return err
				}
				return fmt.Errorf("%w: %s has foreign keys %s on the target, and role %q may not set session_replication_role: "+
					"on PostgreSQL 15 or later run GRANT SET ON PARAMETER session_replication_role TO %s; otherwise use a superuser "+
					"(rds_superuser on RDS), or drop the foreign keys for the load",
					ErrForeignKeys, t, strings.Join(fks, ", "), role, pgx.Identifier{role}.Sanitize())
			}
		}
		tag, err := tx.Exec(ctx, fmt.Sprintf(`INSERT INTO %[1]s.loads AS l (pipeline, tbl_schema, tbl_name, load_id, state, chunks)
			VALUES ($1, $2, $3, $4, 'loading', $5)
			ON CONFLICT (pipeline, tbl_schema, tbl_name) DO UPDATE
			SET load_id = EXCLUDED.load_id, state = 'loading', chunks = EXCLUDED.chunks, started_at = now(), finished_at = NULL
			WHERE l.load_id <> EXCLUDED.load_id`, sch), a.pipeline, t.Schema, t.Name, loadID, chunks)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return nil // this load was begun before
		}
		return dropIndexesForLoad(ctx, tx, a.pipeline, t, dropIndexes)
	})
	if err != nil {
		if errors.Is(err, ErrForeignKeys) {
			return err
		}
		return fmt.Errorf("pgapply: begin load of %s: %w", t, err)
	}
	return nil
}

// RebuildIndexes recreates the non-unique secondary indexes dropped for
// t's load. Call it once every chunk is copied, before the load's mark is
// written: the unique ones follow at hand-over. Idempotent.
func (a *Applier) RebuildIndexes(ctx context.Context, t batch.Table) error {
	err := pgx.BeginFunc(ctx, a.pool, func(tx pgx.Tx) error {
		// Use the target's parallel index build workers if it has them.
		if _, err := tx.Exec(ctx, "SET LOCAL maintenance_work_mem = '256MB'"); err != nil {
			return err
		}
		return rebuildIndexes(ctx, tx, a.log, a.pipeline, t, false)
	})
	if err != nil {
		return fmt.Errorf("pgapply: %w", err)
	}
	return nil
}

// LoadStatus returns t's load on this target; found is false if t was
// never loaded.
func (a *Applier) LoadStatus(ctx context.Context, t batch.Table) (st load.State, found bool, err error) {
	var state string
	err = a.pool.QueryRow(ctx, fmt.Sprintf(`SELECT l.load_id, l.state, l.chunks, (SELECT count(*) FROM %[1]s.load_chunks c WHERE c.load_id = l.load_id)
		FROM %[1]s.loads l WHERE pipeline = $1 AND tbl_schema = $2 AND tbl_name = $3`, pgx.Identifier{Schema}.Sanitize()),
		a.pipeline, t.Schema, t.Name).Scan(&st.LoadID, &state, &st.Chunks, &st.Copied)
	if errors.Is(err, pgx.ErrNoRows) {
		return st, false, nil
	}
	if err != nil {
		return st, false, fmt.Errorf("pgapply: load status of %s: %w", t, err)
	}
	st.Loaded = state == "loaded"
	return st, true, nil
}

// HeldRows returns how many held changes wait for t's hand-over.
func (a *Applier) HeldRows(ctx context.Context, t batch.Table) (int64, error) {
	var n int64
	err := a.pool.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM %s.load_held WHERE pipeline = $1 AND tbl_schema = $2 AND tbl_name = $3`,
		pgx.Identifier{Schema}.Sanitize()), a.pipeline, t.Schema, t.Name).Scan(&n)
	return n, err
}

// CopyChunk copies one chunk in one target transaction: it clears the
// chunk's key range, streams the rows src writes (COPY data in the format
// binary says) into the table with COPY, and records the chunk as
// copied. src runs concurrently with the COPY and must write until done
// or fail; nothing is buffered beyond the pipe. If a binary copy fails
// because a side cannot write or read a value in binary (PostgreSQL does
// not read back every value it writes, e.g. an empty tsquery), the chunk
// is copied again in text in a new transaction: a value the source holds
// never stops a table.
//
// It is idempotent: a chunk already recorded, or of a load that is not
// the table's current one, or of a table already handed over, is not
// copied again (copied false, and rows is what the first copy wrote). Two
// concurrent calls for the same chunk serialise on an advisory lock.
func (a *Applier) CopyChunk(ctx context.Context, c load.ChunkCopy, src func(ctx context.Context, w io.Writer, binary bool) error) (rows int64, copied bool, err error) {
	rows, copied, err = a.copyChunk(ctx, c, src)
	var pgErr *pgconn.PgError
	if c.Binary && errors.As(err, &pgErr) && rejectsBinary(pgErr) {
		a.log.Info("chunk rejected in COPY binary format; copying it in text", "table", c.Table, "chunk", c.N, "load", c.LoadID,
			"err", pgErr.Message, "sqlstate", pgErr.Code, "where", pgErr.Where)
		c.Binary = false
		rows, copied, err = a.copyChunk(ctx, c, src)
	}
	if err != nil {
		return 0, false, fmt.Errorf("pgapply: copy chunk %d of %s: %w", c.N, c.Table, err)
	}
	return rows, copied, nil
}

// rejectsBinary reports errors that a binary COPY may meet on a value
// that text carries: a data exception (class 22), an internal error
// raised by a type's receive function (XX000, as tsquery's is), no binary
// I/O function for a type (42883), or a feature not supported (0A000).
// Anything else would fail in text as well, and is left to the caller's
// retries.
func rejectsBinary(e *pgconn.PgError) bool {
	switch {
	case strings.HasPrefix(e.Code, "22"), e.Code == "XX000", e.Code == "42883", e.Code == "0A000":
		return true
	}
	return false
}

func (a *Applier) copyChunk(ctx context.Context, c load.ChunkCopy, src func(ctx context.Context, w io.Writer, binary bool) error) (rows int64, copied bool, err error) {
	sch := pgx.Identifier{Schema}.Sanitize()
	err = pgx.BeginFunc(ctx, a.pool, func(tx pgx.Tx) error {
		settings := pgtext.SessionSettings
		if a.replicaRole {
			settings += "; SET LOCAL session_replication_role = replica"
		}
		if _, err := tx.Exec(ctx, settings); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext($1), $2)", "pgferry-load:"+c.LoadID, c.N); err != nil {
			return err
		}
		// FOR SHARE: a hand-over (FOR UPDATE) waits for copies in flight.
		var loadID, state string
		err := tx.QueryRow(ctx, fmt.Sprintf(`SELECT load_id, state FROM %s.loads WHERE pipeline = $1 AND tbl_schema = $2 AND tbl_name = $3 FOR SHARE`, sch),
			a.pipeline, c.Table.Schema, c.Table.Name).Scan(&loadID, &state)
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && (loadID != c.LoadID || state != "loading")) {
			return nil
		}
		if err != nil {
			return err
		}
		err = tx.QueryRow(ctx, fmt.Sprintf(`SELECT rows FROM %s.load_chunks WHERE load_id = $1 AND chunk = $2`, sch), c.LoadID, c.N).Scan(&rows)
		if err == nil {
			return nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if _, err := tx.Exec(ctx, fmt.Sprintf("DELETE FROM %s WHERE %s", ident(c.Table), c.Where)); err != nil {
			return fmt.Errorf("clear chunk range: %w", err)
		}
		if rows, err = copyIn(ctx, tx, c, src); err != nil {
			return err
		}
		copied = true
		_, err = tx.Exec(ctx, fmt.Sprintf(`INSERT INTO %s.load_chunks (load_id, chunk, rows) VALUES ($1, $2, $3)`, sch), c.LoadID, c.N, rows)
		return err
	})
	return rows, copied, err
}

// copyIn runs COPY FROM STDIN fed by src through a pipe.
func copyIn(ctx context.Context, tx pgx.Tx, c load.ChunkCopy, src func(context.Context, io.Writer, bool) error) (int64, error) {
	format := ""
	if c.Binary {
		format = " (FORMAT binary)"
	}
	pr, pw := io.Pipe()
	srcErr := make(chan error, 1)
	go func() {
		err := src(ctx, pw, c.Binary)
		pw.CloseWithError(err) // nil: EOF for the COPY
		srcErr <- err
	}()
	tag, err := tx.Conn().PgConn().CopyFrom(ctx, pr, fmt.Sprintf("COPY %s (%s) FROM STDIN%s", ident(c.Table), quoteCols(c.Columns, ""), format))
	// Unblock the source if the COPY stopped reading early.
	pr.CloseWithError(errCopyEnded)
	serr := <-srcErr
	switch {
	case serr != nil && !errors.Is(serr, errCopyEnded):
		return 0, fmt.Errorf("source: %w", serr)
	case err != nil:
		return 0, err
	case serr != nil:
		return 0, serr
	}
	return tag.RowsAffected(), nil
}

var errCopyEnded = errors.New("target COPY ended")

// ResetLoads forgets every load of pipeline on the target behind pool:
// it first rebuilds the indexes a load in progress had dropped (so a reset
// never loses one), then deletes the load state, held changes and chunk
// records. Tables keep their rows.
func ResetLoads(ctx context.Context, pool interface {
	Begin(context.Context) (pgx.Tx, error)
}, pipeline string) error {
	sch := pgx.Identifier{Schema}.Sanitize()
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", Schema+".loads").Scan(&exists); err != nil || !exists {
			return err
		}
		rows, err := tx.Query(ctx, fmt.Sprintf(`SELECT DISTINCT tbl_schema, tbl_name FROM %s.load_indexes WHERE pipeline = $1`, sch), pipeline)
		if err != nil {
			return err
		}
		var tables []batch.Table
		for rows.Next() {
			var t batch.Table
			if err := rows.Scan(&t.Schema, &t.Name); err != nil {
				rows.Close()
				return err
			}
			tables = append(tables, t)
		}
		rows.Close()
		for _, t := range tables {
			if err := rebuildIndexes(ctx, tx, slog.Default(), pipeline, t, true); err != nil {
				return err
			}
		}
		for _, q := range []string{
			`DELETE FROM %[1]s.load_chunks WHERE load_id IN (SELECT load_id FROM %[1]s.loads WHERE pipeline = $1)`,
			`DELETE FROM %[1]s.load_held WHERE pipeline = $1`,
			`DELETE FROM %[1]s.loads WHERE pipeline = $1`,
		} {
			if _, err := tx.Exec(ctx, fmt.Sprintf(q, sch), pipeline); err != nil {
				return err
			}
		}
		return nil
	})
}

// ResetPipeline removes every trace of the applier's pipeline from the
// target, for a pipeline reset: its watermarks, and its loads (see
// ResetLoads). Replicated rows stay.
func (a *Applier) ResetPipeline(ctx context.Context) error {
	if _, err := a.pool.Exec(ctx, "DELETE FROM "+pgx.Identifier{Schema, "watermarks"}.Sanitize()+" WHERE pipeline = $1", a.pipeline); err != nil {
		return fmt.Errorf("watermarks: %w", err)
	}
	if err := ResetLoads(ctx, a.pool, a.pipeline); err != nil {
		return fmt.Errorf("load state: %w", err)
	}
	return nil
}
