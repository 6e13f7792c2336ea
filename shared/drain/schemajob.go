package drain

import (
	"context"
	"log/slog"
	"time"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/checkpoint"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/queue"
)

// Schema jobs. A schema change on the source must reach each target
// between the batches it belongs between. The drain checks a fingerprint
// of the replicated catalog (Options.Schema) at the start of each run and,
// at most every Options.SchemaEvery, before each snapshot window (trigger
// capture) or batch (slot capture). When it differs from the
// checkpoint's, the drain ships a schema job first: a message with no
// rows that occupies its own position range, so that appliers order it
// like a batch (replay and gap checks unchanged), and checkpoints the new
// fingerprint with it. A DDL that commits between the check and the
// window's snapshot reaches the target after some of the rows that need
// it; the applier's retry-after-DDL covers those.
//
// Job positions: trigger capture puts the job at (next tick, 0), outside
// any window, only when no window is open; slot capture at (last LSN,
// Tx+1), just after the last shipped commit and before the next one. Both
// are strictly after the checkpoint and before the next batch's end.

// defaultSchemaEvery is how often a busy drain looks for schema changes.
const defaultSchemaEvery = time.Second

// schemaCheck decides whether to look at the fingerprint now.
type schemaCheck struct {
	last time.Time
}

func (s *schemaCheck) due(opts Options, force bool) bool {
	if opts.Schema == nil {
		return false
	}
	every := opts.SchemaEvery
	if every == 0 {
		every = defaultSchemaEvery
	}
	if !force && time.Since(s.last) < every {
		return false
	}
	s.last = time.Now()
	return true
}

// shipSchemaJob ships a schema job ending at to to every target when the
// catalog's fingerprint differs from cp's (or force), then saves the
// checkpoint with save. It returns the checkpoint as saved, or cp when
// nothing was shipped.
func shipSchemaJob(ctx context.Context, pub queue.Publisher, opts Options, save func(checkpoint.Checkpoint) error,
	cp checkpoint.Checkpoint, to batch.Position, force bool) (checkpoint.Checkpoint, bool, error) {
	fp, err := opts.Schema(ctx)
	if err != nil {
		return cp, false, err
	}
	if fp == cp.Schema && !force {
		return cp, false, nil
	}
	reason := "source catalog changed"
	if force {
		reason = "forced"
	}
	b := batch.Batch{
		Version:  batch.VersionSchema,
		Pipeline: opts.Pipeline,
		Lineage:  cp.Lineage,
		Seq:      cp.Seq + 1,
		From:     cp.LastSent,
		To:       to,
		Schema:   &batch.SchemaJob{Fingerprint: fp, Reason: reason},
	}
	if err := publishAll(ctx, pub, opts, &b, func(string) []batch.Epoch { return nil }, nil); err != nil {
		return cp, false, err
	}
	next := cp
	next.Pos, next.Seq, next.LastSent, next.Schema = to, b.Seq, to, fp
	// A job follows batches that are on the queue (see ShipSchemaJob).
	next.Resend = checkpoint.Resend{}
	if err := save(next); err != nil {
		return cp, false, err
	}
	if opts.OnShip != nil {
		opts.OnShip(&b)
	}
	return next, true, nil
}

// ShipSchemaJob puts a schema job in the stream outside a drain run (the
// schema-diff function, on its schedule or on demand): it takes the drain
// lease, ships a job when the fingerprint changed (or always, with force)
// and releases the lease. slot selects slot-capture positions. It returns
// whether a job was shipped; ErrBusy when a drain holds the lease, and
// false with no error when a trigger window is open (the drain ships the
// job itself before its next window).
func ShipSchemaJob(ctx context.Context, cps Checkpoints, pub queue.Publisher, opts Options, slot, force bool) (bool, error) {
	lease, release, err := acquire(ctx, cps, opts, slog.New(slog.DiscardHandler))
	if err != nil {
		return false, err
	}
	defer release()
	cp, err := cps.Load(ctx)
	if err != nil {
		return false, err
	}
	mode := config.CaptureTrigger
	if slot {
		mode = config.CaptureSlot
	}
	// Positions of the other mode cannot place a job in this mode's stream.
	if err := CheckCapture(ctx, cp, mode, nil); err != nil {
		return false, err
	}
	cp.Capture = mode
	if cp.Lineage == "" || (!slot && cp.Window != "") || cp.Resend.Pending {
		// Nothing shipped yet (the first drain run ships the first job
		// itself), a trigger window is half shipped, or the last slot
		// batch may not be on the queue (a job queued ahead of its resend
		// would leave a gap no later message fills; the drain resends it
		// and then ships the job itself).
		return false, nil
	}
	to := batch.Position{Tick: cp.Pos.Tick + 1}
	if slot {
		to = batch.Position{Tick: cp.Pos.Tick, Tx: cp.Pos.Tx + 1}
	}
	save := func(c checkpoint.Checkpoint) error { return cps.Save(ctx, lease, c) }
	_, shipped, err := shipSchemaJob(ctx, pub, opts, save, cp, to, force)
	return shipped, err
}
