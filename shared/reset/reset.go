// Package reset removes every trace of a pipeline so that it can start
// again from nothing (functions/local --reset).
package reset

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/verify"
)

// Target is a target as a reset sees it; each target kind supplies one
// (PostgreSQL: pgapply.Applier).
type Target interface {
	// ResetPipeline removes the pipeline's watermarks and load state from
	// the target, leaving replicated rows alone. Idempotent.
	ResetPipeline(ctx context.Context) error
}

// Pipeline is what a reset removes things from.
type Pipeline struct {
	Config *config.Config
	Source *pgxpool.Pool
	// DropSlot drops the replication slot and publication, whichever
	// capture mode ran before: a slot left behind would keep WAL on the
	// source for ever.
	DropSlot func(context.Context) error
	// PurgeQueues empties the FIFO queue and its dead-letter queue.
	PurgeQueues func(context.Context) error
	// State is the checkpoint and lease.
	State interface{ Delete(context.Context) error }
	// Loads is the initial-load plans and chunk records.
	Loads interface {
		Delete(ctx context.Context, pipeline, target string, t batch.Table) error
	}
	// Targets by name.
	Targets map[string]Target
}

// Run removes the capture schema on the source (with its triggers and
// events), the replication slot and publication, queued and dead-lettered
// batches, the checkpoint and lease, the initial-load records, and the
// pipeline's watermarks and load state on every target. Replicated data
// on the targets is left alone. It is destructive by design and
// idempotent.
func Run(ctx context.Context, p Pipeline, log *slog.Logger) error {
	cfg := p.Config
	if _, err := p.Source.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{cfg.CaptureSchema()}.Sanitize()+" CASCADE"); err != nil {
		return fmt.Errorf("reset: drop capture schema %s: %w", cfg.CaptureSchema(), err)
	}
	if err := p.DropSlot(ctx); err != nil {
		return fmt.Errorf("reset: %w", err)
	}
	if err := p.PurgeQueues(ctx); err != nil {
		return fmt.Errorf("reset: purge queues: %w", err)
	}
	if err := p.State.Delete(ctx); err != nil {
		return fmt.Errorf("reset: %w", err)
	}
	for _, name := range cfg.TargetNames() {
		if err := p.Targets[name].ResetPipeline(ctx); err != nil {
			return fmt.Errorf("reset: targets.%s: %w", name, err)
		}
	}
	tables, err := verify.Tables(ctx, p.Source, cfg)
	if err != nil {
		return err
	}
	for _, target := range cfg.TargetNames() {
		for _, t := range tables {
			if err := p.Loads.Delete(ctx, cfg.Name, target, t); err != nil {
				return fmt.Errorf("reset: %w", err)
			}
		}
	}
	log.Info("pipeline reset: capture objects, queued batches, checkpoint, load records and watermarks removed")
	return nil
}
