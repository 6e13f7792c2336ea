package main

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/jsii-runtime-go"
)

const testPipeline = "test"

// Synthesis goes through the jsii Node.js process and is slow, so all template
// assertions share one stack.
var (
	fixtureOnce  sync.Once
	fixtureStack *PipelineStack
	fixtureTmpl  assertions.Template
)

func TestMain(m *testing.M) {
	code := m.Run()
	jsii.Close()
	os.Exit(code)
}

func fixture(t *testing.T) (*PipelineStack, assertions.Template) {
	t.Helper()
	fixtureOnce.Do(func() {
		app := awscdk.NewApp(nil)
		// Tests run in infra/, where the placeholder asset directory is local.
		code := awslambda.Code_FromAsset(jsii.String("placeholder"), nil)
		fixtureStack = NewPipelineStack(app, "pgferry-"+testPipeline, &PipelineStackProps{
			Pipeline:  testPipeline,
			DrainCode: code,
			ApplyCode: code,
		})
		fixtureTmpl = assertions.Template_FromStack(fixtureStack.Stack, nil)
	})
	if fixtureTmpl == nil {
		t.Fatal("stack fixture failed to synthesize")
	}
	return fixtureStack, fixtureTmpl
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

func TestQueueIsFIFOWithoutContentDedupAndRedrivesToFIFODLQ(t *testing.T) {
	s, tmpl := fixture(t)
	expect(t, func() { tmpl.ResourceCountIs(jsii.String("AWS::SQS::Queue"), jsii.Number(2)) })
	expect(t, func() {
		tmpl.HasResourceProperties(jsii.String("AWS::SQS::Queue"), obj{
			"QueueName":                 "pgferry-test.fifo",
			"FifoQueue":                 true,
			"ContentBasedDeduplication": false,
			"VisibilityTimeout":         6 * applyTimeoutMinutes * 60,
			"RedrivePolicy": obj{
				"deadLetterTargetArn": s.Stack.Resolve(s.DLQ.QueueArn()),
				"maxReceiveCount":     5,
			},
		})
	})
	expect(t, func() {
		tmpl.HasResourceProperties(jsii.String("AWS::SQS::Queue"), obj{
			"QueueName":     "pgferry-test-dlq.fifo",
			"FifoQueue":     true,
			"RedrivePolicy": assertions.Match_Absent(),
		})
	})
}

func TestStateTableIsOnDemandWithPointInTimeRecoveryAndRetained(t *testing.T) {
	_, tmpl := fixture(t)
	expect(t, func() {
		tmpl.HasResource(jsii.String("AWS::DynamoDB::Table"), obj{
			"DeletionPolicy":      "Retain",
			"UpdateReplacePolicy": "Retain",
			"Properties": like(obj{
				"TableName":   "pgferry-test-state",
				"BillingMode": "PAY_PER_REQUEST",
				"KeySchema":   arr{obj{"AttributeName": "id", "KeyType": "HASH"}},
				"AttributeDefinitions": arr{
					obj{"AttributeName": "id", "AttributeType": "S"},
				},
				"PointInTimeRecoverySpecification": obj{"PointInTimeRecoveryEnabled": true},
			}),
		})
	})
}

func TestPayloadBucketIsEncryptedPrivateTLSOnlyAndExpiresPayloads(t *testing.T) {
	s, tmpl := fixture(t)
	expect(t, func() {
		tmpl.HasResourceProperties(jsii.String("AWS::S3::Bucket"), obj{
			"BucketEncryption": obj{
				"ServerSideEncryptionConfiguration": arr{
					obj{"ServerSideEncryptionByDefault": obj{"SSEAlgorithm": "AES256"}},
				},
			},
			"PublicAccessBlockConfiguration": obj{
				"BlockPublicAcls":       true,
				"BlockPublicPolicy":     true,
				"IgnorePublicAcls":      true,
				"RestrictPublicBuckets": true,
			},
			"LifecycleConfiguration": obj{
				"Rules": arrayWith(like(obj{"ExpirationInDays": 7, "Status": "Enabled"})),
			},
		})
	})
	expect(t, func() {
		tmpl.HasResourceProperties(jsii.String("AWS::S3::BucketPolicy"), obj{
			"Bucket": s.Stack.Resolve(s.Bucket.BucketName()),
			"PolicyDocument": like(obj{
				"Statement": arrayWith(like(obj{
					"Effect":    "Deny",
					"Condition": obj{"Bool": obj{"aws:SecureTransport": "false"}},
				})),
			}),
		})
	})
}

func TestFunctionsRunBootstrapOnProvidedAL2023ARM64(t *testing.T) {
	s, tmpl := fixture(t)
	expect(t, func() { tmpl.ResourceCountIs(jsii.String("AWS::Lambda::Function"), jsii.Number(2)) })
	expect(t, func() {
		tmpl.AllResourcesProperties(jsii.String("AWS::Lambda::Function"), obj{
			"Runtime":       "provided.al2023",
			"Architectures": arr{"arm64"},
			"Handler":       "bootstrap",
			"MemorySize":    512,
			"Environment": obj{"Variables": obj{
				"PGFERRY_QUEUE_URL":   s.Stack.Resolve(s.Queue.QueueUrl()),
				"PGFERRY_STATE_TABLE": s.Stack.Resolve(s.Table.TableName()),
				"PGFERRY_BUCKET":      s.Stack.Resolve(s.Bucket.BucketName()),
				"PGFERRY_PIPELINE":    testPipeline,
			}},
		})
	})
	expect(t, func() {
		tmpl.HasResourceProperties(jsii.String("AWS::Lambda::Function"), obj{
			"FunctionName":                 "pgferry-test-drain",
			"Timeout":                      300,
			"ReservedConcurrentExecutions": 1,
		})
	})
	expect(t, func() {
		tmpl.HasResourceProperties(jsii.String("AWS::Lambda::Function"), obj{
			"FunctionName": "pgferry-test-apply",
			"Timeout":      120,
		})
	})
}

func TestDrainIsTriggeredEveryMinute(t *testing.T) {
	s, tmpl := fixture(t)
	expect(t, func() {
		tmpl.HasResourceProperties(jsii.String("AWS::Events::Rule"), obj{
			"ScheduleExpression": "rate(1 minute)",
			"State":              "ENABLED",
			"Targets":            arrayWith(like(obj{"Arn": s.Stack.Resolve(s.Drain.FunctionArn())})),
		})
	})
}

func TestApplyConsumesFIFOQueueWithPartialBatchFailures(t *testing.T) {
	s, tmpl := fixture(t)
	expect(t, func() { tmpl.ResourceCountIs(jsii.String("AWS::Lambda::EventSourceMapping"), jsii.Number(1)) })
	expect(t, func() {
		tmpl.HasResourceProperties(jsii.String("AWS::Lambda::EventSourceMapping"), obj{
			"EventSourceArn":        s.Stack.Resolve(s.Queue.QueueArn()),
			"FunctionName":          s.Stack.Resolve(s.Apply.FunctionName()),
			"BatchSize":             10,
			"FunctionResponseTypes": arr{"ReportBatchItemFailures"},
		})
	})
}

func TestDLQAlarmFiresOnAnyVisibleMessage(t *testing.T) {
	s, tmpl := fixture(t)
	expect(t, func() {
		tmpl.HasResourceProperties(jsii.String("AWS::CloudWatch::Alarm"), obj{
			"Namespace":          "AWS/SQS",
			"MetricName":         "ApproximateNumberOfMessagesVisible",
			"Dimensions":         arr{obj{"Name": "QueueName", "Value": s.Stack.Resolve(s.DLQ.QueueName())}},
			"ComparisonOperator": "GreaterThanThreshold",
			"Threshold":          0,
			"EvaluationPeriods":  1,
		})
	})
}

// policyStatements returns every IAM statement in the template's managed
// AWS::IAM::Policy resources and roles' inline policies, keyed by the
// logical id of each role the statement is attached to ("" when unknown).
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
	_, tmpl := fixture(t)
	stmts := policyStatements(t, tmpl)
	if len(stmts) == 0 {
		t.Fatal("found no IAM policy statements; the check would be vacuous")
	}
	for role, list := range stmts {
		for _, st := range list {
			if st["Effect"] != "Allow" {
				continue
			}
			if contains(literals(st["Action"]), "*") && contains(literals(st["Resource"]), "*") {
				t.Errorf("role %q: statement allows Action \"*\" on Resource \"*\": %v", role, st)
			}
		}
	}
}

func TestGrantsSeparateProducerAndConsumerPermissions(t *testing.T) {
	s, tmpl := fixture(t)
	actionsOf := func(fn awslambda.Function) []string {
		role := s.Stack.Resolve(fn.Role().RoleName()).(obj)["Ref"].(string)
		var out []string
		for _, st := range policyStatements(t, tmpl)[role] {
			if st["Effect"] == "Allow" {
				out = append(out, literals(st["Action"])...)
			}
		}
		return out
	}
	drain, apply := actionsOf(s.Drain), actionsOf(s.Apply)

	for _, a := range []string{"sqs:SendMessage", "dynamodb:PutItem", "s3:PutObject"} {
		if !contains(drain, a) {
			t.Errorf("drain lacks %s; has %v", a, drain)
		}
	}
	for _, a := range []string{"sqs:ReceiveMessage", "sqs:DeleteMessage", "s3:GetObject*", "s3:DeleteObject*"} {
		if contains(drain, a) {
			t.Errorf("drain must not have %s", a)
		}
	}
	for _, a := range []string{"sqs:ReceiveMessage", "sqs:DeleteMessage", "dynamodb:PutItem", "s3:GetObject*"} {
		if !contains(apply, a) {
			t.Errorf("apply lacks %s; has %v", a, apply)
		}
	}
	for _, a := range []string{"sqs:SendMessage", "s3:PutObject", "s3:DeleteObject*"} {
		if contains(apply, a) {
			t.Errorf("apply must not have %s", a)
		}
	}
}

func TestRejectsPipelineNamesUnfitForResourceNames(t *testing.T) {
	for _, name := range []string{"", "Orders", "orders_v2", "-orders", "a-name-that-is-far-too-long-for-lambda-names"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewPipelineStack accepted pipeline name %q", name)
				}
			}()
			// Validation happens before any construct is created.
			NewPipelineStack(nil, "x", &PipelineStackProps{Pipeline: name})
		}()
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
