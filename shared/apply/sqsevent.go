package apply

import (
	"context"
	"strconv"

	"github.com/aws/aws-lambda-go/events"

	"github.com/pgferry/pgferry/shared/queue"
)

// ConsumeEvent is the consume step behind an SQS event source mapping: it
// consumes the event's records in order (see Consume; c.Reported should be
// set, since the mapping deletes the records reported as done) and returns
// the partial batch response: the first failure and every record after it,
// so that none of them is deleted and their group's order holds.
func (c *Consumer) ConsumeEvent(ctx context.Context, records []events.SQSMessage) (events.SQSEventResponse, Outcome) {
	msgs := make([]queue.Message, len(records))
	for i, r := range records {
		msgs[i] = EventMessage(r)
	}
	out := c.Consume(ctx, msgs)
	var resp events.SQSEventResponse
	for _, m := range out.Rest {
		resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: m.ID})
	}
	return resp, out
}

// EventMessage converts an event record into the queue's message type.
func EventMessage(r events.SQSMessage) queue.Message {
	n, _ := strconv.Atoi(r.Attributes["ApproximateReceiveCount"])
	return queue.Message{
		ID: r.MessageId, Body: []byte(r.Body), Receipt: r.ReceiptHandle,
		Group: r.Attributes["MessageGroupId"], DedupID: r.Attributes["MessageDeduplicationId"],
		Receives: max(n, 1),
	}
}
