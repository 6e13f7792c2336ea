package drain

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/checkpoint"
	"github.com/pgferry/pgferry/shared/rules"
)

// steps records, in order, what shipBatch asked of the lease store, the
// queue and the source.
type steps struct {
	log    []string
	failOn string // the step that fails
	saved  []checkpoint.Checkpoint
}

func (s *steps) do(step string) error {
	s.log = append(s.log, step)
	if step == s.failOn {
		return errors.New(step + " failed")
	}
	return nil
}

func (s *steps) Acquire(context.Context, string, time.Duration) (checkpoint.Lease, error) {
	return checkpoint.Lease{}, nil
}

func (s *steps) Renew(_ context.Context, l checkpoint.Lease, ttl time.Duration) (checkpoint.Lease, error) {
	l.Expires = time.Now().Add(ttl)
	return l, s.do("renew")
}

func (s *steps) Release(context.Context, checkpoint.Lease) error { return nil }

func (s *steps) Load(context.Context) (checkpoint.Checkpoint, error) {
	return checkpoint.Checkpoint{}, nil
}

func (s *steps) Save(_ context.Context, _ checkpoint.Lease, cp checkpoint.Checkpoint) error {
	if err := s.do("save"); err != nil {
		return err
	}
	s.saved = append(s.saved, cp)
	return nil
}

func (s *steps) ClearResend(context.Context, checkpoint.Lease, batch.Position) error {
	return s.do("clear resend")
}

func (s *steps) Publish(_ context.Context, group, _ string, _ []byte) error {
	return s.do("publish " + group)
}

// Both drainers ship through shipBatch: the batch follows the checkpoint,
// reaches every target's queue before the checkpoint moves, and the
// source is confirmed only after the checkpoint is saved. A step that
// fails stops every later one, so nothing is checkpointed ahead of the
// queue nor confirmed ahead of the checkpoint.
func TestShipBatchQueuesThenCheckpointsThenConfirms(t *testing.T) {
	all := []string{"renew", "publish p.a", "publish p.b", "save", "confirm"}
	for i, failOn := range append([]string{""}, all...) {
		s := &steps{failOn: failOn}
		h := &held{store: s, ttl: time.Minute,
			// Less than half the lease left: shipBatch must renew first.
			lease: checkpoint.Lease{Expires: time.Now().Add(10 * time.Second)},
			cp: checkpoint.Checkpoint{Lineage: "L", Seq: 4, Window: "w",
				Pos: batch.Position{Tick: 7, Tx: 3}, LastSent: batch.Position{Tick: 7, Tx: 3}}}
		comp := rules.NewFanout(nil, []string{"a", "b"})
		if err := comp.Add(context.Background(), batch.Change{Table: batch.Table{Schema: "public", Name: "t"}, Op: batch.Truncate}); err != nil {
			t.Fatal(err)
		}
		var st Stats
		var shippedSeen []*batch.Batch
		opts := Options{Pipeline: "p", Targets: []string{"a", "b"}, OnShip: func(b *batch.Batch) { shippedSeen = append(shippedSeen, b) }}
		to := batch.Position{Tick: 7, Tx: 9}
		b, err := shipBatch(context.Background(), h, s, opts, &st, cut{comp: comp, txns: 2, to: to, capturedAt: 42},
			func() error { return s.do("confirm") })

		want := all
		if failOn != "" {
			want = all[:i] // up to and including the failing step
		}
		if !slices.Equal(s.log, want) {
			t.Errorf("failing %q: steps %q, want %q", failOn, s.log, want)
		}
		if failOn != "" {
			if err == nil || b != nil || st.Batches != 0 || len(shippedSeen) != 0 {
				t.Errorf("failing %q: err %v, batch %v, stats %+v, OnShip %d: want the error and nothing counted", failOn, err, b, st, len(shippedSeen))
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if b.Seq != 5 || b.From != (batch.Position{Tick: 7, Tx: 3}) || b.To != to || b.Lineage != "L" || b.Txns != 2 || b.CapturedAt != 42 {
			t.Errorf("batch %+v does not follow checkpoint %+v", b, h.cp)
		}
		got := s.saved[0]
		if got.Seq != 5 || got.Pos != to || got.LastSent != to || got.Window != "w" || got.Lineage != "L" {
			t.Errorf("saved checkpoint %+v, want Seq 5, Pos and LastSent %v, window and lineage kept", got, to)
		}
		if h.cp != got {
			t.Errorf("run's checkpoint %+v is not the saved one %+v", h.cp, got)
		}
		if st.Batches != 1 || st.Txns != 2 || len(shippedSeen) != 1 {
			t.Errorf("stats %+v, OnShip called %d times: want one batch of 2 transactions", st, len(shippedSeen))
		}
	}
}

// Slot capture (cut.checkpointFirst) saves the checkpoint first, marked
// as a batch to resend, then publishes, then confirms; the run's
// checkpoint drops the mark once the batch is on every queue. The resend
// of a marked batch publishes it again under the checkpoint's Seq, From
// and To, saving nothing.
func TestSlotShipBatchCheckpointsThenQueuesThenConfirms(t *testing.T) {
	all := []string{"renew", "save", "publish p.a", "publish p.b", "confirm"}
	prev := batch.Position{Tick: 7}
	for i, failOn := range append([]string{""}, all...) {
		s := &steps{failOn: failOn}
		h := &held{store: s, ttl: time.Minute,
			lease: checkpoint.Lease{Expires: time.Now().Add(10 * time.Second)},
			cp:    checkpoint.Checkpoint{Lineage: "L", Seq: 4, Pos: prev, LastSent: prev}}
		comp := rules.NewFanout(nil, []string{"a", "b"})
		if err := comp.Add(context.Background(), batch.Change{Table: batch.Table{Schema: "public", Name: "t"}, Op: batch.Truncate}); err != nil {
			t.Fatal(err)
		}
		var st Stats
		opts := Options{Pipeline: "p", Targets: []string{"a", "b"}}
		to := batch.Position{Tick: 9}
		c := cut{comp: comp, txns: 1, to: to, checkpointFirst: true}
		b, err := shipBatch(context.Background(), h, s, opts, &st, c, func() error { return s.do("confirm") })
		want := all
		if failOn != "" {
			want = all[:i]
		}
		if !slices.Equal(s.log, want) {
			t.Errorf("failing %q: steps %q, want %q", failOn, s.log, want)
		}
		if i == 0 || i > 2 { // the save went through
			marked := checkpoint.Resend{Pending: true, Read: prev, From: prev}
			if got := s.saved[0]; got.Seq != 5 || got.Pos != to || got.LastSent != to || got.Resend != marked {
				t.Errorf("failing %q: saved checkpoint %+v, want Seq 5 at %v marked %+v", failOn, got, to, marked)
			}
		}
		if failOn == "" || failOn == "confirm" {
			if h.cp.Resend.Pending {
				t.Errorf("failing %q: the run's checkpoint still marks a batch that is on every queue", failOn)
			}
		}
		if failOn != "" {
			if err == nil || st.Batches != 0 {
				t.Errorf("failing %q: err %v, stats %+v: want the error and nothing counted", failOn, err, st)
			}
			continue
		}
		if err != nil || b.Seq != 5 || b.From != prev || b.To != to {
			t.Fatalf("batch %+v, err %v: want seq 5 over %v..%v", b, err, prev, to)
		}

		// The next run finds the mark and resends exactly that batch.
		s = &steps{}
		h = &held{store: s, ttl: time.Minute, lease: checkpoint.Lease{Expires: time.Now().Add(time.Minute)}, cp: s2cp(b)}
		rb, err := resendBatch(context.Background(), h, s, opts, &st, c, nil)
		if err != nil {
			t.Fatal(err)
		}
		if rb.Seq != b.Seq || rb.From != b.From || rb.To != b.To {
			t.Errorf("resent batch %d %v..%v, want %d %v..%v", rb.Seq, rb.From, rb.To, b.Seq, b.From, b.To)
		}
		if want := []string{"publish p.a", "publish p.b"}; !slices.Equal(s.log, want) {
			t.Errorf("resend steps %q, want %q", s.log, want)
		}
		if h.cp.Resend.Pending {
			t.Error("the run's checkpoint still marks the resent batch")
		}
		// A cut that does not end where the checkpoint does is refused.
		h.cp = s2cp(b)
		c.to = batch.Position{Tick: 10}
		if _, err := resendBatch(context.Background(), h, s, opts, &st, c, nil); err == nil {
			t.Error("resending a batch cut elsewhere than the checkpoint's end succeeded")
		}
	}
}

// s2cp is the checkpoint a run that shipped b with checkpointFirst and
// then failed leaves behind.
func s2cp(b *batch.Batch) checkpoint.Checkpoint {
	return checkpoint.Checkpoint{Lineage: b.Lineage, Seq: b.Seq, Pos: b.To, LastSent: b.To,
		Resend: checkpoint.Resend{Pending: true, Read: b.From, From: b.From}}
}
