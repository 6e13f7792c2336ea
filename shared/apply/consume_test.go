package apply

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/queue"
)

// The consume step is pure logic over its ports: these tests use
// hand-written fakes. The runner's integration tests (poison, duplicates,
// long apply, crash while parking) run it against SQS and PostgreSQL.

// fakeQueue records what the step did to each message.
type fakeQueue struct {
	mu      sync.Mutex
	deleted []string
	hidden  map[string][]time.Duration // every visibility change, in order
}

func (q *fakeQueue) Delete(_ context.Context, m queue.Message) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.deleted = append(q.deleted, m.ID)
	return nil
}

func (q *fakeQueue) SetVisibility(_ context.Context, m queue.Message, d time.Duration) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.hidden == nil {
		q.hidden = map[string][]time.Duration{}
	}
	q.hidden[m.ID] = append(q.hidden[m.ID], d)
	return nil
}

// lastVisibility is the message's last visibility change, and whether
// there was one.
func (q *fakeQueue) lastVisibility(id string) (time.Duration, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	v := q.hidden[id]
	if len(v) == 0 {
		return 0, false
	}
	return v[len(v)-1], true
}

// fakeParker is a dead-letter queue; err makes parking fail.
type fakeParker struct {
	parked []string
	attrs  []map[string]string
	err    error
}

func (p *fakeParker) Park(_ context.Context, m queue.Message, attrs map[string]string) error {
	if p.err != nil {
		return p.err
	}
	p.parked = append(p.parked, m.ID)
	p.attrs = append(p.attrs, attrs)
	return nil
}

// fakeApplier fails the batches named in fail and applies the others.
type fakeApplier struct {
	fail    map[uint64]error
	applied []uint64
}

func (a *fakeApplier) Apply(_ context.Context, b *batch.Batch) (Result, error) {
	if err := a.fail[b.Seq]; err != nil {
		return Result{}, err
	}
	a.applied = append(a.applied, b.Seq)
	return Result{Applied: true, Rows: 1}, nil
}

func (a *fakeApplier) Watermark(context.Context, string) (batch.Position, error) {
	return batch.Position{}, nil
}

var (
	errConstraint = fmt.Errorf("pgapply: batch: %w", &pgconn.PgError{Code: "23514", Message: `violates check constraint "qty_is_small"`})
	errOutage     = fmt.Errorf("pgapply: batch: %w", &pgconn.PgError{Code: "57P01", Message: "terminating connection"})
)

// messages returns n messages of one group carrying batches 1..n, each
// received `receives` times.
func messages(t *testing.T, n, receives int) []queue.Message {
	t.Helper()
	var out []queue.Message
	for i := 1; i <= n; i++ {
		b := &batch.Batch{Pipeline: "p", Target: "replica", Seq: uint64(i),
			From: batch.Position{Tick: uint64(i - 1)}, To: batch.Position{Tick: uint64(i)}}
		body, err := b.Encode()
		if err != nil {
			t.Fatal(err)
		}
		id := strconv.Itoa(i)
		out = append(out, queue.Message{ID: "m" + id, Group: "p.replica", DedupID: "d" + id, Body: body,
			Receipt: "r" + id, Receives: receives})
	}
	return out
}

type consumeFixture struct {
	c       *Consumer
	q       *fakeQueue
	dlq     *fakeParker
	applier *fakeApplier
	logs    *bytes.Buffer
}

func newConsumeFixture(fail map[uint64]error) *consumeFixture {
	f := &consumeFixture{q: &fakeQueue{}, dlq: &fakeParker{}, applier: &fakeApplier{fail: fail}, logs: &bytes.Buffer{}}
	f.c = &Consumer{
		Handler:    &Handler{Pipeline: "p", Targets: map[string]Applier{"replica": f.applier}, MaxAttempts: 3},
		Queue:      f.q,
		Park:       f.dlq,
		Visibility: time.Minute,
		Log:        slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	return f
}

func ids(msgs []queue.Message) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, m.ID)
	}
	return out
}

func TestConsumeDeletesEachMessageOnlyAfterItsBatchIsApplied(t *testing.T) {
	f := newConsumeFixture(nil)
	var seen []uint64
	f.c.OnApplied = func(d Delivery) { seen = append(seen, d.Batch.Seq) }
	out := f.c.Consume(context.Background(), messages(t, 3, 1))
	if got, want := out.Applied, 3; got != want {
		t.Fatalf("applied %d, want %d", got, want)
	}
	if got, want := f.q.deleted, []string{"m1", "m2", "m3"}; !slices.Equal(got, want) {
		t.Errorf("deleted %v, want %v", got, want)
	}
	if got, want := f.applier.applied, []uint64{1, 2, 3}; !slices.Equal(got, want) || !slices.Equal(seen, want) {
		t.Errorf("applied %v, reported applied %v, want %v", got, seen, want)
	}
	if out.Failed != nil || len(out.Rest) > 0 || len(out.Parked) > 0 {
		t.Errorf("outcome %+v: want no failure, rest or parked message", out)
	}
	if !strings.Contains(f.logs.String(), `msg="batch applied" seq=3 target=replica`) {
		t.Errorf("no 'batch applied' line for batch 3:\n%s", f.logs)
	}
}

func TestConsumeStopsAtTheFirstFailureAndGivesBackEveryLaterMessage(t *testing.T) {
	for _, tc := range []struct {
		name  string
		err   error
		class Class
	}{
		{"a failure below max attempts is retried", errConstraint, Failed},
		{"an outage is retried", errOutage, Transient},
		{"a batch behind a parked one waits", fmt.Errorf("x: %w", ErrGap), Blocked},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newConsumeFixture(map[uint64]error{2: tc.err})
			out := f.c.Consume(context.Background(), messages(t, 4, 1))
			if got, want := f.applier.applied, []uint64{1}; !slices.Equal(got, want) {
				t.Fatalf("applied %v, want only %v: nothing after a failure may be applied", got, want)
			}
			if got, want := f.q.deleted, []string{"m1"}; !slices.Equal(got, want) {
				t.Errorf("deleted %v, want %v", got, want)
			}
			if out.Failed == nil || out.Failed.Message.ID != "m2" || out.Failed.Delivery.Class != tc.class {
				t.Fatalf("failed = %+v, want m2 with class %s", out.Failed, tc.class)
			}
			if got, want := ids(out.Rest), []string{"m2", "m3", "m4"}; !slices.Equal(got, want) {
				t.Errorf("rest %v, want %v", got, want)
			}
			if d, ok := f.q.lastVisibility("m2"); !ok || d <= 0 || d != out.Failed.Delivery.Retry {
				t.Errorf("m2 hidden for %v (changed: %v), want its retry delay %v", d, ok, out.Failed.Delivery.Retry)
			}
			for _, id := range []string{"m3", "m4"} {
				if d, ok := f.q.lastVisibility(id); !ok || d != 0 {
					t.Errorf("%s: visibility %v (changed: %v), want given back at once (0)", id, d, ok)
				}
			}
			if len(f.dlq.parked) > 0 {
				t.Errorf("parked %v below max attempts", f.dlq.parked)
			}
			if want := `msg="apply failed; will retry" batch="batch 2 (`; !strings.Contains(f.logs.String(), want) {
				t.Errorf("log lacks %s:\n%s", want, f.logs)
			}
		})
	}
}

func TestConsumeParksAFailedBatchOnItsLastAttemptAndGoesOn(t *testing.T) {
	f := newConsumeFixture(map[uint64]error{1: errConstraint})
	msgs := messages(t, 2, 3) // MaxAttempts is 3
	out := f.c.Consume(context.Background(), msgs)
	if got, want := f.dlq.parked, []string{"m1"}; !slices.Equal(got, want) {
		t.Fatalf("parked %v, want %v", got, want)
	}
	attrs := f.dlq.attrs[0]
	if !strings.Contains(attrs[AttrError], "qty_is_small") || attrs[AttrAttempts] != "3" || attrs[AttrClass] != "failed" {
		t.Errorf("parked with attributes %v, want the error, 3 attempts and class failed", attrs)
	}
	if len(out.Parked) != 1 || out.Parked[0].Message.ID != "m1" || !out.Parked[0].Delivery.Parked {
		t.Errorf("outcome parked %+v, want m1", out.Parked)
	}
	// Parked is done: the original leaves the queue, and the step goes on
	// (a later batch of the group then waits on ErrGap, from the applier).
	if got, want := f.q.deleted, []string{"m1", "m2"}; !slices.Equal(got, want) {
		t.Errorf("deleted %v, want %v", got, want)
	}
	if out.Failed != nil || len(out.Rest) > 0 || out.Applied != 1 {
		t.Errorf("outcome %+v: want m2 applied and nothing failed", out)
	}
	if !strings.Contains(f.logs.String(), "batch parked in the dead-letter queue; its target is blocked until it is re-driven") {
		t.Errorf("no parked line:\n%s", f.logs)
	}
}

func TestConsumeKeepsABatchItCannotParkAndRetriesIt(t *testing.T) {
	f := newConsumeFixture(map[uint64]error{1: errConstraint})
	f.dlq.err = errors.New("sqs is down")
	out := f.c.Consume(context.Background(), messages(t, 2, 3))
	if len(f.q.deleted) > 0 {
		t.Fatalf("deleted %v although parking failed: the batch would be lost", f.q.deleted)
	}
	if out.Failed == nil || out.Failed.Delivery.Class != Transient || !strings.Contains(out.Failed.Delivery.Err.Error(), "sqs is down") {
		t.Fatalf("failed = %+v, want a transient failure naming the park error", out.Failed)
	}
	if got, want := ids(out.Rest), []string{"m1", "m2"}; !slices.Equal(got, want) {
		t.Errorf("rest %v, want %v", got, want)
	}
}

func TestConsumeGivesBackEverythingOnceItsContextEnds(t *testing.T) {
	f := newConsumeFixture(nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	out := f.c.Consume(ctx, messages(t, 2, 1))
	if len(f.applier.applied) > 0 || len(f.q.deleted) > 0 {
		t.Fatalf("applied %v, deleted %v after ctx ended", f.applier.applied, f.q.deleted)
	}
	if out.Failed != nil || !slices.Equal(ids(out.Rest), []string{"m1", "m2"}) {
		t.Errorf("outcome %+v: want both given back, no failure", out)
	}
	for _, id := range []string{"m1", "m2"} {
		if d, ok := f.q.lastVisibility(id); !ok || d != 0 {
			t.Errorf("%s: visibility %v (changed: %v), want 0", id, d, ok)
		}
	}
}

func TestRedriveConsumerLeavesAFailingBatchParked(t *testing.T) {
	f := newConsumeFixture(map[uint64]error{1: errConstraint})
	f.c.Park, f.c.Redrive = nil, true
	msgs := messages(t, 1, 9)
	msgs[0].Attrs = map[string]string{AttrBatch: "batch 1 (…)", AttrAttempts: "3", AttrError: "old error"}
	out := f.c.Consume(context.Background(), msgs)
	if out.Failed == nil || len(f.q.deleted) > 0 || len(f.dlq.parked) > 0 {
		t.Fatalf("outcome %+v, deleted %v, parked %v: want a failure, nothing deleted or parked again", out, f.q.deleted, f.dlq.parked)
	}
	if want := `msg="parked batch still fails; it stays parked" batch="batch 1 (…) (parked in the dead-letter queue after 3 attempts: old error)"`; !strings.Contains(f.logs.String(), want) {
		t.Errorf("log lacks %s:\n%s", want, f.logs)
	}
}

func TestConsumeEventReportsTheFirstFailureAndEveryLaterRecord(t *testing.T) {
	records := func(msgs []queue.Message) []events.SQSMessage {
		var out []events.SQSMessage
		for _, m := range msgs {
			out = append(out, events.SQSMessage{MessageId: m.ID, ReceiptHandle: m.Receipt, Body: string(m.Body),
				Attributes: map[string]string{"ApproximateReceiveCount": strconv.Itoa(m.Receives),
					"MessageGroupId": m.Group, "MessageDeduplicationId": m.DedupID}})
		}
		return out
	}
	cases := []struct {
		name     string
		fail     map[uint64]error
		receives int
		want     []string // batchItemFailures
		parked   []string
	}{
		{"all applied", nil, 1, nil, nil},
		{"a failure in the middle", map[uint64]error{3: errOutage}, 1, []string{"m3", "m4", "m5"}, nil},
		{"a failure first", map[uint64]error{1: errConstraint}, 1, []string{"m1", "m2", "m3", "m4", "m5"}, nil},
		{"a parked batch is done", map[uint64]error{2: errConstraint}, 3, nil, []string{"m2"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newConsumeFixture(tc.fail)
			f.c.Reported = true
			resp, _ := f.c.ConsumeEvent(context.Background(), records(messages(t, 5, tc.receives)))
			var got []string
			for _, r := range resp.BatchItemFailures {
				got = append(got, r.ItemIdentifier)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("batchItemFailures %v, want %v", got, tc.want)
			}
			if !slices.Equal(f.dlq.parked, tc.parked) {
				t.Errorf("parked %v, want %v", f.dlq.parked, tc.parked)
			}
			// The event source mapping deletes the records not reported.
			if len(f.q.deleted) > 0 {
				t.Errorf("deleted %v itself; the event source mapping does that", f.q.deleted)
			}
		})
	}
	// The response is what the Lambda runtime sends back.
	f := newConsumeFixture(map[uint64]error{2: errOutage})
	f.c.Reported = true
	resp, _ := f.c.ConsumeEvent(context.Background(), records(messages(t, 3, 1)))
	js, _ := json.Marshal(resp)
	if got, want := string(js), `{"batchItemFailures":[{"itemIdentifier":"m2"},{"itemIdentifier":"m3"}]}`; got != want {
		t.Errorf("response %s, want %s", got, want)
	}
}

func TestEventMessageReadsGroupDedupAndReceiveCount(t *testing.T) {
	m := EventMessage(events.SQSMessage{MessageId: "id", ReceiptHandle: "rh", Body: "b",
		Attributes: map[string]string{"ApproximateReceiveCount": "4", "MessageGroupId": "g", "MessageDeduplicationId": "d"}})
	if m.ID != "id" || m.Receipt != "rh" || string(m.Body) != "b" || m.Group != "g" || m.DedupID != "d" || m.Receives != 4 {
		t.Errorf("EventMessage = %+v", m)
	}
	if got := EventMessage(events.SQSMessage{}).Receives; got != 1 {
		t.Errorf("receives without the attribute = %d, want 1 (this receive)", got)
	}
}
