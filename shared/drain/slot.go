package drain

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/checkpoint"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/fault"
	"github.com/pgferry/pgferry/shared/metrics"
	"github.com/pgferry/pgferry/shared/queue"
	"github.com/pgferry/pgferry/shared/rules"
)

// LSN is a position in the source's write-ahead log (a pg_lsn).
type LSN uint64

// String formats l as PostgreSQL prints a pg_lsn.
func (l LSN) String() string { return fmt.Sprintf("%X/%X", uint32(l>>32), uint32(l)) }

// SlotSource is a capture read from a logical replication slot
// (slot.Capture).
type SlotSource interface {
	// Install makes the slot and what it needs exist (idempotent) and
	// says where reading can begin. progress tells whether the pipeline
	// has checkpointed changes read from the slot: then a missing or
	// invalidated slot is an error, never silently re-created (that would
	// skip everything committed while it was gone).
	Install(ctx context.Context, progress bool) (SlotInfo, error)
	// Heartbeat commits a marker into the WAL and returns its token: a
	// stream has delivered every transaction committed before the call
	// once it returns a commit whose Heartbeat is the token.
	Heartbeat(ctx context.Context) (string, error)
	// Open starts reading the slot; transactions whose commit is before
	// from were shipped and are skipped. The stream stops when ctx ends.
	Open(ctx context.Context, from LSN) (SlotStream, error)
	// Status reads the slot's state; a missing slot is Exists: false and
	// no error.
	Status(ctx context.Context) (SlotStatus, error)
}

// SlotStream reads one slot over one connection; it is not safe for
// concurrent use.
type SlotStream interface {
	// Next returns the next change or commit. Transactions come whole and
	// in commit order; an error leaves the stream unusable.
	Next() (SlotEvent, error)
	// Confirm tells the source that everything up to lsn is shipped and
	// checkpointed, so the slot may release the WAL before it and a later
	// Open resumes after it. It never moves the slot backwards. Call it
	// only once the checkpoint covering lsn is saved.
	Confirm(lsn LSN) error
	// Close confirms lsn (as Confirm) and ends the stream. What was read
	// but not confirmed is read again by the next Open.
	Close(ctx context.Context, lsn LSN) error
}

// SlotInfo describes the slot after Install.
type SlotInfo struct {
	// Created is true when Install created the slot.
	Created bool
	// Start is where reading can begin: the slot's confirmed position.
	Start LSN
}

// SlotStatus is the slot as pg_replication_slots shows it.
type SlotStatus struct {
	Exists bool
	// Lost says why the slot can no longer be read ("" while it can):
	// wal_status 'lost', or the invalidation reason newer servers give.
	Lost string
	// Confirmed is the position the slot resumes from; Restart the oldest
	// WAL it keeps.
	Confirmed, Restart LSN
	// RetainedBytes is the WAL the slot keeps on the source (current WAL
	// position minus restart_lsn); LagBytes is how far the confirmed
	// position trails the current WAL position.
	RetainedBytes, LagBytes int64
}

// SlotEventKind tells what SlotStream.Next returned.
type SlotEventKind int

const (
	// SlotChange carries one change of the open transaction.
	SlotChange SlotEventKind = iota + 1
	// SlotTruncate carries the relations one TRUNCATE emptied.
	SlotTruncate
	// SlotCommit ends a transaction.
	SlotCommit
)

// SlotEvent is one step of a SlotStream.
type SlotEvent struct {
	Kind SlotEventKind
	// Change and Bytes (payload size) for SlotChange. A Change's rows
	// hold batch.Unchanged for TOASTed values an UPDATE left unchanged
	// (unless the table's REPLICA IDENTITY FULL old row supplied them).
	Change batch.Change
	Bytes  int
	// Truncate lists the relations of a SlotTruncate.
	Truncate []batch.Table
	// For SlotCommit: End is the end of the commit record (the position
	// to checkpoint and confirm once the transaction is shipped), Time the
	// commit time in Unix milliseconds, Heartbeat the token of a Heartbeat
	// committed in the transaction.
	End       LSN
	Time      int64
	Heartbeat string
}

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
// therefore re-reads from the slot, and transactions at or below the
// checkpoint are skipped. Where a batch is cut depends on when its run
// read (the heartbeat it caught up to, its deadline), so a re-read does
// not cut where an earlier run did; and a re-cut batch that overlaps one
// a target already applied is not a replay the applier can absorb (its
// net changes assume the target is at its From: a row inserted in the
// applied range and deleted after it nets to nothing, and the delete is
// lost). So each batch's checkpoint is saved before the batch is
// published, marked as one to resend (checkpoint.Resend): a run that
// finds the mark reads the batch's transactions again and publishes the
// same batch, cut at exactly the checkpointed end, before anything else
// (or learns from the slot, confirmed past that end, that it is on the
// queue). No batch ever leaves whose range another batch's crosses.
//
// Memory: a batch is cut only between transactions. A transaction larger
// than a batch (more than batch.max_rows events or batch.max_bytes since
// it began or since its last part) is spilled while it is read: what the drainer
// holds, compacted, goes to a part object (queue.PartStore, the
// claim-check bucket) and the drainer starts afresh, so it never holds
// much more than two batches' worth. The batch that ends with that
// transaction then ships as a manifest of its parts (batch.Parts), which
// the applier applies in order in one target transaction. Parts are
// written under a new spill id and named only by the manifest, which is
// published at the commit like any batch: a drain that dies mid-spill
// publishes nothing and leaves only unreferenced objects. Compacting per
// part is exact: parts are consecutive stretches of the changes, and
// applying each stretch's net effect in turn is applying the whole
// (a key update is a delete and an upsert within its part). What cannot
// be split are soft deletes (rules) of the open transaction, which take
// its commit time: while it holds some, the drainer keeps reading without
// spilling. A transaction must also be read within one run (one Lambda
// invocation).
type SlotDrainer struct {
	src  SlotSource
	cps  Checkpoints
	pub  queue.Publisher
	opts Options
	log  *slog.Logger
	emf  *metrics.EMF
}

// NewSlot returns a slot drainer. emf may be nil.
func NewSlot(src SlotSource, cps Checkpoints, pub queue.Publisher, opts Options, log *slog.Logger, emf *metrics.EMF) *SlotDrainer {
	return &SlotDrainer{src: src, cps: cps, pub: pub, opts: opts, log: log, emf: emf}
}

// Backlog is never known under slot capture (ok is false): what waits on
// the source is WAL, reported as SlotLagBytes after every run.
func (d *SlotDrainer) Backlog(context.Context) (n int64, ok bool, err error) { return 0, false, nil }

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
	if err := CheckRules(cp, d.opts.RulesFP, d.opts.RulesAccepted); err != nil {
		return st, err
	}
	cp.Capture = config.CaptureSlot // recorded (or kept) by every save
	if d.opts.RulesFP != nil {
		cp.Rules = checkpoint.EncodeRules(d.opts.RulesFP)
	}
	info, err := d.src.Install(ctx, cp.Lineage != "")
	if err != nil {
		return st, err
	}
	if err := d.opts.Rules.Ready(ctx); err != nil {
		return st, err
	}
	parts, _ := d.pub.(queue.PartStore)
	r := &slotRun{SlotDrainer: d, parts: parts, held: held{store: d.cps, ttl: d.opts.Lease, lease: lease, cp: cp, marked: cp.Resend.Pending},
		st: &st, comp: rules.NewFanout(d.opts.Rules, d.opts.Targets)}
	if cp.Lineage == "" {
		// Saved before any batch leaves, so a crash cannot change the
		// lineage of batches a target may already have applied.
		start := cp
		start.Lineage, start.Pos = newLineage(), batch.Position{Tick: uint64(info.Start)}
		if err := r.save(ctx, start); err != nil {
			return st, err
		}
	}
	// A batch the last run checkpointed but may not have published is
	// read again from where it began, unless the slot is confirmed past
	// it (which happens only once it is on the queue); the schema job of
	// the run's start waits until it is resent (see resend). Reading
	// starts no earlier than the slot's confirmed position, where the
	// server starts anyway, so the stream never reports a position behind
	// it.
	from := LSN(r.cp.Pos.Tick)
	if r.cp.Resend.Pending {
		ss, err := d.src.Status(ctx)
		if err != nil {
			return st, err
		}
		if ss.Confirmed >= from {
			r.cp.Resend = checkpoint.Resend{}
		} else {
			from = max(LSN(r.cp.Resend.Read.Tick), ss.Confirmed)
		}
	}
	if !r.cp.Resend.Pending && r.schema.due(d.opts, true) {
		if err := r.schemaJob(ctx); err != nil {
			return st, err
		}
	}
	token, err := d.src.Heartbeat(ctx)
	if err != nil {
		return st, err
	}
	stream, err := d.src.Open(ctx, from)
	if err != nil {
		return st, err
	}
	r.stream = stream
	err = r.read(ctx, token)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	if serr := r.settle(sctx); serr != nil {
		d.log.Warn("clear the resend mark of a queued batch", "err", serr)
	}
	cancel()
	if cerr := stream.Close(ctx, r.safe); err == nil && cerr != nil {
		d.log.Warn("confirm slot position", "err", cerr)
	}
	return st, err
}

type slotRun struct {
	*SlotDrainer
	held
	st     *Stats
	stream SlotStream

	comp    *rules.Fanout
	txns    int // whole transactions in comp
	bytes   int // their payload size
	end     LSN
	newest  int64 // newest commit time in comp, Unix ms
	changed bool  // the open transaction has changes
	// parts stores spilled parts (nil: the publisher cannot, and a large
	// transaction is held whole); spill is the open batch's spill, and
	// txEvents and txBytes count the open transaction since it began or
	// was last spilled.
	parts             queue.PartStore
	spill             *spill
	txEvents, txBytes int
	// safe is the position up to which every transaction is shipped and
	// checkpointed, or had nothing to ship: what the slot may confirm.
	safe   LSN
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
		case SlotChange:
			if err := r.comp.Add(ctx, ev.Change); err != nil {
				return fmt.Errorf("drain: %w", err)
			}
			r.bytes += ev.Bytes
			r.changed = true
			r.txEvents += len(ev.Change.Old) + len(ev.Change.New)
			r.txBytes += ev.Bytes
			if err := r.maybeSpill(ctx); err != nil {
				return err
			}
		case SlotTruncate:
			for _, t := range ev.Truncate {
				if err := r.comp.Add(ctx, batch.Change{Table: t, Op: batch.Truncate}); err != nil {
					return fmt.Errorf("drain: %w", err)
				}
			}
			r.changed = true
		case SlotCommit:
			if r.cp.Resend.Pending {
				taken, err := r.resend(ctx, ev)
				if err != nil {
					return err
				}
				if taken {
					continue
				}
			}
			caughtUp := ev.Heartbeat == token
			r.commit(ev)
			// A spilled batch ends with the transaction that spilled.
			full := r.comp.Events() >= r.opts.MaxRows || r.bytes >= r.opts.MaxBytes || r.spill != nil
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

// commit ends the open transaction at its commit.
func (r *slotRun) commit(ev SlotEvent) {
	if r.changed {
		r.comp.Commit(ev.Time)
		r.txns++
		r.end, r.newest = ev.End, max(r.newest, ev.Time)
		r.changed = false
		r.txEvents, r.txBytes = 0, 0
	} else if r.txns == 0 {
		// Nothing pending and nothing to ship in this one: the slot
		// may move past it (idle tables, heartbeats, other tables).
		r.safe = max(r.safe, ev.End)
	}
}

// resend takes a commit while the batch the checkpoint holds as possibly
// unsent (checkpoint.Resend) is read again: it gathers the batch's
// transactions, whatever their size or the deadline, and once it reads
// the commit that ends the batch (at the checkpoint's position) it
// publishes the batch again, cut exactly as the first time. It reports
// whether it took the commit; a commit after the batch's end that comes
// first means the slot was confirmed past the batch, which happens only
// once it is on the queue: there is nothing to resend and the commit is
// read as any other. Then the schema job of the run's start goes out.
func (r *slotRun) resend(ctx context.Context, ev SlotEvent) (bool, error) {
	end := LSN(r.cp.Pos.Tick)
	if ev.End > end {
		if r.txns > 0 {
			return false, fmt.Errorf("drain: the slot returned the commit at %s after part of the batch ending at %s, but not that batch's last commit", ev.End, end)
		}
		r.log.Debug("checkpointed batch was already confirmed; nothing to resend", "pipeline", r.opts.Pipeline, "lsn", end)
		r.cp.Resend = checkpoint.Resend{}
		return false, r.startSchemaJob(ctx)
	}
	r.commit(ev)
	if ev.End < end {
		return true, nil
	}
	if r.txns == 0 {
		return false, fmt.Errorf("drain: the checkpointed batch ending at %s holds no changes when read again", end)
	}
	if err := r.ship(ctx); err != nil {
		return false, err
	}
	return true, r.startSchemaJob(ctx)
}

// startSchemaJob ships the schema job a run looks for at its start.
func (r *slotRun) startSchemaJob(ctx context.Context) error {
	if r.schema.due(r.opts, true) {
		return r.schemaJob(ctx)
	}
	return nil
}

func (r *slotRun) nearDeadline(ctx context.Context) bool {
	dl, ok := ctx.Deadline()
	return ok && time.Until(dl) < r.opts.Margin
}

// ship ships the pending transactions as one batch (see shipBatch), confirming
// it to the slot once it is checkpointed.
func (r *slotRun) ship(ctx context.Context) error {
	resend := r.cp.Resend.Pending
	if !resend && r.schema.due(r.opts, false) {
		if err := r.schemaJob(ctx); err != nil {
			return err
		}
	}
	if r.spill != nil {
		// The rest of the batch is its last part.
		if err := r.spillPart(ctx); err != nil {
			return err
		}
	}
	c := cut{comp: r.comp, txns: r.txns, to: batch.Position{Tick: uint64(r.end)}, capturedAt: r.newest, spill: r.spill, checkpointFirst: true}
	confirm := func() error {
		r.safe = max(r.safe, r.end)
		return r.stream.Confirm(r.safe)
	}
	ship, what, level := shipBatch, "batch shipped", slog.LevelDebug
	if resend {
		// Rare (a failed run), and what an operator reading a duplicate
		// delivery in the apply log wants to find.
		ship, what, level = resendBatch, "batch checkpointed by a failed run resent", slog.LevelInfo
	}
	b, err := ship(ctx, &r.held, r.pub, r.opts, r.st, c, confirm)
	if err != nil {
		return err
	}
	r.log.Log(ctx, level, what, "pipeline", r.opts.Pipeline, "seq", b.Seq, "lsn", r.end, "txns", b.Txns, "rows", b.Rows())
	r.comp.Reset()
	r.txns, r.bytes, r.newest, r.spill = 0, 0, 0, nil
	return nil
}

// maybeSpill spills what the drainer holds once the open transaction
// alone has overfilled a batch since it began or was last spilled (one
// that just fills it ships as an ordinary batch).
func (r *slotRun) maybeSpill(ctx context.Context) error {
	if r.parts == nil || (r.txEvents <= r.opts.MaxRows && r.txBytes <= r.opts.MaxBytes) || !r.comp.Splittable() {
		return nil
	}
	if err := r.renew(ctx); err != nil { // a long transaction must not lose the lease
		return err
	}
	if err := r.spillPart(ctx); err != nil {
		return err
	}
	r.txEvents, r.txBytes, r.bytes = 0, 0, 0
	return nil
}

// spillPart writes what comp holds as the next part of the open batch's
// spill, for every target, and empties it.
func (r *slotRun) spillPart(ctx context.Context) error {
	if r.spill == nil {
		r.spill = &spill{id: newLineage(), keys: map[string][]string{}, rows: map[string]int{}}
	}
	sp := r.spill
	for _, target := range r.opts.Targets {
		eps := r.comp.Epochs(target)
		if len(eps) == 0 {
			continue
		}
		body, err := batch.EncodePart(eps)
		if err != nil {
			return fmt.Errorf("drain: encode part %d: %w", len(sp.keys[target]), err)
		}
		key, err := r.parts.PutPart(ctx, batch.Group(r.opts.Pipeline, target), sp.id, len(sp.keys[target]), body)
		if err != nil {
			return fmt.Errorf("drain: %w", err)
		}
		sp.keys[target] = append(sp.keys[target], key)
		sp.rows[target] += batch.EpochRows(eps)
	}
	sp.events += r.comp.Events()
	r.comp.Reset()
	fault.Point(fault.DrainSpilled)
	r.log.Debug("batch part spilled", "pipeline", r.opts.Pipeline, "spill", sp.id, "events", sp.events)
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
