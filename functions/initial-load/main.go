// Command initial-load is the Lambda invoked by hand to start (or resume)
// the initial load, or to report its progress. It brings each target's
// schema up to the source's (schema sync), installs capture, plans
// each table into primary-key range chunks, marks the tables loading on
// the targets and sends one message per chunk to the load queue, which the
// load function consumes. See initload.Request for the payload:
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

	"github.com/pgferry/pgferry/shared/initload"
	"github.com/pgferry/pgferry/shared/metrics"
	"github.com/pgferry/pgferry/shared/runner"
	"github.com/pgferry/pgferry/shared/schemadiff"
)

func main() {
	ctx := context.Background()
	env, log, err := runner.Boot(ctx, "initial-load")
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
	q, err := p.LoadQueue(ctx)
	if err != nil {
		fail("load queue", err)
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
	lambda.StartWithOptions(func(ctx context.Context, req initload.Request) (initload.Response, error) {
		if req.Action == "status" {
			return initload.Status(ctx, cfg, p.Source, loaders, p.Res.Loads, req, p.Metrics)
		}
		// A switched source.capture is refused before any target changes.
		if err := p.CheckCapture(ctx); err != nil {
			return initload.Response{}, err
		}
		// Tables are created (or brought up to the source's schema) before
		// any is planned or copied, on every target with schema sync.
		if err := schemadiff.SyncAll(ctx, p.Syncers()); err != nil {
			return initload.Response{}, err
		}
		capture, err := p.LoadCapture()
		if err != nil {
			return initload.Response{}, err
		}
		return initload.Start(ctx, cfg, p.Source, loaders, p.Res.Loads, capture, q, req, log)
	}, lambda.WithEnableSIGTERM(p.Close))
}
