package apply

import (
	"context"
	"errors"
	"testing"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/queue"
)

// memStore is a payload store in memory.
type memStore map[string][]byte

func (m memStore) Put(_ context.Context, key string, data []byte) error { m[key] = data; return nil }
func (m memStore) Get(_ context.Context, key string) ([]byte, error) {
	d, ok := m[key]
	if !ok {
		return nil, errors.New("no such key")
	}
	return d, nil
}

// streamingApplier is a fakeApplier that applies spilled batches,
// recording the epochs it was streamed.
type streamingApplier struct {
	fakeApplier
	seen [][]batch.Epoch
}

func (a *streamingApplier) ApplyParts(ctx context.Context, b *batch.Batch, parts Parts) (Result, error) {
	err := parts(ctx, func(eps []batch.Epoch) error { a.seen = append(a.seen, eps); return nil })
	return Result{Applied: err == nil, Rows: b.Rows()}, err
}

func spilled(t *testing.T, store memStore, n int) []byte {
	t.Helper()
	var keys []string
	for i := range n {
		body, err := batch.EncodePart([]batch.Epoch{{Truncate: []batch.Table{{Schema: "s", Name: string(rune('a' + i))}}}})
		if err != nil {
			t.Fatal(err)
		}
		key, err := (&queue.ClaimCheck{Store: store}).PutPart(context.Background(), "p.replica", "x", i, body)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, key)
	}
	b := &batch.Batch{Pipeline: "p", Target: "replica", Seq: 1, To: batch.Position{Tick: 1}, Parts: keys, NetRows: 7}
	body, err := b.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// TestHandlerStreamsPartsOrRefuses: a spilled batch reaches an applier
// that can stream it part by part, in order; one that cannot refuses it
// with ErrCannotStream instead of applying an empty batch.
func TestHandlerStreamsPartsOrRefuses(t *testing.T) {
	ctx := context.Background()
	store := memStore{}
	body := spilled(t, store, 3)

	sa := &streamingApplier{}
	h := &Handler{Pipeline: "p", Targets: map[string]Applier{"replica": sa}, Payloads: store}
	b, res, err := h.Handle(ctx, body)
	if err != nil || !res.Applied || res.Rows != 7 || b.Version != batch.VersionParts {
		t.Fatalf("streaming applier: %+v, err %v", res, err)
	}
	if len(sa.seen) != 3 || sa.seen[0][0].Truncate[0].Name != "a" || sa.seen[2][0].Truncate[0].Name != "c" {
		t.Fatalf("streamed parts %+v, want a, b, c in order", sa.seen)
	}
	if len(sa.applied) != 0 {
		t.Fatal("a spilled batch went to Apply")
	}

	fa := &fakeApplier{}
	h = &Handler{Pipeline: "p", Targets: map[string]Applier{"replica": fa}, Payloads: store}
	if _, _, err := h.Handle(ctx, body); !errors.Is(err, ErrCannotStream) {
		t.Fatalf("non-streaming applier: err = %v, want ErrCannotStream", err)
	}
	if len(fa.applied) != 0 {
		t.Fatal("a non-streaming applier was given a spilled batch")
	}
}
