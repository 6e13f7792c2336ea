package runner

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/apply/pgapply"
	"github.com/pgferry/pgferry/shared/capture/slot"
	"github.com/pgferry/pgferry/shared/config"
)

// Reset removes every trace of a pipeline so it can start again from
// nothing: the capture schema on the source (with its triggers and
// events), the replication slot and publication (slot capture), queued and dead-lettered batches, the checkpoint and lease, and
// the pipeline's watermarks on the targets. Replicated data on the targets
// is left alone. It is destructive by design and idempotent.
func Reset(ctx context.Context, cfg *config.Config, a *AWS, src *pgxpool.Pool, targets []*pgxpool.Pool, log *slog.Logger) error {
	if _, err := src.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{cfg.CaptureSchema()}.Sanitize()+" CASCADE"); err != nil {
		return fmt.Errorf("reset: drop capture schema %s: %w", cfg.CaptureSchema(), err)
	}
	// Whichever mode ran before: a slot left behind would keep WAL on the
	// source for ever.
	if err := slot.New(src, cfg, log).Drop(ctx); err != nil {
		return fmt.Errorf("reset: %w", err)
	}
	for _, url := range []string{a.Queue.URL(), a.DLQ.URL()} {
		if url == "" {
			continue
		}
		if _, err := a.SQS.PurgeQueue(ctx, &sqs.PurgeQueueInput{QueueUrl: &url}); err != nil {
			return fmt.Errorf("reset: purge queue: %w", err)
		}
	}
	if err := a.State.Delete(ctx); err != nil {
		return fmt.Errorf("reset: %w", err)
	}
	for i, t := range targets {
		_, err := t.Exec(ctx, "DELETE FROM "+pgx.Identifier{pgapply.Schema, "watermarks"}.Sanitize()+" WHERE pipeline = $1", cfg.Name)
		if err != nil {
			return fmt.Errorf("reset: targets.%s watermarks: %w", cfg.TargetNames()[i], err)
		}
	}
	if err := ResetLoads(ctx, cfg, a.Loads, src, targets); err != nil {
		return err
	}
	log.Info("pipeline reset: capture objects, queued batches, checkpoint and watermarks removed")
	return nil
}
