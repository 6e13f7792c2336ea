package runner

import (
	"context"
	"log/slog"
	"os"

	"github.com/pgferry/pgferry/shared/apply"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/metrics"
	"github.com/pgferry/pgferry/shared/schema/pgsync"
)

// ApplyFn is the apply Lambda's state in a warm container. Target pools
// live across invocations; they are opened by the first invocation that
// can reach every target, not at cold start: a target that is down must
// fail invocations (and be retried), not the container's start.
// Invocations of one container never overlap, so it needs no lock.
type ApplyFn struct {
	Cfg  *config.Config
	DSNs DSNs
	AWS  *AWS
	Log  *slog.Logger

	consumer *apply.Consumer
	syncers  map[string]*pgsync.Syncer
}

// Consumer returns the consume step over the FIFO queue, parking in its
// dead-letter queue and leaving done records to the event source mapping
// (Reported), wired on first use.
func (f *ApplyFn) Consumer(ctx context.Context) (*apply.Consumer, error) {
	if f.consumer != nil {
		return f.consumer, nil
	}
	cfg := f.Cfg
	targets, pools, err := Targets(ctx, cfg, f.DSNs, f.Log)
	if err != nil {
		return nil, err
	}
	if cfg.SyncsSchema() {
		// Schema jobs and retry-after-DDL diff against the source's
		// catalog, so apply reads the source too.
		src, err := Connect(ctx, "source", f.DSNs.Source)
		if err != nil {
			CloseAll(pools)
			return nil, err
		}
		f.syncers = SchemaSyncers(cfg, src, pools, f.Log)
		WithSchemaSync(cfg, targets, f.syncers, pools, f.Log)
	}
	h := &apply.Handler{
		Pipeline: cfg.Name, Targets: targets, Payloads: f.AWS.Payloads,
		MaxAttempts: cfg.Apply.MaxAttempts, Metrics: metrics.New(os.Stdout),
	}
	f.consumer = &apply.Consumer{
		Handler: h, Queue: f.AWS.Queue, Park: f.AWS.DLQ,
		Visibility: cfg.Apply.Visibility.Duration, Log: f.Log, Reported: true,
	}
	return f.consumer, nil
}

// AfterCycle runs after an invocation that applied a batch: target
// sequences catch up with the source's. A failure is logged and emitted
// (SequenceSyncFailures, alarmed) and never fails the invocation: the
// batches are applied.
func (f *ApplyFn) AfterCycle(ctx context.Context) {
	if f.consumer == nil {
		return
	}
	if _, err := SyncSequences(ctx, f.Cfg.Name, f.syncers, f.consumer.Handler.Metrics); err != nil {
		f.Log.Warn("advance target sequences", "err", err)
	}
}
