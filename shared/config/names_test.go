package config

import (
	"strings"
	"testing"
)

// TestEveryDerivedNameComesFromThePipelineName pins the names that the
// Lambdas, the local runner, the CDK stack and the capture adapters must
// agree on: AWS resources spell the name with "-", Postgres objects with
// "_", and a configured aws.* or load.queue key overrides its default.
func TestEveryDerivedNameComesFromThePipelineName(t *testing.T) {
	doc := strings.Replace(valid, "name: demo", "name: shop_eu", 1)
	c, err := Parse([]byte(doc), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []struct{ what, got, want string }{
		{"ResourcePrefix", c.ResourcePrefix(), "pgferry-shop-eu"},
		{"QueueName", c.QueueName(), "pgferry-shop-eu.fifo"},
		{"StateTableName", c.StateTableName(), "pgferry-shop-eu-state"},
		{"PayloadBucketName", c.PayloadBucketName(), "pgferry-shop-eu-payloads"},
		{"LoadQueueName", c.LoadQueueName(), "pgferry-shop-eu-load"},
		{"CaptureSchema", c.CaptureSchema(), "pgferry_shop_eu"},
		{"SlotName", c.SlotName(), "pgferry_shop_eu"},
		{"PublicationName", c.PublicationName(), "pgferry_shop_eu"},
		{"TriggerName", c.TriggerName("ins"), "pgferry_shop_eu_ins"},
		{"TargetSchema", TargetSchema, "pgferry"},
	} {
		if n.got != n.want {
			t.Errorf("%s = %q, want %q", n.what, n.got, n.want)
		}
	}

	doc += "aws:\n  queue: q.fifo\n  table: t\n  bucket: b\nload:\n  queue: l\n"
	c, err = Parse([]byte(doc), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := []string{c.QueueName(), c.StateTableName(), c.PayloadBucketName(), c.LoadQueueName()}; strings.Join(got, " ") != "q.fifo t b l" {
		t.Fatalf("configured names not used: %q", got)
	}
}
