// Package awsenv loads the AWS SDK configuration from the standard
// environment (region, credentials, endpoints via AWS_ENDPOINT_URL_*). It
// is the one place the project does so: a process loads it once
// (runner.Start) and builds every client from it, so all share one
// configuration and one credential cache; test support loads it here too.
package awsenv

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
)

// Load returns the SDK configuration of the environment, with retries
// raised to 8 attempts (throttling on a busy queue is expected).
func Load(ctx context.Context) (aws.Config, error) {
	ac, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRetryMaxAttempts(8))
	if err != nil {
		return aws.Config{}, fmt.Errorf("aws: %w", err)
	}
	return ac, nil
}
