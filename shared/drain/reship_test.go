package drain_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/capture/slot"
	"github.com/pgferry/pgferry/shared/checkpoint"
	"github.com/pgferry/pgferry/shared/drain"
	"github.com/pgferry/pgferry/shared/queue"
)

// failingSave is a checkpoint store whose save number at (from 1) fails,
// as a DynamoDB outage fails it; with stored, the save is written before
// the failure is returned (the response was lost).
type failingSave struct {
	drain.Checkpoints
	at, saves  int
	stored     bool
	clearFails bool
}

var errSaveFailed = errors.New("simulated checkpoint save failure")

// ClearResend fails with clearFails.
func (f *failingSave) ClearResend(ctx context.Context, l checkpoint.Lease, pos batch.Position) error {
	if f.clearFails {
		return errSaveFailed
	}
	return f.Checkpoints.ClearResend(ctx, l, pos)
}

func (f *failingSave) Save(ctx context.Context, l checkpoint.Lease, cp checkpoint.Checkpoint) error {
	f.saves++
	if f.saves == f.at {
		if f.stored {
			if err := f.Checkpoints.Save(ctx, l, cp); err != nil {
				return err
			}
		}
		return errSaveFailed
	}
	return f.Checkpoints.Save(ctx, l, cp)
}

// modelTarget applies batches of table t as every applier must
// (apply.Applier): a batch ending at or below the watermark is a replay
// and changes nothing, one starting after it is a gap, and any other is
// applied whole (truncates, then deletes, then upserts) and moves the
// watermark to its end.
type modelTarget struct {
	wm   batch.Position
	rows map[string]string
}

func (m *modelTarget) apply(b *batch.Batch) error {
	if b.To.Compare(m.wm) <= 0 {
		return nil
	}
	if m.wm.Less(b.From) {
		return fmt.Errorf("batch %d covers %s..%s but the target is at %s", b.Seq, b.From, b.To, m.wm)
	}
	if len(b.Parts) > 0 {
		return fmt.Errorf("batch %d is spilled; the model target reads inline batches only", b.Seq)
	}
	for _, ep := range b.Epochs {
		if len(ep.Truncate) > 0 {
			clear(m.rows)
		}
		for _, s := range ep.Segments {
			for _, k := range s.Deletes {
				delete(m.rows, *k[0])
			}
		}
		for _, s := range ep.Segments {
			for _, u := range s.Upserts {
				m.rows[*u[0]] = *u[1]
			}
		}
	}
	m.wm = b.To
	return nil
}

// TestSlotReshipAfterLostCheckpointLosesNoDelete: a drain publishes a
// batch and then fails to checkpoint it (a DynamoDB outage, or a crash
// between the two). The batch is on the queue and will be applied, yet the
// next drain re-reads its transactions from the slot, together with a
// later one that deletes a row the lost-checkpoint batch inserted. Every
// message on the queue, applied in order with the watermark rules, must
// leave the target equal to the source: the delete must arrive. (The
// re-read used to cut one wider batch from the same start; its net
// changes drop the row inserted and deleted within it, so applied over the
// first batch, which holds the insert, it left the row on the target.)
func TestSlotReshipAfterLostCheckpointLosesNoDelete(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"checkpoint save fails", "checkpoint save stored but reported failed", "crash after send"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			r := newSlotRig(t, tDDL)
			ctx := context.Background()
			r.run(r.slotDrainer("setup", 100, r.store, r.q, nil))
			r.exec(`INSERT INTO t VALUES (1, 'one'), (2, 'two')`)
			r.exec(`INSERT INTO t VALUES (3, 'three')`)

			var cps drain.Checkpoints = r.store
			var pub queue.Publisher = r.q
			want := errCrash
			switch how {
			case "checkpoint save fails":
				cps, want = &failingSave{Checkpoints: r.store, at: 1}, errSaveFailed
			case "checkpoint save stored but reported failed":
				cps, want = &failingSave{Checkpoints: r.store, at: 1, stored: true}, errSaveFailed
			default:
				pub = &crashAfterSend{next: r.q, at: 1}
			}
			if _, err := r.slotDrainer("d1", 100, cps, pub, nil).Run(ctx); !errors.Is(err, want) {
				t.Fatalf("first drain: err = %v, want %v", err, want)
			}

			// Committed after the first drain read the slot: the next drain
			// reads it together with what the first one failed to checkpoint.
			r.exec(`DELETE FROM t WHERE id = 1`)
			r.exec(`UPDATE t SET v = 'two again' WHERE id = 2`)
			r.exec(`INSERT INTO t VALUES (4, 'four')`)
			r.run(r.slotDrainer("d2", 100, r.store, r.q, nil))

			queued := r.shipped(r.q)
			target := &modelTarget{rows: map[string]string{}}
			for _, b := range queued {
				if err := target.apply(b); err != nil {
					t.Fatal(err)
				}
			}
			source := map[string]string{}
			rows, err := r.src.Query(ctx, `SELECT id::text, v FROM t`)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var id, v string
				if err := rows.Scan(&id, &v); err != nil {
					t.Fatal(err)
				}
				source[id] = v
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(target.rows, source) {
				got, want := slices.Sorted(maps.Keys(target.rows)), slices.Sorted(maps.Keys(source))
				t.Fatalf("target after applying the queue holds %v (ids %v); the source holds %v (ids %v)", target.rows, got, source, want)
			}
			// Nor does the queue hold a batch that overlaps another.
			assertChained(t, batch.Position{}, queued)
		})
	}
}

// TestSlotResendMarkOfAConfirmedBatchIsDropped: a run whose last batch is
// on the queue and confirmed on the slot, but which could not clear the
// batch's resend mark, leaves the mark behind. The next run learns from
// the slot that the batch is out: it neither reads nor publishes it
// again, and clears the mark.
func TestSlotResendMarkOfAConfirmedBatchIsDropped(t *testing.T) {
	t.Parallel()
	r := newSlotRig(t, tDDL)
	ctx := context.Background()
	r.run(r.slotDrainer("setup", 100, r.store, r.q, nil))
	r.exec(`INSERT INTO t VALUES (1, 'one')`)
	r.run(r.slotDrainer("d1", 100, &failingSave{Checkpoints: r.store, clearFails: true}, r.q, nil))
	cp, err := r.store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !cp.Resend.Pending || uint64(r.confirmed()) < cp.Pos.Tick {
		t.Fatalf("after a run that could not clear the mark: resend %+v, slot confirmed at %s; want the mark and the slot past %s",
			cp.Resend, r.confirmed(), slot.LSN(cp.Pos.Tick))
	}
	sent := &crashAfterSend{next: r.q}
	if st := r.run(r.slotDrainer("d2", 100, r.store, sent, nil)); st.Batches != 0 || len(sent.sent) != 0 {
		t.Fatalf("the next run shipped %d batches (%d messages); want none: the marked batch is on the queue", st.Batches, len(sent.sent))
	}
	if cp, err := r.store.Load(ctx); err != nil || cp.Resend.Pending {
		t.Fatalf("after the next run: resend %+v, err %v; want the mark cleared", cp.Resend, err)
	}
	if got := allIDs(r.shipped(r.q)); !slices.Equal(got, []string{"1"}) {
		t.Fatalf("queue holds ids %v, want [1]", got)
	}
}
