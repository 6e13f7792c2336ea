package drain_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/capture/trigger"
	"github.com/pgferry/pgferry/shared/checkpoint"
	"github.com/pgferry/pgferry/shared/checkpoint/dynamo"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/drain"
	"github.com/pgferry/pgferry/shared/payload/s3store"
	"github.com/pgferry/pgferry/shared/queue"
	"github.com/pgferry/pgferry/shared/queue/sqsfifo"
	"github.com/pgferry/pgferry/shared/testenv"
)

const tDDL = `CREATE TABLE t (id int PRIMARY KEY, v text)`

// rig is one pipeline on a fresh source database, with its own state
// table, FIFO queue and bucket on the emulators, wired as
// runner.Pipeline.Drainer wires a drain.
type rig struct {
	t        *testing.T
	cfg      *config.Config
	srcDSN   string
	src      *pgxpool.Pool
	log      *slog.Logger
	ddb      *dynamodb.Client
	sqs      *sqs.Client
	payloads *s3store.Store
	store    *dynamo.Store
	q        *sqsfifo.Queue
}

func newRig(t *testing.T, ddl string) *rig {
	t.Helper()
	return newRigOn(t, ddl, testenv.NewDB(t, "src"))
}

// newRigOn is newRig with the source database at srcDSN.
func newRigOn(t *testing.T, ddl, srcDSN string) *rig {
	t.Helper()
	testenv.AWS(t)
	ctx := context.Background()
	r := &rig{t: t, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if os.Getenv("PGFERRY_TEST_LOG") != "" {
		r.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	r.srcDSN = srcDSN
	r.src = testenv.Pool(t, r.srcDSN)
	testenv.Exec(t, r.src, ddl)
	// The target is never connected to here; only its name matters.
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
name: %s
source:
  dsn: %q
  tables: ["public.*"]
targets:
  replica:
    kind: postgres
    dsn: "postgres://nobody@127.0.0.1:1/none"
`, testenv.Name("d"), r.srcDSN)), os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	r.cfg = cfg
	ac := testenv.AWSConfig(t)
	r.ddb, r.sqs = dynamodb.NewFromConfig(ac), sqs.NewFromConfig(ac)
	s3c := s3store.NewClient(ac)
	bucket := testenv.Name("pgferry-test-drain-")
	if err := s3store.EnsureBucket(ctx, s3c, bucket); err != nil {
		t.Fatal(err)
	}
	r.payloads = s3store.New(s3c, bucket)
	r.store, r.q = r.newStore(), r.newQueue()
	return r
}

// newStore returns a checkpoint store for the pipeline in a fresh table.
func (r *rig) newStore() *dynamo.Store {
	r.t.Helper()
	table := testenv.Name("pgferry-test-drain-")
	if err := dynamo.EnsureTable(context.Background(), r.ddb, table); err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() {
		_, _ = r.ddb.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: &table})
	})
	return dynamo.New(r.ddb, table, r.cfg.Name)
}

func (r *rig) newQueue() *sqsfifo.Queue {
	r.t.Helper()
	q, dlq, err := sqsfifo.Ensure(context.Background(), r.sqs, testenv.Name("pgferry-test-drain-")+".fifo", 5, 30*time.Second)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() {
		for _, u := range []string{q.URL(), dlq} {
			_, _ = r.sqs.DeleteQueue(context.Background(), &sqs.DeleteQueueInput{QueueUrl: &u})
		}
	})
	return q
}

// drainer wires a drain as runner.Pipeline.Drainer does: trigger capture, the
// claim-check publisher in front of next, and store.
func (r *rig) drainer(owner string, maxRows int, store *dynamo.Store, next queue.Publisher) *drain.Drainer {
	pub := &queue.ClaimCheck{Next: next, Store: r.payloads, Limit: r.cfg.Batch.InlineLimit}
	return drain.New(trigger.New(r.src, r.cfg, r.log), store, pub, r.options(owner, maxRows), r.log)
}

// options are a test drain's options: the rig's configuration, owner,
// maxRows, and a 2 s margin (the runner uses 30 s; a test run's deadline
// is shorter).
func (r *rig) options(owner string, maxRows int) drain.Options {
	return drain.Options{
		Pipeline: r.cfg.Name,
		Targets:  r.cfg.TargetNames(),
		Owner:    owner,
		Lease:    r.cfg.Drain.Lease.Duration,
		MaxRows:  maxRows,
		MaxBytes: r.cfg.Batch.MaxBytes,
		Margin:   2 * time.Second,
	}
}

// run runs one drain of either mode until it has caught up.
func (r *rig) run(d interface {
	Run(context.Context) (drain.Stats, error)
}) drain.Stats {
	r.t.Helper()
	// Generous for a drain of a few rows; a drain that waits on a source
	// lock fails here rather than hanging.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := d.Run(ctx)
	if err != nil {
		r.t.Fatalf("drain: %v", err)
	}
	if !st.CaughtUp {
		r.t.Fatalf("drain returned without catching up: %+v", st)
	}
	return st
}

func (r *rig) exec(sql string, args ...any) { r.t.Helper(); testenv.Exec(r.t, r.src, sql, args...) }

// begin opens a transaction on its own connection, left open for the
// test to finish.
func (r *rig) begin() pgx.Tx {
	r.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, r.srcDSN)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { conn.Close(context.Background()) })
	tx, err := conn.Begin(ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	return tx
}

func txExec(t *testing.T, tx pgx.Tx, sql string, args ...any) {
	t.Helper()
	if _, err := tx.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("exec %q: %v", sql, err)
	}
}

// shipped takes every message off q, in queue order, and decodes it.
func (r *rig) shipped(q *sqsfifo.Queue) []*batch.Batch {
	r.t.Helper()
	ctx := context.Background()
	var out []*batch.Batch
	for {
		msgs, err := q.Receive(ctx, 10, time.Second, 30*time.Second)
		if err != nil {
			r.t.Fatal(err)
		}
		if len(msgs) == 0 {
			return out
		}
		for _, m := range msgs {
			if got, want := m.Group, batch.Group(r.cfg.Name, "replica"); got != want {
				r.t.Fatalf("message group = %q, want %q", got, want)
			}
			data, err := queue.Open(ctx, r.payloads, m.Body)
			if err != nil {
				r.t.Fatal(err)
			}
			b, err := batch.Decode(data)
			if err != nil {
				r.t.Fatal(err)
			}
			out = append(out, b)
			if err := q.Delete(ctx, m); err != nil {
				r.t.Fatal(err)
			}
		}
	}
}

// ids lists the ids upserted into t by a batch, in batch order.
func ids(b *batch.Batch) []string {
	var out []string
	for _, ep := range b.Epochs {
		for _, s := range ep.Segments {
			if s.Table.Name != "t" {
				continue
			}
			for _, row := range s.Upserts {
				out = append(out, *row[0])
			}
		}
	}
	return out
}

func allIDs(bs []*batch.Batch) []string {
	var out []string
	for _, b := range bs {
		out = append(out, ids(b)...)
	}
	return out
}

// assertChained checks that batches follow each other without gap or
// overlap, starting after from.
func assertChained(t *testing.T, from batch.Position, bs []*batch.Batch) {
	t.Helper()
	for _, b := range bs {
		if b.From != from {
			t.Fatalf("batch %d starts at %s, want %s (the previous batch's end)", b.Seq, b.From, from)
		}
		if !b.From.Less(b.To) {
			t.Fatalf("batch %d covers the empty range %s..%s", b.Seq, b.From, b.To)
		}
		from = b.To
	}
}

func TestDrainKeepsTransactionThatCommitsLate(t *testing.T) {
	t.Parallel()
	r := newRig(t, tDDL)
	ctx := context.Background()
	d := r.drainer("d1", r.cfg.Batch.MaxRows, r.store, r.q)
	r.run(d) // installs capture
	if got := r.shipped(r.q); len(got) != 0 {
		t.Fatalf("a drain of an empty source shipped %d batches", len(got))
	}
	// Capture version 3 keeps no index on its event table: a window
	// reads nearly all of it, and an index cost every captured statement.
	var indexes int
	if err := r.src.QueryRow(ctx, `SELECT count(*) FROM pg_index WHERE indrelid = to_regclass($1)`,
		pgx.Identifier{r.cfg.CaptureSchema(), "events"}.Sanitize()).Scan(&indexes); err != nil {
		t.Fatal(err)
	}
	if indexes != 0 {
		t.Fatalf("capture install left %d indexes on its event table", indexes)
	}

	a := r.begin()
	txExec(t, a, `INSERT INTO t VALUES (1, 'early id, late commit')`) // takes the lower event id
	r.exec(`INSERT INTO t VALUES (2, 'late id, early commit')`)

	r.run(d)
	first := r.shipped(r.q)
	if len(first) == 0 {
		t.Fatal("the committed transaction was not shipped")
	}
	assertChained(t, batch.Position{}, first)
	if got, want := allIDs(first), []string{"2"}; !slices.Equal(got, want) {
		t.Fatalf("first drain shipped ids %v, want %v (not the open transaction's row)", got, want)
	}

	if err := a.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	r.run(d)
	second := r.shipped(r.q)
	last := first[len(first)-1]
	assertChained(t, last.To, second)
	if got, want := allIDs(second), []string{"1"}; !slices.Equal(got, want) {
		t.Fatalf("drain after the late commit shipped ids %v, want %v", got, want)
	}
	for _, b := range second {
		if !last.To.Less(b.To) {
			t.Fatalf("late transaction's batch ends at %s, not after the first batch's end %s", b.To, last.To)
		}
	}
	cp, err := r.store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cp.LastSent, second[len(second)-1].To; got != want {
		t.Fatalf("checkpoint LastSent = %s, want the last batch's To %s", got, want)
	}
}

func TestOpenTransactionIsNeverHalfShipped(t *testing.T) {
	t.Parallel()
	r := newRig(t, tDDL)
	ctx := context.Background()
	// One row event per batch: a transaction larger than that must still
	// travel whole.
	d := r.drainer("d1", 1, r.store, r.q)
	r.run(d)

	a := r.begin()
	txExec(t, a, `INSERT INTO t VALUES (1, 'a')`)
	r.exec(`INSERT INTO t VALUES (10, 'committed meanwhile')`)
	txExec(t, a, `INSERT INTO t VALUES (2, 'a')`)
	r.run(d) // mid-transaction
	txExec(t, a, `INSERT INTO t VALUES (3, 'a')`)

	before := r.shipped(r.q)
	if got, want := allIDs(before), []string{"10"}; !slices.Equal(got, want) {
		t.Fatalf("while the transaction is open, drain shipped ids %v, want %v", got, want)
	}

	if err := a.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	r.run(d)
	after := r.shipped(r.q)
	assertChained(t, before[len(before)-1].To, after)
	var holding []*batch.Batch
	for _, b := range after {
		if len(ids(b)) > 0 {
			holding = append(holding, b)
		}
	}
	if got, want := len(holding), 1; got != want {
		t.Fatalf("the transaction's rows arrived in %d batches, want %d", got, want)
	}
	got := ids(holding[0])
	slices.Sort(got)
	if want := []string{"1", "2", "3"}; !slices.Equal(got, want) {
		t.Fatalf("the transaction's batch holds ids %v, want %v", got, want)
	}
	if got, want := holding[0].Txns, 1; got != want {
		t.Fatalf("the transaction's batch counts %d source transactions, want %d", got, want)
	}
}

func TestSecondDrainWaitsForLease(t *testing.T) {
	t.Parallel()
	r := newRig(t, tDDL)
	ctx := context.Background()
	if err := trigger.New(r.src, r.cfg, r.log).Install(ctx); err != nil {
		t.Fatal(err)
	}
	r.exec(`INSERT INTO t VALUES (1, 'a'), (2, 'b')`)

	other, err := r.store.Acquire(ctx, "other drain", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	d := r.drainer("d1", r.cfg.Batch.MaxRows, r.store, r.q)
	st, err := d.Run(ctx)
	if !errors.Is(err, drain.ErrBusy) {
		t.Fatalf("drain while another holds the lease: err = %v, want ErrBusy", err)
	}
	if st.Batches != 0 {
		t.Fatalf("busy drain reports %d batches", st.Batches)
	}
	if got := r.shipped(r.q); len(got) != 0 {
		t.Fatalf("busy drain published %d batches", len(got))
	}
	cp, err := r.store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cp, (checkpoint.Checkpoint{}); got != want {
		t.Fatalf("busy drain changed the checkpoint to %+v", got)
	}
	// Its Release must not free the other drain's lease.
	if _, err := r.store.Acquire(ctx, "third drain", time.Minute); !errors.Is(err, checkpoint.ErrLeaseHeld) {
		t.Fatalf("after a busy drain returned, acquire: err = %v, want ErrLeaseHeld", err)
	}

	// Once the holder lets go, the waiting drain does the work.
	if err := r.store.Release(ctx, other); err != nil {
		t.Fatal(err)
	}
	r.run(d)
	got := allIDs(r.shipped(r.q))
	slices.Sort(got)
	if want := []string{"1", "2"}; !slices.Equal(got, want) {
		t.Fatalf("drain after the lease was released shipped ids %v, want %v", got, want)
	}
}

// crashAfterSend forwards every publish, then fails the one numbered at
// (from 1) as if the drain died after sending it and before it could
// checkpoint. It records what it forwarded.
type crashAfterSend struct {
	next queue.Publisher
	at   int
	sent []sent
}

type sent struct {
	dedup string
	body  []byte
}

var errCrash = errors.New("simulated crash after send")

func (c *crashAfterSend) Publish(ctx context.Context, group, dedupID string, body []byte) error {
	if err := c.next.Publish(ctx, group, dedupID, body); err != nil {
		return err
	}
	c.sent = append(c.sent, sent{dedupID, bytes.Clone(body)})
	if len(c.sent) == c.at {
		return errCrash
	}
	return nil
}

func TestCrashBetweenSendAndCheckpointReshipsSameBatch(t *testing.T) {
	t.Parallel()
	r := newRig(t, tDDL)
	ctx := context.Background()
	r.run(r.drainer("setup", 1, r.store, r.q))
	for i := 1; i <= 3; i++ {
		r.exec(`INSERT INTO t VALUES ($1, 'x')`, i)
	}

	// One transaction per batch; the drain dies right after sending the
	// second.
	crashed := &crashAfterSend{next: r.q, at: 2}
	if _, err := r.drainer("d1", 1, r.store, crashed).Run(ctx); !errors.Is(err, errCrash) {
		t.Fatalf("crashing drain: err = %v, want the simulated crash", err)
	}
	cp, err := r.store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cp.Seq, uint64(1); got != want {
		t.Fatalf("checkpoint after the crash covers %d batches, want %d", got, want)
	}
	if cp.Window == "" {
		t.Fatal("checkpoint after the crash has no open window to resume")
	}

	// The next drain (another owner; the crashed one released its lease on
	// the way out, as a Lambda that errors would not, but the lease is not
	// what is under test) resumes from the checkpoint.
	again := &crashAfterSend{next: r.q}
	r.run(r.drainer("d2", 1, r.store, again))
	if len(again.sent) == 0 {
		t.Fatal("the resumed drain sent nothing")
	}
	lost, reship := crashed.sent[1], again.sent[0]
	if got, want := reship.dedup, lost.dedup; got != want {
		t.Fatalf("re-shipped batch has dedup id %q, want %q", got, want)
	}
	if !bytes.Equal(reship.body, lost.body) {
		t.Fatalf("re-shipped batch differs from the one sent before the crash:\n got %s\nwant %s", reship.body, lost.body)
	}

	// SQS dropped the duplicate: the queue holds each batch once, chained.
	got := r.shipped(r.q)
	assertChained(t, batch.Position{}, got)
	if got, want := allIDs(got), []string{"1", "2", "3"}; !slices.Equal(got, want) {
		t.Fatalf("queue holds ids %v, want %v", got, want)
	}
	for i, b := range got {
		if got, want := b.Seq, uint64(i+1); got != want {
			t.Fatalf("batch %d on the queue has seq %d, want %d", i, got, want)
		}
	}
}

func TestDrainersReadingSameOpenWindowCutSameBatches(t *testing.T) {
	t.Parallel()
	r := newRig(t, tDDL)
	ctx := context.Background()
	capt := trigger.New(r.src, r.cfg, r.log)
	if err := capt.Install(ctx); err != nil {
		t.Fatal(err)
	}
	// An old transaction holding an xid keeps every snapshot's xmin below
	// the test's transactions, so the first drain's purge cannot delete
	// the events the second drain is to read.
	holder := r.begin()
	txExec(t, holder, `SELECT pg_current_xact_id()`)
	defer holder.Rollback(ctx)

	r.exec(`INSERT INTO t VALUES (1, 'a'), (2, 'b')`)
	r.exec(`INSERT INTO t VALUES (3, 'c')`)
	r.exec(`UPDATE t SET v = 'bb' WHERE id = 2`)
	r.exec(`INSERT INTO t SELECT g, 'g' FROM generate_series(4, 8) g`)
	r.exec(`DELETE FROM t WHERE id = 5`)
	prev, err := capt.InitialSnapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	window, err := capt.CurrentSnapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r.exec(`INSERT INTO t VALUES (20, 'after the window')`)

	// Both drains start from the same durable open window, as a drain
	// restarted after a crash does.
	open := checkpoint.Checkpoint{Pos: batch.Position{Tick: 1}, Prev: prev, Window: window}
	stores := []*dynamo.Store{r.store, r.newStore()}
	queues := []*sqsfifo.Queue{r.q, r.newQueue()}
	for _, s := range stores {
		l, err := s.Acquire(ctx, "setup", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Save(ctx, l, open); err != nil {
			t.Fatal(err)
		}
		if err := s.Release(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	var got [2][]*batch.Batch
	for i := range got {
		r.run(r.drainer(fmt.Sprintf("d%d", i), 2, stores[i], queues[i]))
		got[i] = r.shipped(queues[i])
	}

	if len(got[0]) < 3 {
		t.Fatalf("drain shipped %d batches, want several (max 2 rows each)", len(got[0]))
	}
	if got, want := len(got[1]), len(got[0]); got != want {
		t.Fatalf("second drain shipped %d batches, first %d", got, want)
	}
	assertChained(t, batch.Position{}, got[0])
	for i := range got[0] {
		a, b := got[0][i], got[1][i]
		if a.From != b.From || a.To != b.To || a.Seq != b.Seq {
			t.Fatalf("batch %d differs: first drain %d %s..%s, second %d %s..%s", i, a.Seq, a.From, a.To, b.Seq, b.From, b.To)
		}
		if !slices.Equal(ids(a), ids(b)) {
			t.Fatalf("batch %d differs: first drain ids %v, second %v", i, ids(a), ids(b))
		}
	}
	// The open window holds what committed before it, and nothing after.
	var inWindow, later []string
	for _, b := range got[0] {
		if b.To.Tick == 1 {
			inWindow = append(inWindow, ids(b)...)
		} else {
			later = append(later, ids(b)...)
		}
	}
	if slices.Contains(inWindow, "20") {
		t.Fatalf("the open window's batches hold id 20, committed after the window: %v", inWindow)
	}
	if got, want := later, []string{"20"}; !slices.Equal(got, want) {
		t.Fatalf("batches after the window hold ids %v, want %v", got, want)
	}
}
