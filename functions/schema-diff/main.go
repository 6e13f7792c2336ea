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
	cfg := env.Config
	lambda.Start(func(ctx context.Context, raw json.RawMessage) (runner.SchemaDiffResult, error) {
		var req request
		if len(raw) > 0 {
			// A scheduled event has other fields; only "force" matters.
			if err := json.Unmarshal(raw, &req); err != nil {
				return runner.SchemaDiffResult{}, fmt.Errorf("schema-diff: unrecognised event: %w", err)
			}
		}
		owner := runner.InstanceID()
		if lc, ok := lambdacontext.FromContext(ctx); ok {
			owner = "schema-diff:" + lc.AwsRequestID
		}
		aws, err := runner.ConnectAWS(ctx, cfg, env.AWS, false)
		if err != nil {
			return runner.SchemaDiffResult{}, err
		}
		src, err := runner.Connect(ctx, "source", env.DSNs.Source)
		if err != nil {
			return runner.SchemaDiffResult{}, err
		}
		defer src.Close()
		pools, err := runner.ConnectTargets(ctx, cfg, env.DSNs)
		if err != nil {
			return runner.SchemaDiffResult{}, err
		}
		defer runner.CloseAll(pools)
		res, err := runner.SchemaDiff(ctx, cfg, src, pools, aws, owner, req.Force, emf, log)
		log.Info("schema-diff finished", "shipped", res.Shipped, "busy", res.Busy, "pending", res.Pending, "sequences", res.Sequences, "err", err)
		return res, err
	})
}
