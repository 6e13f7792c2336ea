package runner

import (
	"context"
	"os"

	"github.com/pgferry/pgferry/shared/apply"
	"github.com/pgferry/pgferry/shared/metrics"
	"github.com/pgferry/pgferry/shared/schemadiff"
)

// ApplyFn is the apply Lambda's state in a warm container. Target pools
// live across invocations; they are opened by the first invocation that
// can reach every target, not at cold start: a target that is down must
// fail invocations (and be retried), not the container's start.
// Invocations of one container never overlap, so it needs no lock.
type ApplyFn struct {
	P *Pipeline // OpenAWS done

	consumer *apply.Consumer
}

// Consumer returns the consume step over the FIFO queue, parking in its
// dead-letter queue and leaving done records to the event source mapping
// (Reported), wired on first use.
func (f *ApplyFn) Consumer(ctx context.Context) (*apply.Consumer, error) {
	if f.consumer != nil {
		return f.consumer, nil
	}
	p := f.P
	// Schema jobs and retry-after-DDL diff against the source's catalog,
	// so apply reads the source too when a target follows it.
	if p.Config.SyncsSchema() {
		if err := p.OpenSource(ctx); err != nil {
			return nil, err
		}
	}
	p.Metrics = metrics.New(os.Stdout)
	if err := p.OpenTargets(ctx, false); err != nil {
		p.Close()
		return nil, err
	}
	f.consumer = &apply.Consumer{
		Handler: p.Handler(p.Metrics), Queue: p.Res.Queue, Park: p.Res.DLQ,
		Visibility: p.Config.Apply.Visibility.Duration, Log: p.Log, Reported: true,
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
	if _, err := schemadiff.SyncSequences(ctx, f.P.Config.Name, f.P.Syncers(), f.consumer.Handler.Metrics); err != nil {
		f.P.Log.Warn("advance target sequences", "err", err)
	}
}
