package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsdynamodb"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/aws-cdk-go/awscdk/v2/awseventstargets"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambdaeventsources"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssqs"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/pgferry/pgferry/shared/checkpoint/dynamo"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/queue/sqsfifo"
	"github.com/pgferry/pgferry/shared/queue/sqsstd"
)

// maxConfigBytes bounds PGFERRY_CONFIG: a Lambda's environment holds 4 KB
// in all, and the queue URLs need the rest.
const maxConfigBytes = 3 << 10

// PipelineStackProps configures one pgferry pipeline stack.
type PipelineStackProps struct {
	awscdk.StackProps
	// Config is the validated pipeline configuration (config.Parse).
	Config *config.Config
	// ConfigText is the configuration as the functions receive it in
	// PGFERRY_CONFIG (config.DeployedText).
	ConfigText string
	// Code holds each function's bootstrap bundle, keyed by function name
	// (fnDrain, …); every function needs one.
	Code map[string]awslambda.Code
	// AlarmTopicARN, when set, overrides deploy.alarms.sns_topic.
	AlarmTopicARN string
}

// PipelineStack exposes the resources of a pipeline for tests and wiring.
//
// The stack is a named field, not embedded: jsii treats a Go struct embedding
// a construct as a jsii subclass, so passing *PipelineStack where a construct
// is expected panics ("already assigned"). Use .Stack instead.
type PipelineStack struct {
	Stack     awscdk.Stack
	Queue     awssqs.Queue // FIFO: batches and DDL jobs
	DLQ       awssqs.Queue // FIFO: parked batches
	LoadQueue awssqs.Queue // standard: initial-load chunks
	LoadDLQ   awssqs.Queue
	Table     awsdynamodb.Table
	Bucket    awss3.Bucket
	Functions map[string]awslambda.Function
	// Alarms by their id (see alarms.go).
	Alarms    map[string]awscloudwatch.Alarm
	Dashboard awscloudwatch.Dashboard
}

// NewPipelineStack creates every resource of one pipeline. Like other CDK
// constructors it panics on invalid input.
func NewPipelineStack(scope constructs.Construct, id string, props *PipelineStackProps) *PipelineStack {
	if props == nil || props.Config == nil {
		panic("pgferry: PipelineStackProps.Config is required")
	}
	cfg := props.Config
	if err := deployable(cfg); err != nil {
		panic(err.Error())
	}
	if len(props.ConfigText) == 0 || len(props.ConfigText) > maxConfigBytes {
		panic(fmt.Sprintf("pgferry: the deployed configuration is %d bytes; it must be 1 to %d (a Lambda environment holds 4 KB): shorten table lists or names", len(props.ConfigText), maxConfigBytes))
	}
	for _, fn := range functionNames {
		if props.Code[fn] == nil {
			panic("pgferry: no code for function " + fn)
		}
	}

	stack := awscdk.NewStack(scope, &id, &props.StackProps)
	awscdk.Tags_Of(stack).Add(jsii.String("pgferry:pipeline"), jsii.String(cfg.Name), nil)
	b := &builder{
		stack:  stack,
		cfg:    cfg,
		set:    resolve(cfg),
		prefix: cfg.ResourcePrefix(),
		out:    &PipelineStack{Stack: stack, Functions: map[string]awslambda.Function{}, Alarms: map[string]awscloudwatch.Alarm{}},
	}
	b.storage()
	b.network()
	b.functions(props.ConfigText, props.Code)
	topic := props.AlarmTopicARN
	if topic == "" {
		topic = cfg.Deploy.Alarms.SNSTopic
	}
	b.alarms(topic)
	b.dashboard()
	b.outputs()
	return b.out
}

// deployable refuses what a deployed pipeline must not have: a DSN in
// plain text would end up in the Lambda environment and the template.
func deployable(cfg *config.Config) error {
	var bad []string
	if cfg.Source.DSN != "" {
		bad = append(bad, "source.dsn")
	}
	for _, n := range cfg.TargetNames() {
		if cfg.Targets[n].DSN != "" {
			bad = append(bad, "targets."+n+".dsn")
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("pgferry: config: %s: a deployed pipeline takes its connection strings from Secrets Manager, never from plain values: use dsn_secret (an ARN or secret name) instead", strings.Join(bad, ", "))
	}
	if cfg.HashSalt != "" {
		// Expanded at synthesis, it would sit in the Lambda environment
		// and the template in plain text.
		return fmt.Errorf("pgferry: config: hash_salt: a deployed pipeline takes the hash salt from Secrets Manager, never from a plain value: use hash_salt_secret (an ARN or secret name) instead")
	}
	return nil
}

// builder holds what the parts of one stack share.
type builder struct {
	stack  awscdk.Stack
	cfg    *config.Config
	set    settings
	prefix string
	out    *PipelineStack
	// vpc is nil without deploy.vpc; else the Lambda VpcConfig.
	vpc map[string]interface{}
}

func (b *builder) storage() {
	cfg, o := b.cfg, b.out
	retention := awscdk.Duration_Days(jsii.Number(retentionDays))

	o.DLQ = awssqs.NewQueue(b.stack, jsii.String("DeadLetterQueue"), &awssqs.QueueProps{
		QueueName:       jsii.String(sqsfifo.DLQName(cfg.QueueName())),
		Fifo:            jsii.Bool(true),
		RetentionPeriod: retention,
		Encryption:      awssqs.QueueEncryption_SQS_MANAGED,
		EnforceSSL:      jsii.Bool(true),
	})
	// Producers set an explicit MessageDeduplicationId, so content-based
	// deduplication stays off. The applier parks a failing batch in the
	// DLQ itself (with its error) after apply.max_attempts; the queue's own
	// redrive is the backstop for a message that crashes its consumer
	// every time (sqsfifo.BackstopReceives).
	o.Queue = awssqs.NewQueue(b.stack, jsii.String("Queue"), &awssqs.QueueProps{
		QueueName:                 jsii.String(cfg.QueueName()),
		Fifo:                      jsii.Bool(true),
		ContentBasedDeduplication: jsii.Bool(false),
		VisibilityTimeout:         seconds(visibilityFactor * b.set.sizes[fnApply].timeout),
		RetentionPeriod:           retention,
		Encryption:                awssqs.QueueEncryption_SQS_MANAGED,
		EnforceSSL:                jsii.Bool(true),
		DeadLetterQueue: &awssqs.DeadLetterQueue{
			Queue:           o.DLQ,
			MaxReceiveCount: jsii.Number(sqsfifo.BackstopReceives(cfg.Apply.MaxAttempts)),
		},
	})

	o.LoadDLQ = awssqs.NewQueue(b.stack, jsii.String("LoadDeadLetterQueue"), &awssqs.QueueProps{
		QueueName:       jsii.String(sqsstd.DLQName(cfg.LoadQueueName())),
		RetentionPeriod: retention,
		Encryption:      awssqs.QueueEncryption_SQS_MANAGED,
		EnforceSSL:      jsii.Bool(true),
	})
	o.LoadQueue = awssqs.NewQueue(b.stack, jsii.String("LoadQueue"), &awssqs.QueueProps{
		QueueName:         jsii.String(cfg.LoadQueueName()),
		VisibilityTimeout: seconds(visibilityFactor * b.set.sizes[fnLoad].timeout),
		RetentionPeriod:   retention,
		Encryption:        awssqs.QueueEncryption_SQS_MANAGED,
		EnforceSSL:        jsii.Bool(true),
		DeadLetterQueue: &awssqs.DeadLetterQueue{
			Queue:           o.LoadDLQ,
			MaxReceiveCount: jsii.Number(loadMaxReceives),
		},
	})

	// Checkpoints, leases, schema snapshots, load progress. Retained on
	// stack deletion: losing the checkpoint means re-capturing (see the
	// README's tear-down).
	o.Table = awsdynamodb.NewTable(b.stack, jsii.String("StateTable"), &awsdynamodb.TableProps{
		TableName:    jsii.String(cfg.StateTableName()),
		PartitionKey: &awsdynamodb.Attribute{Name: jsii.String("id"), Type: awsdynamodb.AttributeType_STRING},
		BillingMode:  awsdynamodb.BillingMode_PAY_PER_REQUEST,
		PointInTimeRecoverySpecification: &awsdynamodb.PointInTimeRecoverySpecification{
			PointInTimeRecoveryEnabled: jsii.Bool(true),
		},
		TimeToLiveAttribute: jsii.String(dynamo.TTLAttribute),
		RemovalPolicy:       awscdk.RemovalPolicy_RETAIN,
	})

	// Claim-check payloads are transient: they expire once no message can
	// point at them any more (payloadDays).
	o.Bucket = awss3.NewBucket(b.stack, jsii.String("PayloadBucket"), &awss3.BucketProps{
		BucketName:        jsii.String(cfg.PayloadBucketName()),
		Encryption:        awss3.BucketEncryption_S3_MANAGED,
		BlockPublicAccess: awss3.BlockPublicAccess_BLOCK_ALL(),
		EnforceSSL:        jsii.Bool(true),
		ObjectOwnership:   awss3.ObjectOwnership_BUCKET_OWNER_ENFORCED,
		LifecycleRules: &[]*awss3.LifecycleRule{{
			Id:                                  jsii.String("expire-payloads"),
			Expiration:                          awscdk.Duration_Days(jsii.Number(payloadDays)),
			AbortIncompleteMultipartUploadAfter: awscdk.Duration_Days(jsii.Number(1)),
		}},
		RemovalPolicy: awscdk.RemovalPolicy_RETAIN,
	})
}

// functions creates the five functions, their triggers and their grants.
func (b *builder) functions(configText string, code map[string]awslambda.Code) {
	o := b.out
	env := map[string]*string{
		config.EnvConfig:       jsii.String(configText),
		config.EnvQueueURL:     o.Queue.QueueUrl(),
		config.EnvDLQURL:       o.DLQ.QueueUrl(),
		config.EnvLoadQueueURL: o.LoadQueue.QueueUrl(),
	}
	for _, fn := range functionNames {
		o.Functions[fn] = b.function(fn, code[fn], env)
	}

	b.schedule("DrainSchedule", o.Functions[fnDrain], b.set.drainEvery, nil)
	b.schedule("SchemaDiffSchedule", o.Functions[fnSchemaDiff], b.set.schemaDiffEvery, nil)
	// The load's progress check emits LoadSecondsSinceProgress, which the
	// load-stalled alarm watches; it costs a read of the state table when
	// no load runs.
	b.schedule("LoadStatusSchedule", o.Functions[fnInitialLoad], loadStatusEvery, map[string]any{"action": "status"})

	// Partial batch responses: apply reports the first failed record and
	// every later one, so FIFO order holds.
	o.Functions[fnApply].AddEventSource(awslambdaeventsources.NewSqsEventSource(o.Queue, &awslambdaeventsources.SqsEventSourceProps{
		BatchSize:               jsii.Number(applyBatchSize),
		ReportBatchItemFailures: jsii.Bool(true),
	}))
	// One chunk per invocation, so a slow chunk never holds others past
	// the timeout; at most loadConcurrency workers at once.
	o.Functions[fnLoad].AddEventSource(awslambdaeventsources.NewSqsEventSource(o.LoadQueue, &awslambdaeventsources.SqsEventSourceProps{
		BatchSize:               jsii.Number(1),
		ReportBatchItemFailures: jsii.Bool(true),
		MaxConcurrency:          jsii.Number(float64(b.set.loadConcurrency)),
	}))

	b.grants()
}

// schedule runs fn every interval (whole minutes). Scheduled runs are not
// retried and do not queue up: the next tick comes soon anyway.
// With event set, the function receives it as its payload.
func (b *builder) schedule(id string, fn awslambda.Function, every time.Duration, event map[string]any) {
	props := &awseventstargets.LambdaFunctionProps{
		RetryAttempts: jsii.Number(0),
		MaxEventAge:   awscdk.Duration_Minutes(jsii.Number(1)),
	}
	if event != nil {
		props.Event = awsevents.RuleTargetInput_FromObject(event)
	}
	awsevents.NewRule(b.stack, jsii.String(id), &awsevents.RuleProps{
		Schedule: awsevents.Schedule_Rate(awscdk.Duration_Minutes(jsii.Number(every.Minutes()))),
		Targets:  &[]awsevents.IRuleTarget{awseventstargets.NewLambdaFunction(fn, props)},
	})
}

// loadStatusEvery is how often the initial load's progress is checked.
const loadStatusEvery = 5 * time.Minute

func (b *builder) outputs() {
	o := b.out
	out := func(id, v string, value *string) {
		awscdk.NewCfnOutput(b.stack, jsii.String(id), &awscdk.CfnOutputProps{Value: value, Description: jsii.String(v)})
	}
	out("QueueUrl", "FIFO queue of batches and DDL jobs", o.Queue.QueueUrl())
	out("DeadLetterQueueUrl", "FIFO dead-letter queue of parked batches", o.DLQ.QueueUrl())
	out("LoadQueueUrl", "queue of initial-load chunks", o.LoadQueue.QueueUrl())
	out("LoadDeadLetterQueueUrl", "dead-letter queue of failed load chunks", o.LoadDLQ.QueueUrl())
	out("InitialLoadFunction", "invoke by hand to start an initial load", o.Functions[fnInitialLoad].FunctionName())
	out("ApplyFunction", `invoke with {"redrive":true} to apply parked batches`, o.Functions[fnApply].FunctionName())
	out("DashboardName", "CloudWatch dashboard", o.Dashboard.DashboardName())
}
