package trigger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/capture"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/pgtext"
	sqlfiles "github.com/pgferry/pgferry/sql"
)

// Capture is trigger capture on one source database.
type Capture struct {
	pool   *pgxpool.Pool
	cfg    *config.Config
	schema string
	log    *slog.Logger
	rels   map[uint32]capture.Relation
	shapes map[shapeID]shape

	// KeylessCopyOnly limits the copy of existing rows at install to
	// tables without a primary key: the initial load copies the keyed ones
	// (chunked, in parallel), and only a keyless table needs the exact
	// meeting point this copy gives. Set by the initial load's installer.
	KeylessCopyOnly bool
}

// New returns trigger capture for cfg's source. It does not touch the
// database until Install or a read.
func New(pool *pgxpool.Pool, cfg *config.Config, log *slog.Logger) *Capture {
	return &Capture{pool: pool, cfg: cfg, schema: cfg.CaptureSchema(), log: log, rels: map[uint32]capture.Relation{}, shapes: map[shapeID]shape{}}
}

// triggerOps lists the per-table triggers: name suffix, event, transition
// tables and function.
var triggerOps = []struct{ suffix, event, referencing, fn string }{
	{"ins", "INSERT", "REFERENCING NEW TABLE AS pgferry_new", "capture_insert"},
	{"upd", "UPDATE", "REFERENCING OLD TABLE AS pgferry_old NEW TABLE AS pgferry_new", "capture_update"},
	{"del", "DELETE", "REFERENCING OLD TABLE AS pgferry_old", "capture_delete"},
	{"trunc", "TRUNCATE", "", "capture_truncate"},
}

func (c *Capture) triggerName(suffix string) string {
	return c.cfg.TriggerName(suffix)
}

// Install creates or upgrades the capture schema, then makes sure every
// table matching the patterns has capture triggers. It is idempotent and
// safe to run concurrently with writers and with other installers.
//
// A table that gets triggers after capture started has its existing rows
// copied into the event stream in the same transaction that creates the
// triggers (which blocks writers to it meanwhile), so rows written before
// the table was picked up still reach the targets.
func (c *Capture) Install(ctx context.Context) error {
	// Re-running the script replaces the trigger functions, which makes
	// every session that writes recompile them; only run it when the
	// installed version differs. Reading the version takes no lock.
	var installed int
	var exists bool
	state := pgx.Identifier{c.schema, "state"}.Sanitize()
	if err := c.pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", state).Scan(&exists); err != nil {
		return explainPrivilege(fmt.Errorf("trigger: look for capture schema %s: %w", c.schema, err))
	}
	if exists {
		if err := c.pool.QueryRow(ctx, "SELECT version FROM "+state).Scan(&installed); err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return explainPrivilege(fmt.Errorf("trigger: read installed capture version: %w", err))
		}
	}
	if installed == sqlfiles.CaptureVersion {
		return c.SyncTables(ctx)
	}
	if err := c.preflight(ctx, exists); err != nil {
		return err
	}
	err := pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
		// Serialise installers of this pipeline; the lock ends with the
		// transaction.
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext($1))", "pgferry:"+c.cfg.Name); err != nil {
			return err
		}
		// Upgrading alters the event table, which waits for every open
		// transaction that wrote events and holds up new writers while it
		// waits: give up after a while (the next drain tries again; the
		// installed version keeps capturing meanwhile).
		if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '5s'"); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, sqlfiles.Capture(c.schema)); err != nil {
			return err
		}
		// The first window starts at a snapshot taken inside the
		// transaction that creates the event table: a writer can only
		// produce events after this commits, so it is invisible here.
		_, err := tx.Exec(ctx, fmt.Sprintf(
			`INSERT INTO %s.state (version, initial_snapshot) VALUES ($1, pg_current_snapshot()::text)
			 ON CONFLICT (singleton) DO UPDATE SET version = EXCLUDED.version`,
			pgx.Identifier{c.schema}.Sanitize()), sqlfiles.CaptureVersion)
		return err
	})
	if err != nil {
		return explainPrivilege(fmt.Errorf("trigger: install capture schema %s: %w", c.schema, err))
	}
	return c.SyncTables(ctx)
}

// table is a source table the patterns select: an ordinary table or a
// partitioned root that matches, or a partition of one.
type table struct {
	oid      uint32
	schema   string
	name     string
	triggers []string
	// allowed: the connected role may add triggers to it and read it.
	allowed bool
}

// tables lists the source tables the patterns select.
func (c *Capture) tables(ctx context.Context) ([]table, error) {
	rows, err := c.pool.Query(ctx, `
		SELECT c.oid, n.nspname, c.relname, rn.nspname, rc.relname,
		       coalesce((SELECT array_agg(t.tgname::text) FROM pg_trigger t WHERE t.tgrelid = c.oid), '{}'),
		       has_table_privilege(c.oid, 'TRIGGER') AND has_table_privilege(c.oid, 'SELECT')
		FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_class rc ON rc.oid = coalesce(pg_partition_root(c.oid), c.oid)
		JOIN pg_namespace rn ON rn.oid = rc.relnamespace
		WHERE c.relkind IN ('r', 'p')
		  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
		  AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'
		  AND n.nspname <> $1
		ORDER BY n.nspname, c.relname`, c.schema)
	if err != nil {
		return nil, fmt.Errorf("trigger: list source tables: %w", err)
	}
	var out []table
	for rows.Next() {
		var t table
		var rootSchema, rootName string
		if err := rows.Scan(&t.oid, &t.schema, &t.name, &rootSchema, &rootName, &t.triggers, &t.allowed); err != nil {
			return nil, fmt.Errorf("trigger: list source tables: %w", err)
		}
		if c.cfg.Replicated(rootSchema, rootName) {
			out = append(out, t)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("trigger: list source tables: %w", err)
	}
	return out, nil
}

// SyncTables adds capture triggers to matching tables that lack them:
// ordinary tables and partitioned roots that match, and every partition of
// a matching root (a write aimed straight at a partition fires only that
// partition's triggers).
func (c *Capture) SyncTables(ctx context.Context) error {
	all, err := c.tables(ctx)
	if err != nil {
		return err
	}
	var todo []table
	for _, t := range all {
		if !slices.Contains(t.triggers, c.triggerName("ins")) || len(c.missing(t)) > 0 {
			todo = append(todo, t)
		}
	}
	for _, t := range todo {
		if err := c.addTriggers(ctx, t); err != nil {
			return err
		}
	}
	return nil
}

func (c *Capture) missing(t table) []string {
	var out []string
	for _, op := range triggerOps {
		if !slices.Contains(t.triggers, c.triggerName(op.suffix)) {
			out = append(out, op.suffix)
		}
	}
	return out
}

func (c *Capture) addTriggers(ctx context.Context, t table) error {
	rel := pgx.Identifier{t.schema, t.name}.Sanitize()
	sch := pgx.Identifier{c.schema}.Sanitize()
	err := pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
		// Do not queue behind a long transaction for ever; the next drain
		// tries again.
		if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '5s'"); err != nil {
			return err
		}
		// Block writers until the triggers exist, so the copy below and
		// the captured changes after it meet exactly.
		if _, err := tx.Exec(ctx, "LOCK TABLE ONLY "+rel+" IN SHARE ROW EXCLUSIVE MODE"); err != nil {
			return err
		}
		for _, suffix := range c.missing(t) {
			for _, op := range triggerOps {
				if op.suffix != suffix {
					continue
				}
				q := fmt.Sprintf("CREATE TRIGGER %s AFTER %s ON %s %s FOR EACH STATEMENT EXECUTE FUNCTION %s.%s()",
					pgx.Identifier{c.triggerName(op.suffix)}.Sanitize(), op.event, rel, op.referencing, sch, op.fn)
				if _, err := tx.Exec(ctx, q); err != nil {
					return err
				}
			}
		}
		if copies, err := capture.CopiesRows(ctx, tx, c.cfg.Source, t.oid, c.KeylessCopyOnly); err != nil || !copies {
			return err
		}
		// Rows already in the table travel as synthetic INSERT events of
		// this transaction, in chunks of 1000 rows per event. A partitioned
		// root holds no rows itself (ONLY), its partitions copy their own.
		if _, err := tx.Exec(ctx, pgtext.SessionSettings); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, fmt.Sprintf(`
			INSERT INTO %[1]s.events (ev_relid, ev_op, ev_cols, ev_new)
			SELECT %[3]d, 'I', %[1]s.columns_of(%[3]d), array_agg(r)
			FROM (SELECT t.*::text AS r, (row_number() OVER () - 1) / 1000 AS chunk FROM ONLY %[2]s t) s
			GROUP BY chunk`, sch, rel, t.oid))
		return err
	})
	if err != nil {
		return explainPrivilege(fmt.Errorf("trigger: add capture triggers to %s.%s: %w", t.schema, t.name, err))
	}
	c.log.Info("capture triggers installed", "table", t.schema+"."+t.name)
	return nil
}

// explainPrivilege adds what to grant when the source refused for lack of
// privilege.
func explainPrivilege(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42501" {
		return fmt.Errorf("%w (trigger capture needs CREATE on the database, use of its capture schema, and ownership of each replicated table: "+
			"run as the tables' owner or GRANT the owning role to the pipeline's user)", err)
	}
	return err
}

// Installed reports whether trigger capture is installed on the source
// (its install state exists in the capture schema). It changes nothing.
func (c *Capture) Installed(ctx context.Context) (bool, error) {
	var exists bool
	state := pgx.Identifier{c.schema, "state"}.Sanitize()
	if err := c.pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", state).Scan(&exists); err != nil {
		return false, fmt.Errorf("trigger: look for capture schema %s: %w", c.schema, err)
	}
	return exists, nil
}
