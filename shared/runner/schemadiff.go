package runner

import (
	"context"
	"errors"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/drain"
	"github.com/pgferry/pgferry/shared/metrics"
	"github.com/pgferry/pgferry/shared/queue"
	"github.com/pgferry/pgferry/shared/schema"
	"github.com/pgferry/pgferry/shared/schema/pgsync"
)

// SchemaDiffResult is what one schema-diff run did.
type SchemaDiffResult struct {
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

// SchemaDiff is the schema-diff function's work, on its schedule or on
// demand: it plans each syncing target's DDL (read only) and ships a
// schema job into every target's FIFO group when the source catalog
// changed since the last job, when a target's plan is not empty (drift
// the fingerprint cannot see), or always with force — so that a DDL with
// no writes after it still reaches the targets in stream order. Then it
// advances target sequences, emitting SequenceSyncFailures per target to
// emf (nil discards it); a target whose sequences cannot be advanced fails
// the run, after every other target was tried. pools are the target pools
// in cfg.TargetNames() order.
func SchemaDiff(ctx context.Context, cfg *config.Config, src *pgxpool.Pool, pools []*pgxpool.Pool, a *AWS, owner string, force bool, emf *metrics.EMF, log *slog.Logger) (SchemaDiffResult, error) {
	res := SchemaDiffResult{Pending: map[string]int{}}
	if !cfg.SyncsSchema() {
		return res, nil
	}
	skip := pgsync.SourceSkip(cfg)
	opts := drain.Options{
		Pipeline: cfg.Name,
		Targets:  cfg.TargetNames(),
		Owner:    owner,
		Lease:    cfg.Drain.Lease.Duration,
		Schema:   func(ctx context.Context) (string, error) { return schema.Fingerprint(ctx, src, skip) },
	}
	syncers := SchemaSyncers(cfg, src, pools, log)
	for _, name := range cfg.TargetNames() {
		s, ok := syncers[name]
		if !ok {
			continue
		}
		plan, err := s.Plan(ctx)
		if err != nil {
			return res, err
		}
		res.Pending[name] = len(plan.Steps)
		if !plan.Empty() {
			log.Info("target schema differs from the source", "target", name, "statements", len(plan.Steps), "ddl", plan.SQL())
		}
		for _, w := range plan.Warnings {
			log.Warn("schema difference left alone", "target", name, "what", w)
		}
		if !plan.Empty() {
			force = true
		}
	}
	pub := &queue.ClaimCheck{Next: a.Queue, Store: a.Payloads, Limit: cfg.Batch.InlineLimit}
	shipped, err := drain.ShipSchemaJob(ctx, a.State, pub, opts, cfg.Source.Capture == config.CaptureSlot, force)
	switch {
	case errors.Is(err, drain.ErrBusy):
		res.Busy = true
	case err != nil:
		return res, err
	}
	res.Shipped = shipped
	res.Sequences, err = SyncSequences(ctx, cfg.Name, syncers, emf)
	return res, err
}
