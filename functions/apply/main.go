// Command apply is the Lambda behind the FIFO queue's event source mapping.
// It applies each batch in order and reports partial batch failures the
// FIFO way: the first failure and every record after it. A batch that
// keeps failing is parked in the dead-letter queue with its error; invoked
// by hand with {"redrive": true} it applies the parked batches instead.
//
// Environment: PGFERRY_CONFIG (or PGFERRY_CONFIG_FILE), PGFERRY_QUEUE_URL,
// PGFERRY_DLQ_URL, and the standard AWS SDK variables.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/pgferry/pgferry/shared/apply"
	"github.com/pgferry/pgferry/shared/metrics"
	"github.com/pgferry/pgferry/shared/queue"
	"github.com/pgferry/pgferry/shared/runner"
	"github.com/pgferry/pgferry/shared/schema/pgsync"
)

// request is either an SQS event or a manual redrive request.
type request struct {
	Records []events.SQSMessage `json:"Records"`
	Redrive bool                `json:"redrive"`
}

// response is the partial batch response, plus redrive figures.
type response struct {
	BatchItemFailures []events.SQSBatchItemFailure `json:"batchItemFailures"`
	Redriven          *runner.RedriveStats         `json:"redriven,omitempty"`
}

func main() {
	env, log, err := runner.Boot(context.Background(), "apply")
	if err != nil {
		log.Error("start refused", "err", err)
		os.Exit(1)
	}
	cfg := env.Config
	ctx := context.Background()
	aws, err := runner.ConnectAWS(ctx, cfg, env.AWS, false)
	if err != nil {
		log.Error("aws", "err", err)
		os.Exit(1)
	}
	// Target pools live across invocations of a warm container. They are
	// opened by the first invocation that can reach every target, not at
	// cold start: a target that is down must fail invocations (and be
	// retried), not the container's start.
	var h *apply.Handler
	var syncers map[string]*pgsync.Syncer
	handler := func(ctx context.Context) (*apply.Handler, error) {
		if h != nil {
			return h, nil
		}
		targets, pools, err := runner.Targets(ctx, cfg, env.DSNs, log)
		if err != nil {
			return nil, err
		}
		if cfg.SyncsSchema() {
			// Schema jobs and retry-after-DDL diff against the source's
			// catalog, so apply reads the source too.
			src, err := runner.Connect(ctx, "source", env.DSNs.Source)
			if err != nil {
				return nil, err
			}
			syncers = runner.SchemaSyncers(cfg, src, pools, log)
			runner.WithSchemaSync(cfg, targets, syncers, pools, log)
		}
		h = &apply.Handler{
			Pipeline: cfg.Name, Targets: targets, Payloads: aws.Payloads,
			MaxAttempts: cfg.Apply.MaxAttempts, Metrics: metrics.New(os.Stdout),
		}
		return h, nil
	}
	vis := cfg.Apply.Visibility.Duration
	lambda.Start(func(ctx context.Context, raw json.RawMessage) (response, error) {
		var req request
		if err := json.Unmarshal(raw, &req); err != nil {
			return response{}, fmt.Errorf("apply: unrecognised event: %w", err)
		}
		h, err := handler(ctx)
		if err != nil {
			// Every record goes back to the queue and is retried.
			return response{}, err
		}
		if req.Redrive {
			st, err := runner.Redrive(ctx, h, aws.DLQ, log)
			return response{Redriven: &st}, err
		}
		var resp response
		applied := false
		// After each apply cycle, target sequences catch up with the source's.
		// A failure is logged and emitted (SequenceSyncFailures, alarmed),
		// and never fails the invocation: the batches are applied.
		defer func() {
			if !applied {
				return
			}
			if _, err := runner.SyncSequences(ctx, cfg.Name, syncers, h.Metrics); err != nil {
				log.Warn("advance target sequences", "err", err)
			}
		}()
		for i, rec := range req.Records {
			m := message(rec)
			stop := runner.KeepHidden(ctx, aws.Queue, m, vis, log)
			d := h.Deliver(ctx, m, aws.DLQ)
			stop()
			switch {
			case d.Err == nil:
				applied = true
				log.Info("batch applied", "seq", d.Batch.Seq, "target", d.Batch.Target, "to", d.Batch.To.String(),
					"rows", d.Result.Rows, "replay", !d.Result.Applied)
				continue
			case d.Parked:
				// Reported as done, so the event source mapping deletes it
				// from the queue; its copy waits in the dead-letter queue.
				log.Error("batch parked in the dead-letter queue; its target is blocked until it is re-driven",
					"batch", d.Describe(m), "attempts", m.Receives, "err", d.Err)
				continue
			}
			log.Warn("apply failed; will retry", "batch", d.Describe(m), "class", d.Class.String(),
				"attempt", m.Receives, "retry_in", d.Retry.String(), "err", d.Err)
			if err := aws.Queue.SetVisibility(ctx, m, d.Retry); err != nil {
				log.Warn("set retry delay", "err", err)
			}
			for _, r := range req.Records[i:] {
				resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: r.MessageId})
			}
			return resp, nil
		}
		return resp, nil
	})
}

// message converts an event record into the queue's message type.
func message(r events.SQSMessage) queue.Message {
	n, _ := strconv.Atoi(r.Attributes["ApproximateReceiveCount"])
	return queue.Message{
		ID: r.MessageId, Body: []byte(r.Body), Receipt: r.ReceiptHandle,
		Group: r.Attributes["MessageGroupId"], DedupID: r.Attributes["MessageDeduplicationId"],
		Receives: max(n, 1),
	}
}
