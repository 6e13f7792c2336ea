package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/apply"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/metrics"
	"github.com/pgferry/pgferry/shared/schema"
	"github.com/pgferry/pgferry/shared/schema/pgsync"
)

// Schema sync wiring. The targets that follow the source's schema
// (targets.<name>.schema_sync, default true) get their applier wrapped
// in a pgsync.Applier, which runs schema jobs and retries a batch after
// DDL when the target is behind; the drain ships schema jobs when any
// target syncs (see NewDrainer).

// SchemaSyncers returns a syncer per target that syncs its schema. pools
// are the target pools in cfg.TargetNames() order (as Targets returns
// them).
func SchemaSyncers(cfg *config.Config, src *pgxpool.Pool, pools []*pgxpool.Pool, log *slog.Logger) map[string]*pgsync.Syncer {
	out := map[string]*pgsync.Syncer{}
	for i, name := range cfg.TargetNames() {
		if cfg.Targets[name].SyncsSchema() {
			out[name] = pgsync.New(src, pools[i], cfg, name, log.With("target", name, "fn", "schema"))
		}
	}
	return out
}

// WithSchemaSync wraps the appliers of the syncing targets in place.
func WithSchemaSync(cfg *config.Config, targets map[string]apply.Applier, syncers map[string]*pgsync.Syncer, pools []*pgxpool.Pool, log *slog.Logger) {
	for i, name := range cfg.TargetNames() {
		if s, ok := syncers[name]; ok {
			targets[name] = pgsync.NewApplier(targets[name], s, pools[i], cfg, log.With("target", name))
		}
	}
}

// SyncSchemas brings every syncing target's schema up to the source's
// now, directly rather than through the queue: the local runner does it
// at start so that an empty target is ready before the first batch and
// before an initial load copies into it. Running it while batches are in
// flight is safe (the applier adapts a batch to a newer schema).
func SyncSchemas(ctx context.Context, cfg *config.Config, syncers map[string]*pgsync.Syncer) error {
	for _, name := range cfg.TargetNames() {
		if s, ok := syncers[name]; ok {
			if _, err := s.Sync(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// SyncSequences advances every syncing target's sequences to the
// source's values and returns how many it moved. For each target it emits
// SequenceSyncFailures: 1 if that target's sync failed, 0 if it succeeded.
// It tries every target and returns their failures joined, each naming
// its target. It logs nothing: the apply path logs the error and goes on
// (a stale sequence must not hold up apply), while --until-idle and
// schema-diff fail with it.
func SyncSequences(ctx context.Context, pipeline string, syncers map[string]*pgsync.Syncer, emf *metrics.EMF) (int, error) {
	moved := 0
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(syncers)) {
		n, err := syncers[name].SyncSequences(ctx)
		moved += n
		failed := 0.0
		if err != nil {
			failed = 1
			errs = append(errs, fmt.Errorf("%w for target %s: %w", ErrSequenceSync, name, err))
		}
		emf.Emit(metrics.Dims{metrics.DimPipeline: pipeline, metrics.DimTarget: name},
			metrics.Metric{Name: metrics.SequenceSyncFailures, Value: failed, Unit: metrics.Count})
	}
	return moved, errors.Join(errs...)
}

// PrintPlans writes, for every target, the DDL schema sync would run on
// it, and changes nothing (functions/local --plan).
func PrintPlans(ctx context.Context, cfg *config.Config, src *pgxpool.Pool, pools []*pgxpool.Pool, w io.Writer, log *slog.Logger) error {
	for i, name := range cfg.TargetNames() {
		s := pgsync.New(src, pools[i], cfg, name, log)
		plan, err := s.Plan(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "-- target %s: %s\n", name, planSummary(cfg.Targets[name], plan))
		fmt.Fprint(w, plan.SQL())
		for _, warn := range plan.Warnings {
			fmt.Fprintf(w, "-- left alone: %s\n", warn)
		}
	}
	return nil
}

func planSummary(t config.Target, p *schema.Plan) string {
	s := fmt.Sprintf("%d statements", len(p.Steps))
	if p.Empty() {
		s = "up to date"
	}
	if !t.SyncsSchema() {
		s += " (schema_sync is false: pgferry will not run them)"
	}
	return s
}
