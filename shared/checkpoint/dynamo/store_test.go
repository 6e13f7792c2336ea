package dynamo_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/checkpoint"
	"github.com/pgferry/pgferry/shared/checkpoint/dynamo"
	"github.com/pgferry/pgferry/shared/testenv"
)

// newStore returns a store for a fresh pipeline in a fresh table on
// dynalite.
func newStore(t *testing.T) *dynamo.Store {
	t.Helper()
	ctx := context.Background()
	ac := testenv.AWSConfig(t)
	db := dynamodb.NewFromConfig(ac)
	table := testenv.Name("pgferry-test-state-")
	if err := dynamo.EnsureTable(ctx, db, table); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = db.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: &table})
	})
	return dynamo.New(db, table, testenv.Name("p"))
}

func pos(tick uint64, tx int64) batch.Position { return batch.Position{Tick: tick, Tx: tx} }

func TestLeaseIsExclusiveUntilItExpires(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()

	// Long enough that the second owner surely tries while it is live,
	// however slow the emulator's answer on a busy machine.
	a, err := s.Acquire(ctx, "a", 5*time.Second)
	if err != nil {
		t.Fatalf("acquire a free lease: %v", err)
	}
	if got, want := a.Owner, "a"; got != want {
		t.Fatalf("lease owner = %q, want %q", got, want)
	}
	if _, err := s.Acquire(ctx, "b", time.Second); !errors.Is(err, checkpoint.ErrLeaseHeld) {
		t.Fatalf("second owner acquiring a live lease: err = %v, want ErrLeaseHeld", err)
	}

	time.Sleep(time.Until(a.Expires) + 100*time.Millisecond)
	b, err := s.Acquire(ctx, "b", time.Minute)
	if err != nil {
		t.Fatalf("acquire an expired lease: %v", err)
	}
	if b.Gen <= a.Gen {
		t.Fatalf("taken-over lease has generation %d, want more than the first holder's %d", b.Gen, a.Gen)
	}

	// The first holder is fenced off.
	if err := s.Save(ctx, a, checkpoint.Checkpoint{Pos: pos(1, 1)}); !errors.Is(err, checkpoint.ErrLeaseLost) {
		t.Fatalf("save by the holder that lost the lease: err = %v, want ErrLeaseLost", err)
	}
	if _, err := s.Renew(ctx, a, time.Minute); !errors.Is(err, checkpoint.ErrLeaseLost) {
		t.Fatalf("renew by the holder that lost the lease: err = %v, want ErrLeaseLost", err)
	}
	// Its Release must not free the lease of the new holder.
	if err := s.Release(ctx, a); err != nil {
		t.Fatalf("release of a lost lease: %v", err)
	}
	if _, err := s.Acquire(ctx, "c", time.Minute); !errors.Is(err, checkpoint.ErrLeaseHeld) {
		t.Fatalf("acquire after the old holder released a lost lease: err = %v, want ErrLeaseHeld", err)
	}
	// The new holder is unaffected.
	if err := s.Save(ctx, b, checkpoint.Checkpoint{Pos: pos(1, 1)}); err != nil {
		t.Fatalf("save by the new holder: %v", err)
	}
	if _, err := s.Renew(ctx, b, time.Minute); err != nil {
		t.Fatalf("renew by the new holder: %v", err)
	}
	cp, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cp.Pos, pos(1, 1); got != want {
		t.Fatalf("stored position = %s, want %s (only the new holder's write)", got, want)
	}
}

func TestRenewKeepsLeaseLive(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	a, err := s.Acquire(ctx, "a", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if a, err = s.Renew(ctx, a, time.Minute); err != nil {
		t.Fatalf("renew: %v", err)
	}
	time.Sleep(1100 * time.Millisecond) // past the original expiry
	if _, err := s.Acquire(ctx, "b", time.Second); !errors.Is(err, checkpoint.ErrLeaseHeld) {
		t.Fatalf("acquire of a renewed lease after its first expiry: err = %v, want ErrLeaseHeld", err)
	}
	if err := s.Save(ctx, a, checkpoint.Checkpoint{Pos: pos(1, 0)}); err != nil {
		t.Fatalf("save under the renewed lease: %v", err)
	}
}

func TestReleaseLetsAnotherOwnerAcquireAtOnce(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	a, err := s.Acquire(ctx, "a", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctx, a); err != nil {
		t.Fatalf("release: %v", err)
	}
	b, err := s.Acquire(ctx, "b", time.Hour)
	if err != nil {
		t.Fatalf("acquire right after release: %v", err)
	}
	if b.Gen <= a.Gen {
		t.Fatalf("generation after hand-over = %d, want more than %d", b.Gen, a.Gen)
	}
	if err := s.Save(ctx, a, checkpoint.Checkpoint{Pos: pos(1, 0)}); !errors.Is(err, checkpoint.ErrLeaseLost) {
		t.Fatalf("save by the owner that released: err = %v, want ErrLeaseLost", err)
	}
}

func TestSaveRequiresPositionToGrow(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	l, err := s.Acquire(ctx, "a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctx, l, checkpoint.Checkpoint{Pos: pos(2, 5), Seq: 1}); err != nil {
		t.Fatalf("first save: %v", err)
	}
	for _, c := range []struct {
		name string
		p    batch.Position
	}{
		{"equal", pos(2, 5)},
		{"lower tx", pos(2, 4)},
		{"lower tick", pos(1, batch.TxEnd)},
		{"zero", batch.Position{}},
	} {
		if err := s.Save(ctx, l, checkpoint.Checkpoint{Pos: c.p, Seq: 9}); !errors.Is(err, checkpoint.ErrStale) {
			t.Errorf("save of %s position %s after %s: err = %v, want ErrStale", c.name, c.p, pos(2, 5), err)
		}
	}
	// Positions compare as numbers, not as their digits: 10 is after 9.
	if err := s.Save(ctx, l, checkpoint.Checkpoint{Pos: pos(2, 50), Seq: 2}); err != nil {
		t.Fatalf("save of a later position: %v", err)
	}
	if err := s.Save(ctx, l, checkpoint.Checkpoint{Pos: pos(10, 0), Seq: 3}); err != nil {
		t.Fatalf("save of a later tick: %v", err)
	}
	cp, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cp.Pos, pos(10, 0); got != want {
		t.Fatalf("stored position = %s, want %s", got, want)
	}
	if got, want := cp.Seq, uint64(3); got != want {
		t.Fatalf("stored seq = %d, want %d (a refused save must change nothing)", got, want)
	}
}

func TestLoadOfNeverSavedPipelineIsZero(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	cp, err := s.Load(ctx)
	if err != nil {
		t.Fatalf("load before anything exists: %v", err)
	}
	if got, want := cp, (checkpoint.Checkpoint{}); got != want {
		t.Fatalf("load before anything exists = %+v, want the zero checkpoint", got)
	}
	// Holding the lease creates the item, but still no checkpoint.
	if _, err := s.Acquire(ctx, "a", time.Minute); err != nil {
		t.Fatal(err)
	}
	cp, err = s.Load(ctx)
	if err != nil {
		t.Fatalf("load after acquire: %v", err)
	}
	if got, want := cp, (checkpoint.Checkpoint{}); got != want {
		t.Fatalf("load after acquire only = %+v, want the zero checkpoint", got)
	}
}

func TestLoadReturnsWhatSaveStored(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	l, err := s.Acquire(ctx, "a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []checkpoint.Checkpoint{
		// An open window: its first batch is out.
		{Pos: pos(7, 1234), LastSent: pos(7, 1234), Seq: 42, Prev: "100:105:101,103", Window: "104:110:104,107", Lineage: "0123456789abcdef"},
		// The window closed.
		{Pos: pos(7, batch.TxEnd), LastSent: pos(7, 1234), Seq: 42, Prev: "104:110:104,107", Window: "", Lineage: "0123456789abcdef"},
		// The capture mode is recorded.
		{Pos: pos(8, batch.TxEnd), LastSent: pos(7, 1234), Seq: 42, Prev: "104:110:104,107", Lineage: "0123456789abcdef", Capture: "trigger"},
		// Extremes survive the round trip.
		{Pos: pos(1<<63, batch.TxEnd), LastSent: pos(1<<63, batch.TxEnd-1), Seq: 1<<62 + 1, Prev: "1:1:", Capture: "slot"},
		// A slot batch checkpointed before it was published.
		{Pos: pos(1<<63+9, 0), LastSent: pos(1<<63+9, 0), Seq: 1<<62 + 2, Capture: "slot",
			Resend: checkpoint.Resend{Pending: true, Read: pos(1<<63+5, 0), From: pos(1<<63, batch.TxEnd-1)}},
		// The next save without one clears it.
		{Pos: pos(1<<63+10, 0), LastSent: pos(1<<63+10, 0), Seq: 1<<62 + 3, Capture: "slot"},
	} {
		before := time.Now().Add(-time.Second)
		if err := s.Save(ctx, l, want); err != nil {
			t.Fatalf("save %+v: %v", want, err)
		}
		got, err := s.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got.Saved.Before(before) || got.Saved.After(time.Now().Add(time.Second)) {
			t.Fatalf("loaded checkpoint saved at %v, want about now", got.Saved)
		}
		got.Saved = time.Time{}
		if got != want {
			t.Fatalf("load after save:\n got %+v\nwant %+v", got, want)
		}
	}
}

// A save without a mode (a caller that does not know it) keeps the mode
// already recorded: the mode is what tells a drain of the other capture
// mode to stop.
func TestSaveWithoutModeKeepsTheRecordedMode(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	l, err := s.Acquire(ctx, "a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctx, l, checkpoint.Checkpoint{Pos: pos(1, 0), Lineage: "x", Capture: "slot"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctx, l, checkpoint.Checkpoint{Pos: pos(2, 0), Lineage: "x"}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got.Capture != "slot" {
		t.Fatalf("capture after a save without one = %q, want %q", got.Capture, "slot")
	}
}

// ClearResend drops the resend mark of the checkpoint at the given
// position, and only for the lease holder.
func TestClearResendDropsTheMarkOnly(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	l, err := s.Acquire(ctx, "a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	marked := checkpoint.Checkpoint{Pos: pos(9, 0), LastSent: pos(9, 0), Seq: 3, Lineage: "x", Capture: "slot",
		Resend: checkpoint.Resend{Pending: true, Read: pos(5, 0), From: pos(5, 0)}}
	if err := s.Save(ctx, l, marked); err != nil {
		t.Fatal(err)
	}
	if err := s.ClearResend(ctx, l, pos(8, 0)); !errors.Is(err, checkpoint.ErrStale) {
		t.Fatalf("clear at another position: err = %v, want ErrStale", err)
	}
	if err := s.ClearResend(ctx, checkpoint.Lease{Owner: "b", Gen: l.Gen}, pos(9, 0)); !errors.Is(err, checkpoint.ErrLeaseLost) {
		t.Fatalf("clear by another owner: err = %v, want ErrLeaseLost", err)
	}
	if cp, err := s.Load(ctx); err != nil || !cp.Resend.Pending {
		t.Fatalf("after refused clears: resend %+v, err %v; want the mark kept", cp.Resend, err)
	}
	if err := s.ClearResend(ctx, l, pos(9, 0)); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got.Saved = time.Time{}
	want := marked
	want.Resend = checkpoint.Resend{}
	if got != want {
		t.Fatalf("after clear:\n got %+v\nwant %+v", got, want)
	}
}
