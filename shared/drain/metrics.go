package drain

import (
	"context"
	"log/slog"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/metrics"
)

// EmitShipped reports a shipped batch (a drain's OnShip hook).
func EmitShipped(emf *metrics.EMF, b *batch.Batch) {
	emf.Emit(metrics.Dims{metrics.DimPipeline: b.Pipeline},
		metrics.Metric{Name: metrics.BatchesShipped, Value: 1, Unit: metrics.Count},
		metrics.Metric{Name: metrics.RowsShipped, Value: float64(b.Rows()), Unit: metrics.Count},
		metrics.Metric{Name: metrics.BatchRows, Value: float64(b.Rows()), Unit: metrics.Count})
}

// Runner is one drain run of either capture mode (Drainer, SlotDrainer):
// it ships every change committed before it started (or stops at its
// deadline margin) and checkpoints after each batch is queued. See
// Drainer.Run.
type Runner interface {
	Run(ctx context.Context) (Stats, error)
	Backlogger
}

var (
	_ Runner = (*Drainer)(nil)
	_ Runner = (*SlotDrainer)(nil)
)

// Backlogger counts the captured events that wait on the source; both
// drainers implement it.
type Backlogger interface {
	// Backlog returns the count, if the capture can tell (trigger capture
	// can); ok is false otherwise.
	Backlog(ctx context.Context) (n int64, ok bool, err error)
}

// EmitBacklog reports the source's event backlog when the drain's capture
// can count it (trigger capture), and EventBacklogReadFailures = 1 when it
// could not be counted, so a blind event-backlog alarm is itself alarmed
// on. Errors are logged, never returned: a metric must not fail a drain.
func EmitBacklog(ctx context.Context, emf *metrics.EMF, b Backlogger, pipeline string, log *slog.Logger) {
	if emf == nil {
		return
	}
	dims := metrics.Dims{metrics.DimPipeline: pipeline}
	n, can, err := b.Backlog(ctx)
	if err != nil {
		log.Warn("count event backlog", "err", err)
		emf.Emit(dims, metrics.Metric{Name: metrics.EventBacklogReadFailures, Value: 1, Unit: metrics.Count})
		return
	}
	if can {
		emf.Emit(dims, metrics.Metric{Name: metrics.EventBacklog, Value: float64(n), Unit: metrics.Count},
			metrics.Metric{Name: metrics.EventBacklogReadFailures, Value: 0, Unit: metrics.Count})
	}
}
