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
	// The source connection lives for one invocation: a drain runs a few
	// times a minute, and a frozen container must not hold a session.
	lambda.Start(func(ctx context.Context) error {
		owner := runner.InstanceID()
		if lc, ok := lambdacontext.FromContext(ctx); ok {
			owner = lc.AwsRequestID
		}
		p := runner.New(env, log)
		defer p.Close()
		if err := p.OpenAWS(ctx, false); err != nil {
			return err
		}
		if err := p.OpenSource(ctx); err != nil {
			return err
		}
		d := p.Drainer(owner, func(b *batch.Batch) { drain.EmitShipped(emf, b) }, emf)
		st, err := d.Run(ctx)
		drain.EmitBacklog(ctx, emf, d, cfg.Name, log)
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
