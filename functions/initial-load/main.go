// Command initial-load is the Lambda invoked by hand to start (or resume)
// the initial load, or to report its progress. It brings each target's
// schema up to the source's (schema sync), installs capture, plans
// each table into primary-key range chunks, marks the tables loading on
// the targets and sends one message per chunk to the load queue, which the
// load function consumes. See runner.LoadRequest for the payload:
//
//	{"target": "replica", "tables": ["public.*"], "chunk_rows": 250000, "parallelism": 2, "reload": false}
//	{"action": "status"}
//
// A scheduled {"action": "status"} emits LoadSecondsSinceProgress, which
// the "load stalled" alarm watches.
//
// Environment: PGFERRY_CONFIG (or PGFERRY_CONFIG_FILE), PGFERRY_LOAD_QUEUE_URL
// (the standard chunk queue; looked up by load.queue when unset), and the
// standard AWS SDK variables. The state table is aws.table. Needs network
// access to the source and every target, and a timeout long enough to
// plan (sampling keys takes seconds per table): 5 minutes is ample.
package main

import (
	"context"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/metrics"
	"github.com/pgferry/pgferry/shared/queue/sqsstd"
	"github.com/pgferry/pgferry/shared/runner"
)

func main() {
	ctx := context.Background()
	env, log, err := runner.Boot(ctx, "initial-load")
	fail := func(what string, err error) { log.Error(what, "err", err); os.Exit(1) }
	if err != nil {
		fail("start refused", err)
	}
	cfg := env.Config
	var q *sqsstd.Queue
	if url := os.Getenv(config.EnvLoadQueueURL); url != "" {
		q = sqsstd.New(sqs.NewFromConfig(env.AWS), url)
	} else if q, err = sqsstd.Lookup(ctx, sqs.NewFromConfig(env.AWS), cfg.LoadQueueName()); err != nil {
		fail("load queue", err)
	}
	c, err := runner.ConnectLoad(ctx, env, log)
	if err != nil {
		fail("connect", err)
	}
	syncers := runner.SchemaSyncers(cfg, c.Source, c.Pools, log)
	emf := metrics.New(os.Stdout)
	lambda.Start(func(ctx context.Context, req runner.LoadRequest) (runner.LoadResponse, error) {
		if req.Action == "status" {
			return runner.LoadProgress(ctx, cfg, c.Source, c.Targets, c.Store, req, emf)
		}
		// A switched source.capture is refused before any target changes.
		if err := runner.CheckCapture(ctx, cfg, c.State, c.Source); err != nil {
			return runner.LoadResponse{}, err
		}
		// Tables are created (or brought up to the source's schema) before
		// any is planned or copied, on every target with schema sync.
		if err := runner.SyncSchemas(ctx, cfg, syncers); err != nil {
			return runner.LoadResponse{}, err
		}
		return runner.StartLoad(ctx, cfg, c.Source, c.Targets, c.Store, c.State, q, req, log)
	})
}
