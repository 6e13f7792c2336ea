package config

import (
	"strings"

	"github.com/pgferry/pgferry/shared/batch"
)

// Every name pgferry derives from a pipeline's name is built here and
// nowhere else: the Lambdas, the local runner, the CDK stack and the
// capture adapters must agree on them, and a second spelling would drift.
//
// Two spellings exist because of what each namespace allows. AWS
// resources (queues, tables, buckets, stacks) take "-" and refuse "_" in
// places (S3), so they use ResourcePrefix, pgferry-<name> with every "_"
// turned into "-". Postgres objects (schema, slot, publication, triggers)
// take "_" and slot names refuse "-", so they use pgferry_<name>; a
// pipeline name is already lower-case letters, digits and "_".

// TargetSchema is the schema on every target that holds pgferry's own
// tables (watermarks, load state, schema registry). A target table can
// never be applied into it (targets.<name>.apply_schema refuses it).
const TargetSchema = "pgferry"

// ApplicationName is what pgferry's database sessions (pools and the
// slot's replication connection) show in pg_stat_activity.
const ApplicationName = "pgferry"

// ResourcePrefix is pgferry-<name> with "_" turned into "-": the CDK stack
// id, the prefix of its resources and alarms, and of the default AWS
// resource names below.
func (c *Config) ResourcePrefix() string {
	return "pgferry-" + strings.ReplaceAll(c.Name, "_", "-")
}

// QueueName is the FIFO batch queue: aws.queue, default
// pgferry-<name>.fifo. Its dead-letter queue's name is derived from it
// (sqsfifo.DLQName).
func (c *Config) QueueName() string {
	if c.AWS.Queue != "" {
		return c.AWS.Queue
	}
	return c.ResourcePrefix() + ".fifo"
}

// StateTableName is the DynamoDB table of checkpoints, leases and load
// progress: aws.table, default pgferry-<name>-state.
func (c *Config) StateTableName() string {
	if c.AWS.Table != "" {
		return c.AWS.Table
	}
	return c.ResourcePrefix() + "-state"
}

// PayloadBucketName is the S3 bucket of claim-checked batch payloads:
// aws.bucket, default pgferry-<name>-payloads.
func (c *Config) PayloadBucketName() string {
	if c.AWS.Bucket != "" {
		return c.AWS.Bucket
	}
	return c.ResourcePrefix() + "-payloads"
}

// LoadQueueName is the standard queue of initial-load chunks: load.queue,
// default pgferry-<name>-load. Its dead-letter queue's name is derived
// from it (sqsstd.DLQName).
func (c *Config) LoadQueueName() string {
	if c.Load.Queue != "" {
		return c.Load.Queue
	}
	return c.ResourcePrefix() + "-load"
}

// CaptureSchema is the source schema that holds the pipeline's capture
// objects (trigger functions, the event table, load marks); it is never
// replicated.
func (c *Config) CaptureSchema() string { return batch.CaptureSchema(c.Name) }

// SlotName is the logical replication slot of a pipeline in slot capture
// mode. Slot names allow only lower-case letters, digits and _, which a
// pipeline name already is.
func (c *Config) SlotName() string { return c.CaptureSchema() }

// PublicationName is the publication the slot reads through (pgoutput).
func (c *Config) PublicationName() string { return c.CaptureSchema() }

// TriggerName is the name of the capture trigger for one event (suffix
// ins, upd, del, trunc, …): pgferry_<name>_<suffix>, so that two
// pipelines on one table have distinct triggers.
func (c *Config) TriggerName(suffix string) string { return c.CaptureSchema() + "_" + suffix }
