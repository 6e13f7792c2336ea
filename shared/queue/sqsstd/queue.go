// Package sqsstd is the SQS standard-queue adapter for initial-load chunk
// messages. Chunks are independent, so they fan out through a standard
// queue to as many load workers as the function's concurrency allows;
// delivery is at least once, and a chunk copy is idempotent.
package sqsstd

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/pgferry/pgferry/shared/queue/sqsadmin"
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

// Ensure creates the standard queue name and its dead-letter queue
// (name-dlq) if missing, moving a message there after maxReceives
// deliveries, and returns the queue. The deployed stack creates both
// with CDK; tests use this.
func Ensure(ctx context.Context, client *sqs.Client, name string, maxReceives int, visibility time.Duration) (*Queue, error) {
	url, _, err := sqsadmin.EnsureWithDLQ(ctx, client, name, DLQName(name), nil, maxReceives, visibility)
	if err != nil {
		return nil, err
	}
	return New(client, url), nil
}

// DLQName is the name of the dead-letter queue beside the standard queue
// name (the deployed stack creates it under this name too).
func DLQName(name string) string { return name + "-dlq" }

// Lookup returns the queue named name.
func Lookup(ctx context.Context, client *sqs.Client, name string) (*Queue, error) {
	got, err := client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: &name})
	if err != nil {
		return nil, fmt.Errorf("sqsstd: queue %s: %w", name, err)
	}
	return New(client, aws.ToString(got.QueueUrl)), nil
}
