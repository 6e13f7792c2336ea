// Command drain is the scheduled Lambda that moves captured changes onto
// the FIFO queue. It drains until caught up or near its deadline.
package main

import (
	"context"
	"errors"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/drain"
	"github.com/pgferry/pgferry/shared/metrics"
	"github.com/pgferry/pgferry/shared/runner"
)

func main() {
	// Logs on stderr, EMF metric lines on stdout: both reach CloudWatch.
	emf := metrics.New(os.Stdout)
	env, log, err := runner.Boot(context.Background(), "drain")
	if err != nil {
		log.Error("start refused", "err", err)
		os.Exit(1)
	}
	cfg := env.Config
	lambda.Start(func(ctx context.Context) error {
		owner := runner.InstanceID()
		if lc, ok := lambdacontext.FromContext(ctx); ok {
			owner = lc.AwsRequestID
		}
		aws, err := runner.ConnectAWS(ctx, cfg, env.AWS, false)
		if err != nil {
			return err
		}
		src, err := runner.Connect(ctx, "source", env.DSNs.Source)
		if err != nil {
			return err
		}
		defer src.Close()
		shipped := func(b *batch.Batch) { runner.EmitShipped(emf, b) }
		d := runner.NewDrainer(cfg, src, aws, owner, log, shipped, runner.WithMetrics(emf))
		st, err := d.Run(ctx)
		runner.EmitBacklog(ctx, emf, d, cfg.Name, log)
		if errors.Is(err, drain.ErrBusy) {
			log.Info("another drain holds the lease; skipping this tick")
			return nil
		}
		log.Info("drain finished", "batches", st.Batches, "txns", st.Txns, "rows", st.Rows, "caught_up", st.CaughtUp)
		if err != nil {
			emf.Emit(metrics.Dims{metrics.DimPipeline: cfg.Name}, metrics.Metric{Name: metrics.DrainFailures, Value: 1, Unit: metrics.Count})
		}
		return err
	})
}
