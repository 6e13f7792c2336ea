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
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/apply/pgapply"
	"github.com/pgferry/pgferry/shared/config"
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
	sel         schema.Selection
	log         *slog.Logger
}

// New returns a syncer for cfg's target named target.
func New(src, dst *pgxpool.Pool, cfg *config.Config, target string, log *slog.Logger) *Syncer {
	return &Syncer{
		src: src, dst: dst, pipeline: cfg.Name, target: target,
		applySchema: cfg.Targets[target].ApplySchema,
		sel: schema.Selection{
			Table:  func(root schema.QName) bool { return cfg.Replicated(root.Schema, root.Name) },
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
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(lockKey)); err != nil {
		return nil, false, fmt.Errorf("targets.%s: schema sync lock: %w", s.target, err)
	}
	// The objects a load holds, read (and locked) before the catalog: a
	// rebuild in flight commits first, and its indexes are then read.
	// Before lock_timeout is set: a big table's rebuild may take longer.
	held, err := pgapply.HeldIndexes(ctx, tx, true)
	if err != nil {
		return nil, false, fmt.Errorf("targets.%s: indexes held by a load: %w", s.target, err)
	}
	// Function bodies may name tables created later in the plan; literals
	// are rendered for standard strings; DDL waits for locks, but not forever.
	if _, err := tx.Exec(ctx, `SET LOCAL check_function_bodies = off; SET LOCAL standard_conforming_strings = on; SET LOCAL lock_timeout = '60s'`); err != nil {
		return nil, false, fmt.Errorf("targets.%s: schema sync: %w", s.target, err)
	}
	cur, err := schema.Read(ctx, tx, targetSel)
	if err != nil {
		return nil, false, fmt.Errorf("targets.%s: %w", s.target, err)
	}
	if err := holdForLoad(ctx, tx, s.pipeline, des, cur, held, true); err != nil {
		return nil, false, fmt.Errorf("targets.%s: %w", s.target, err)
	}
	reg, err := loadRegistry(ctx, tx, s.pipeline)
	if err != nil {
		return nil, false, fmt.Errorf("targets.%s: %w", s.target, err)
	}
	plan = schema.Diff(des, cur, reg)
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
		return plan, false, nil
	}
	if _, err := tx.Exec(ctx, sqlfiles.SchemaRegistry(Schema)); err != nil {
		return nil, false, fmt.Errorf("targets.%s: install schema registry: %w", s.target, err)
	}
	if err := s.run(ctx, tx, plan, plan.Steps); err != nil {
		return nil, false, err
	}
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

// run executes steps (some or all of plan's) in tx; a failed optional
// step becomes a warning of plan.
func (s *Syncer) run(ctx context.Context, tx pgx.Tx, plan *schema.Plan, steps []schema.Step) error {
	for i, st := range steps {
		if st.Optional {
			if err := optional(ctx, tx, st.SQL); err != nil {
				plan.Warnings = append(plan.Warnings, fmt.Sprintf("skipped %q: %v", st.SQL, err))
				s.log.Warn("schema sync: optional step failed; skipped", "target", s.target, "sql", st.SQL, "err", err)
			}
			continue
		}
		if _, err := tx.Exec(ctx, st.SQL); err != nil {
			return fmt.Errorf("targets.%s: schema sync step %d of %d (%s): %w", s.target, i+1, len(steps), st.SQL, explainDenied(ctx, s.dst, plan, err))
		}
	}
	return nil
}

// optional runs sql under a savepoint, so that its failure (an extension
// the target does not offer) leaves the transaction usable.
func optional(ctx context.Context, tx pgx.Tx, sql string) error {
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
