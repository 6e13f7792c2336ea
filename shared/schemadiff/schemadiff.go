// Package schemadiff is the work around target schemas that is not
// applying a batch: the schema-diff function (plan every syncing target,
// ship a schema job in stream order, advance target sequences), the local
// runner's sync at start, and --plan. How a target kind diffs and runs
// DDL is behind Syncer.
package schemadiff

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"

	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/drain"
	"github.com/pgferry/pgferry/shared/metrics"
	"github.com/pgferry/pgferry/shared/queue"
	"github.com/pgferry/pgferry/shared/schema"
)

// Syncer keeps one target's schema in step with the source's; each
// target kind that follows the source's schema supplies one
// (PostgreSQL: pgsync.Syncer).
type Syncer interface {
	// Plan returns the DDL that would bring the target up to the source's
	// schema now, changing nothing.
	Plan(ctx context.Context) (*schema.Plan, error)
	// Sync runs that DDL and returns what it ran.
	Sync(ctx context.Context) (*schema.Plan, error)
	// SyncSequences advances the target's sequences to the source's
	// values and returns how many it moved.
	SyncSequences(ctx context.Context) (int, error)
}

// ErrSequenceSync reports target sequences that could not be advanced to
// the source's values: the data is applied, but a failover to that target
// would hand out keys the source already used.
var ErrSequenceSync = errors.New("sequence sync failed")

// SyncAll brings every target's schema up to the source's now, directly
// rather than through the queue, in name order: the local runner and the
// initial load do it first, so an empty target is ready before the first
// batch and before a load copies into it. Running it while batches are in
// flight is safe (the applier adapts a batch to a newer schema).
func SyncAll(ctx context.Context, syncers map[string]Syncer) error {
	for _, name := range slices.Sorted(maps.Keys(syncers)) {
		if _, err := syncers[name].Sync(ctx); err != nil {
			return fmt.Errorf("targets.%s: schema sync: %w", name, err)
		}
	}
	return nil
}

// SyncSequences advances every target's sequences to the source's values
// and returns how many it moved. For each target it emits
// SequenceSyncFailures: 1 if that target's sync failed, 0 if it succeeded
// (emf nil discards them). It tries every target and returns their
// failures joined, each naming its target. It logs nothing: the apply
// path logs the error and goes on (a stale sequence must not hold up
// apply), while --until-idle and schema-diff fail with it.
func SyncSequences(ctx context.Context, pipeline string, syncers map[string]Syncer, emf *metrics.EMF) (int, error) {
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

// Result is what one schema-diff run did.
type Result struct {
	// Shipped: a schema job was put in every target's stream.
	Shipped bool `json:"shipped"`
	// Busy: a drain held the lease; it ships the job itself if needed.
	Busy bool `json:"busy,omitempty"`
	// Pending counts, per syncing target, the DDL statements the next
	// schema job (or retry-after-DDL) will run there.
	Pending map[string]int `json:"pending"`
	// Sequences counts target sequences advanced to the source's values.
	Sequences int `json:"sequences"`
}

// Stream is where a schema job goes: the pipeline's checkpoint store (the
// job is shipped under the drain's lease, in stream order) and publisher.
type Stream struct {
	State     drain.Checkpoints
	Publisher queue.Publisher
	// Options are the drain's: pipeline, targets, lease owner and time,
	// and the source schema fingerprint (Options.Schema).
	Options drain.Options
	// Slot is true under slot capture.
	Slot bool
}

// Run is the schema-diff function's work, on its schedule or on demand:
// it plans each syncing target's DDL (read only) and ships a schema job
// into every target's FIFO group when the source catalog changed since
// the last job, when a target's plan is not empty (drift the fingerprint
// cannot see), or always with force, so that a DDL with no writes after
// it still reaches the targets in stream order. Then it advances target
// sequences, emitting SequenceSyncFailures per target to emf (nil
// discards it); a target whose sequences cannot be advanced fails the
// run, after every other target was tried.
func Run(ctx context.Context, pipeline string, syncers map[string]Syncer, out Stream, force bool, emf *metrics.EMF, log *slog.Logger) (Result, error) {
	res := Result{Pending: map[string]int{}}
	if len(syncers) == 0 {
		return res, nil
	}
	for _, name := range slices.Sorted(maps.Keys(syncers)) {
		plan, err := syncers[name].Plan(ctx)
		if err != nil {
			return res, fmt.Errorf("targets.%s: plan: %w", name, err)
		}
		res.Pending[name] = len(plan.Steps)
		if !plan.Empty() {
			log.Info("target schema differs from the source", "target", name, "statements", len(plan.Steps), "ddl", plan.SQL())
			force = true
		}
		for _, w := range plan.Warnings {
			log.Warn("schema difference left alone", "target", name, "what", w)
		}
	}
	shipped, err := drain.ShipSchemaJob(ctx, out.State, out.Publisher, out.Options, out.Slot, force)
	switch {
	case errors.Is(err, drain.ErrBusy):
		res.Busy = true
	case err != nil:
		return res, err
	}
	res.Shipped = shipped
	res.Sequences, err = SyncSequences(ctx, pipeline, syncers, emf)
	return res, err
}

// PrintPlans writes, for every target in names order that has a planner,
// the DDL schema sync would run on it, and changes nothing (--plan).
// Targets whose schema_sync is false are planned too, and say that
// pgferry will not run their DDL.
func PrintPlans(ctx context.Context, cfg *config.Config, planners map[string]Syncer, w io.Writer) error {
	for _, name := range cfg.TargetNames() {
		s, ok := planners[name]
		if !ok {
			fmt.Fprintf(w, "-- target %s: this kind of target has no schema sync\n", name)
			continue
		}
		plan, err := s.Plan(ctx)
		if err != nil {
			return fmt.Errorf("targets.%s: plan: %w", name, err)
		}
		fmt.Fprintf(w, "-- target %s: %s\n", name, summary(cfg.Targets[name], plan))
		fmt.Fprint(w, plan.SQL())
		for _, warn := range plan.Warnings {
			fmt.Fprintf(w, "-- left alone: %s\n", warn)
		}
	}
	return nil
}

func summary(t config.Target, p *schema.Plan) string {
	s := fmt.Sprintf("%d statements", len(p.Steps))
	if p.Empty() {
		s = "up to date"
	}
	if !t.SyncsSchema() {
		s += " (schema_sync is false: pgferry will not run them)"
	}
	return s
}
