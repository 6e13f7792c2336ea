package s3store

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// partSize is the part size of multipart uploads, used for payloads
// larger than one part: S3 wants parts of at least 5 MiB (but the last),
// a single PUT is capped (5 GiB on S3, less on emulators), and a failed
// part is retried alone. A huge source transaction is one batch, so its
// payload can be large.
const partSize = 8 << 20

// putMultipart stores data under key in parts; on failure the upload is
// aborted so no parts are left to bill.
func (s *Store) putMultipart(ctx context.Context, key string, data []byte) error {
	up, err := s.s3.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		return fmt.Errorf("s3store: put s3://%s/%s: start multipart upload: %w", s.bucket, key, err)
	}
	var parts []types.CompletedPart
	for off, n := 0, int32(1); off < len(data); off, n = off+partSize, n+1 {
		chunk := data[off:min(off+partSize, len(data))]
		out, err := s.s3.UploadPart(ctx, &s3.UploadPartInput{
			Bucket: &s.bucket, Key: &key, UploadId: up.UploadId, PartNumber: aws.Int32(n), Body: bytes.NewReader(chunk),
		})
		if err != nil {
			_, _ = s.s3.AbortMultipartUpload(context.WithoutCancel(ctx), &s3.AbortMultipartUploadInput{Bucket: &s.bucket, Key: &key, UploadId: up.UploadId})
			return fmt.Errorf("s3store: put s3://%s/%s: part %d: %w", s.bucket, key, n, err)
		}
		// Without its quotes, as minio-go sends it: S3 accepts either, and
		// an emulator that matches the XML text literally accepts this one.
		etag := strings.Trim(aws.ToString(out.ETag), `"`)
		parts = append(parts, types.CompletedPart{ETag: &etag, PartNumber: aws.Int32(n)})
	}
	_, err = s.s3.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &s.bucket, Key: &key, UploadId: up.UploadId, MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	if err != nil {
		return fmt.Errorf("s3store: put s3://%s/%s: complete multipart upload: %w", s.bucket, key, err)
	}
	return nil
}
