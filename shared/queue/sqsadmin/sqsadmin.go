// Package sqsadmin creates SQS queues with their dead-letter queues and
// reads their depth, for both SQS adapters (sqsfifo, sqsstd). The deployed
// stack creates its queues with CDK; the local runner and tests use this.
package sqsadmin

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// EnsureWithDLQ creates the queue name and its dead-letter queue dlqName
// when missing, both with attrs (FIFO queues pass the FIFO attributes),
// the queue redriving a message to the dead-letter queue after
// maxReceives receives and hiding received messages for visibility. It
// returns both URLs. Idempotent: an existing queue is reused as it is.
func EnsureWithDLQ(ctx context.Context, client *sqs.Client, name, dlqName string, attrs map[string]string,
	maxReceives int, visibility time.Duration) (url, dlqURL string, err error) {
	if dlqURL, err = create(ctx, client, dlqName, attrs); err != nil {
		return "", "", err
	}
	got, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: &dlqURL, AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn}})
	if err != nil {
		return "", "", fmt.Errorf("sqs: dead-letter queue %s attributes: %w", dlqName, err)
	}
	main := maps.Clone(attrs)
	if main == nil {
		main = map[string]string{}
	}
	main[string(types.QueueAttributeNameRedrivePolicy)] = fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":"%d"}`,
		got.Attributes[string(types.QueueAttributeNameQueueArn)], maxReceives)
	main[string(types.QueueAttributeNameVisibilityTimeout)] = strconv.Itoa(int(visibility / time.Second))
	if url, err = create(ctx, client, name, main); err != nil {
		return "", "", err
	}
	return url, dlqURL, nil
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
		return "", fmt.Errorf("sqs: create queue %s: %w", name, err)
	}
	return aws.ToString(out.QueueUrl), nil
}

// Depth returns the approximate number of visible and in-flight messages
// of the queue at url.
func Depth(ctx context.Context, client *sqs.Client, url string) (visible, inFlight int, err error) {
	out, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: &url,
		AttributeNames: []types.QueueAttributeName{
			types.QueueAttributeNameApproximateNumberOfMessages, types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		},
	})
	if err != nil {
		return 0, 0, fmt.Errorf("sqs: queue attributes: %w", err)
	}
	visible, _ = strconv.Atoi(out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessages)])
	inFlight, _ = strconv.Atoi(out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible)])
	return visible, inFlight, nil
}
