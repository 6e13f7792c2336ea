package main

import (
	"fmt"
	"regexp"

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
)

// Lambda sizing. The queue visibility timeout is derived from the apply
// timeout: AWS recommends at least 6x the consumer's timeout for SQS event
// sources, so a message is not redelivered while a retried batch still runs.
const (
	drainTimeoutMinutes = 5
	applyTimeoutMinutes = 2
	visibilityMinutes   = 6 * applyTimeoutMinutes

	drainMemoryMB   = 512
	applyMemoryMB   = 512
	applyBatchSize  = 10 // maximum allowed for FIFO event sources
	maxReceiveCount = 5
	payloadTTLDays  = 7
)

// pipelineNameRe keeps names usable in every physical name derived from them:
// stack (128), queue (80 incl. ".fifo"), table (255), Lambda function (64).
var pipelineNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,39}$`)

// PipelineStackProps configures one pgferry pipeline stack.
type PipelineStackProps struct {
	awscdk.StackProps
	// Pipeline is the pipeline name; physical names are "pgferry-<Pipeline>...".
	Pipeline string
	// DrainCode and ApplyCode hold the bootstrap binaries of the two functions.
	DrainCode awslambda.Code
	ApplyCode awslambda.Code
}

// PipelineStack exposes the resources of a pipeline for later wiring and tests.
//
// The stack is a named field, not embedded: jsii treats a Go struct embedding
// a construct as a jsii subclass, so passing *PipelineStack where a construct
// is expected panics ("already assigned"). Use .Stack instead.
type PipelineStack struct {
	Stack    awscdk.Stack
	Queue    awssqs.Queue
	DLQ      awssqs.Queue
	Table    awsdynamodb.Table
	Bucket   awss3.Bucket
	Drain    awslambda.Function
	Apply    awslambda.Function
	DLQAlarm awscloudwatch.Alarm
}

// NewPipelineStack creates the queue, state table, payload bucket and the
// drain/apply functions of one pipeline. Like other CDK constructors it panics
// on invalid input.
func NewPipelineStack(scope constructs.Construct, id string, props *PipelineStackProps) *PipelineStack {
	if props == nil {
		panic("pgferry: PipelineStackProps is required")
	}
	if !pipelineNameRe.MatchString(props.Pipeline) {
		panic(fmt.Sprintf("pgferry: invalid pipeline name %q (want %s)", props.Pipeline, pipelineNameRe))
	}
	if props.DrainCode == nil || props.ApplyCode == nil {
		panic("pgferry: DrainCode and ApplyCode are required")
	}

	stack := awscdk.NewStack(scope, &id, &props.StackProps)
	prefix := "pgferry-" + props.Pipeline
	awscdk.Tags_Of(stack).Add(jsii.String("pgferry:pipeline"), jsii.String(props.Pipeline), nil)

	dlq := awssqs.NewQueue(stack, jsii.String("DeadLetterQueue"), &awssqs.QueueProps{
		QueueName:       jsii.String(prefix + "-dlq.fifo"),
		Fifo:            jsii.Bool(true),
		RetentionPeriod: awscdk.Duration_Days(jsii.Number(14)),
		Encryption:      awssqs.QueueEncryption_SQS_MANAGED,
		EnforceSSL:      jsii.Bool(true),
	})

	// Producers set an explicit MessageDeduplicationId, so content-based
	// deduplication stays off.
	queue := awssqs.NewQueue(stack, jsii.String("Queue"), &awssqs.QueueProps{
		QueueName:                 jsii.String(prefix + ".fifo"),
		Fifo:                      jsii.Bool(true),
		ContentBasedDeduplication: jsii.Bool(false),
		VisibilityTimeout:         awscdk.Duration_Minutes(jsii.Number(visibilityMinutes)),
		Encryption:                awssqs.QueueEncryption_SQS_MANAGED,
		EnforceSSL:                jsii.Bool(true),
		DeadLetterQueue: &awssqs.DeadLetterQueue{
			Queue:           dlq,
			MaxReceiveCount: jsii.Number(maxReceiveCount),
		},
	})

	table := awsdynamodb.NewTable(stack, jsii.String("StateTable"), &awsdynamodb.TableProps{
		TableName:    jsii.String(prefix + "-state"),
		PartitionKey: &awsdynamodb.Attribute{Name: jsii.String("id"), Type: awsdynamodb.AttributeType_STRING},
		BillingMode:  awsdynamodb.BillingMode_PAY_PER_REQUEST,
		PointInTimeRecoverySpecification: &awsdynamodb.PointInTimeRecoverySpecification{
			PointInTimeRecoveryEnabled: jsii.Bool(true),
		},
		RemovalPolicy: awscdk.RemovalPolicy_RETAIN,
	})

	// Claim-check payloads are transient: they only need to outlive the
	// queue's retention, so objects expire after a week.
	bucket := awss3.NewBucket(stack, jsii.String("PayloadBucket"), &awss3.BucketProps{
		Encryption:        awss3.BucketEncryption_S3_MANAGED,
		BlockPublicAccess: awss3.BlockPublicAccess_BLOCK_ALL(),
		EnforceSSL:        jsii.Bool(true),
		LifecycleRules: &[]*awss3.LifecycleRule{{
			Id:                                  jsii.String("expire-payloads"),
			Expiration:                          awscdk.Duration_Days(jsii.Number(payloadTTLDays)),
			AbortIncompleteMultipartUploadAfter: awscdk.Duration_Days(jsii.Number(1)),
		}},
		RemovalPolicy: awscdk.RemovalPolicy_RETAIN,
	})

	env := &map[string]*string{
		"PGFERRY_QUEUE_URL":   queue.QueueUrl(),
		"PGFERRY_STATE_TABLE": table.TableName(),
		"PGFERRY_BUCKET":      bucket.BucketName(),
		"PGFERRY_PIPELINE":    jsii.String(props.Pipeline),
	}

	drain := awslambda.NewFunction(stack, jsii.String("Drain"), &awslambda.FunctionProps{
		FunctionName:                 jsii.String(prefix + "-drain"),
		Runtime:                      awslambda.Runtime_PROVIDED_AL2023(),
		Architecture:                 awslambda.Architecture_ARM_64(),
		Handler:                      jsii.String("bootstrap"),
		Code:                         props.DrainCode,
		Timeout:                      awscdk.Duration_Minutes(jsii.Number(drainTimeoutMinutes)),
		MemorySize:                   jsii.Number(drainMemoryMB),
		ReservedConcurrentExecutions: jsii.Number(1), // one drainer per pipeline
		Environment:                  env,
		// The schedule fires every minute anyway: neither retry failed runs
		// nor let throttled ticks (concurrency 1) queue up behind a long run.
		RetryAttempts: jsii.Number(0),
		MaxEventAge:   awscdk.Duration_Minutes(jsii.Number(1)),
	})

	awsevents.NewRule(stack, jsii.String("DrainSchedule"), &awsevents.RuleProps{
		Schedule: awsevents.Schedule_Rate(awscdk.Duration_Minutes(jsii.Number(1))),
		Targets:  &[]awsevents.IRuleTarget{awseventstargets.NewLambdaFunction(drain, nil)},
	})

	apply := awslambda.NewFunction(stack, jsii.String("Apply"), &awslambda.FunctionProps{
		FunctionName: jsii.String(prefix + "-apply"),
		Runtime:      awslambda.Runtime_PROVIDED_AL2023(),
		Architecture: awslambda.Architecture_ARM_64(),
		Handler:      jsii.String("bootstrap"),
		Code:         props.ApplyCode,
		Timeout:      awscdk.Duration_Minutes(jsii.Number(applyTimeoutMinutes)),
		MemorySize:   jsii.Number(applyMemoryMB),
		Environment:  env,
	})

	apply.AddEventSource(awslambdaeventsources.NewSqsEventSource(queue, &awslambdaeventsources.SqsEventSourceProps{
		BatchSize:               jsii.Number(applyBatchSize),
		ReportBatchItemFailures: jsii.Bool(true),
	}))

	// Least privilege: only the grants each function needs. (The SQS event
	// source also grants consume; the explicit grant documents the intent.)
	queue.GrantSendMessages(drain)
	queue.GrantConsumeMessages(apply)
	table.GrantReadWriteData(drain)
	table.GrantReadWriteData(apply)
	bucket.GrantPut(drain, nil)
	bucket.GrantRead(apply, nil)

	alarm := awscloudwatch.NewAlarm(stack, jsii.String("DeadLetterQueueNotEmpty"), &awscloudwatch.AlarmProps{
		AlarmName:        jsii.String(prefix + "-dlq-not-empty"),
		AlarmDescription: jsii.String("pgferry pipeline " + props.Pipeline + ": messages in the dead-letter queue"),
		Metric: dlq.MetricApproximateNumberOfMessagesVisible(&awscloudwatch.MetricOptions{
			Period:    awscdk.Duration_Minutes(jsii.Number(1)),
			Statistic: jsii.String("Maximum"),
		}),
		Threshold:          jsii.Number(0),
		ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_THRESHOLD,
		EvaluationPeriods:  jsii.Number(1),
		TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
	})

	return &PipelineStack{
		Stack:    stack,
		Queue:    queue,
		DLQ:      dlq,
		Table:    table,
		Bucket:   bucket,
		Drain:    drain,
		Apply:    apply,
		DLQAlarm: alarm,
	}
}
