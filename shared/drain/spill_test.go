package drain_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/capture/slot"
	"github.com/pgferry/pgferry/shared/drain"
	"github.com/pgferry/pgferry/shared/queue"
)

// crashingParts is the claim-check publisher whose part store fails the
// part numbered at (from 1), as if the drain died while spilling it.
type crashingParts struct {
	*queue.ClaimCheck
	at, puts int
}

var errSpillCrash = errors.New("simulated crash while spilling")

func (c *crashingParts) PutPart(ctx context.Context, group, spill string, n int, body []byte) (string, error) {
	c.puts++
	if c.puts == c.at {
		return "", errSpillCrash
	}
	return c.ClaimCheck.PutPart(ctx, group, spill, n, body)
}

func (r *rig) spillDrainer(owner string, maxRows int, pub queue.Publisher) *drain.SlotDrainer {
	return drain.NewSlot(slot.New(r.src, r.cfg, r.log), r.store, pub, drain.Options{
		Pipeline: r.cfg.Name, Targets: r.cfg.TargetNames(), Owner: owner, Lease: r.cfg.Drain.Lease.Duration,
		MaxRows: maxRows, MaxBytes: r.cfg.Batch.MaxBytes, Margin: 2 * time.Second,
	}, r.log, nil)
}

// partIDs reads a spilled batch's parts and returns the ids it upserts
// into t, in order, and how many parts there were.
func partIDs(t *testing.T, r *rig, b *batch.Batch) []string {
	t.Helper()
	var out []string
	for _, k := range b.Parts {
		data, err := queue.OpenPart(context.Background(), r.payloads, k)
		if err != nil {
			t.Fatal(err)
		}
		eps, err := batch.DecodePart(data)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ids(&batch.Batch{Epochs: eps})...)
	}
	return out
}

// TestSlotSpillsLargeTransactionAndCrashMidSpillPublishesNothing: a
// transaction of 50 rows with batch.max_rows 10 leaves in parts of about
// 10 rows and ships as one batch naming them. A drain that dies while
// writing its third part publishes nothing, checkpoints nothing and does
// not confirm the slot; the next drain ships the transaction whole, after
// the whole transaction before it.
func TestSlotSpillsLargeTransactionAndCrashMidSpillPublishesNothing(t *testing.T) {
	t.Parallel()
	r := newSlotRig(t, tDDL)
	ctx := context.Background()
	r.run(r.slotDrainer("setup", 10, r.store, r.q, nil))
	r.exec(`INSERT INTO t VALUES (0, 'small, before')`)
	r.exec(`INSERT INTO t SELECT g, 'x' FROM generate_series(1, 50) g`)
	before, err := r.store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	confirmed := r.confirmed()

	cc := &queue.ClaimCheck{Next: r.q, Store: r.payloads, Limit: r.cfg.Batch.InlineLimit}
	if _, err := r.spillDrainer("d1", 10, &crashingParts{ClaimCheck: cc, at: 3}).Run(ctx); !errors.Is(err, errSpillCrash) {
		t.Fatalf("crashing drain: err = %v, want the simulated crash", err)
	}
	if got := r.shipped(r.q); len(got) != 0 {
		t.Fatalf("a drain that died mid-spill published %d batches", len(got))
	}
	cp, err := r.store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Seq != before.Seq || cp.Pos != before.Pos {
		t.Fatalf("checkpoint moved to seq %d at %s during a failed spill (was %d at %s)", cp.Seq, cp.Pos, before.Seq, before.Pos)
	}
	if got := r.confirmed(); got != confirmed {
		t.Fatalf("slot confirmed at %s after a failed spill, want %s", got, confirmed)
	}

	var shipped []*batch.Batch
	d := r.spillDrainer("d2", 10, cc)
	st := r.run(d)
	if st.Batches != 1 {
		t.Fatalf("the resumed drain shipped %d batches, want 1 (the small transaction rides with the large one)", st.Batches)
	}
	shipped = r.shipped(r.q)
	if len(shipped) != 1 {
		t.Fatalf("queue holds %d batches, want 1", len(shipped))
	}
	b := shipped[0]
	assertChained(t, before.LastSent, shipped)
	if b.Version != batch.VersionParts || len(b.Epochs) != 0 || b.Txns != 2 || b.Events != 51 || b.Rows() != 51 {
		t.Fatalf("spilled batch: version %d, %d epochs, %d txns, %d events, %d rows; want version %d, 0, 2, 51, 51",
			b.Version, len(b.Epochs), b.Txns, b.Events, b.Rows(), batch.VersionParts)
	}
	if len(b.Parts) < 5 {
		t.Fatalf("51 row events with max_rows 10 went out in %d parts, want at least 5", len(b.Parts))
	}
	want := []string{"0"}
	for i := 1; i <= 50; i++ {
		want = append(want, strconv.Itoa(i))
	}
	if got := partIDs(t, r, b); !slices.Equal(got, want) {
		t.Fatalf("the parts hold ids %v, want %v", got, want)
	}
	if c := r.confirmed(); uint64(c) < b.To.Tick {
		t.Fatalf("slot confirmed at %s, want at least the spilled batch's end %s", c, slot.LSN(b.To.Tick))
	}
}
