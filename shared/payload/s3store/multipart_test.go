package s3store_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"testing"

	"github.com/pgferry/pgferry/shared/payload/s3store"
	"github.com/pgferry/pgferry/shared/testenv"
)

// TestLargePayloadRoundTrips stores a payload of several parts (a huge
// source transaction's batch) and reads it back unchanged.
func TestLargePayloadRoundTrips(t *testing.T) {
	ctx := context.Background()
	client := s3store.NewClient(testenv.AWSConfig(t))
	bucket := testenv.Name("pgferry-test-s3-")
	if err := s3store.EnsureBucket(ctx, client, bucket); err != nil {
		t.Fatal(err)
	}
	store := s3store.New(client, bucket)
	data := make([]byte, 20<<20+12345)
	_, _ = rand.Read(data)
	if err := store.Put(ctx, "big", data); err != nil {
		t.Fatal(err)
	}
	got, err := store.Get(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes that differ from the %d stored", len(got), len(data))
	}
}
