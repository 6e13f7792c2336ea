// Package pgapply applies batches to a PostgreSQL target: one transaction
// per batch, text COPY into typed staging tables, set-based merge, and the
// batch watermark written in the same transaction.
package pgapply

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/apply"
	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/fault"
	sqlfiles "github.com/pgferry/pgferry/sql"
)

// Schema holds pgferry's own objects on a target (config.TargetSchema).
const Schema = config.TargetSchema

// Applier applies batches of one pipeline to one target database.
type Applier struct {
	pool     *pgxpool.Pool
	pipeline string
	log      *slog.Logger
	// replicaRole: the session may set session_replication_role = replica,
	// which turns off foreign-key triggers and user triggers, as logical
	// replication's own apply worker does. Without it, deletes run before
	// upserts in an order that satisfies most foreign keys.
	replicaRole bool

	// managed, when set, names the columns of a target table that schema
	// sync manages (see SetManagedColumns).
	managed ManagedColumns

	mu       sync.Mutex
	tables   map[batch.Table]*tableInfo
	settings string // applySettings, made once

	// Batches sent as one pipeline, and those it applied (for tests).
	pipeSent, pipelined atomic.Int64
}

// ManagedColumns returns the names of the columns of target table t that
// schema sync manages, i.e. that stand for source columns, read in tx.
// Columns a user added on the target alone are not among them.
type ManagedColumns func(ctx context.Context, tx pgx.Tx, t batch.Table) (map[string]bool, error)

// SetManagedColumns makes upserts write the managed columns a batch
// lacks, on insert, with the value the source gave rows that existed
// when it added the column (see tableInfo.fill). Without it (no schema
// sync) the target fills a new row's missing columns from their defaults.
// The answer is cached with the table's catalog data until Forget; call it
// before the first Apply.
func (a *Applier) SetManagedColumns(f ManagedColumns) {
	a.mu.Lock()
	a.managed = f
	clear(a.tables)
	a.mu.Unlock()
}

var _ apply.Applier = (*Applier)(nil)

// New installs the watermark table (idempotent) and probes what the
// target allows.
func New(ctx context.Context, pool *pgxpool.Pool, pipeline string, log *slog.Logger) (*Applier, error) {
	if _, err := pool.Exec(ctx, sqlfiles.Watermark(Schema)); err != nil {
		return nil, fmt.Errorf("pgapply: install watermark table: %w", explainDenied(ctx, pool, err))
	}
	if _, err := pool.Exec(ctx, sqlfiles.Load(Schema)); err != nil {
		return nil, fmt.Errorf("pgapply: install load tables: %w", explainDenied(ctx, pool, err))
	}
	a := &Applier{pool: pool, pipeline: pipeline, log: log, tables: map[batch.Table]*tableInfo{}}
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "SET LOCAL session_replication_role = replica")
		return err
	})
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		a.replicaRole = true
	case errors.As(err, &pgErr) && pgErr.Code == "42501":
		log.Warn("target refuses session_replication_role; foreign keys stay enforced during apply")
	default:
		return nil, fmt.Errorf("pgapply: probe target: %w", err)
	}
	a.settings = applySettings(a.replicaRole)
	return a, nil
}

// Watermark returns the applied position of a message group (zero if none).
func (a *Applier) Watermark(ctx context.Context, group string) (batch.Position, error) {
	var p batch.Position
	err := a.pool.QueryRow(ctx, fmt.Sprintf("SELECT tick, tx FROM %s.watermarks WHERE pipeline = $1 AND msg_group = $2",
		pgx.Identifier{Schema}.Sanitize()), a.pipeline, group).Scan(&p.Tick, &p.Tx)
	if errors.Is(err, pgx.ErrNoRows) {
		return p, nil
	}
	if err != nil {
		return p, fmt.Errorf("pgapply: read watermark: %w", err)
	}
	return p, nil
}

// Apply applies b atomically together with its watermark. It is
// idempotent: a batch ending at or below the watermark changes nothing. A
// batch starting after the watermark returns apply.ErrGap and changes
// nothing. On error the transaction is rolled back.
func (a *Applier) Apply(ctx context.Context, b *batch.Batch) (apply.Result, error) {
	if res, ok := a.applyPipelined(ctx, b); ok {
		return res, nil
	}
	return a.apply(ctx, b, func(_ context.Context, each func([]batch.Epoch) error) error { return each(b.Epochs) })
}

var _ apply.PartsApplier = (*Applier)(nil)

// ApplyParts applies a spilled batch as Apply applies a batch, in one
// transaction, writing each part before the next is read: memory holds
// one part, whatever the batch's size. A part that cannot be read rolls
// the whole batch back.
func (a *Applier) ApplyParts(ctx context.Context, b *batch.Batch, parts apply.Parts) (apply.Result, error) {
	return a.apply(ctx, b, func(ctx context.Context, each func([]batch.Epoch) error) error {
		return parts(ctx, func(eps []batch.Epoch) error {
			if err := each(eps); err != nil {
				return err
			}
			fault.Point(fault.ApplyPart)
			return nil
		})
	})
}

func (a *Applier) apply(ctx context.Context, b *batch.Batch, parts apply.Parts) (apply.Result, error) {
	res, err := a.applyOnce(ctx, b, parts, false)
	// A value the target rejects (SQLSTATE class 22) fails the batch
	// either way, but an unnested array names no column: the batch is
	// tried once more through staging tables, whose COPY error names the
	// column and row, so the parked batch says what to fix.
	if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && strings.HasPrefix(pe.Code, "22") {
		res, err = a.applyOnce(ctx, b, parts, true)
	}
	return res, err
}

func (a *Applier) applyOnce(ctx context.Context, b *batch.Batch, parts apply.Parts, staged bool) (apply.Result, error) {
	var res apply.Result
	group := batch.Group(b.Pipeline, b.Target)
	err := pgx.BeginFunc(ctx, a.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, a.settings); err != nil {
			return err
		}
		wm, lineage, err := lockWatermark(ctx, tx, b.Pipeline, group)
		if err != nil {
			return err
		}
		if lineage != "" && lineage != b.Lineage {
			return fmt.Errorf("%w: batch %d has lineage %q, the target follows %q; "+
				"if the checkpoint store was lost, reset the pipeline (--reset) and load again", apply.ErrLineage, b.Seq, b.Lineage, lineage)
		}
		if b.To.Compare(wm) <= 0 {
			return nil
		}
		// Strict even for a fresh target: if the group's first batch was
		// dead-lettered, its successor must wait for it, not overtake it.
		if wm.Less(b.From) {
			return fmt.Errorf("%w: batch %d covers %s..%s but the target is at %s", apply.ErrGap, b.Seq, b.From, b.To, wm)
		}
		w := &writer{a: a, tx: tx, staged: staged}
		if err := w.beginLoads(ctx, b); err != nil {
			return err
		}
		if err := parts(ctx, func(eps []batch.Epoch) error {
			for _, ep := range eps {
				if err := w.epoch(ctx, ep); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
		if err := w.finishLoads(ctx); err != nil {
			return err
		}
		fault.Point(fault.ApplyStaged)
		_, err = tx.Exec(ctx, fmt.Sprintf(`UPDATE %s.watermarks SET tick = $3, tx = $4, seq = $5, lineage = $6, applied_at = now()
			WHERE pipeline = $1 AND msg_group = $2`, pgx.Identifier{Schema}.Sanitize()),
			b.Pipeline, group, b.To.Tick, b.To.Tx, b.Seq, b.Lineage)
		res = apply.Result{Applied: true, Rows: w.rows}
		return err
	})
	if err != nil {
		a.forget()
		return apply.Result{}, explain(b, err)
	}
	return res, nil
}

func lockWatermark(ctx context.Context, tx pgx.Tx, pipeline, group string) (batch.Position, string, error) {
	sch := pgx.Identifier{Schema}.Sanitize()
	if _, err := tx.Exec(ctx, fmt.Sprintf(`INSERT INTO %s.watermarks (pipeline, msg_group, tick, tx, seq)
		VALUES ($1, $2, 0, 0, 0) ON CONFLICT DO NOTHING`, sch), pipeline, group); err != nil {
		return batch.Position{}, "", err
	}
	var p batch.Position
	var lineage string
	err := tx.QueryRow(ctx, fmt.Sprintf(`SELECT tick, tx, lineage FROM %s.watermarks WHERE pipeline = $1 AND msg_group = $2 FOR UPDATE`, sch),
		pipeline, group).Scan(&p.Tick, &p.Tx, &lineage)
	return p, lineage, err
}

// explain maps "the target lacks it" SQLSTATEs to apply.ErrSchemaBehind.
func explain(b *batch.Batch, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "42P01", "42703", "42704", "42804":
			// undefined table, column or object; datatype mismatch
			return fmt.Errorf("pgapply: batch %d: %w: %w", b.Seq, apply.ErrSchemaBehind, err)
		}
	}
	return fmt.Errorf("pgapply: batch %d (%s..%s): %w%s", b.Seq, b.From, b.To, err, serverContext(err))
}

// serverContext returns the server's detail and location of a failure (for a
// COPY into staging that names the column and the value), which the
// error's own text leaves out.
func serverContext(err error) string {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return ""
	}
	var parts []string
	if pgErr.Detail != "" {
		parts = append(parts, "detail: "+pgErr.Detail)
	}
	if pgErr.Where != "" {
		parts = append(parts, "where: "+pgErr.Where)
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, "; ") + ")"
}

func (a *Applier) info(ctx context.Context, tx pgx.Tx, t batch.Table) (*tableInfo, error) {
	a.mu.Lock()
	ti, ok := a.tables[t]
	a.mu.Unlock()
	if ok {
		return ti, nil
	}
	if tx == nil { // the pipelined attempt (see writer.info): give way
		return nil, errFullPath
	}
	ti, err := lookup(ctx, tx, t)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	managed := a.managed
	a.mu.Unlock()
	if managed != nil {
		m, err := managed(ctx, tx, t)
		if err != nil {
			return nil, fmt.Errorf("pgapply: read the columns schema sync manages in %s: %w", t, err)
		}
		for n, c := range ti.cols {
			c.managed = m[n]
			ti.cols[n] = c
		}
	}
	a.mu.Lock()
	a.tables[t] = ti
	a.mu.Unlock()
	return ti, nil
}

// forget drops cached catalog data after any failure: the target's
// schema may be what changed.
func (a *Applier) forget() {
	a.mu.Lock()
	clear(a.tables)
	a.mu.Unlock()
}

// Forget drops cached catalog data; schema sync calls it after DDL.
func (a *Applier) Forget() { a.forget() }
