// Command apply is the Lambda behind the FIFO queue's event source mapping.
// It applies each batch in order and reports partial batch failures the
// FIFO way: the first failure and every record after it.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/pgferry/pgferry/shared/apply"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/runner"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	cfg, err := config.FromEnv()
	if err != nil {
		log.Error("configuration refused", "err", err)
		os.Exit(1)
	}
	log = log.With("pipeline", cfg.Name, "fn", "apply")
	ctx := context.Background()
	aws, err := runner.ConnectAWS(ctx, cfg, false)
	if err != nil {
		log.Error("aws", "err", err)
		os.Exit(1)
	}
	// Target pools live across invocations of a warm container.
	targets, _, err := runner.Targets(ctx, cfg, log)
	if err != nil {
		log.Error("targets", "err", err)
		os.Exit(1)
	}
	h := &apply.Handler{Pipeline: cfg.Name, Targets: targets, Payloads: aws.Payloads}
	lambda.Start(func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
		var resp events.SQSEventResponse
		for i, rec := range ev.Records {
			b, res, err := h.Handle(ctx, []byte(rec.Body))
			if err != nil {
				log.Error("apply failed", "message", rec.MessageId, "terminal", apply.Classify(err) == apply.Terminal, "err", err)
				for _, r := range ev.Records[i:] {
					resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: r.MessageId})
				}
				return resp, nil
			}
			log.Info("batch applied", "seq", b.Seq, "target", b.Target, "to", b.To.String(), "rows", res.Rows, "replay", !res.Applied)
		}
		return resp, nil
	})
}
