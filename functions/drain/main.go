// Command drain is the scheduled Lambda that moves captured changes onto
// the FIFO queue. It drains until caught up or near its deadline.
package main

import (
	"context"
	"errors"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/drain"
	"github.com/pgferry/pgferry/shared/runner"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	cfg, err := config.FromEnv()
	if err != nil {
		log.Error("configuration refused", "err", err)
		os.Exit(1)
	}
	log = log.With("pipeline", cfg.Name, "fn", "drain")
	lambda.Start(func(ctx context.Context) error {
		owner := runner.InstanceID()
		if lc, ok := lambdacontext.FromContext(ctx); ok {
			owner = lc.AwsRequestID
		}
		aws, err := runner.ConnectAWS(ctx, cfg, false)
		if err != nil {
			return err
		}
		src, err := runner.Connect(ctx, "source", cfg.Source.DSN)
		if err != nil {
			return err
		}
		defer src.Close()
		st, err := runner.NewDrainer(cfg, src, aws, owner, log, nil).Run(ctx)
		if errors.Is(err, drain.ErrBusy) {
			log.Info("another drain holds the lease; skipping this tick")
			return nil
		}
		log.Info("drain finished", "batches", st.Batches, "txns", st.Txns, "rows", st.Rows, "caught_up", st.CaughtUp)
		return err
	})
}
