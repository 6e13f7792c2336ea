package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/jsii-runtime-go"

	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/metrics"
	"github.com/pgferry/pgferry/shared/queue/sqsfifo"
)

// testConfig is a trigger-mode pipeline with two targets and an alarm topic.
const testConfig = `
name: orders_eu
source:
  dsn_secret: pgferry/orders/source
  tables: ["public.*"]
targets:
  replica:
    kind: postgres
    dsn_secret: arn:aws:secretsmanager:eu-west-1:123456789012:secret:pgferry/orders/replica-AbCdEf
  reporting:
    kind: postgres
    dsn_secret: pgferry/orders/reporting
apply:
  max_attempts: 7
deploy:
  alarms:
    sns_topic: arn:aws:sns:eu-west-1:123456789012:pgferry-alerts
`

// vpcConfig adds a VPC without security groups, a KMS key and sizes; the
// fixture built from it also switches to slot capture.
const vpcConfig = testConfig + `  drain_every: 2m
  functions:
    apply: {memory_mb: 2048, timeout: 1m}
  load_concurrency: 10
  log_retention_days: 14
  vpc:
    id: vpc-0123456789abcdef0
    subnets: [subnet-0123456789abcdef0, subnet-0123456789abcdef1]
  secrets_kms_keys: [arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab]
`

const topicARN = "arn:aws:sns:eu-west-1:123456789012:pgferry-alerts"

// Synthesis goes through the jsii Node.js process and takes seconds, so
// template assertions share two stacks.
type fixtureT struct {
	once  sync.Once
	stack *PipelineStack
	tmpl  assertions.Template
	text  string
}

var plain, vpc fixtureT

func TestMain(m *testing.M) {
	code := m.Run()
	jsii.Close()
	os.Exit(code)
}

func parse(t *testing.T, doc string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(doc), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func build(t *testing.T, f *fixtureT, doc string, slot bool) (*PipelineStack, assertions.Template) {
	t.Helper()
	f.once.Do(func() {
		cfg := parse(t, doc)
		if slot {
			// Slot capture is validated by its own package; the stack only
			// switches alarms on it.
			cfg.Source.Capture = config.CaptureSlot
		}
		text, err := config.DeployedText([]byte(doc), func(string) (string, bool) { return "", false })
		if err != nil {
			t.Fatal(err)
		}
		f.text = string(text)
		// Tests run in infra/, where the placeholder asset directory is local.
		code := map[string]awslambda.Code{}
		for _, fn := range functionNames {
			code[fn] = awslambda.Code_FromAsset(jsii.String("placeholder"), nil)
		}
		f.stack = NewPipelineStack(awscdk.NewApp(nil), "pgferry-test", &PipelineStackProps{
			Config: cfg, ConfigText: f.text, Code: code,
		})
		f.tmpl = assertions.Template_FromStack(f.stack.Stack, nil)
	})
	if f.tmpl == nil {
		t.Fatal("stack fixture failed to synthesize")
	}
	return f.stack, f.tmpl
}

func fixture(t *testing.T) (*PipelineStack, assertions.Template) {
	return build(t, &plain, testConfig, false)
}

func vpcFixture(t *testing.T) (*PipelineStack, assertions.Template) {
	return build(t, &vpc, vpcConfig, true)
}

// expect runs a CDK assertion, which panics with the JS error on mismatch,
// and turns the panic into a test failure.
func expect(t *testing.T, assertion func()) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("%v", r)
		}
	}()
	assertion()
}

type obj = map[string]interface{}
type arr = []interface{}

func like(m obj) assertions.Matcher { return assertions.Match_ObjectLike(&m) }
func arrayWith(a ...interface{}) assertions.Matcher {
	return assertions.Match_ArrayWith(&a)
}
func has(tmpl assertions.Template, typ string, props obj) func() {
	return func() { tmpl.HasResourceProperties(jsii.String(typ), props) }
}

func TestBatchQueueIsFIFOWithFIFODeadLetterQueueAndBackstopRedrive(t *testing.T) {
	s, tmpl := fixture(t)
	expect(t, func() { tmpl.ResourceCountIs(jsii.String("AWS::SQS::Queue"), jsii.Number(4)) })
	expect(t, has(tmpl, "AWS::SQS::Queue", obj{
		"QueueName":                 "pgferry-orders-eu.fifo",
		"FifoQueue":                 true,
		"ContentBasedDeduplication": false,
		"VisibilityTimeout":         6 * 120, // six times apply's timeout
		"MessageRetentionPeriod":    14 * 86400,
		"SqsManagedSseEnabled":      true,
		"RedrivePolicy": obj{
			"deadLetterTargetArn": s.Stack.Resolve(s.DLQ.QueueArn()),
			"maxReceiveCount":     sqsfifo.BackstopReceives(7),
		},
	}))
	expect(t, has(tmpl, "AWS::SQS::Queue", obj{
		"QueueName":     "pgferry-orders-eu-dlq.fifo",
		"FifoQueue":     true,
		"RedrivePolicy": assertions.Match_Absent(),
	}))
	// Every queue refuses non-TLS access.
	expect(t, func() { tmpl.ResourceCountIs(jsii.String("AWS::SQS::QueuePolicy"), jsii.Number(4)) })
	expect(t, has(tmpl, "AWS::SQS::QueuePolicy", obj{
		"PolicyDocument": like(obj{"Statement": arrayWith(like(obj{
			"Effect": "Deny", "Condition": obj{"Bool": obj{"aws:SecureTransport": "false"}},
		}))}),
	}))
}

func TestLoadQueueIsStandardWithItsOwnDeadLetterQueue(t *testing.T) {
	s, tmpl := fixture(t)
	expect(t, has(tmpl, "AWS::SQS::Queue", obj{
		"QueueName":         "pgferry-orders-eu-load",
		"FifoQueue":         assertions.Match_Absent(),
		"VisibilityTimeout": 6 * 900,
		"RedrivePolicy": obj{
			"deadLetterTargetArn": s.Stack.Resolve(s.LoadDLQ.QueueArn()),
			"maxReceiveCount":     loadMaxReceives,
		},
	}))
	expect(t, has(tmpl, "AWS::SQS::Queue", obj{
		"QueueName": "pgferry-orders-eu-load-dlq",
		"FifoQueue": assertions.Match_Absent(),
	}))
}

func TestStateTableIsOnDemandWithPointInTimeRecoveryTTLAndRetained(t *testing.T) {
	_, tmpl := fixture(t)
	expect(t, func() {
		tmpl.HasResource(jsii.String("AWS::DynamoDB::Table"), obj{
			"DeletionPolicy": "Retain",
			"Properties": like(obj{
				"TableName":                        "pgferry-orders-eu-state",
				"BillingMode":                      "PAY_PER_REQUEST",
				"KeySchema":                        arr{obj{"AttributeName": "id", "KeyType": "HASH"}},
				"PointInTimeRecoverySpecification": obj{"PointInTimeRecoveryEnabled": true},
				"TimeToLiveSpecification":          obj{"AttributeName": "expires_at", "Enabled": true},
			}),
		})
	})
}

func TestPayloadBucketIsEncryptedPrivateTLSOnlyAndExpiresPayloads(t *testing.T) {
	s, tmpl := fixture(t)
	expect(t, has(tmpl, "AWS::S3::Bucket", obj{
		"BucketName": "pgferry-orders-eu-payloads",
		"BucketEncryption": obj{
			"ServerSideEncryptionConfiguration": arr{
				obj{"ServerSideEncryptionByDefault": obj{"SSEAlgorithm": "AES256"}},
			},
		},
		"PublicAccessBlockConfiguration": obj{
			"BlockPublicAcls": true, "BlockPublicPolicy": true, "IgnorePublicAcls": true, "RestrictPublicBuckets": true,
		},
		"LifecycleConfiguration": obj{
			// Outlives a batch's 14 days in the queue plus 14 parked.
			"Rules": arrayWith(like(obj{"ExpirationInDays": 30, "Status": "Enabled"})),
		},
	}))
	expect(t, has(tmpl, "AWS::S3::BucketPolicy", obj{
		"Bucket": s.Stack.Resolve(s.Bucket.BucketName()),
		"PolicyDocument": like(obj{"Statement": arrayWith(like(obj{
			"Effect": "Deny", "Condition": obj{"Bool": obj{"aws:SecureTransport": "false"}},
		}))}),
	}))
}

func TestFunctionsRunBootstrapOnARM64WithConfigAndNoDSNInEnvironment(t *testing.T) {
	s, tmpl := fixture(t)
	expect(t, func() { tmpl.ResourceCountIs(jsii.String("AWS::Lambda::Function"), jsii.Number(5)) })
	expect(t, func() {
		tmpl.AllResourcesProperties(jsii.String("AWS::Lambda::Function"), obj{
			"Runtime":       "provided.al2023",
			"Architectures": arr{"arm64"},
			"Handler":       "bootstrap",
			"Environment": obj{"Variables": obj{
				"PGFERRY_CONFIG":         plain.text,
				"PGFERRY_QUEUE_URL":      s.Stack.Resolve(s.Queue.QueueUrl()),
				"PGFERRY_DLQ_URL":        s.Stack.Resolve(s.DLQ.QueueUrl()),
				"PGFERRY_LOAD_QUEUE_URL": s.Stack.Resolve(s.LoadQueue.QueueUrl()),
			}},
		})
	})
	for fn, sz := range defaultSizes {
		expect(t, has(tmpl, "AWS::Lambda::Function", obj{
			"FunctionName": "pgferry-orders-eu-" + fn,
			"MemorySize":   sz.memoryMB,
			"Timeout":      int(sz.timeout.Seconds()),
		}))
	}
	expect(t, has(tmpl, "AWS::Lambda::Function", obj{"FunctionName": "pgferry-orders-eu-drain", "ReservedConcurrentExecutions": 1}))

	// The configuration the functions get names secrets, never a DSN, and
	// carries no deploy section.
	if strings.Contains(plain.text, "postgres://") || strings.Contains(plain.text, "deploy") || !strings.Contains(plain.text, "dsn_secret: pgferry/orders/source") {
		t.Fatalf("PGFERRY_CONFIG is wrong:\n%s", plain.text)
	}
	got, err := config.Parse([]byte(plain.text), func(string) (string, bool) { return "", false })
	if err != nil || got.Apply.MaxAttempts != 7 {
		t.Fatalf("the functions cannot parse PGFERRY_CONFIG: %v", err)
	}
}

func TestEachFunctionLogsToItsOwnGroupWithRetention(t *testing.T) {
	_, tmpl := fixture(t)
	expect(t, func() { tmpl.ResourceCountIs(jsii.String("AWS::Logs::LogGroup"), jsii.Number(5)) })
	for _, fn := range functionNames {
		expect(t, has(tmpl, "AWS::Logs::LogGroup", obj{"LogGroupName": "/aws/lambda/pgferry-orders-eu-" + fn, "RetentionInDays": 30}))
	}
	_, vt := vpcFixture(t)
	expect(t, has(vt, "AWS::Logs::LogGroup", obj{"LogGroupName": "/aws/lambda/pgferry-orders-eu-drain", "RetentionInDays": 14}))
}

func TestScheduledFunctionsRunAtTheConfiguredRates(t *testing.T) {
	s, tmpl := fixture(t)
	for fn, rate := range map[string]string{fnDrain: "rate(1 minute)", fnSchemaDiff: "rate(10 minutes)"} {
		expect(t, has(tmpl, "AWS::Events::Rule", obj{
			"ScheduleExpression": rate,
			"State":              "ENABLED",
			"Targets": arrayWith(like(obj{
				"Arn":         s.Stack.Resolve(s.Functions[fn].FunctionArn()),
				"RetryPolicy": obj{"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 60},
			})),
		}))
	}
	// The load's status check feeds the load-stalled alarm.
	expect(t, has(tmpl, "AWS::Events::Rule", obj{
		"ScheduleExpression": "rate(5 minutes)",
		"Targets": arrayWith(like(obj{
			"Arn":   s.Stack.Resolve(s.Functions[fnInitialLoad].FunctionArn()),
			"Input": `{"action":"status"}`,
		})),
	}))
	vs, vt := vpcFixture(t)
	expect(t, has(vt, "AWS::Events::Rule", obj{
		"ScheduleExpression": "rate(2 minutes)",
		"Targets":            arrayWith(like(obj{"Arn": vs.Stack.Resolve(vs.Functions[fnDrain].FunctionArn())})),
	}))
}

func TestApplyAndLoadConsumeTheirQueuesWithPartialBatchResponses(t *testing.T) {
	s, tmpl := fixture(t)
	expect(t, func() { tmpl.ResourceCountIs(jsii.String("AWS::Lambda::EventSourceMapping"), jsii.Number(2)) })
	expect(t, has(tmpl, "AWS::Lambda::EventSourceMapping", obj{
		"EventSourceArn":        s.Stack.Resolve(s.Queue.QueueArn()),
		"FunctionName":          s.Stack.Resolve(s.Functions[fnApply].FunctionName()),
		"BatchSize":             10,
		"FunctionResponseTypes": arr{"ReportBatchItemFailures"},
	}))
	expect(t, has(tmpl, "AWS::Lambda::EventSourceMapping", obj{
		"EventSourceArn":        s.Stack.Resolve(s.LoadQueue.QueueArn()),
		"FunctionName":          s.Stack.Resolve(s.Functions[fnLoad].FunctionName()),
		"BatchSize":             1,
		"FunctionResponseTypes": arr{"ReportBatchItemFailures"},
		"ScalingConfig":         obj{"MaximumConcurrency": 4}, // load.parallelism's default
	}))
	_, vt := vpcFixture(t)
	expect(t, has(vt, "AWS::Lambda::EventSourceMapping", obj{"ScalingConfig": obj{"MaximumConcurrency": 10}}))
}

// alarmProps returns the properties of the alarm named name, failing the
// test when there is none.
func alarmProps(t *testing.T, tmpl assertions.Template, name string) obj {
	t.Helper()
	for _, res := range *tmpl.FindResources(jsii.String("AWS::CloudWatch::Alarm"), nil) {
		props := (*res)["Properties"].(obj)
		if props["AlarmName"] == name {
			return props
		}
	}
	t.Fatalf("no alarm %s", name)
	return nil
}

func dims(props obj) map[string]interface{} {
	out := map[string]interface{}{}
	list, _ := props["Dimensions"].(arr)
	for _, d := range list {
		m := d.(obj)
		out[m["Name"].(string)] = m["Value"]
	}
	return out
}

func TestEveryAlarmExistsWatchesItsMetricAndNotifiesTheTopic(t *testing.T) {
	s, tmpl := fixture(t)
	p := "pgferry-orders-eu-"
	type want struct {
		namespace, metric string
		dims              map[string]interface{}
		op                string
		threshold         float64
	}
	custom := func(metric, target string, op string, threshold float64) want {
		d := map[string]interface{}{metrics.DimPipeline: "orders_eu"}
		if target != "" {
			d[metrics.DimTarget] = target
		}
		return want{metrics.Namespace, metric, d, op, threshold}
	}
	queue := func(q interface{}, metric string, threshold float64) want {
		return want{"AWS/SQS", metric, map[string]interface{}{"QueueName": q}, "GreaterThanThreshold", threshold}
	}
	lambda := func(fn, metric string, op string, threshold float64) want {
		return want{"AWS/Lambda", metric, map[string]interface{}{"FunctionName": s.Stack.Resolve(s.Functions[fn].FunctionName())}, op, threshold}
	}
	wants := map[string]want{
		"lag-replica":             custom(metrics.ReplicationLag, "replica", "GreaterThanThreshold", 300000),
		"lag-reporting":           custom(metrics.ReplicationLag, "reporting", "GreaterThanThreshold", 300000),
		"group-blocked-replica":   custom(metrics.GroupBlocked, "replica", "GreaterThanOrEqualToThreshold", 1),
		"group-blocked-reporting": custom(metrics.GroupBlocked, "reporting", "GreaterThanOrEqualToThreshold", 1),
		"sequence-sync-replica":   custom(metrics.SequenceSyncFailures, "replica", "GreaterThanOrEqualToThreshold", 1),
		"sequence-sync-reporting": custom(metrics.SequenceSyncFailures, "reporting", "GreaterThanOrEqualToThreshold", 1),
		"event-backlog":           custom(metrics.EventBacklog, "", "GreaterThanThreshold", defaultEventBacklog),
		"event-backlog-unread":    custom(metrics.EventBacklogReadFailures, "", "GreaterThanOrEqualToThreshold", 1),
		"dlq-not-empty":           queue(s.Stack.Resolve(s.DLQ.QueueName()), "ApproximateNumberOfMessagesVisible", 0),
		"load-dlq-not-empty":      queue(s.Stack.Resolve(s.LoadDLQ.QueueName()), "ApproximateNumberOfMessagesVisible", 0),
		"oldest-message":          queue(s.Stack.Resolve(s.Queue.QueueName()), "ApproximateAgeOfOldestMessage", 900),
		"drain-not-running":       lambda(fnDrain, "Invocations", "LessThanThreshold", 1),
	}
	for _, fn := range functionNames {
		wants["errors-"+fn] = lambda(fn, "Errors", "GreaterThanOrEqualToThreshold", 1)
		if fn != fnDrain {
			wants["throttles-"+fn] = lambda(fn, "Throttles", "GreaterThanOrEqualToThreshold", 1)
		}
	}
	for id, w := range wants {
		props := alarmProps(t, tmpl, p+id)
		if props["Namespace"] != w.namespace || props["MetricName"] != w.metric || props["ComparisonOperator"] != w.op || props["Threshold"] != w.threshold {
			t.Errorf("alarm %s: got %v/%v %v %v, want %v/%v %v %v", id, props["Namespace"], props["MetricName"], props["ComparisonOperator"], props["Threshold"], w.namespace, w.metric, w.op, w.threshold)
		}
		if got := dims(props); !jsonEqual(got, w.dims) {
			t.Errorf("alarm %s: dimensions %v, want %v", id, got, w.dims)
		}
		for _, key := range []string{"AlarmActions", "OKActions"} {
			if !jsonEqual(props[key], arr{topicARN}) {
				t.Errorf("alarm %s: %s = %v, want the topic", id, key, props[key])
			}
		}
		if !strings.Contains(props["AlarmDescription"].(string), "Runbook") {
			t.Errorf("alarm %s has no runbook pointer", id)
		}
	}
	// The load-stalled alarm queries every load metric of the pipeline.
	stalled := alarmProps(t, tmpl, p+"load-stalled")
	if b, _ := json.Marshal(stalled["Metrics"]); !strings.Contains(string(b), `SELECT MAX(LoadSecondsSinceProgress) FROM \"pgferry\" WHERE Pipeline = 'orders_eu'`) || stalled["Threshold"] != 900.0 {
		t.Errorf("load-stalled alarm: %s, threshold %v", b, stalled["Threshold"])
	}
	if got, want := len(s.Alarms), len(wants)+1; got != want {
		t.Errorf("%d alarms, want %d", got, want)
	}
	// Trigger capture has no slot, so no retained-WAL alarms.
	for _, id := range []string{alarmRetainedWAL, alarmWALUnread} {
		if _, ok := s.Alarms[id]; ok {
			t.Errorf("trigger-mode stack has a %s alarm", id)
		}
	}
}

// TestSequenceSyncAlarmFiresOnlyWhenEveryAttemptFails: the alarm watches
// the Minimum of SequenceSyncFailures (1 only if every attempt in the
// period failed) over two periods of at least one schema-diff interval,
// and keeps its state when no attempt was made.
func TestSequenceSyncAlarmFiresOnlyWhenEveryAttemptFails(t *testing.T) {
	_, tmpl := fixture(t)
	for _, target := range []string{"replica", "reporting"} {
		props := alarmProps(t, tmpl, "pgferry-orders-eu-sequence-sync-"+target)
		got := []any{props["Statistic"], props["Period"], props["EvaluationPeriods"], props["DatapointsToAlarm"], props["TreatMissingData"]}
		if want := []any{"Minimum", 900.0, 2.0, 2.0, "ignore"}; !jsonEqual(got, want) {
			t.Errorf("sequence-sync-%s: statistic, period, periods, datapoints, missing = %v, want %v", target, got, want)
		}
		if !strings.Contains(props["AlarmDescription"].(string), `alarm "sequence-sync-`+target+`"`) {
			t.Errorf("sequence-sync-%s: description %q does not name its runbook entry", target, props["AlarmDescription"])
		}
	}
	for every, want := range map[time.Duration]time.Duration{
		time.Minute: 15 * time.Minute, 10 * time.Minute: 15 * time.Minute,
		30*time.Minute + time.Second: 31 * time.Minute, 48 * time.Hour: 12 * time.Hour,
	} {
		if got := periodCovering(every, 15*time.Minute); got != want {
			t.Errorf("periodCovering(%s, 15m) = %s, want %s", every, got, want)
		}
	}
}

func TestSlotModeAlarmsOnRetainedWALInsteadOfEventBacklog(t *testing.T) {
	s, tmpl := vpcFixture(t)
	props := alarmProps(t, tmpl, "pgferry-orders-eu-retained-wal")
	if props["MetricName"] != metrics.RetainedWALBytes || props["Threshold"] != float64(defaultRetainedWALBytes) {
		t.Fatalf("retained-wal alarm: %v", props)
	}
	// A drain that cannot read its slot leaves retained-wal without data:
	// that has an alarm of its own.
	unread := alarmProps(t, tmpl, "pgferry-orders-eu-retained-wal-unread")
	got := []any{unread["Namespace"], unread["MetricName"], dims(unread), unread["Statistic"], unread["Period"], unread["ComparisonOperator"],
		unread["Threshold"], unread["EvaluationPeriods"], unread["DatapointsToAlarm"], unread["TreatMissingData"], unread["AlarmActions"], unread["OKActions"]}
	want := []any{metrics.Namespace, metrics.RetainedWALReadFailures, map[string]any{metrics.DimPipeline: "orders_eu"}, "Minimum", 300.0,
		"GreaterThanOrEqualToThreshold", 1.0, 2.0, 2.0, "ignore", arr{topicARN}, arr{topicARN}}
	if !jsonEqual(got, want) {
		t.Errorf("retained-wal-unread alarm: %v, want %v", got, want)
	}
	for _, id := range []string{alarmEventBacklog, alarmBacklogUnread} {
		if _, ok := s.Alarms[id]; ok {
			t.Errorf("slot-mode stack has a %s alarm", id)
		}
	}
	if !jsonEqual(props["AlarmActions"], arr{topicARN}) {
		t.Errorf("AlarmActions = %v, want the topic", props["AlarmActions"])
	}
}

func TestDashboardShowsLagRowsBatchSizesAndErrors(t *testing.T) {
	_, tmpl := fixture(t)
	expect(t, func() { tmpl.ResourceCountIs(jsii.String("AWS::CloudWatch::Dashboard"), jsii.Number(1)) })
	var dash obj
	for _, res := range *tmpl.FindResources(jsii.String("AWS::CloudWatch::Dashboard"), nil) {
		dash = (*res)["Properties"].(obj)
	}
	text, _ := json.Marshal(dash["DashboardBody"])
	for _, m := range []string{metrics.ReplicationLag, metrics.RowsShipped, metrics.RowsApplied, metrics.BatchRows, metrics.ApplyFailures, metrics.PoisonBatches, `\"Errors\"`, `\"Throttles\"`, "ApproximateAgeOfOldestMessage", metrics.EventBacklog, metrics.LoadRowsCopied,
		metrics.SequenceSyncFailures, metrics.EventBacklogReadFailures} {
		if !strings.Contains(string(text), m) {
			t.Errorf("dashboard lacks %s", m)
		}
	}
}

func TestVPCPlacesEveryFunctionInTheSubnetsWithACreatedSecurityGroup(t *testing.T) {
	_, tmpl := vpcFixture(t)
	expect(t, has(tmpl, "AWS::EC2::SecurityGroup", obj{
		"VpcId":               "vpc-0123456789abcdef0",
		"SecurityGroupEgress": arr{obj{"CidrIp": "0.0.0.0/0", "IpProtocol": "-1"}},
	}))
	var sgID string
	for id := range *tmpl.FindResources(jsii.String("AWS::EC2::SecurityGroup"), nil) {
		sgID = id
	}
	expect(t, func() {
		tmpl.AllResourcesProperties(jsii.String("AWS::Lambda::Function"), obj{"VpcConfig": obj{
			"SubnetIds":        arr{"subnet-0123456789abcdef0", "subnet-0123456789abcdef1"},
			"SecurityGroupIds": arr{obj{"Fn::GetAtt": arr{sgID, "GroupId"}}},
		}})
	})
	expect(t, has(tmpl, "AWS::Lambda::Function", obj{"FunctionName": "pgferry-orders-eu-apply", "MemorySize": 2048, "Timeout": 60}))
	// Apply's shorter timeout shortens the queue's visibility with it.
	expect(t, has(tmpl, "AWS::SQS::Queue", obj{"QueueName": "pgferry-orders-eu.fifo", "VisibilityTimeout": 360}))
	_, plainTmpl := fixture(t)
	for _, res := range *plainTmpl.FindResources(jsii.String("AWS::Lambda::Function"), nil) {
		if _, ok := (*res)["Properties"].(obj)["VpcConfig"]; ok {
			t.Fatal("a function without deploy.vpc is in a VPC")
		}
	}
}

// policyStatements returns every IAM statement in the template's
// AWS::IAM::Policy resources and roles' inline policies, keyed by the
// logical id of each role the statement is attached to.
func policyStatements(t *testing.T, tmpl assertions.Template) map[string][]obj {
	t.Helper()
	out := map[string][]obj{}
	add := func(roles []string, doc interface{}) {
		d, _ := doc.(obj)
		stmts, _ := d["Statement"].(arr)
		for _, st := range stmts {
			m, ok := st.(obj)
			if !ok {
				t.Fatalf("unexpected statement %#v", st)
			}
			for _, r := range roles {
				out[r] = append(out[r], m)
			}
		}
	}
	for _, res := range *tmpl.FindResources(jsii.String("AWS::IAM::Policy"), nil) {
		props, _ := (*res)["Properties"].(obj)
		var roles []string
		refs, _ := props["Roles"].(arr)
		for _, ref := range refs {
			if m, ok := ref.(obj); ok {
				if id, ok := m["Ref"].(string); ok {
					roles = append(roles, id)
				}
			}
		}
		if len(roles) == 0 {
			roles = []string{""}
		}
		add(roles, props["PolicyDocument"])
	}
	for id, res := range *tmpl.FindResources(jsii.String("AWS::IAM::Role"), nil) {
		props, _ := (*res)["Properties"].(obj)
		if mp, ok := props["ManagedPolicyArns"]; ok {
			t.Errorf("role %s has managed policies %v; every grant must be explicit", id, mp)
		}
		policies, _ := props["Policies"].(arr)
		for _, p := range policies {
			if m, ok := p.(obj); ok {
				add([]string{id}, m["PolicyDocument"])
			}
		}
	}
	return out
}

// literals normalises an IAM Action/Resource value (string, list, or
// intrinsic) into its literal string members.
func literals(v interface{}) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case arr:
		var out []string
		for _, e := range x {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

func contains(list []string, want string) bool {
	for _, s := range list {
		if s == want {
			return true
		}
	}
	return false
}

func TestNoIAMStatementAllowsAllActionsOnAllResources(t *testing.T) {
	for name, f := range map[string]func(*testing.T) (*PipelineStack, assertions.Template){"plain": fixture, "vpc": vpcFixture} {
		_, tmpl := f(t)
		stmts := policyStatements(t, tmpl)
		if len(stmts) == 0 {
			t.Fatal("found no IAM policy statements; the check would be vacuous")
		}
		for role, list := range stmts {
			for _, st := range list {
				if st["Effect"] != "Allow" {
					continue
				}
				actions := literals(st["Action"])
				if contains(actions, "*") && contains(literals(st["Resource"]), "*") {
					t.Errorf("%s: role %q: statement allows Action \"*\" on Resource \"*\": %v", name, role, st)
				}
				for _, a := range actions {
					if strings.HasSuffix(a, ":*") || a == "*" {
						t.Errorf("%s: role %q: wildcard action %s in %v", name, role, a, st)
					}
				}
			}
		}
	}
}

// grantsOf returns the actions and the statements allowed to fn's role.
func grantsOf(t *testing.T, s *PipelineStack, tmpl assertions.Template, fn string) ([]string, []obj) {
	t.Helper()
	role := s.Stack.Resolve(s.Functions[fn].Role().RoleName()).(obj)["Ref"].(string)
	var actions []string
	var stmts []obj
	for _, st := range policyStatements(t, tmpl)[role] {
		if st["Effect"] == "Allow" {
			stmts = append(stmts, st)
			for _, a := range literals(st["Action"]) {
				if !contains(actions, a) {
					actions = append(actions, a)
				}
			}
		}
	}
	sort.Strings(actions)
	return actions, stmts
}

func TestEachFunctionGetsExactlyTheActionsItUses(t *testing.T) {
	s, tmpl := fixture(t)
	logs := []string{"logs:CreateLogStream", "logs:PutLogEvents"}
	consume := []string{"sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:ReceiveMessage"}
	secret := []string{"secretsmanager:GetSecretValue"}
	cat := func(lists ...[]string) []string {
		var out []string
		for _, l := range lists {
			for _, a := range l {
				if !contains(out, a) {
					out = append(out, a)
				}
			}
		}
		sort.Strings(out)
		return out
	}
	want := map[string][]string{
		fnDrain:       cat(logs, secret, []string{"sqs:SendMessage", "s3:PutObject", "dynamodb:GetItem", "dynamodb:UpdateItem"}),
		fnApply:       cat(logs, secret, consume, []string{"s3:GetObject", "sqs:SendMessage"}),
		fnSchemaDiff:  cat(logs, secret, []string{"sqs:SendMessage", "s3:PutObject"}, checkpointActions),
		fnInitialLoad: cat(logs, secret, []string{"sqs:SendMessage"}, loadActions),
		fnLoad:        cat(logs, secret, consume, loadActions),
	}
	for fn, w := range want {
		got, _ := grantsOf(t, s, tmpl, fn)
		if strings.Join(got, " ") != strings.Join(w, " ") {
			t.Errorf("%s may do\n  %v\nwant exactly\n  %v", fn, got, w)
		}
	}
}

// resourcesFor returns the resources of fn's statements that allow action.
func resourcesFor(t *testing.T, s *PipelineStack, tmpl assertions.Template, fn, action string) string {
	t.Helper()
	_, stmts := grantsOf(t, s, tmpl, fn)
	var out []interface{}
	for _, st := range stmts {
		if contains(literals(st["Action"]), action) {
			out = append(out, st["Resource"])
		}
	}
	b, _ := json.Marshal(out)
	return string(b)
}

func TestKeyGrantsAreScopedToThisPipelinesResources(t *testing.T) {
	s, tmpl := fixture(t)
	ref := func(v interface{}) string { b, _ := json.Marshal(s.Stack.Resolve(v)); return string(b) }
	queueArn, dlqArn, loadArn := ref(s.Queue.QueueArn()), ref(s.DLQ.QueueArn()), ref(s.LoadQueue.QueueArn())
	tableArn := ref(s.Table.TableArn())

	// Producers send only to their own queue.
	if got := resourcesFor(t, s, tmpl, fnDrain, "sqs:SendMessage"); got != "["+queueArn+"]" {
		t.Errorf("drain sends to %s, want only the FIFO queue %s", got, queueArn)
	}
	if got := resourcesFor(t, s, tmpl, fnInitialLoad, "sqs:SendMessage"); got != "["+loadArn+"]" {
		t.Errorf("initial-load sends to %s, want only the load queue", got)
	}
	if got := resourcesFor(t, s, tmpl, fnApply, "sqs:SendMessage"); got != "["+dlqArn+"]" {
		t.Errorf("apply sends to %s, want only the dead-letter queue (parking)", got)
	}
	if got := resourcesFor(t, s, tmpl, fnDrain, "dynamodb:UpdateItem"); got != "["+tableArn+"]" {
		t.Errorf("drain updates %s, want only the state table", got)
	}
	for fn, action := range map[string]string{fnDrain: "s3:PutObject", fnApply: "s3:GetObject"} {
		if got := resourcesFor(t, s, tmpl, fn, action); !strings.Contains(got, "/*") || strings.Count(got, "Fn::GetAtt") != 1 {
			t.Errorf("%s %s on %s, want the payload bucket's objects only", fn, action, got)
		}
	}

	// Each function reads only the secrets of the databases it talks to.
	src := `pgferry/orders/source-??????`
	replica := `arn:aws:secretsmanager:eu-west-1:123456789012:secret:pgferry/orders/replica-AbCdEf`
	reporting := `pgferry/orders/reporting-??????`
	cases := map[string]struct{ in, out []string }{
		fnDrain:       {[]string{src}, []string{replica, reporting}},
		fnApply:       {[]string{src, replica, reporting}, nil}, // schema sync reads the source catalog
		fnSchemaDiff:  {[]string{src, replica, reporting}, nil},
		fnInitialLoad: {[]string{src, replica, reporting}, nil},
		fnLoad:        {[]string{src, replica, reporting}, nil},
	}
	for fn, c := range cases {
		got := resourcesFor(t, s, tmpl, fn, "secretsmanager:GetSecretValue")
		for _, in := range c.in {
			if !strings.Contains(got, in) {
				t.Errorf("%s cannot read %s: %s", fn, in, got)
			}
		}
		for _, out := range c.out {
			if strings.Contains(got, out) {
				t.Errorf("%s may read %s, which it does not use: %s", fn, out, got)
			}
		}
		if strings.Contains(got, `"*"`) {
			t.Errorf("%s reads any secret: %s", fn, got)
		}
	}

	// Logs go to the function's own group only.
	got := resourcesFor(t, s, tmpl, fnDrain, "logs:PutLogEvents")
	if strings.Count(got, "GetAtt") != 1 || !strings.Contains(got, "DrainLogs") {
		t.Errorf("drain writes logs to %s, want its own log group", got)
	}
}

func TestSecretsKMSKeysAreDecryptableOnlyThroughSecretsManager(t *testing.T) {
	s, tmpl := vpcFixture(t)
	_, stmts := grantsOf(t, s, tmpl, fnDrain)
	for _, st := range stmts {
		if contains(literals(st["Action"]), "kms:Decrypt") {
			b, _ := json.Marshal(st)
			if !strings.Contains(string(b), "key/1234abcd-12ab-34cd-56ef-1234567890ab") || !strings.Contains(string(b), "kms:ViaService") {
				t.Fatalf("kms:Decrypt statement is not scoped: %s", b)
			}
			return
		}
	}
	t.Fatal("drain cannot decrypt its secret with the configured KMS key")
}

func TestPlainDSNsAreRefusedForDeployment(t *testing.T) {
	doc := strings.Replace(testConfig, "dsn_secret: pgferry/orders/source", `dsn: "postgres://rep:pw@db/orders"`, 1)
	cfg := parse(t, doc)
	err := deployable(cfg)
	if err == nil || !strings.Contains(err.Error(), "source.dsn") || !strings.Contains(err.Error(), "dsn_secret") || strings.Contains(err.Error(), "pw@") {
		t.Fatalf("err = %v, want source.dsn refused without echoing it", err)
	}
	defer func() {
		if r := recover(); r == nil {
			t.Fatal("NewPipelineStack accepted a plain DSN")
		}
	}()
	NewPipelineStack(nil, "x", &PipelineStackProps{Config: cfg})
}

func TestOversizedConfigurationIsRefused(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "4 KB") {
			t.Fatalf("recover() = %v, want a refusal naming the 4 KB limit", r)
		}
	}()
	NewPipelineStack(nil, "x", &PipelineStackProps{Config: parse(t, testConfig), ConfigText: strings.Repeat("x", maxConfigBytes+1)})
}

func TestExampleConfigIsDeployable(t *testing.T) {
	data, err := os.ReadFile("example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := parse(t, string(data))
	if err := deployable(cfg); err != nil {
		t.Fatal(err)
	}
	if text, err := config.DeployedText(data, func(string) (string, bool) { return "", false }); err != nil || len(text) > maxConfigBytes {
		t.Fatalf("deployed text: %d bytes, %v", len(text), err)
	}
}

func TestLambdaCodeUsesBuildZipWhenPresentElsePlaceholder(t *testing.T) {
	if _, err := os.Stat(filepath.Join("..", placeholderDir)); err != nil {
		t.Fatalf("placeholder asset dir must exist relative to the repo root: %v", err)
	}
	dir := t.TempDir()
	if _, built := lambdaCode(dir, "drain"); built {
		t.Error("reported a build for a missing bootstrap.zip")
	}
	zip := filepath.Join(dir, "drain", "bootstrap.zip")
	if err := os.MkdirAll(filepath.Dir(zip), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(zip, []byte("PK"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, built := lambdaCode(dir, "drain"); !built {
		t.Error("ignored an existing bootstrap.zip")
	}
}

func jsonEqual(a, b interface{}) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// redshiftConfig adds three Redshift targets beside a PostgreSQL one, one
// per way of reaching the database: a workgroup by ARN with a secret
// (staged in the pipeline bucket), a cluster with a database user (staged
// in another bucket), and a workgroup by name with the functions' IAM
// identity (its own prefix in the pipeline bucket).
const redshiftConfig = `
name: orders_eu
hash_salt_secret: pgferry/orders/salt
source:
  dsn_secret: pgferry/orders/source
  tables: ["public.*"]
targets:
  replica:
    kind: postgres
    dsn_secret: pgferry/orders/replica
  warehouse:
    kind: redshift
    data_api: {workgroup: "arn:aws:redshift-serverless:eu-west-1:123456789012:workgroup/0a1b2c3d-aaaa-bbbb-cccc-0123456789ab", database: dev, secret_arn: "arn:aws:secretsmanager:eu-west-1:123456789012:secret:pgferry/warehouse-AbCdEf"}
    copy_role_arn: arn:aws:iam::123456789012:role/warehouse-copy
  archive:
    kind: redshift
    data_api: {cluster: analytics, database: dev, db_user: pgferry}
    staging: {bucket: acme-redshift-staging, prefix: pgferry/archive/}
    copy_role_arn: arn:aws:iam::123456789012:role/archive-copy
  lake:
    kind: redshift
    data_api: {workgroup: lake-wg, database: lake}
    staging: {prefix: rs/lake/}
    copy_role_arn: arn:aws:iam::123456789012:role/lake-copy
`

var rs fixtureT

func redshiftFixture(t *testing.T) (*PipelineStack, assertions.Template) {
	return build(t, &rs, redshiftConfig, false)
}

func TestRedshiftTargetsGetExactlyTheDataAPIAndStagingActions(t *testing.T) {
	s, tmpl := redshiftFixture(t)
	plainS, plainT := fixture(t)
	run := []string{"redshift-data:BatchExecuteStatement", "redshift-data:ExecuteStatement"}
	stmt := []string{"redshift-data:CancelStatement", "redshift-data:DescribeStatement", "redshift-data:GetStatementResult"}
	creds := []string{"redshift-serverless:GetCredentials", "redshift:GetClusterCredentials"}
	stage := []string{"s3:DeleteObject", "s3:PutObject"}
	for fn, extra := range map[string][][]string{
		fnDrain:       nil,
		fnApply:       {run, stmt, creds, stage},
		fnSchemaDiff:  {run, stmt, creds, {"s3:PutObject"}}, // PutObject: its own DDL payloads, not staging
		fnInitialLoad: {run, stmt, creds},
		fnLoad:        {run, stmt, creds, stage},
	} {
		base, _ := grantsOf(t, plainS, plainT, fn)
		want := append([]string{}, base...)
		for _, l := range extra {
			for _, a := range l {
				if !contains(want, a) {
					want = append(want, a)
				}
			}
		}
		sort.Strings(want)
		got, _ := grantsOf(t, s, tmpl, fn)
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%s may do\n  %v\nwant exactly\n  %v", fn, got, want)
		}
	}
}

func TestRedshiftDataAPIIsScopedToEachTargetsWorkgroupOrCluster(t *testing.T) {
	s, tmpl := redshiftFixture(t)
	for _, fn := range []string{fnApply, fnSchemaDiff, fnInitialLoad, fnLoad} {
		got := resourcesFor(t, s, tmpl, fn, "redshift-data:BatchExecuteStatement")
		for _, want := range []string{
			`"arn:aws:redshift-serverless:eu-west-1:123456789012:workgroup/0a1b2c3d-aaaa-bbbb-cccc-0123456789ab"`,
			`:redshift:",{"Ref":"AWS::Region"},":",{"Ref":"AWS::AccountId"},":cluster:analytics"`,
			// A workgroup given by name: its ARN ends in an id unknown at
			// synthesis, so the account's workgroups in the region.
			`:redshift-serverless:",{"Ref":"AWS::Region"},":",{"Ref":"AWS::AccountId"},":workgroup/*"`,
		} {
			if !strings.Contains(got, want) {
				t.Errorf("%s: BatchExecuteStatement on %s, want it to include %s", fn, got, want)
			}
		}
		if n := strings.Count(got, "workgroup/") + strings.Count(got, ":cluster:"); n != 3 {
			t.Errorf("%s: BatchExecuteStatement on %d resources, want the 3 targets': %s", fn, n, got)
		}
		if got != resourcesFor(t, s, tmpl, fn, "redshift-data:ExecuteStatement") {
			t.Errorf("%s: ExecuteStatement and BatchExecuteStatement differ in scope", fn)
		}

		// Credentials: the database user on the cluster; the IAM identity
		// on the workgroup given by name; the secret for the other.
		got = resourcesFor(t, s, tmpl, fn, "redshift:GetClusterCredentials")
		if !strings.Contains(got, `:dbuser:analytics/pgferry"`) || !strings.Contains(got, `:dbname:analytics/dev"`) || strings.Count(got, "Fn::Join") != 2 {
			t.Errorf("%s: GetClusterCredentials on %s, want only user pgferry and database dev of cluster analytics", fn, got)
		}
		got = resourcesFor(t, s, tmpl, fn, "redshift-serverless:GetCredentials")
		if !strings.Contains(got, `:workgroup/*"`) || strings.Contains(got, "0a1b2c3d") {
			t.Errorf("%s: GetCredentials on %s, want only the workgroup without a secret", fn, got)
		}
		got = resourcesFor(t, s, tmpl, fn, "secretsmanager:GetSecretValue")
		if !strings.Contains(got, "secret:pgferry/warehouse-AbCdEf") {
			t.Errorf("%s cannot read the warehouse's Data API secret: %s", fn, got)
		}

		// Statement calls take no cluster: limited to the role's own.
		_, stmts := grantsOf(t, s, tmpl, fn)
		found := false
		for _, st := range stmts {
			if contains(literals(st["Action"]), "redshift-data:DescribeStatement") {
				found = true
				b, _ := json.Marshal(st["Condition"])
				if string(b) != `{"StringEquals":{"redshift-data:statement-owner-iam-userid":"${aws:userid}"}}` {
					t.Errorf("%s: DescribeStatement condition %s, want only the role's own statements", fn, b)
				}
			}
		}
		if !found {
			t.Errorf("%s cannot follow its statements", fn)
		}
	}
	if got := resourcesFor(t, s, tmpl, fnDrain, "secretsmanager:GetSecretValue"); strings.Contains(got, "warehouse") {
		t.Errorf("drain may read the warehouse's secret, which it does not use: %s", got)
	}
}

func TestRedshiftStagingPrefixesAreWritableByApplyAndLoadOnly(t *testing.T) {
	s, tmpl := redshiftFixture(t)
	bucket := "pgferry-orders-eu-payloads"
	want := []string{
		`":s3:::` + bucket + `/pgferry/orders_eu/warehouse/*"`, // the default prefix
		`":s3:::acme-redshift-staging/pgferry/archive/*"`,
		`":s3:::` + bucket + `/rs/lake/*"`,
	}
	for _, fn := range []string{fnApply, fnLoad} {
		got := resourcesFor(t, s, tmpl, fn, "s3:DeleteObject")
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: DeleteObject on %s, want %s", fn, got, w)
			}
		}
		if strings.Count(got, ":s3:::") != 3 {
			t.Errorf("%s: DeleteObject on %s, want exactly the 3 staging prefixes", fn, got)
		}
		put := resourcesFor(t, s, tmpl, fn, "s3:PutObject")
		for _, w := range want {
			if !strings.Contains(put, w) {
				t.Errorf("%s: PutObject on %s, want %s", fn, put, w)
			}
		}
	}
	for _, fn := range []string{fnDrain, fnSchemaDiff, fnInitialLoad} {
		if got := resourcesFor(t, s, tmpl, fn, "s3:PutObject"); strings.Contains(got, "s3:::") {
			t.Errorf("%s may write staging files: %s", fn, got)
		}
	}
}

func TestRedshiftCopyRolesReadOnlyTheirPrefixInThePipelineBucket(t *testing.T) {
	_, tmpl := redshiftFixture(t)
	var stmts []obj
	for _, res := range *tmpl.FindResources(jsii.String("AWS::S3::BucketPolicy"), nil) {
		props := (*res)["Properties"].(obj)
		for _, st := range props["PolicyDocument"].(obj)["Statement"].(arr) {
			if m := st.(obj); m["Effect"] == "Allow" {
				stmts = append(stmts, m)
			}
		}
	}
	byRole := map[string][]string{}
	for _, st := range stmts {
		p, _ := json.Marshal(st["Principal"])
		b, _ := json.Marshal(st)
		byRole[string(p)] = append(byRole[string(p)], string(b))
	}
	for role, prefix := range map[string]string{"warehouse-copy": "pgferry/orders_eu/warehouse/", "lake-copy": "rs/lake/"} {
		got := byRole[`{"AWS":"arn:aws:iam::123456789012:role/`+role+`"}`]
		if len(got) != 2 {
			t.Errorf("role %s has %d bucket policy statements, want GetObject and ListBucket: %v", role, len(got), byRole)
			continue
		}
		all := strings.Join(got, "\n")
		if !strings.Contains(all, `"Action":"s3:GetObject"`) || !strings.Contains(all, `"/`+prefix+`*"`) ||
			!strings.Contains(all, `"Action":"s3:ListBucket"`) || !strings.Contains(all, `{"StringLike":{"s3:prefix":"`+prefix+`*"}}`) {
			t.Errorf("role %s: %s, want GetObject on %s* and ListBucket of that prefix only", role, all, prefix)
		}
		if strings.Contains(all, "PutObject") || strings.Contains(all, "DeleteObject") {
			t.Errorf("role %s may write: %s", role, all)
		}
	}
	// Staged in a bucket the stack does not own: the operator grants it.
	if len(byRole) != 2 {
		t.Errorf("bucket policy names %d principals, want the 2 copy roles staging in the pipeline bucket: %v", len(byRole), byRole)
	}
}

func TestPostgresOnlyStackHasNoRedshiftGrants(t *testing.T) {
	_, tmpl := fixture(t)
	for role, list := range policyStatements(t, tmpl) {
		for _, st := range list {
			for _, a := range literals(st["Action"]) {
				if strings.HasPrefix(a, "redshift") || a == "s3:DeleteObject" {
					t.Errorf("role %s of a PostgreSQL-only stack may %s", role, a)
				}
			}
		}
	}
	for _, res := range *tmpl.FindResources(jsii.String("AWS::S3::BucketPolicy"), nil) {
		if b, _ := json.Marshal(res); strings.Contains(string(b), ":role/") {
			t.Errorf("bucket policy of a PostgreSQL-only stack names a role: %s", b)
		}
	}
}

func TestRedshiftTargetsGetAlarmsAndALossyConversionsWidget(t *testing.T) {
	s, tmpl := redshiftFixture(t)
	for _, target := range []string{"warehouse", "archive", "lake"} {
		for _, id := range []string{alarmLag, alarmGroupBlocked} {
			if _, ok := s.Alarms[id+"-"+target]; !ok {
				t.Errorf("no alarm %s-%s", id, target)
			}
		}
		// Redshift has no sequences.
		if _, ok := s.Alarms[alarmSequenceSync+"-"+target]; ok {
			t.Errorf("alarm %s-%s watches a metric a Redshift target never emits", alarmSequenceSync, target)
		}
	}
	if _, ok := s.Alarms[alarmSequenceSync+"-replica"]; !ok {
		t.Error("the PostgreSQL target lost its sequence-sync alarm")
	}
	body := func(tmpl assertions.Template) string {
		for _, res := range *tmpl.FindResources(jsii.String("AWS::CloudWatch::Dashboard"), nil) {
			b, _ := json.Marshal((*res)["Properties"].(obj)["DashboardBody"])
			return string(b)
		}
		return ""
	}
	text := body(tmpl)
	for _, target := range []string{"warehouse", "archive", "lake"} {
		q := fmt.Sprintf(`SELECT SUM(%s) FROM \\\"pgferry\\\" WHERE Pipeline = 'orders_eu' AND Target = '%s' GROUP BY \\\"Table\\\", \\\"Column\\\", \\\"Conversion\\\"`, metrics.LossyConversions, target)
		if !strings.Contains(text, q) {
			t.Errorf("dashboard lacks the lossy-conversions query of %s (%s)", target, q)
		}
	}
	if _, plainT := fixture(t); strings.Contains(body(plainT), metrics.LossyConversions) {
		t.Error("a PostgreSQL-only dashboard shows LossyConversions")
	}
}

func TestHashSaltSecretIsReadableByDrainAndLoadOnly(t *testing.T) {
	s, tmpl := redshiftFixture(t)
	for fn, reads := range map[string]bool{fnDrain: true, fnLoad: true, fnApply: false, fnSchemaDiff: false, fnInitialLoad: false} {
		got := resourcesFor(t, s, tmpl, fn, "secretsmanager:GetSecretValue")
		if strings.Contains(got, "pgferry/orders/salt-??????") != reads {
			t.Errorf("%s reads the hash salt: %v, want %v (%s)", fn, !reads, reads, got)
		}
	}
	plainS, plainT := fixture(t)
	if got := resourcesFor(t, plainS, plainT, fnDrain, "secretsmanager:GetSecretValue"); strings.Contains(got, "salt") {
		t.Errorf("drain reads a salt the configuration does not name: %s", got)
	}
}

func TestPlainHashSaltIsRefusedForDeployment(t *testing.T) {
	doc := strings.Replace(redshiftConfig, "hash_salt_secret: pgferry/orders/salt", `hash_salt: "a-salt-of-sixteen-or-more"`, 1)
	err := deployable(parse(t, doc))
	if err == nil || !strings.Contains(err.Error(), "hash_salt_secret") || strings.Contains(err.Error(), "a-salt-of-sixteen") {
		t.Fatalf("err = %v, want hash_salt refused, pointing to hash_salt_secret, without echoing it", err)
	}
	if err := deployable(parse(t, redshiftConfig)); err != nil {
		t.Fatalf("hash_salt_secret refused: %v", err)
	}
}
