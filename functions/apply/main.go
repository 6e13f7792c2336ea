// Command apply is the Lambda behind the FIFO queue's event source mapping.
// The consume step (apply.Consumer) applies each batch in order, parks one
// that keeps failing in the dead-letter queue with its error, and reports
// partial batch failures the FIFO way. Invoked by hand with
// {"redrive": true} it applies the parked batches instead.
//
// Environment: PGFERRY_CONFIG (or PGFERRY_CONFIG_FILE), PGFERRY_QUEUE_URL,
// PGFERRY_DLQ_URL, and the standard AWS SDK variables.
package main

import (
	"context"
	"os"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/pgferry/pgferry/shared/apply"
	"github.com/pgferry/pgferry/shared/runner"
)

// request is either an SQS event or a manual redrive request.
type request struct {
	Records []events.SQSMessage `json:"Records"`
	Redrive bool                `json:"redrive"`
}

// response is the partial batch response, plus redrive figures.
type response struct {
	events.SQSEventResponse
	Redriven *apply.RedriveStats `json:"redriven,omitempty"`
}

func main() {
	ctx := context.Background()
	env, log, err := runner.Boot(ctx, "apply")
	if err != nil {
		log.Error("start refused", "err", err)
		os.Exit(1)
	}
	p := runner.New(env, log)
	if err := p.OpenAWS(ctx, false); err != nil {
		log.Error("aws", "err", err)
		os.Exit(1)
	}
	fn := &runner.ApplyFn{P: p}
	lambda.StartWithOptions(func(ctx context.Context, req request) (response, error) {
		c, err := fn.Consumer(ctx)
		if err != nil {
			return response{}, err // every record goes back to the queue
		}
		if req.Redrive {
			st, err := apply.Redrive(ctx, c.Handler, p.Res.DLQ, log)
			return response{Redriven: &st}, err
		}
		resp, out := c.ConsumeEvent(ctx, req.Records)
		if out.Applied > 0 {
			fn.AfterCycle(ctx)
		}
		return response{SQSEventResponse: resp}, nil
	}, lambda.WithEnableSIGTERM(p.Close)) // the pools close before the runtime stops
}
