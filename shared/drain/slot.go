package drain

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/capture/slot"
	"github.com/pgferry/pgferry/shared/checkpoint"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/fault"
	"github.com/pgferry/pgferry/shared/metrics"
	"github.com/pgferry/pgferry/shared/queue"
)

// SlotDrainer drains a pipeline whose source is captured by a logical
// replication slot (capture: slot).
//
// Positions: a batch ends at the end LSN of the commit record of its last
// transaction, carried as Position{Tick: lsn, Tx: 0}. Transactions stream
// in commit order and commit records end at strictly increasing LSNs, so
// batch positions strictly increase, and each batch's From is the previous
// batch's To: the applier's gap and replay checks work unchanged. The
// checkpoint's Pos is the last shipped LSN (or, before the first batch,
// where the slot started), and Prev/Window are unused.
//
// The slot is confirmed only up to the end of a batch that is on the queue
// for every target and checkpointed (or up to transactions that carried
// nothing to replicate, once everything before them is). A crash anywhere
// therefore re-reads from the slot; transactions at or below the
// checkpoint are skipped, and a re-read batch that overlaps an applied one
// is a replay the applier handles (see batch.Batch).
//
// Memory: a batch is cut only between transactions, so the drainer holds
// the compacted rows of a whole transaction, however large. A
// transaction must also be read within one run (one Lambda invocation).
type SlotDrainer struct {
	src  *slot.Capture
	cps  Checkpoints
	pub  queue.Publisher
	opts Options
	log  *slog.Logger
	emf  *metrics.EMF
}

// NewSlot returns a slot drainer. emf may be nil.
func NewSlot(src *slot.Capture, cps Checkpoints, pub queue.Publisher, opts Options, log *slog.Logger, emf *metrics.EMF) *SlotDrainer {
	return &SlotDrainer{src: src, cps: cps, pub: pub, opts: opts, log: log, emf: emf}
}

// Run drains until it has shipped every transaction committed before it
// started, until the deadline margin, or until an error. See Drainer.Run;
// the same lease keeps two drains of a pipeline apart.
func (d *SlotDrainer) Run(ctx context.Context) (Stats, error) {
	var st Stats
	lease, release, err := acquire(ctx, d.cps, d.opts, d.log)
	if err != nil {
		return st, err
	}
	defer release()
	// Reported however the run ends, also when it fails before it reads
	// the slot: a drain that cannot work is when WAL piles up.
	defer d.emitSlotMetrics(ctx)
	cp, err := d.cps.Load(ctx)
	if err != nil {
		return st, err
	}
	// Before the publication or the slot is created, and before anything
	// is sent: a trigger checkpoint's positions are snapshot windows, and
	// a slot created now would start after whatever the triggers captured
	// but the drain had not yet shipped.
	if err := CheckCapture(ctx, cp, config.CaptureSlot, d.opts.Probe); err != nil {
		return st, err
	}
	cp.Capture = config.CaptureSlot // recorded (or kept) by every save
	info, err := d.src.Install(ctx, cp.Lineage != "")
	if err != nil {
		return st, err
	}
	r := &slotRun{SlotDrainer: d, held: held{store: d.cps, ttl: d.opts.Lease, lease: lease, cp: cp}, st: &st}
	if cp.Lineage == "" {
		// Saved before any batch leaves, so a crash cannot change the
		// lineage of batches a target may already have applied.
		start := cp
		start.Lineage, start.Pos = newLineage(), batch.Position{Tick: uint64(info.Start)}
		if err := r.save(ctx, start); err != nil {
			return st, err
		}
	}
	if r.schema.due(d.opts, true) {
		if err := r.schemaJob(ctx); err != nil {
			return st, err
		}
	}
	token, err := d.src.Heartbeat(ctx)
	if err != nil {
		return st, err
	}
	stream, err := d.src.Open(ctx, slot.LSN(r.cp.Pos.Tick))
	if err != nil {
		return st, err
	}
	r.stream = stream
	err = r.read(ctx, token)
	if cerr := stream.Close(ctx, r.safe); err == nil && cerr != nil {
		d.log.Warn("confirm slot position", "err", cerr)
	}
	return st, err
}

type slotRun struct {
	*SlotDrainer
	held
	st     *Stats
	stream *slot.Stream

	comp    batch.Compactor
	txns    int // whole transactions in comp
	bytes   int // their payload size
	end     slot.LSN
	newest  int64 // newest commit time in comp, Unix ms
	changed bool  // the open transaction has changes
	// safe is the position up to which every transaction is shipped and
	// checkpointed, or had nothing to ship: what the slot may confirm.
	safe   slot.LSN
	schema schemaCheck
}

// schemaJob ships a schema job just after the last shipped commit, if
// the catalog changed (see schemajob.go).
func (r *slotRun) schemaJob(ctx context.Context) error {
	save := func(c checkpoint.Checkpoint) error { return r.save(ctx, c) }
	cp, _, err := shipSchemaJob(ctx, r.pub, r.opts, save, r.cp, batch.Position{Tick: r.cp.Pos.Tick, Tx: r.cp.Pos.Tx + 1}, false)
	r.cp = cp
	return err
}

// read consumes the stream until the heartbeat's transaction (caught up)
// or the deadline margin, shipping batches of whole transactions.
func (r *slotRun) read(ctx context.Context, token string) error {
	for {
		ev, err := r.stream.Next()
		if err != nil {
			return err
		}
		switch ev.Kind {
		case slot.EventChange:
			if err := r.comp.Add(ev.Change); err != nil {
				return fmt.Errorf("drain: %w", err)
			}
			r.bytes += ev.Bytes
			r.changed = true
		case slot.EventTruncate:
			for _, t := range ev.Truncate {
				if err := r.comp.Add(batch.Change{Table: t, Op: batch.Truncate}); err != nil {
					return fmt.Errorf("drain: %w", err)
				}
			}
			r.changed = true
		case slot.EventCommit:
			caughtUp := ev.Heartbeat == token
			if r.changed {
				r.txns++
				r.end, r.newest = ev.End, max(r.newest, ev.Time)
				r.changed = false
			} else if r.txns == 0 {
				// Nothing pending and nothing to ship in this one: the slot
				// may move past it (idle tables, heartbeats, other tables).
				r.safe = max(r.safe, ev.End)
			}
			full := r.comp.Events() >= r.opts.MaxRows || r.bytes >= r.opts.MaxBytes
			stop := caughtUp || r.nearDeadline(ctx)
			if r.txns > 0 && (full || stop) {
				if err := r.ship(ctx); err != nil {
					return err
				}
			}
			if caughtUp {
				r.safe = max(r.safe, ev.End)
				r.st.CaughtUp = true
				return nil
			}
			if stop {
				return nil
			}
		}
	}
}

func (r *slotRun) nearDeadline(ctx context.Context) bool {
	dl, ok := ctx.Deadline()
	return ok && time.Until(dl) < r.opts.Margin
}

// ship publishes the pending transactions as one batch to every target,
// checkpoints its end, and only then confirms it to the slot.
func (r *slotRun) ship(ctx context.Context) error {
	if r.schema.due(r.opts, false) {
		if err := r.schemaJob(ctx); err != nil {
			return err
		}
	}
	b := batch.Batch{
		Version:    batch.Version,
		Pipeline:   r.opts.Pipeline,
		Lineage:    r.cp.Lineage,
		Seq:        r.cp.Seq + 1,
		From:       r.cp.LastSent,
		To:         batch.Position{Tick: uint64(r.end)},
		Txns:       r.txns,
		Events:     r.comp.Events(),
		CapturedAt: r.newest,
		Epochs:     r.comp.Epochs(),
	}
	if err := r.renew(ctx); err != nil {
		return err
	}
	if err := publishAll(ctx, r.pub, r.opts, &b); err != nil {
		return err
	}
	fault.Point(fault.DrainSent)
	next := r.cp
	next.Pos, next.Seq, next.LastSent = b.To, b.Seq, b.To
	if err := r.save(ctx, next); err != nil {
		return err
	}
	fault.Point(fault.DrainCheckpointed)
	r.safe = max(r.safe, r.end)
	if err := r.stream.Confirm(r.safe); err != nil {
		return err
	}
	r.st.shipped(r.opts, &b)
	r.log.Debug("batch shipped", "pipeline", r.opts.Pipeline, "seq", b.Seq, "lsn", r.end, "txns", b.Txns, "rows", b.Rows())
	r.comp.Reset()
	r.txns, r.bytes, r.newest = 0, 0, 0
	return nil
}

// emitSlotMetrics reports how much WAL the slot holds back on the source,
// whether or not the run succeeded (a failing drain is when it grows).
// When the slot's state cannot be read, RetainedWALReadFailures = 1 says
// so: the retained-WAL alarm gets no datapoint then, and must not be
// taken for all clear. A slot that does not exist (yet) retains nothing.
func (d *SlotDrainer) emitSlotMetrics(ctx context.Context) {
	if d.emf == nil {
		return
	}
	dims := metrics.Dims{metrics.DimPipeline: d.opts.Pipeline}
	mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	st, err := d.src.Status(mctx)
	if err != nil {
		d.log.Warn("read slot state for metrics", "err", err)
		d.emf.Emit(dims, metrics.Metric{Name: metrics.RetainedWALReadFailures, Value: 1, Unit: metrics.Count})
		return
	}
	ms := []metrics.Metric{{Name: metrics.RetainedWALReadFailures, Value: 0, Unit: metrics.Count}}
	if st.Exists {
		ms = append(ms,
			metrics.Metric{Name: metrics.RetainedWALBytes, Value: float64(st.RetainedBytes), Unit: metrics.Bytes},
			metrics.Metric{Name: metrics.SlotLagBytes, Value: float64(st.LagBytes), Unit: metrics.Bytes})
	}
	d.emf.Emit(dims, ms...)
}
