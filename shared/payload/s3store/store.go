// Package s3store keeps claim-check payloads in an S3 bucket.
package s3store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/pgferry/pgferry/shared/queue"
)

// Store is a bucket.
type Store struct {
	s3     *s3.Client
	bucket string
}

var _ queue.PayloadStore = (*Store)(nil)

// New returns a store on bucket.
func New(client *s3.Client, bucket string) *Store { return &Store{s3: client, bucket: bucket} }

// Put stores data under key; overwriting is idempotent.
func (s *Store) Put(ctx context.Context, key string, data []byte) error {
	if len(data) > partSize {
		return s.putMultipart(ctx, key, data)
	}
	_, err := s.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: &s.bucket, Key: &key, Body: bytes.NewReader(data)})
	if err != nil {
		return fmt.Errorf("s3store: put s3://%s/%s: %w", s.bucket, key, err)
	}
	return nil
}

// Get returns the object under key.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	out, err := s.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		return nil, fmt.Errorf("s3store: get s3://%s/%s: %w", s.bucket, key, err)
	}
	defer out.Body.Close()
	return io.ReadAll(out.Body)
}

// NewClient returns an S3 client for cfg. When an endpoint override is set
// (AWS_ENDPOINT_URL_S3, as for a local emulator) it uses path-style
// addressing: bucket.localhost-style host names do not resolve locally.
func NewClient(cfg aws.Config) *s3.Client {
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.UsePathStyle = os.Getenv("AWS_ENDPOINT_URL_S3") != ""
		// Objects uploaded in parts carry no whole-object checksum to
		// validate; the SDK would log that on every read.
		o.DisableLogOutputChecksumValidationSkipped = true
	})
}

// EnsureBucket creates the bucket if it does not exist.
func EnsureBucket(ctx context.Context, client *s3.Client, bucket string) error {
	if _, err := client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &bucket}); err == nil {
		return nil
	}
	_, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &bucket})
	var owned *types.BucketAlreadyOwnedByYou
	if err != nil && !errors.As(err, &owned) {
		return fmt.Errorf("s3store: create bucket %s: %w", bucket, err)
	}
	return nil
}
