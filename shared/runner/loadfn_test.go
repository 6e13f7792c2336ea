package runner_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/pgferry/pgferry/shared/initload"
	"github.com/pgferry/pgferry/shared/metrics"
	"github.com/pgferry/pgferry/shared/queue/sqsstd"
)

// TestLoadThroughChunkQueue runs the load the way AWS does: the
// initial-load handler plans and sends chunk messages to a standard
// queue, load handlers copy them (every message delivered twice here, as
// a standard queue may), writes go on meanwhile, the change stream hands
// the table over, and the status request reports it finished and emits
// the stall metric.
func TestLoadThroughChunkQueue(t *testing.T) {
	f := newFixture(t, `CREATE TABLE orders (id bigint PRIMARY KEY, customer int, total numeric, note text);
		CREATE INDEX orders_customer ON orders (customer);`, "load:\n  chunk_rows: 5000\n  parallelism: 2\n")
	ctx := context.Background()
	f.exec(`INSERT INTO orders SELECT g, g % 500, g * 1.25, 'o' || g FROM generate_series(1, 60000) g`)
	q, err := sqsstd.Ensure(ctx, f.aws.SQS, f.cfg.LoadQueueName(), 5, 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	store := f.aws.Loads
	loaders, err := f.p.Loaders()
	if err != nil {
		t.Fatal(err)
	}
	capture, err := f.p.LoadCapture()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := initload.Start(ctx, f.cfg, f.src, loaders, store, capture, q, initload.Request{Target: "replica", Parallelism: 3}, f.log)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Tables) != 1 || resp.Tables[0].Queued < 10 {
		t.Fatalf("start response %+v: want orders with about 12 chunks queued", resp)
	}
	// The load function's cold start builds its own capture.
	if capture, err = f.p.LoadCapture(); err != nil {
		t.Fatal(err)
	}
	var emfOut bytes.Buffer
	loader := initload.NewLoader(f.cfg, f.src, loaders, capture, store, metrics.New(&emfOut), f.log)
	f.exec(`UPDATE orders SET note = 'changed' WHERE id % 1000 = 0`)
	f.exec(`DELETE FROM orders WHERE id % 997 = 0`)
	// The load function: every message is handled twice, as a standard
	// queue may deliver it.
	work := func() int {
		handled := 0
		for idle := 0; idle < 3; {
			out, err := f.aws.SQS.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(q.URL()), MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
			if err != nil {
				t.Fatal(err)
			}
			if len(out.Messages) == 0 {
				idle++
				continue
			}
			var bodies [][]byte
			for _, m := range out.Messages {
				bodies = append(bodies, []byte(aws.ToString(m.Body)), []byte(aws.ToString(m.Body)))
			}
			if failed := initload.CopyChunks(ctx, loader, bodies, 2, f.log); len(failed) > 0 {
				t.Fatalf("%d of %d chunk messages failed", len(failed), len(bodies))
			}
			for _, m := range out.Messages {
				if _, err := f.aws.SQS.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(q.URL()), ReceiptHandle: m.ReceiptHandle}); err != nil {
					t.Fatal(err)
				}
			}
			handled += len(out.Messages)
		}
		return handled
	}
	if handled := work(); handled != resp.Tables[0].Queued {
		t.Fatalf("handled %d chunk messages, %d were queued", handled, resp.Tables[0].Queued)
	}
	if !strings.Contains(emfOut.String(), metrics.LoadRowsCopied) {
		t.Error("no LoadRowsCopied metric emitted")
	}
	f.exec(`UPDATE orders SET total = 0 WHERE id % 777 = 0`)
	f.replicate()
	f.assertSame()
	emfOut.Reset()
	st, err := initload.Status(ctx, f.cfg, f.src, loaders, store, initload.Request{Action: "status"}, metrics.New(&emfOut))
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Tables) != 1 || !st.Tables[0].Finished || st.Tables[0].ChunksDone != st.Tables[0].Chunks || st.Tables[0].RowsCopied < 59000 {
		t.Fatalf("status %+v: want orders finished with every chunk and row counted once", st)
	}
	if !strings.Contains(emfOut.String(), `"LoadSecondsSinceProgress":0`) {
		t.Errorf("status did not emit LoadSecondsSinceProgress 0 for a finished load: %s", emfOut.String())
	}
	if got := f.targetInt(`SELECT count(*) FROM pg_indexes WHERE indexname = 'orders_customer'`); got != 1 {
		t.Error("secondary index not rebuilt")
	}

	// A damaged target table is loaded again on request, with writes
	// going on.
	if _, err := f.dst.Exec(ctx, `DELETE FROM orders WHERE id % 3 = 0; UPDATE orders SET note = 'damaged' WHERE id % 5 = 0`); err != nil {
		t.Fatal(err)
	}
	again, err := initload.Start(ctx, f.cfg, f.src, loaders, store, capture, q, initload.Request{Tables: []string{"public.orders"}, Reload: true}, f.log)
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Tables) != 1 || again.Tables[0].LoadID == resp.Tables[0].LoadID {
		t.Fatalf("reload response %+v: want a new load of orders", again)
	}
	f.exec(`UPDATE orders SET note = 'during reload' WHERE id % 1001 = 0`)
	work()
	f.replicate()
	f.assertSame()
}
