// Package sqsfifo is the SQS FIFO adapter for batches.
package sqsfifo

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/pgferry/pgferry/shared/apply"
	"github.com/pgferry/pgferry/shared/queue"
	"github.com/pgferry/pgferry/shared/queue/sqsadmin"
)

// Queue is one FIFO queue.
type Queue struct {
	sqs *sqs.Client
	url string
}

var (
	_ queue.Publisher = (*Queue)(nil)
	_ apply.Queue     = (*Queue)(nil) // the queue the consume step reads
	_ apply.Parker    = (*Queue)(nil) // as a dead-letter queue
)

// New returns the queue at url.
func New(client *sqs.Client, url string) *Queue { return &Queue{sqs: client, url: url} }

// URL returns the queue URL.
func (q *Queue) URL() string { return q.url }

// Publish sends body to group with dedupID.
func (q *Queue) Publish(ctx context.Context, group, dedupID string, body []byte) error {
	_, err := q.sqs.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl:               &q.url,
		MessageBody:            aws.String(string(body)),
		MessageGroupId:         &group,
		MessageDeduplicationId: &dedupID,
	})
	if err != nil {
		return fmt.Errorf("sqsfifo: send %s: %w", dedupID, err)
	}
	return nil
}

// Park sends m to this queue (a dead-letter queue) in m's group, keeping
// its deduplication id and body, with attrs attached as string message
// attributes. It does not remove m from the queue it came from: the
// caller does that once Park returned nil. A crash in between leaves the
// batch in both queues, which is harmless (a second apply is a no-op).
func (q *Queue) Park(ctx context.Context, m queue.Message, attrs map[string]string) error {
	ma := make(map[string]types.MessageAttributeValue, len(attrs))
	for k, v := range attrs {
		if v == "" {
			continue
		}
		ma[k] = types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
	}
	dedup := m.DedupID
	if dedup == "" {
		dedup = m.ID
	}
	_, err := q.sqs.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl:               &q.url,
		MessageBody:            aws.String(string(m.Body)),
		MessageGroupId:         &m.Group,
		MessageDeduplicationId: &dedup,
		MessageAttributes:      ma,
	})
	if err != nil {
		return fmt.Errorf("sqsfifo: park %s in the dead-letter queue: %w", dedup, err)
	}
	return nil
}

// Receive long-polls for up to max messages, hiding them for visibility.
// It may return fewer than are available; callers must not depend on the
// count.
func (q *Queue) Receive(ctx context.Context, max int, wait, visibility time.Duration) ([]queue.Message, error) {
	out, err := q.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl:                    &q.url,
		MaxNumberOfMessages:         int32(max),
		WaitTimeSeconds:             int32(wait / time.Second),
		VisibilityTimeout:           int32(visibility / time.Second),
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
		MessageAttributeNames:       []string{"All"},
	})
	if err != nil {
		return nil, fmt.Errorf("sqsfifo: receive: %w", err)
	}
	msgs := make([]queue.Message, 0, len(out.Messages))
	for _, m := range out.Messages {
		n, _ := strconv.Atoi(m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)])
		msgs = append(msgs, queue.Message{
			ID: aws.ToString(m.MessageId), Body: []byte(aws.ToString(m.Body)), Receipt: aws.ToString(m.ReceiptHandle),
			Group:    m.Attributes[string(types.MessageSystemAttributeNameMessageGroupId)],
			DedupID:  m.Attributes[string(types.MessageSystemAttributeNameMessageDeduplicationId)],
			Receives: n,
		})
		if len(m.MessageAttributes) > 0 {
			attrs := make(map[string]string, len(m.MessageAttributes))
			for k, v := range m.MessageAttributes {
				attrs[k] = aws.ToString(v.StringValue)
			}
			msgs[len(msgs)-1].Attrs = attrs
		}
	}
	return msgs, nil
}

// Delete removes a processed message. Call it only after the apply and its
// watermark have committed.
func (q *Queue) Delete(ctx context.Context, m queue.Message) error {
	if _, err := q.sqs.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: &q.url, ReceiptHandle: &m.Receipt}); err != nil {
		return fmt.Errorf("sqsfifo: delete %s: %w", m.ID, err)
	}
	return nil
}

// SetVisibility changes how long m stays hidden: extend it during a long
// apply, or 0 to retry it now.
func (q *Queue) SetVisibility(ctx context.Context, m queue.Message, d time.Duration) error {
	_, err := q.sqs.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl: &q.url, ReceiptHandle: &m.Receipt, VisibilityTimeout: int32(d / time.Second),
	})
	if err != nil {
		return fmt.Errorf("sqsfifo: change visibility of %s: %w", m.ID, err)
	}
	return nil
}

// Depth returns the approximate number of visible and in-flight messages.
func (q *Queue) Depth(ctx context.Context) (visible, inFlight int, err error) {
	return sqsadmin.Depth(ctx, q.sqs, q.url)
}

// DLQName is the name of the dead-letter queue beside the FIFO queue name.
func DLQName(name string) string {
	return strings.TrimSuffix(name, ".fifo") + "-dlq.fifo"
}

// BackstopReceives is the queue's own redrive count. The applier parks a
// failing batch itself after maxAttempts (with its error attached) and
// never parks one that fails only because a dependency is down or an
// earlier batch is parked; the queue's redrive is only a backstop for
// messages that crash their consumer before it can decide, so it is set
// well above maxAttempts.
func BackstopReceives(maxAttempts int) int { return max(100, 4*maxAttempts) }

// Ensure creates the FIFO queue name and its FIFO dead-letter queue
// (DLQName) if missing, with messages moved to the dead-letter queue
// after maxReceives deliveries. It returns the queue and the DLQ URL.
func Ensure(ctx context.Context, client *sqs.Client, name string, maxReceives int, visibility time.Duration) (*Queue, string, error) {
	fifo := map[string]string{
		string(types.QueueAttributeNameFifoQueue):                 "true",
		string(types.QueueAttributeNameContentBasedDeduplication): "false",
	}
	url, dlqURL, err := sqsadmin.EnsureWithDLQ(ctx, client, name, DLQName(name), fifo, maxReceives, visibility)
	if err != nil {
		return nil, "", err
	}
	return New(client, url), dlqURL, nil
}
