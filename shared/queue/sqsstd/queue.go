// Package sqsstd is the SQS standard-queue adapter for initial-load chunk
// messages. Chunks are independent, so they fan out through a standard
// queue to as many load workers as the function's concurrency allows;
// delivery is at least once, and a chunk copy is idempotent.
package sqsstd

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// Queue is one standard queue.
type Queue struct {
	sqs *sqs.Client
	url string
}

// New returns the queue at url.
func New(client *sqs.Client, url string) *Queue { return &Queue{sqs: client, url: url} }

// URL returns the queue URL.
func (q *Queue) URL() string { return q.url }

// SendAll sends every body, ten to a request. When it returns nil every
// body is queued; on error some may be queued and some not (callers
// resend: receivers are idempotent).
func (q *Queue) SendAll(ctx context.Context, bodies [][]byte) error {
	for start := 0; start < len(bodies); start += 10 {
		var entries []types.SendMessageBatchRequestEntry
		for i, b := range bodies[start:min(start+10, len(bodies))] {
			entries = append(entries, types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(string(b))})
		}
		for attempt := 0; len(entries) > 0; attempt++ {
			out, err := q.sqs.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: &q.url, Entries: entries})
			if err != nil {
				return fmt.Errorf("sqsstd: send: %w", err)
			}
			if len(out.Failed) == 0 {
				break
			}
			if attempt == 4 {
				f := out.Failed[0]
				return fmt.Errorf("sqsstd: send: %d messages refused, first: %s %s", len(out.Failed), aws.ToString(f.Code), aws.ToString(f.Message))
			}
			failed := map[string]bool{}
			for _, f := range out.Failed {
				failed[aws.ToString(f.Id)] = true
			}
			var retry []types.SendMessageBatchRequestEntry
			for _, e := range entries {
				if failed[aws.ToString(e.Id)] {
					retry = append(retry, e)
				}
			}
			entries = retry
			time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
		}
	}
	return nil
}

// Depth returns the approximate number of visible and in-flight messages.
func (q *Queue) Depth(ctx context.Context) (visible, inFlight int, err error) {
	out, err := q.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: &q.url,
		AttributeNames: []types.QueueAttributeName{
			types.QueueAttributeNameApproximateNumberOfMessages, types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		},
	})
	if err != nil {
		return 0, 0, fmt.Errorf("sqsstd: queue attributes: %w", err)
	}
	visible, _ = strconv.Atoi(out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessages)])
	inFlight, _ = strconv.Atoi(out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible)])
	return visible, inFlight, nil
}

// Ensure creates the standard queue name and its dead-letter queue
// (name-dlq) if missing, moving a message there after maxReceives
// deliveries, and returns the queue. The deployed stack creates both
// with CDK; the local runner and tests use this.
func Ensure(ctx context.Context, client *sqs.Client, name string, maxReceives int, visibility time.Duration) (*Queue, error) {
	dlq, err := create(ctx, client, name+"-dlq", nil)
	if err != nil {
		return nil, err
	}
	attrs, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: &dlq, AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn}})
	if err != nil {
		return nil, fmt.Errorf("sqsstd: dead-letter queue attributes: %w", err)
	}
	redrive := fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":"%d"}`, attrs.Attributes[string(types.QueueAttributeNameQueueArn)], maxReceives)
	url, err := create(ctx, client, name, map[string]string{
		string(types.QueueAttributeNameRedrivePolicy):     redrive,
		string(types.QueueAttributeNameVisibilityTimeout): strconv.Itoa(int(visibility / time.Second)),
	})
	if err != nil {
		return nil, err
	}
	return New(client, url), nil
}

func create(ctx context.Context, client *sqs.Client, name string, attrs map[string]string) (string, error) {
	out, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: &name, Attributes: attrs})
	if err != nil {
		var exists *types.QueueNameExists
		if errors.As(err, &exists) {
			got, gerr := client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: &name})
			if gerr == nil {
				return aws.ToString(got.QueueUrl), nil
			}
		}
		return "", fmt.Errorf("sqsstd: create queue %s: %w", name, err)
	}
	return aws.ToString(out.QueueUrl), nil
}

// Lookup returns the queue named name.
func Lookup(ctx context.Context, client *sqs.Client, name string) (*Queue, error) {
	got, err := client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: &name})
	if err != nil {
		return nil, fmt.Errorf("sqsstd: queue %s: %w", name, err)
	}
	return New(client, aws.ToString(got.QueueUrl)), nil
}
