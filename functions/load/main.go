// Command load is the Lambda behind the standard chunk queue's event
// source mapping: it copies each message's chunk from the source into its
// target with COPY streamed server to server, records it in DynamoDB, and
// when a table's last chunk is done writes the load mark that hands the
// table over to the change stream. It reports the chunks that failed as
// partial batch failures (enable ReportBatchItemFailures); a chunk is
// copied at most once on the target, so redeliveries are harmless.
//
// A chunk must finish within the function's timeout: give it the Lambda
// maximum (15 minutes) and a queue visibility timeout above it, and size
// load.chunk_rows so a chunk takes a few minutes at most. Chunks copied at
// once: the event source's maximum concurrency × the messages one
// invocation copies in parallel (load.parallelism, or the request's).
//
// Environment: PGFERRY_CONFIG (or PGFERRY_CONFIG_FILE) and the standard
// AWS SDK variables. The state table is aws.table.
package main

import (
	"context"
	"os"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/pgferry/pgferry/shared/initload"
	"github.com/pgferry/pgferry/shared/metrics"
	"github.com/pgferry/pgferry/shared/runner"
)

func main() {
	ctx := context.Background()
	env, log, err := runner.Boot(ctx, "load")
	fail := func(what string, err error) { log.Error(what, "err", err); os.Exit(1) }
	if err != nil {
		fail("start refused", err)
	}
	cfg := env.Config
	p := runner.New(env, log)
	p.Metrics = metrics.New(os.Stdout)
	if err := p.OpenAWS(ctx, false); err != nil {
		fail("aws", err)
	}
	if err := p.OpenSource(ctx); err != nil {
		fail("connect", err)
	}
	if err := p.OpenTargets(ctx, false); err != nil {
		fail("connect", err)
	}
	loaders, err := p.Loaders()
	if err != nil {
		fail("load", err)
	}
	capture, err := p.LoadCapture()
	if err != nil {
		fail("capture", err)
	}
	loader := initload.NewLoader(cfg, p.Source, loaders, capture, p.Res.Loads, p.Metrics, log)
	lambda.StartWithOptions(func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
		bodies := make([][]byte, len(ev.Records))
		for i, r := range ev.Records {
			bodies[i] = []byte(r.Body)
		}
		var resp events.SQSEventResponse
		for _, i := range initload.CopyChunks(ctx, loader, bodies, cfg.Load.Parallelism, log) {
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: ev.Records[i].MessageId})
		}
		log.Info("chunks handled", "received", len(bodies), "failed", len(resp.BatchItemFailures))
		return resp, nil
	}, lambda.WithEnableSIGTERM(p.Close))
}
