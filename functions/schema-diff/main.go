// Command schema-diff is the scheduled Lambda that keeps targets' schemas
// in step with the source: when the source catalog changed it puts a
// schema job into every target's FIFO group (ordered with the data), logs
// the DDL each target is waiting for, and advances target sequences to
// the source's values. Invoked by hand with {"force": true} it ships a
// schema job even if nothing seems to have changed.
//
// Environment: PGFERRY_CONFIG (or PGFERRY_CONFIG_FILE), PGFERRY_QUEUE_URL,
// PGFERRY_DLQ_URL, and the standard AWS SDK variables.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/pgferry/pgferry/shared/metrics"
	"github.com/pgferry/pgferry/shared/runner"
	"github.com/pgferry/pgferry/shared/schemadiff"
)

type request struct {
	Force bool `json:"force"`
}

func main() {
	// Logs on stderr, EMF metric lines (SequenceSyncFailures) on stdout.
	emf := metrics.New(os.Stdout)
	env, log, err := runner.Boot(context.Background(), "schema-diff")
	if err != nil {
		log.Error("start refused", "err", err)
		os.Exit(1)
	}
	lambda.Start(func(ctx context.Context, raw json.RawMessage) (schemadiff.Result, error) {
		var req request
		if len(raw) > 0 {
			// A scheduled event has other fields; only "force" matters.
			if err := json.Unmarshal(raw, &req); err != nil {
				return schemadiff.Result{}, fmt.Errorf("schema-diff: unrecognised event: %w", err)
			}
		}
		owner := runner.InstanceID()
		if lc, ok := lambdacontext.FromContext(ctx); ok {
			owner = "schema-diff:" + lc.AwsRequestID
		}
		// Connections live for one invocation (a run every few minutes).
		p := runner.New(env, log)
		defer p.Close()
		if err := p.OpenAWS(ctx, false); err != nil {
			return schemadiff.Result{}, err
		}
		if err := p.OpenSource(ctx); err != nil {
			return schemadiff.Result{}, err
		}
		if err := p.OpenTargets(ctx, true); err != nil { // pgferry's own target tables are not needed
			return schemadiff.Result{}, err
		}
		res, err := schemadiff.Run(ctx, env.Config.Name, p.Syncers(), p.SchemaStream(owner), req.Force, emf, log)
		log.Info("schema-diff finished", "shipped", res.Shipped, "busy", res.Busy, "pending", res.Pending, "sequences", res.Sequences, "err", err)
		return res, err
	})
}
