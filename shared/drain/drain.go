// Package drain moves captured changes onto the queue: it reads snapshot
// windows, cuts them into batches of whole transactions, publishes each
// batch to every target's FIFO group and only then checkpoints.
package drain

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"time"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/checkpoint"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/fault"
	"github.com/pgferry/pgferry/shared/queue"
	"github.com/pgferry/pgferry/shared/rules"
)

// Checkpoints is the durable drain state; see checkpoint/dynamo for the
// contract of each method.
type Checkpoints interface {
	Acquire(ctx context.Context, owner string, ttl time.Duration) (checkpoint.Lease, error)
	Renew(ctx context.Context, l checkpoint.Lease, ttl time.Duration) (checkpoint.Lease, error)
	Release(ctx context.Context, l checkpoint.Lease) error
	Load(ctx context.Context) (checkpoint.Checkpoint, error)
	Save(ctx context.Context, l checkpoint.Lease, cp checkpoint.Checkpoint) error
	// ClearResend removes the resend mark of the stored checkpoint at pos
	// (checkpoint.Resend) once its batch is on the queue.
	ClearResend(ctx context.Context, l checkpoint.Lease, pos batch.Position) error
}

// Source is a capture that reads committed changes in snapshot windows
// (trigger.Capture). A snapshot is the text of a pg_snapshot; the window
// (prev, cur] holds the transactions visible in cur and not in prev.
type Source interface {
	// Install makes capture exist on the source (idempotent).
	Install(ctx context.Context) error
	// InitialSnapshot returns the snapshot taken when capture was
	// installed: the first window starts there.
	InitialSnapshot(ctx context.Context) (string, error)
	// CurrentSnapshot returns the source's current snapshot; every
	// transaction visible in it has committed.
	CurrentSnapshot(ctx context.Context) (string, error)
	// ReadWindow calls fn for each transaction of the window (prev, cur]
	// whose Max is above after, in increasing order of Max, each with all
	// its changes. The sequence depends only on the arguments, so a drain
	// that crashed re-reads exactly what it read before. fn's error stops
	// the read and is returned.
	ReadWindow(ctx context.Context, prev, cur string, after int64, fn func(*Txn) error) error
	// Purge deletes the events of transactions visible in prev (the
	// window ending at prev has shipped them all) and reports how many.
	Purge(ctx context.Context, prev string) (int64, error)
}

// Txn is one source transaction of a snapshot window, as a Source
// delivers it.
type Txn struct {
	// Max is the transaction's largest event id. Ordering transactions by
	// it is consistent with commit order for every pair that touched the
	// same row: the later writer waited for the earlier one to commit.
	// The drain checkpoints it as the position within the window.
	Max     int64
	Changes []batch.Change
	Events  int
	Bytes   int   // payload size, counted against Options.MaxBytes
	Time    int64 // newest statement time, Unix milliseconds
}

// Options bound a drain.
type Options struct {
	Pipeline string
	Targets  []string
	Owner    string        // lease owner id (instance or invocation id)
	Lease    time.Duration // lease time to live
	MaxRows  int           // cut a batch once it holds this many row events
	MaxBytes int           // … or this many payload bytes
	// Margin is kept free before the context deadline: no new window is
	// started within it (a Lambda must return before its timeout).
	Margin time.Duration
	// MinWindow is the shortest time between two window snapshots. Under a
	// steady write load a drain never catches up; without a floor it would
	// cut a tiny batch every few milliseconds and the fixed cost per batch
	// on the apply side would dominate.
	MinWindow time.Duration
	// OnShip, if set, is called after each batch is queued and
	// checkpointed (for progress output and metrics).
	OnShip func(*batch.Batch)
	// Schema, if set, returns a fingerprint of the replicated tables'
	// source catalog; when it differs from the checkpoint's, the drain
	// ships a schema job ahead of the next window or batch (see
	// schemajob.go). SchemaEvery bounds how often it is called within a
	// run (default 1s); it is always called at the start of a run.
	Schema      func(context.Context) (string, error)
	SchemaEvery time.Duration
	// Probe, if set, reports the capture objects on the source; a run
	// refuses to start when the other capture mode's are there (see
	// CheckCapture). The checkpoint's mode is checked either way.
	Probe Probe
	// Rules, if set, shape each target's batch (targets.<name>.rules and
	// the rest, see package rules); nil ships every change to every
	// target as captured.
	Rules *rules.Set
	// RulesFP is each target's rules fingerprint (config.RulesFingerprints)
	// and RulesAccepted the acknowledged changes (config.RulesAccepted):
	// a run refuses a changed fingerprint that is not acknowledged
	// (CheckRules) and records RulesFP with every checkpoint. With RulesFP
	// nil nothing is checked or recorded.
	RulesFP, RulesAccepted map[string]string
}

// Drainer drains one pipeline.
type Drainer struct {
	src  Source
	cps  Checkpoints
	pub  queue.Publisher
	opts Options
	log  *slog.Logger
}

// New returns a drainer.
func New(src Source, cps Checkpoints, pub queue.Publisher, opts Options, log *slog.Logger) *Drainer {
	return &Drainer{src: src, cps: cps, pub: pub, opts: opts, log: log}
}

// Stats describes one Run.
type Stats struct {
	Batches, Txns, Events, Rows int
	CaughtUp                    bool // the last window read found nothing new
}

// ErrBusy means another drain holds the lease; nothing was done.
var ErrBusy = checkpoint.ErrLeaseHeld

// Run drains until caught up, until the deadline margin, or until an
// error. Every batch it ships is on the queue for every target before the
// checkpoint that covers it is written, so a crash anywhere re-ships
// (harmlessly) rather than loses.
func (d *Drainer) Run(ctx context.Context) (Stats, error) {
	var st Stats
	lease, release, err := acquire(ctx, d.cps, d.opts, d.log)
	if err != nil {
		return st, err
	}
	defer release()
	// Before anything is installed or sent: a checkpoint of slot capture
	// holds LSNs, not snapshot windows; continuing from it would start at
	// this capture's install snapshot and skip what was committed since
	// the slot was last read.
	cp, err := d.cps.Load(ctx)
	if err != nil {
		return st, err
	}
	if err := CheckCapture(ctx, cp, config.CaptureTrigger, d.opts.Probe); err != nil {
		return st, err
	}
	if err := CheckRules(cp, d.opts.RulesFP, d.opts.RulesAccepted); err != nil {
		return st, err
	}
	if err := d.opts.Rules.Ready(ctx); err != nil {
		return st, err
	}
	if err := d.src.Install(ctx); err != nil {
		return st, err
	}
	initial, err := d.src.InitialSnapshot(ctx)
	if err != nil {
		return st, err
	}
	r := &run{Drainer: d, held: held{store: d.cps, ttl: d.opts.Lease, lease: lease}, st: &st, initial: initial}
	for !d.nearDeadline(ctx) {
		more, err := r.window(ctx)
		if err != nil {
			return st, err
		}
		if !more {
			st.CaughtUp = true
			return st, nil
		}
	}
	return st, nil
}

// Backlog returns how many captured events wait on the source, if the
// capture can tell (trigger capture can); ok is false otherwise.
func (d *Drainer) Backlog(ctx context.Context) (n int64, ok bool, err error) {
	b, can := d.src.(interface {
		Backlog(context.Context) (int64, error)
	})
	if !can {
		return 0, false, nil
	}
	n, err = b.Backlog(ctx)
	return n, true, err
}

func (d *Drainer) nearDeadline(ctx context.Context) bool {
	dl, ok := ctx.Deadline()
	return ok && time.Until(dl) < d.opts.Margin
}

type run struct {
	*Drainer
	held
	st       *Stats
	lastSnap time.Time
	initial  string
	schema   schemaCheck
	started  bool // the run's first window was read
}

// newLineage returns a random checkpoint lineage id.
func newLineage() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// window ships one snapshot window (or the rest of an open one). It
// reports whether it found anything, i.e. whether another window may be
// worth reading.
func (r *run) window(ctx context.Context) (bool, error) {
	cp, err := r.cps.Load(ctx)
	if err != nil {
		return false, err
	}
	if cp.Prev == "" {
		cp.Prev = r.initial
	}
	if cp.Lineage == "" {
		// Saved with the window-open checkpoint, before any batch leaves.
		cp.Lineage = newLineage()
	}
	cp.Capture = config.CaptureTrigger // recorded (or kept) by every save
	if r.opts.RulesFP != nil {
		cp.Rules = checkpoint.EncodeRules(r.opts.RulesFP)
	}
	r.cp = cp
	opened := cp.Window != ""
	if !opened && r.schema.due(r.opts, !r.started) {
		// Between windows: a schema job takes the next tick on its own.
		save := func(c checkpoint.Checkpoint) error { return r.save(ctx, c) }
		if cp, _, err = shipSchemaJob(ctx, r.pub, r.opts, save, cp, batch.Position{Tick: cp.Pos.Tick + 1}, false); err != nil {
			return false, err
		}
	}
	r.started = true
	if !opened {
		if wait := r.opts.MinWindow - time.Since(r.lastSnap); wait > 0 {
			select {
			case <-ctx.Done():
				return false, ctx.Err()
			case <-time.After(wait):
			}
		}
		r.lastSnap = time.Now()
		if cp.Window, err = r.src.CurrentSnapshot(ctx); err != nil {
			return false, err
		}
		cp.Pos = batch.Position{Tick: cp.Pos.Tick + 1}
	}
	tick := cp.Pos.Tick
	comp := rules.NewFanout(r.opts.Rules, r.opts.Targets)
	var pending []*Txn
	bytes := 0
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		if !opened {
			// Make the window durable before its first batch leaves, so a
			// crash re-reads exactly this window and cuts the same batches.
			open := r.cp
			open.Pos, open.Window, open.Prev, open.Lineage = cp.Pos, cp.Window, cp.Prev, cp.Lineage
			if err := r.save(ctx, open); err != nil {
				return err
			}
			opened = true
			fault.Point(fault.DrainWindowOpened)
		}
		if err := r.ship(ctx, comp, pending, tick); err != nil {
			return err
		}
		comp.Reset()
		pending, bytes = pending[:0], 0
		return nil
	}
	found := false
	err = r.src.ReadWindow(ctx, cp.Prev, cp.Window, cp.Pos.Tx, func(txn *Txn) error {
		found = true
		for _, ch := range txn.Changes {
			if err := comp.Add(ctx, ch); err != nil {
				return err
			}
		}
		comp.Commit(txn.Time)
		pending = append(pending, txn)
		bytes += txn.Bytes
		if comp.Events() >= r.opts.MaxRows || bytes >= r.opts.MaxBytes {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return false, err
	}
	if !found && !opened {
		// Nothing committed since Prev; leave the checkpoint alone.
		return false, nil
	}
	done := r.cp
	done.Pos, done.Prev, done.Window = batch.Position{Tick: tick, Tx: batch.TxEnd}, cp.Window, ""
	if err := r.save(ctx, done); err != nil {
		return false, err
	}
	if n, err := r.src.Purge(ctx, cp.Window); err != nil {
		r.log.Warn("purge shipped events", "err", err)
	} else if n > 0 {
		r.log.Debug("purged shipped events", "events", n)
	}
	return true, nil
}

// ship ships the compacted transactions as one batch (see shipBatch). The
// checkpoint it saves keeps the window open: the window was saved in it
// before the window's first batch left.
func (r *run) ship(ctx context.Context, comp *rules.Fanout, txns []*Txn, tick uint64) error {
	c := cut{comp: comp, txns: len(txns), to: batch.Position{Tick: tick, Tx: txns[len(txns)-1].Max}}
	for _, t := range txns {
		c.capturedAt = max(c.capturedAt, t.Time)
	}
	b, err := shipBatch(ctx, &r.held, r.pub, r.opts, r.st, c, nil)
	if err != nil {
		return err
	}
	r.log.Debug("batch shipped", "pipeline", r.opts.Pipeline, "seq", b.Seq, "to", b.To, "txns", b.Txns, "rows", b.Rows())
	return nil
}
