package pgsync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/apply"
	"github.com/pgferry/pgferry/shared/apply/pgapply"
	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/config"
)

// Applier decorates a target's applier with schema sync:
//   - a schema job (batch.Batch.Schema) runs the diff and its DDL in one
//     transaction with the job's watermark, so it takes effect exactly
//     between the batches it was queued between, and a replay is a no-op
//     (new enum labels that later DDL uses commit just before, see job);
//   - with apply_schema, batches are written into that schema;
//   - a batch that fails because the target is behind (ErrSchemaBehind,
//     an unknown enum label, a type mismatch, a value the old type
//     cannot hold, a constraint the source dropped or relaxed, a key the
//     target has no unique index for yet) triggers a sync and is retried
//     once, in a new transaction, after its columns are adapted (see
//     adapt). Only if the sync changed nothing (a deferred constraint
//     that is still violated does not count), or the retry fails too,
//     does the error go on to the normal retry and dead-letter path;
//   - after a batch commits, constraints a sync deferred because the
//     target's rows violated them are tried again when due (see
//     Syncer.RetryDeferred).
type Applier struct {
	next     apply.Applier
	sync     *Syncer
	dst      *pgxpool.Pool
	pipeline string
	capture  string
	log      *slog.Logger
}

var _ apply.Applier = (*Applier)(nil)

// NewApplier wraps next, the applier of cfg's target named target.
//
// If next accepts it (pgapply.Applier does), it learns from the registry
// which target columns sync manages, so that a batch captured before the
// source added a column inserts new rows with the value the source's old
// rows read, not the target column's current default.
func NewApplier(next apply.Applier, s *Syncer, dst *pgxpool.Pool, cfg *config.Config, log *slog.Logger) *Applier {
	if m, ok := next.(interface {
		SetManagedColumns(pgapply.ManagedColumns)
	}); ok {
		m.SetManagedColumns(managedColumns(cfg.Name))
	}
	return &Applier{next: next, sync: s, dst: dst, pipeline: cfg.Name, capture: cfg.CaptureSchema(), log: log}
}

// Syncer returns the syncer the applier uses.
func (a *Applier) Syncer() *Syncer { return a.sync }

// Watermark is the wrapped applier's.
func (a *Applier) Watermark(ctx context.Context, group string) (batch.Position, error) {
	return a.next.Watermark(ctx, group)
}

// Apply applies a batch or runs a schema job; see Applier.
func (a *Applier) Apply(ctx context.Context, b *batch.Batch) (apply.Result, error) {
	if b.Schema != nil {
		return a.job(ctx, b)
	}
	mb := a.mapBatch(b)
	res, err := a.next.Apply(ctx, mb)
	if err == nil {
		a.retryDeferred(ctx)
		return res, nil
	}
	if !behind(err) {
		return res, err
	}
	plan, serr := a.sync.Sync(ctx)
	if serr != nil {
		return res, fmt.Errorf("%w (schema sync before a retry failed: %w)", err, serr)
	}
	adapted, changes, aerr := a.adapt(ctx, mb)
	if aerr != nil {
		return res, fmt.Errorf("%w (adapting the batch to the target failed: %w)", err, aerr)
	}
	// An ErrSchemaBehind the applier found in its catalog cache is worth
	// one retry even when the sync had nothing to do: the failure cleared
	// that cache, and DDL run by another process may be what it missed.
	if plan.Empty() && len(changes) == 0 && !errors.Is(err, apply.ErrSchemaBehind) {
		return res, err
	}
	a.forget()
	a.log.Info("target schema was behind the batch; synced, retrying", "seq", b.Seq, "statements", len(plan.Steps),
		"adapted", changes, "err", err)
	res, rerr := a.next.Apply(ctx, adapted)
	if rerr != nil {
		return res, fmt.Errorf("%w (after schema sync: %d statements, batch adapted: %v)", rerr, len(plan.Steps), changes)
	}
	a.retryDeferred(ctx)
	return res, nil
}

// retryDeferred runs, after a batch committed, the constraints a sync
// deferred because the target's rows violated them, if a retry is due:
// the batch may have brought the backfill they waited for. Its failure
// does not fail the batch (which is committed); it is logged, and the
// next sync plans the steps again.
func (a *Applier) retryDeferred(ctx context.Context) {
	n, err := a.sync.RetryDeferred(ctx)
	if err != nil {
		a.log.Warn("schema sync: retrying deferred steps failed; the next sync plans them again", "err", err)
	}
	if n > 0 {
		a.forget()
	}
}

// behind reports failures that a schema sync may cure.
func behind(err error) bool {
	if errors.Is(err, apply.ErrSchemaBehind) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "22P02", // invalid text representation: an enum label the target lacks, a value of a changed type
			"42804",                   // datatype mismatch
			"22001",                   // string too long for a column the source widened
			"22003",                   // numeric out of range for a column the source widened
			"23502",                   // not-null violation on a column (or domain) the source made nullable
			"23514",                   // check violation: a check (or domain check) the source dropped or relaxed
			"23505",                   // unique violation: a unique constraint or index the source dropped
			"23503",                   // foreign key violation: a foreign key the source dropped
			"23P01",                   // exclusion violation: an exclusion constraint the source dropped
			"42P10",                   // no unique index for ON CONFLICT: a key constraint not created yet (or deferred)
			"42P01", "42703", "42704": // undefined table, column, object
			return true
		}
	}
	return false
}

// mapBatch moves a batch's tables into apply_schema (the pipeline's own
// load marks stay where they are).
func (a *Applier) mapBatch(b *batch.Batch) *batch.Batch {
	to := a.sync.applySchema
	if to == "" {
		return b
	}
	mv := func(t batch.Table) batch.Table {
		if t.Schema != a.capture {
			t.Schema = to
		}
		return t
	}
	out := *b
	out.Epochs = make([]batch.Epoch, len(b.Epochs))
	for i, ep := range b.Epochs {
		ne := batch.Epoch{Segments: make([]batch.Segment, len(ep.Segments))}
		for _, t := range ep.Truncate {
			ne.Truncate = append(ne.Truncate, mv(t))
		}
		for j, s := range ep.Segments {
			s.Table = mv(s.Table)
			ne.Segments[j] = s
		}
		out.Epochs[i] = ne
	}
	return &out
}

// job runs a schema job: under the group's watermark lock, the same
// replay and gap rules as a batch, then the sync, then the watermark, in
// one transaction. New enum labels that later DDL of the plan uses are
// the exception: they commit first, in a transaction of their own under
// the same lock and rules (see Syncer.SyncTx), and the rest follows in
// the next one.
func (a *Applier) job(ctx context.Context, b *batch.Batch) (apply.Result, error) {
	des, err := a.sync.Desired(ctx)
	if err != nil {
		return apply.Result{}, fmt.Errorf("schema job %d: %w", b.Seq, err)
	}
	group := batch.Group(b.Pipeline, b.Target)
	var res apply.Result
	var ran int
	for round := 1; ; round++ {
		more := false
		err = pgx.BeginFunc(ctx, a.dst, func(tx pgx.Tx) error {
			wm, lineage, err := lockWatermark(ctx, tx, b.Pipeline, group)
			if err != nil {
				return err
			}
			if lineage != "" && lineage != b.Lineage {
				return fmt.Errorf("%w: schema job %d has lineage %q, the target follows %q", apply.ErrLineage, b.Seq, b.Lineage, lineage)
			}
			if b.To.Compare(wm) <= 0 {
				return nil
			}
			if wm.Less(b.From) {
				return fmt.Errorf("%w: schema job %d covers %s..%s but the target is at %s", apply.ErrGap, b.Seq, b.From, b.To, wm)
			}
			plan, m, err := a.sync.SyncTx(ctx, tx, des)
			if err != nil {
				return err
			}
			ran += len(plan.Steps)
			if more = m; more {
				return nil // commit what must commit first; the rest comes next round
			}
			if _, err := tx.Exec(ctx, `UPDATE `+pgx.Identifier{Schema, "watermarks"}.Sanitize()+`
			SET tick = $3, tx = $4, seq = $5, lineage = $6, applied_at = now() WHERE pipeline = $1 AND msg_group = $2`,
				b.Pipeline, group, b.To.Tick, b.To.Tx, b.Seq, b.Lineage); err != nil {
				return fmt.Errorf("write watermark: %w", err)
			}
			res = apply.Result{Applied: true, Rows: 0}
			return nil
		})
		if ran > 0 {
			a.forget()
		}
		if err != nil {
			return apply.Result{}, fmt.Errorf("pgsync: schema job %d (%s..%s): %w", b.Seq, b.From, b.To, err)
		}
		if !more {
			break
		}
		if round == maxRounds {
			return apply.Result{}, fmt.Errorf("pgsync: schema job %d (%s..%s): still had steps to commit first after %d transactions", b.Seq, b.From, b.To, round)
		}
	}
	if ran > 0 {
		a.log.Info("schema job applied", "seq", b.Seq, "statements", ran, "reason", b.Schema.Reason)
	}
	return res, nil
}

// forget tells the wrapped applier that the target's catalog changed.
func (a *Applier) forget() {
	if f, ok := a.next.(interface{ Forget() }); ok {
		f.Forget()
	}
}

// lockWatermark takes the group's watermark row lock, the one batches
// take, and returns the applied position and lineage.
func lockWatermark(ctx context.Context, tx pgx.Tx, pipeline, group string) (batch.Position, string, error) {
	wm := pgx.Identifier{Schema, "watermarks"}.Sanitize()
	if _, err := tx.Exec(ctx, `INSERT INTO `+wm+` (pipeline, msg_group, tick, tx, seq) VALUES ($1, $2, 0, 0, 0) ON CONFLICT DO NOTHING`,
		pipeline, group); err != nil {
		return batch.Position{}, "", fmt.Errorf("lock watermark: %w", err)
	}
	var p batch.Position
	var lineage string
	err := tx.QueryRow(ctx, `SELECT tick, tx, lineage FROM `+wm+` WHERE pipeline = $1 AND msg_group = $2 FOR UPDATE`,
		pipeline, group).Scan(&p.Tick, &p.Tx, &lineage)
	if err != nil {
		return p, "", fmt.Errorf("lock watermark: %w", err)
	}
	return p, lineage, nil
}

var _ apply.PartsApplier = (*Applier)(nil)

// ApplyParts applies a spilled batch as Apply applies a batch: each part
// is mapped to the apply schema as it streams; when the target's schema
// was behind, it syncs and streams the parts once more, each adapted to
// the target as Apply adapts a batch.
func (a *Applier) ApplyParts(ctx context.Context, b *batch.Batch, parts apply.Parts) (apply.Result, error) {
	next, ok := a.next.(apply.PartsApplier)
	if !ok {
		return apply.Result{}, fmt.Errorf("%w: batch %d for target %q", apply.ErrCannotStream, b.Seq, b.Target)
	}
	mapped := func(ctx context.Context, each func([]batch.Epoch) error) error {
		return parts(ctx, func(eps []batch.Epoch) error { return each(a.mapBatch(&batch.Batch{Epochs: eps}).Epochs) })
	}
	res, err := next.ApplyParts(ctx, b, mapped)
	if err == nil {
		a.retryDeferred(ctx)
		return res, nil
	}
	if !behind(err) {
		return res, err
	}
	plan, serr := a.sync.Sync(ctx)
	if serr != nil {
		return res, fmt.Errorf("%w (schema sync before a retry failed: %w)", err, serr)
	}
	a.forget()
	a.log.Info("target schema was behind the spilled batch; synced, retrying", "seq", b.Seq, "statements", len(plan.Steps), "err", err)
	var changes []string
	adapted := func(ctx context.Context, each func([]batch.Epoch) error) error {
		return mapped(ctx, func(eps []batch.Epoch) error {
			ab, c, err := a.adapt(ctx, &batch.Batch{Epochs: eps})
			if err != nil {
				return fmt.Errorf("adapting a part to the target: %w", err)
			}
			changes = append(changes, c...)
			return each(ab.Epochs)
		})
	}
	res, rerr := next.ApplyParts(ctx, b, adapted)
	if rerr != nil {
		return res, fmt.Errorf("%w (after schema sync: %d statements, batch adapted: %v)", rerr, len(plan.Steps), changes)
	}
	a.retryDeferred(ctx)
	return res, nil
}
