// Package pgsync keeps a PostgreSQL target's schema in step with the
// source: it reads both catalogs, plans the DDL with package schema and
// runs it on the target in one transaction, together with the registry
// that ties target objects to source identities (new enum labels that
// later DDL uses commit in a transaction of their own first). It also decorates an
// applier so that schema jobs run in stream order and a batch that fails
// because the target is behind is retried after the DDL (see Applier).
package pgsync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/apply/pgapply"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/rules"
	"github.com/pgferry/pgferry/shared/schema"
	sqlfiles "github.com/pgferry/pgferry/sql"
)

// lockKey serialises schema syncs on one target database (a job, a
// retry-after-DDL and a start-up sync may race); pg_advisory_xact_lock
// holds it until the DDL's transaction ends.
// An initial load takes it too while it drops a table's indexes (see
// loadheld.go).
const lockKey = pgapply.SchemaSyncLock

// Syncer syncs one target's schema from the source. It is safe for
// concurrent use.
type Syncer struct {
	src, dst    *pgxpool.Pool
	pipeline    string
	target      string
	applySchema string
	rules       config.Target // what rules.ShapeCatalog needs
	sel         schema.Selection
	log         *slog.Logger
	deferred    deferredState
}

// New returns a syncer for cfg's target named target.
func New(src, dst *pgxpool.Pool, cfg *config.Config, target string, log *slog.Logger) *Syncer {
	return &Syncer{
		src: src, dst: dst, pipeline: cfg.Name, target: target,
		applySchema: cfg.Targets[target].ApplySchema,
		rules:       cfg.Targets[target],
		sel: schema.Selection{
			Table: func(root schema.QName) bool {
				return cfg.Replicated(root.Schema, root.Name) && cfg.Targets[target].Gets(root.Schema, root.Name)
			},
			Schema: coveredSchema(cfg),
			Skip:   SourceSkip(cfg),
		},
		log: log,
	}
}

// SourceSkip are the source schemas schema sync never reads.
func SourceSkip(cfg *config.Config) []string { return []string{Schema, cfg.CaptureSchema()} }

// targetSel reads every table on a target except pgferry's own.
var targetSel = schema.Selection{Skip: []string{Schema}}

// Desired reads the source catalog of the replicated tables, in one
// repeatable-read snapshot, and maps it for this target (apply_schema).
// A name clash under apply_schema is schema.ErrClash.
func (s *Syncer) Desired(ctx context.Context) (*schema.Catalog, error) {
	var c *schema.Catalog
	err := pgx.BeginTxFunc(ctx, s.src, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var err error
		c, err = schema.Read(ctx, tx, s.sel)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	rules.ShapeCatalog(s.rules, c)
	m := &schema.Mapper{ApplySchema: s.applySchema}
	if s.applySchema != "" {
		// Rewritten names must read as the target's own deparse does.
		if err := s.src.QueryRow(ctx, `SELECT quote_ident($1)`, s.applySchema).Scan(&m.QuotedSchema); err != nil {
			return nil, fmt.Errorf("source: %w", err)
		}
	}
	mapped, err := m.Map(c)
	if err != nil {
		return nil, fmt.Errorf("targets.%s.apply_schema: %w", s.target, err)
	}
	return mapped, nil
}

// Plan returns the DDL the target needs and changes nothing (it only
// reads, in a read-only transaction).
func (s *Syncer) Plan(ctx context.Context) (*schema.Plan, error) {
	des, err := s.Desired(ctx)
	if err != nil {
		return nil, err
	}
	var plan *schema.Plan
	err = pgx.BeginTxFunc(ctx, s.dst, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		held, err := pgapply.HeldIndexes(ctx, tx, false)
		if err != nil {
			return err
		}
		cur, err := schema.Read(ctx, tx, targetSel)
		if err != nil {
			return err
		}
		if err := holdForLoad(ctx, tx, s.pipeline, des, cur, held, false); err != nil {
			return err
		}
		reg, err := loadRegistry(ctx, tx, s.pipeline)
		if err != nil {
			return err
		}
		plan = schema.Diff(des, cur, reg)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("targets.%s: %w", s.target, err)
	}
	return plan, nil
}

// maxRounds bounds the transactions of one sync: one for the steps that
// must commit first, one for the rest (a third only if another process
// changed the target in between).
const maxRounds = 3

// Sync brings the target's schema up to the source's and returns the plan
// it ran (empty when the target already matched). The plan runs in one
// target transaction, except new enum labels: they commit in a transaction
// of their own first when later steps use them (see SyncTx). Idempotent: a
// second Sync right after finds nothing to do.
func (s *Syncer) Sync(ctx context.Context) (*schema.Plan, error) {
	des, err := s.Desired(ctx)
	if err != nil {
		return nil, err
	}
	var ran []schema.Step
	for round := 1; ; round++ {
		var plan *schema.Plan
		var more bool
		err = pgx.BeginFunc(ctx, s.dst, func(tx pgx.Tx) error {
			plan, more, err = s.SyncTx(ctx, tx, des)
			return err
		})
		if err != nil {
			return nil, err
		}
		ran = append(ran, plan.Steps...)
		if !more {
			plan.Steps = ran
			return plan, nil
		}
		if round == maxRounds {
			return nil, fmt.Errorf("targets.%s: schema sync still had steps to commit first after %d transactions", s.target, round)
		}
	}
}

// SyncTx is Sync inside the caller's target transaction, against an
// already read desired catalog. It leaves the transaction's search_path
// empty.
//
// When the plan holds steps that later steps can only use once they are
// committed (schema.Step.CommitFirst: new enum labels) and other steps,
// SyncTx runs only the former, returns them as the plan and more = true:
// the caller commits and calls SyncTx again, in a new transaction, for
// the rest (the diff is stateless, so the second call plans only what is
// still missing). Otherwise it runs the whole plan and more is false.
func (s *Syncer) SyncTx(ctx context.Context, tx pgx.Tx, des *schema.Catalog) (plan *schema.Plan, more bool, err error) {
	plan, reg, err := s.planTx(ctx, tx, des)
	if err != nil {
		return nil, false, err
	}
	if first, rest := plan.Split(); len(first) > 0 && len(rest) > 0 {
		// New labels only: nothing is registered for them, and the
		// registry is saved with the rest.
		if err := s.run(ctx, tx, plan, first); err != nil {
			return nil, false, err
		}
		s.log.Info("schema sync committed new enum labels ahead of the DDL that uses them", "target", s.target, "statements", len(first))
		return &schema.Plan{Steps: first, Registry: reg}, true, nil
	}
	if plan.Empty() && sameRegistry(reg, plan.Registry) {
		s.deferred.outcome(false)
		return plan, false, nil
	}
	if _, err := tx.Exec(ctx, sqlfiles.SchemaRegistry(Schema)); err != nil {
		return nil, false, fmt.Errorf("targets.%s: install schema registry: %w", s.target, err)
	}
	if err := s.run(ctx, tx, plan, plan.Steps); err != nil {
		return nil, false, err
	}
	s.deferred.outcome(len(plan.Deferred) > 0)
	if err := saveRegistry(ctx, tx, s.pipeline, plan.Registry); err != nil {
		return nil, false, fmt.Errorf("targets.%s: %w", s.target, err)
	}
	for _, w := range plan.Warnings {
		s.log.Warn("schema sync: left alone", "target", s.target, "what", w)
	}
	if !plan.Empty() {
		s.log.Info("schema sync applied DDL", "target", s.target, "statements", len(plan.Steps))
	}
	return plan, false, nil
}

// planTx takes the target's schema sync lock in tx, reads the target and
// its registry, and diffs des against them.
func (s *Syncer) planTx(ctx context.Context, tx pgx.Tx, des *schema.Catalog) (*schema.Plan, *schema.Registry, error) {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(lockKey)); err != nil {
		return nil, nil, fmt.Errorf("targets.%s: schema sync lock: %w", s.target, err)
	}
	// The objects a load holds, read (and locked) before the catalog: a
	// rebuild in flight commits first, and its indexes are then read.
	// Before lock_timeout is set: a big table's rebuild may take longer.
	held, err := pgapply.HeldIndexes(ctx, tx, true)
	if err != nil {
		return nil, nil, fmt.Errorf("targets.%s: indexes held by a load: %w", s.target, err)
	}
	// Function bodies may name tables created later in the plan; literals
	// are rendered for standard strings; DDL waits for locks, but not forever.
	if _, err := tx.Exec(ctx, `SET LOCAL check_function_bodies = off; SET LOCAL standard_conforming_strings = on; SET LOCAL lock_timeout = '60s'`); err != nil {
		return nil, nil, fmt.Errorf("targets.%s: schema sync: %w", s.target, err)
	}
	cur, err := schema.Read(ctx, tx, targetSel)
	if err != nil {
		return nil, nil, fmt.Errorf("targets.%s: %w", s.target, err)
	}
	if err := holdForLoad(ctx, tx, s.pipeline, des, cur, held, true); err != nil {
		return nil, nil, fmt.Errorf("targets.%s: %w", s.target, err)
	}
	reg, err := loadRegistry(ctx, tx, s.pipeline)
	if err != nil {
		return nil, nil, fmt.Errorf("targets.%s: %w", s.target, err)
	}
	return schema.Diff(des, cur, reg), reg, nil
}

// run executes steps (some or all of plan's) in tx; a failed optional
// step becomes a warning of plan. A Tightening step the target's rows
// violate is rolled back to its savepoint, logged at WARN (every time: it
// is planned again by every sync until it succeeds) and moved from
// plan.Steps to plan.Deferred, so that plan.Steps is what ran.
func (s *Syncer) run(ctx context.Context, tx pgx.Tx, plan *schema.Plan, steps []schema.Step) error {
	var deferred []int
	// changed: a statement of this transaction changed the catalog since
	// the last savepoint (see optional).
	changed := false
	for i, st := range steps {
		switch {
		case st.Optional:
			err := optional(ctx, tx, st.SQL, changed)
			changed = err == nil
			if err != nil {
				plan.Warnings = append(plan.Warnings, fmt.Sprintf("skipped %q: %v", st.SQL, err))
				s.log.Warn("schema sync: optional step failed; skipped", "target", s.target, "sql", st.SQL, "err", err)
			}
			continue
		case st.Move != nil:
			n, err := moveRows(ctx, tx, st.Move)
			if err != nil {
				return fmt.Errorf("targets.%s: schema sync step %d of %d (moving the rows of %s that belong in the new partition %s): %w",
					s.target, i+1, len(steps), st.Move.From, st.Move.To, err)
			}
			if n > 0 {
				s.log.Info("schema sync moved rows out of the default partition into a new partition", "target", s.target,
					"default", st.Move.From.String(), "partition", st.Move.To.String(), "rows", n)
			}
			changed = true
			continue
		case st.Tightening:
			err := optional(ctx, tx, st.SQL, changed)
			changed = err == nil
			var pgErr *pgconn.PgError
			if err != nil && errors.As(err, &pgErr) && schema.Deferrable(pgErr.Code) {
				deferred = append(deferred, i)
				plan.Deferred = append(plan.Deferred, st)
				s.log.Warn("schema sync: deferred a constraint the target's rows violate (rows of a backfill may not have arrived yet); every later sync retries it",
					"target", s.target, "sql", st.SQL, "err", err)
				continue
			}
			if err != nil {
				return fmt.Errorf("targets.%s: schema sync step %d of %d (%s): %w", s.target, i+1, len(steps), st.SQL, explainDenied(ctx, s.dst, plan, err))
			}
			continue
		case st.RowsWarning != "":
			var rows bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+st.Table.Ident()+`)`).Scan(&rows); err != nil {
				return fmt.Errorf("targets.%s: schema sync: does %s hold rows: %w", s.target, st.Table, err)
			}
			if rows {
				s.log.Warn("schema sync: "+st.RowsWarning, "target", s.target, "table", st.Table.String())
			}
		}
		if _, err := tx.Exec(ctx, st.SQL); err != nil {
			return fmt.Errorf("targets.%s: schema sync step %d of %d (%s): %w", s.target, i+1, len(steps), st.SQL, explainDenied(ctx, s.dst, plan, err))
		}
		changed = true
	}
	if len(deferred) > 0 && len(steps) == len(plan.Steps) {
		ran := make([]schema.Step, 0, len(steps)-len(deferred))
		for i, st := range plan.Steps {
			if !slices.Contains(deferred, i) {
				ran = append(ran, st)
			}
		}
		plan.Steps = ran
	}
	return nil
}

// moveRows runs m: the rows of the detached default partition m.From
// that satisfy the partition constraint of the new partition m.To are
// deleted there and inserted through m.Parent, in one statement. Stored
// generated columns are left out (they are computed again), identity
// values are kept. It returns how many rows moved.
func moveRows(ctx context.Context, tx pgx.Tx, m *schema.RowMove) (int64, error) {
	var cond *string
	if err := tx.QueryRow(ctx, `SELECT pg_get_partition_constraintdef(to_regclass($1))`, m.To.Ident()).Scan(&cond); err != nil {
		return 0, fmt.Errorf("partition constraint of %s: %w", m.To, err)
	}
	if cond == nil {
		return 0, fmt.Errorf("%s has no partition constraint", m.To)
	}
	rows, err := tx.Query(ctx, `SELECT attname FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0
		AND NOT attisdropped AND attgenerated = '' ORDER BY attnum`, m.Parent.Ident())
	if err != nil {
		return 0, fmt.Errorf("columns of %s: %w", m.Parent, err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, fmt.Errorf("columns of %s: %w", m.Parent, err)
	}
	cols := make([]string, len(names))
	for i, n := range names {
		cols[i] = pgx.Identifier{n}.Sanitize()
	}
	list := strings.Join(cols, ", ")
	// The condition is the server's deparse of the new partition's bounds
	// over the parent's column names, which a partition shares.
	tag, err := tx.Exec(ctx, `WITH moved AS (DELETE FROM `+m.From.Ident()+` WHERE `+*cond+` RETURNING `+list+`)
		INSERT INTO `+m.Parent.Ident()+` (`+list+`) OVERRIDING SYSTEM VALUE SELECT `+list+` FROM moved`)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

// optional runs sql under a savepoint, so that its failure (an extension
// the target does not offer) leaves the transaction usable.
//
// flush first makes the transaction's pending catalog invalidations local:
// PostgreSQL (seen on 15) refuses to start a subtransaction that
// invalidates a cache while an earlier statement's invalidations are
// unprocessed ("cannot start a subtransaction when there are unprocessed
// inval messages", XX000), which ALTER DOMAIN … DROP CONSTRAINT leaves
// behind. Any later catalog change processes them; a temporary table made
// and dropped is one that touches nothing of the target's.
func optional(ctx context.Context, tx pgx.Tx, sql string, flush bool) error {
	if flush {
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE pgferry_inval_flush () ON COMMIT DROP; DROP TABLE pg_temp.pgferry_inval_flush`); err != nil {
			return fmt.Errorf("before a savepoint: %w", err)
		}
	}
	sp, err := tx.Begin(ctx)
	if err != nil {
		return err
	}
	if _, err := sp.Exec(ctx, sql); err != nil {
		_ = sp.Rollback(ctx)
		return err
	}
	return sp.Commit(ctx)
}

func sameRegistry(a, b *schema.Registry) bool { return a.Equal(b) }
