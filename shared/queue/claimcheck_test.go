package queue_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/pgferry/pgferry/shared/payload/s3store"
	"github.com/pgferry/pgferry/shared/queue"
	"github.com/pgferry/pgferry/shared/queue/sqsfifo"
	"github.com/pgferry/pgferry/shared/testenv"
)

// limit is the inline limit used here: small, so a large body is cheap.
const limit = 4096

type rig struct {
	q     *sqsfifo.Queue
	store *s3store.Store
	cc    *queue.ClaimCheck
}

// newRig makes a fresh FIFO queue and bucket on the emulators.
func newRig(t *testing.T) *rig {
	t.Helper()
	ctx := context.Background()
	ac := testenv.AWSConfig(t)
	sqsc := sqs.NewFromConfig(ac)
	s3c := s3store.NewClient(ac)
	name := testenv.Name("pgferry-test-cc-")
	q, dlq, err := sqsfifo.Ensure(ctx, sqsc, name+".fifo", 5, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, u := range []string{q.URL(), dlq} {
			_, _ = sqsc.DeleteQueue(context.Background(), &sqs.DeleteQueueInput{QueueUrl: &u})
		}
	})
	if err := s3store.EnsureBucket(ctx, s3c, name); err != nil {
		t.Fatal(err)
	}
	store := s3store.New(s3c, name)
	return &rig{q: q, store: store, cc: &queue.ClaimCheck{Next: q, Store: store, Limit: limit}}
}

// receiveAll takes every message off the queue, deleting each one so that
// the FIFO group unlocks for the next, until a receive comes back empty.
func (r *rig) receiveAll(t *testing.T) []queue.Message {
	t.Helper()
	ctx := context.Background()
	var out []queue.Message
	for {
		msgs, err := r.q.Receive(ctx, 10, time.Second, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 0 {
			return out
		}
		for _, m := range msgs {
			if err := r.q.Delete(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
		out = append(out, msgs...)
	}
}

// payload returns n bytes holding every byte value, so that any
// re-encoding on the way would show.
func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/256)
	}
	return b
}

func TestLargeBodyTravelsThroughS3AndOpensExactly(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ctx := context.Background()
	body := payload(300 << 10) // over SQS's own 256 KiB limit too
	if err := r.cc.Publish(ctx, "p.t", "p.t.1", body); err != nil {
		t.Fatalf("publish large body: %v", err)
	}
	msgs := r.receiveAll(t)
	if got, want := len(msgs), 1; got != want {
		t.Fatalf("received %d messages, want %d", got, want)
	}
	m := msgs[0]
	if len(m.Body) > 512 {
		t.Fatalf("queued body is %d bytes, want a small claim-check pointer", len(m.Body))
	}
	if !bytes.HasPrefix(m.Body, []byte(`{"claim":`)) {
		t.Fatalf("queued body %q is not a claim-check pointer", m.Body)
	}
	if got, want := m.Group, "p.t"; got != want {
		t.Fatalf("message group = %q, want %q", got, want)
	}
	got, err := queue.Open(ctx, r.store, m.Body)
	if err != nil {
		t.Fatalf("open claim check: %v", err)
	}
	if !bytes.Equal(got, body) {
		t.Fatalf("opened payload differs from what was published (%d bytes, want %d)", len(got), len(body))
	}
}

func TestSmallBodyIsSentInline(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ctx := context.Background()
	for _, n := range []int{1, limit} { // the limit itself still fits
		body := bytes.Repeat([]byte("x"), n)
		if err := r.cc.Publish(ctx, "p.t", fmt.Sprintf("inline.%d", n), body); err != nil {
			t.Fatalf("publish %d bytes: %v", n, err)
		}
		msgs := r.receiveAll(t)
		if got, want := len(msgs), 1; got != want {
			t.Fatalf("received %d messages, want %d", got, want)
		}
		if !bytes.Equal(msgs[0].Body, body) {
			t.Fatalf("a %d-byte body was not sent inline as is: got %.40q…", n, msgs[0].Body)
		}
		opened, err := queue.Open(ctx, r.store, msgs[0].Body)
		if err != nil {
			t.Fatalf("open inline body: %v", err)
		}
		if !bytes.Equal(opened, body) {
			t.Fatalf("Open changed an inline body")
		}
	}
}

func TestSameDedupIDIsQueuedOnce(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ctx := context.Background()
	small := []byte(`{"v":1}`)
	large := payload(limit + 1)
	for _, body := range [][]byte{small, small, large, large} {
		dedup := "small"
		if len(body) > limit {
			dedup = "large"
		}
		if err := r.cc.Publish(ctx, "p.t", dedup, body); err != nil {
			t.Fatalf("publish %s: %v", dedup, err)
		}
	}
	msgs := r.receiveAll(t)
	if got, want := len(msgs), 2; got != want {
		t.Fatalf("received %d messages after publishing two dedup ids twice each, want %d", got, want)
	}
	for i, want := range [][]byte{small, large} {
		got, err := queue.Open(ctx, r.store, msgs[i].Body)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("message %d does not hold the published payload", i)
		}
	}
}
