package main

import (
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/jsii-runtime-go"
)

// The DynamoDB actions on the state table, by what uses them.
var (
	// shared/checkpoint/dynamo: Load is GetItem; Acquire, Renew, Release
	// and Save are conditional UpdateItems. (DeleteItem is only used by
	// the local runner's --reset.)
	checkpointActions = []string{"dynamodb:GetItem", "dynamodb:UpdateItem"}
	// shared/load/loadstore: plans are PutItem/GetItem, chunk progress
	// UpdateItem, and the chunks already done are read with BatchGetItem.
	// No Scan, Query or table-level action.
	loadActions = []string{"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"}
)

// grants gives each function exactly the calls its code makes, on this
// pipeline's resources only. Keep it in step with the code: a new AWS call
// in a function needs its action here (and in the stack test that lists
// them). The SQS event sources add the consume actions on their queue
// (ReceiveMessage, DeleteMessage, ChangeMessageVisibility,
// GetQueueAttributes, GetQueueUrl).
func (b *builder) grants() {
	o := b.out
	objects := o.Bucket.ArnForObjects(jsii.String("*"))
	source := []string{b.cfg.Source.DSNSecret}
	var targets []string
	for _, n := range b.cfg.TargetNames() {
		t := b.cfg.Targets[n]
		targets = append(targets, t.DSNSecret)
		if t.DataAPI != nil {
			// A Redshift target's database credentials, which the Data
			// API reads with the caller's permission.
			targets = append(targets, t.DataAPI.SecretARN)
		}
	}
	all := append(append([]string{}, source...), targets...)
	// hash_salt_secret: read by the functions that run hash rules on rows
	// (runner.Boot resolves it in those only).
	salt := []string{b.cfg.HashSaltSecret}

	// drain: capture → batches on the FIFO queue (large ones to S3 first)
	// → checkpoint and lease.
	drain := o.Functions[fnDrain]
	allow(drain, "SendBatches", []string{"sqs:SendMessage"}, o.Queue.QueueArn())
	allow(drain, "PutPayloads", []string{"s3:PutObject"}, objects)
	allow(drain, "Checkpoint", checkpointActions, o.Table.TableArn())
	b.allowSecrets(drain, append(append([]string{}, source...), salt...))

	// apply: consumes the FIFO queue (event source); reads claim-checked
	// payloads; parks failing batches in the DLQ (SendMessage) and, when
	// invoked with {"redrive":true}, applies and removes them. With schema
	// sync (targets.<name>.schema_sync, default true) it also reads the
	// source's catalog: schema jobs and retry-after-DDL diff against it.
	apply := o.Functions[fnApply]
	allow(apply, "GetPayloads", []string{"s3:GetObject"}, objects)
	allow(apply, "ParkAndRedrive", []string{"sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"}, o.DLQ.QueueArn())
	if b.cfg.SyncsSchema() {
		b.allowSecrets(apply, all)
	} else {
		b.allowSecrets(apply, targets)
	}

	// schema-diff: fingerprints the source catalog and, when it changed,
	// takes the drain lease and puts a schema job into every target's FIFO
	// group at the next position, checkpointing it (the drain's own
	// GetItem/UpdateItem calls; large jobs would go via S3); plans each
	// target's DDL (read only) and advances target sequences.
	diff := o.Functions[fnSchemaDiff]
	allow(diff, "SendDDLJobs", []string{"sqs:SendMessage"}, o.Queue.QueueArn())
	allow(diff, "PutPayloads", []string{"s3:PutObject"}, objects)
	allow(diff, "CheckpointAndLease", checkpointActions, o.Table.TableArn())
	b.allowSecrets(diff, all)

	// initial-load: installs capture on the source, prepares the target
	// tables, plans chunks and sends them to the load queue; records the
	// load's progress.
	il := o.Functions[fnInitialLoad]
	allow(il, "SendChunks", []string{"sqs:SendMessage"}, o.LoadQueue.QueueArn())
	allow(il, "LoadProgress", loadActions, o.Table.TableArn())
	b.allowSecrets(il, all)

	// load: consumes the chunk queue (event source), copies source →
	// target, records chunk progress.
	load := o.Functions[fnLoad]
	allow(load, "LoadProgress", loadActions, o.Table.TableArn())
	b.allowSecrets(load, append(append([]string{}, all...), salt...))

	b.redshiftGrants()
}

// allow adds one Allow statement to fn's role.
func allow(fn awslambda.Function, sid string, actions []string, resources ...*string) {
	fn.AddToRolePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid:       jsii.String(sid),
		Actions:   jsii.Strings(actions...),
		Resources: &resources,
	}))
}

// allowSecrets lets fn read the given secrets and nothing else, and decrypt
// them with deploy.secrets_kms_keys only through Secrets Manager.
func (b *builder) allowSecrets(fn awslambda.Function, ids []string) {
	var res []*string
	seen := map[string]bool{}
	for _, id := range ids {
		if id == "" || seen[id] {
			continue
		}
		seen[id] = true
		res = append(res, b.secretARNs(id)...)
	}
	if len(res) == 0 {
		return
	}
	allow(fn, "ReadDSNSecrets", []string{"secretsmanager:GetSecretValue"}, res...)
	if keys := b.cfg.Deploy.SecretsKMSKeys; len(keys) > 0 {
		fn.AddToRolePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Sid:       jsii.String("DecryptDSNSecrets"),
			Actions:   jsii.Strings("kms:Decrypt"),
			Resources: jsii.Strings(keys...),
			Conditions: &map[string]interface{}{"StringEquals": map[string]interface{}{
				"kms:ViaService": awscdk.Fn_Join(jsii.String(""), jsii.Strings("secretsmanager.", *awscdk.Aws_REGION(), ".amazonaws.com")),
			}},
		}))
	}
}

// secretARNs are the IAM resources that match a dsn_secret. Secrets Manager
// appends "-" and six random characters to a secret's name in its ARN. A
// name, or a partial ARN, matches with "-??????"; a complete ARN matches
// itself. An ARN cannot be told complete from partial by its form, so both
// are granted.
func (b *builder) secretARNs(id string) []*string {
	if strings.HasPrefix(id, "arn:") {
		return *jsii.Strings(id, id+"-??????")
	}
	return []*string{b.stack.FormatArn(&awscdk.ArnComponents{
		Service:      jsii.String("secretsmanager"),
		Resource:     jsii.String("secret"),
		ResourceName: jsii.String(id + "-??????"),
		ArnFormat:    awscdk.ArnFormat_COLON_RESOURCE_NAME,
	})}
}
