package rsapply

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/pgferry/pgferry/shared/payload/s3store"
)

// S3Objects stages COPY files in one S3 bucket.
type S3Objects struct {
	client *s3.Client
	bucket string
	store  *s3store.Store
}

var _ Objects = (*S3Objects)(nil)

// NewS3Objects returns the staging area in bucket (config.StagingBucket).
func NewS3Objects(client *s3.Client, bucket string) *S3Objects {
	return &S3Objects{client: client, bucket: bucket, store: s3store.New(client, bucket)}
}

// Put stores one file (multipart when large).
func (o *S3Objects) Put(ctx context.Context, key string, data []byte) error {
	return o.store.Put(ctx, key, data)
}

// Delete removes keys, up to 1000 per request.
func (o *S3Objects) Delete(ctx context.Context, keys []string) error {
	for len(keys) > 0 {
		n := min(len(keys), 1000)
		ids := make([]types.ObjectIdentifier, n)
		for i := range ids {
			ids[i] = types.ObjectIdentifier{Key: &keys[i]}
		}
		quiet := true
		out, err := o.client.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: &o.bucket, Delete: &types.Delete{Objects: ids, Quiet: &quiet}})
		if err != nil {
			return fmt.Errorf("rsapply: delete staged files in %s: %w", o.bucket, err)
		}
		if len(out.Errors) > 0 {
			e := out.Errors[0]
			return fmt.Errorf("rsapply: delete staged file s3://%s/%s: %s", o.bucket, deref(e.Key), deref(e.Message))
		}
		keys = keys[n:]
	}
	return nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
