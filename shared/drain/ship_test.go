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
