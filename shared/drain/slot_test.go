package drain_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/capture/slot"
	"github.com/pgferry/pgferry/shared/checkpoint"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/drain"
	"github.com/pgferry/pgferry/shared/metrics"
	"github.com/pgferry/pgferry/shared/queue"
	"github.com/pgferry/pgferry/shared/testenv"
)

// newSlotRig is newRig with slot capture; the slot is dropped with the
// source database.
func newSlotRig(t *testing.T, ddl string) *rig {
	r := newRig(t, ddl)
	r.cfg.Source.Capture = config.CaptureSlot
	return r
}

func (r *rig) slotDrainer(owner string, maxRows int, store drain.Checkpoints, next queue.Publisher, emf *metrics.EMF) *drain.SlotDrainer {
	pub := &queue.ClaimCheck{Next: next, Store: r.payloads, Limit: r.cfg.Batch.InlineLimit}
	return drain.NewSlot(slot.New(r.src, r.cfg, r.log), store, pub, r.options(owner, maxRows), r.log, emf)
}

// confirmed returns the slot's confirmed_flush_lsn.
func (r *rig) confirmed() slot.LSN {
	r.t.Helper()
	var s string
	if err := r.src.QueryRow(context.Background(), `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`,
		r.cfg.SlotName()).Scan(&s); err != nil {
		r.t.Fatal(err)
	}
	lsn, err := slot.ParseLSN(s)
	if err != nil {
		r.t.Fatal(err)
	}
	return lsn
}

// TestSlotIsNotConfirmedBeforeCheckpoint: a drain that dies while
// publishing a batch has checkpointed it first, marked as one to resend,
// and leaves the slot confirmed at the previous batch, so the next drain
// reads the transaction again and re-ships the identical batch (which SQS
// deduplicates).
func TestSlotIsNotConfirmedBeforeCheckpoint(t *testing.T) {
	t.Parallel()
	r := newSlotRig(t, tDDL)
	ctx := context.Background()
	r.run(r.slotDrainer("setup", 1, r.store, r.q, nil))
	for i := 1; i <= 3; i++ {
		r.exec(`INSERT INTO t VALUES ($1, 'x')`, i)
	}

	crashed := &crashAfterSend{next: r.q, at: 2}
	if _, err := r.slotDrainer("d1", 1, r.store, crashed, nil).Run(ctx); !errors.Is(err, errCrash) {
		t.Fatalf("crashing drain: err = %v, want the simulated crash", err)
	}
	cp, err := r.store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	first, lostBatch := decodeSent(t, r, crashed.sent[0]), decodeSent(t, r, crashed.sent[1])
	if got, want := cp.Seq, uint64(2); got != want {
		t.Fatalf("checkpoint after the crash covers %d batches, want %d", got, want)
	}
	if want := (checkpoint.Resend{Pending: true, Read: first.To, From: first.To}); cp.Pos != lostBatch.To || cp.Resend != want {
		t.Fatalf("checkpoint after the crash is at %s with resend %+v; want at the unconfirmed batch's end %s with resend %+v",
			cp.Pos, cp.Resend, lostBatch.To, want)
	}
	if got := r.confirmed(); uint64(got) != first.To.Tick {
		t.Fatalf("slot confirmed at %s; want exactly the end of the batch before the unconfirmed one, %s",
			got, slot.LSN(first.To.Tick))
	}

	again := &crashAfterSend{next: r.q}
	r.run(r.slotDrainer("d2", 1, r.store, again, nil))
	if len(again.sent) == 0 {
		t.Fatal("the resumed drain sent nothing")
	}
	lost, reship := crashed.sent[1], again.sent[0]
	if reship.dedup != lost.dedup || !bytes.Equal(reship.body, lost.body) {
		t.Fatalf("re-shipped batch differs from the one sent before the crash:\n got %s %s\nwant %s %s", reship.dedup, reship.body, lost.dedup, lost.body)
	}
	got := r.shipped(r.q)
	assertChained(t, batch.Position{}, got)
	if got, want := allIDs(got), []string{"1", "2", "3"}; !slices.Equal(got, want) {
		t.Fatalf("queue holds ids %v, want %v", got, want)
	}
	if c := r.confirmed(); uint64(c) < got[len(got)-1].To.Tick {
		t.Fatalf("slot confirmed at %s after a clean drain, want at least the last batch's end %s", c, slot.LSN(got[len(got)-1].To.Tick))
	}
	if cp, err := r.store.Load(ctx); err != nil || cp.Resend.Pending {
		t.Fatalf("checkpoint after a clean drain: resend %+v, err %v; want none", cp.Resend, err)
	}
}

func decodeSent(t *testing.T, r *rig, s sent) *batch.Batch {
	t.Helper()
	data, err := queue.Open(context.Background(), r.payloads, s.body)
	if err != nil {
		t.Fatal(err)
	}
	b, err := batch.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSlotMovesWhileReplicatedTablesAreIdle: writes to tables outside the
// patterns must not pin WAL on the source; the drain confirms past them
// and reports the slot's retained WAL and lag.
func TestSlotMovesWhileReplicatedTablesAreIdle(t *testing.T) {
	t.Parallel()
	r := newSlotRig(t, tDDL+`; CREATE SCHEMA other; CREATE TABLE other.noise (id serial PRIMARY KEY, pad text)`)
	r.run(r.slotDrainer("setup", 100, r.store, r.q, nil))
	for i := 0; i < 20; i++ {
		r.exec(`INSERT INTO other.noise (pad) SELECT repeat('n', 500) FROM generate_series(1, 1000)`)
	}
	var after string
	if err := r.src.QueryRow(context.Background(), `SELECT pg_current_wal_lsn()::text`).Scan(&after); err != nil {
		t.Fatal(err)
	}
	afterLSN, _ := slot.ParseLSN(after)
	var out bytes.Buffer
	st := r.run(r.slotDrainer("idle", 100, r.store, r.q, metrics.New(&out)))
	if st.Batches != 0 {
		t.Fatalf("the drain shipped %d batches for writes to an unreplicated table", st.Batches)
	}
	if c := r.confirmed(); c < afterLSN {
		t.Fatalf("slot confirmed at %s, want past the unreplicated writes (%s)", c, afterLSN)
	}
	var doc map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(out.Bytes()), &doc); err != nil {
		t.Fatalf("metrics output %q: %v", out.String(), err)
	}
	lag, ok1 := doc[metrics.SlotLagBytes].(float64)
	_, ok2 := doc[metrics.RetainedWALBytes].(float64)
	if !ok1 || !ok2 || doc[metrics.DimPipeline] != r.cfg.Name {
		t.Fatalf("metrics line lacks the slot metrics: %s", out.String())
	}
	// Other tests write WAL on the same cluster meanwhile, so the lag is
	// bounded by what was written since the unreplicated writes.
	var since float64
	if err := r.src.QueryRow(context.Background(), `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)`, after).Scan(&since); err != nil {
		t.Fatal(err)
	}
	if lag > since {
		t.Fatalf("slot lag after an idle drain is %v bytes, more than the %v bytes written since the unreplicated writes", lag, since)
	}
}

// TestSlotDroppedAfterProgressIsLost: a slot that disappears once the
// pipeline has read from it is never silently re-created (that would skip
// whatever was committed meanwhile); the drain stops and says how to
// recover.
func TestSlotDroppedAfterProgressIsLost(t *testing.T) {
	t.Parallel()
	r := newSlotRig(t, tDDL)
	r.exec(`INSERT INTO t VALUES (1, 'x')`)
	r.run(r.slotDrainer("setup", 100, r.store, r.q, nil))
	r.exec(`SELECT pg_drop_replication_slot($1)`, r.cfg.SlotName())
	r.exec(`INSERT INTO t VALUES (2, 'lost while the slot was gone')`)
	_, err := r.slotDrainer("after", 100, r.store, r.q, nil).Run(context.Background())
	if !errors.Is(err, slot.ErrSlotLost) {
		t.Fatalf("drain after the slot was dropped: err = %v, want ErrSlotLost", err)
	}
	for _, want := range []string{r.cfg.SlotName(), "--reset", "--initial-load"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	var n int
	if err := r.src.QueryRow(context.Background(), `SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1`, r.cfg.SlotName()).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatal("the drain re-created the lost slot")
	}
}

// TestSlotInvalidatedByTheServerIsLost lets the server invalidate the slot
// (max_slot_wal_keep_size exceeded while no drain ran) on a cluster of the
// test's own: the next drain must stop with ErrSlotLost naming the slot and
// the recovery, and must not re-create the slot.
func TestSlotInvalidatedByTheServerIsLost(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster of its own")
	}
	admin := testenv.OwnCluster(t, "slotlost", 55450)
	r := newRigOn(t, tDDL, admin)
	r.cfg.Source.Capture = config.CaptureSlot
	r.exec(`ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'`)
	r.exec(`SELECT pg_reload_conf()`)
	r.exec(`INSERT INTO t VALUES (1, 'x')`)
	r.run(r.slotDrainer("setup", 100, r.store, r.q, nil))

	// No drain runs while far more WAL than the slot may keep is written
	// and checkpoints recycle it.
	r.exec(`CREATE TABLE filler_logged (v text)`)
	for i := 0; i < 6; i++ {
		r.exec(`INSERT INTO filler_logged SELECT repeat('w', 200) FROM generate_series(1, 50000)`)
		r.exec(`SELECT pg_switch_wal()`)
		r.exec(`CHECKPOINT`)
	}
	var status string
	if err := r.src.QueryRow(context.Background(), `SELECT coalesce(wal_status, '') FROM pg_replication_slots WHERE slot_name = $1`,
		r.cfg.SlotName()).Scan(&status); err != nil {
		t.Fatal(err)
	}
	if status != "lost" {
		t.Fatalf("the server did not invalidate the slot (wal_status %q): the test proves nothing", status)
	}
	_, err := r.slotDrainer("after", 100, r.store, r.q, nil).Run(context.Background())
	if !errors.Is(err, slot.ErrSlotLost) {
		t.Fatalf("drain after the server invalidated the slot: err = %v, want ErrSlotLost", err)
	}
	for _, want := range []string{r.cfg.SlotName(), "invalidated", "--reset", "--initial-load"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}
