package config

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Deploy is the "deploy:" section: how the CDK app (infra/) builds the
// pipeline's stack. Only infra reads it; the functions and the local runner
// ignore it. Every field is optional; a zero value means infra's default,
// which infra documents (infra/sizing.go) and the README lists.
type Deploy struct {
	// DrainEvery and SchemaDiffEvery are the EventBridge rates of the two
	// scheduled functions, in whole minutes (EventBridge's resolution).
	DrainEvery      Duration `yaml:"drain_every"`
	SchemaDiffEvery Duration `yaml:"schema_diff_every"`
	// Functions sizes each Lambda.
	Functions Functions `yaml:"functions"`
	// LoadConcurrency caps the load workers running at once (the chunk
	// queue's event source maximum concurrency, 2–1000); by default
	// load.parallelism (at least 2).
	LoadConcurrency int `yaml:"load_concurrency"`
	// LogRetentionDays is how long the functions' CloudWatch logs are kept.
	LogRetentionDays int `yaml:"log_retention_days"`
	// VPC places the functions in a VPC to reach private databases.
	VPC VPC `yaml:"vpc"`
	// SecretsKMSKeys lists customer-managed KMS keys (ARNs) that encrypt
	// the dsn_secret secrets; the functions get kms:Decrypt on them, only
	// via Secrets Manager. Secrets under the default aws/secretsmanager key
	// need nothing here.
	SecretsKMSKeys []string `yaml:"secrets_kms_keys"`
	// Alarms holds alarm thresholds and where alarms notify.
	Alarms Alarms `yaml:"alarms"`
}

// Functions sizes the pipeline's Lambdas.
type Functions struct {
	Drain       Function `yaml:"drain"`
	SchemaDiff  Function `yaml:"schema_diff"`
	Apply       Function `yaml:"apply"`
	InitialLoad Function `yaml:"initial_load"`
	Load        Function `yaml:"load"`
}

// Function is one Lambda's size.
type Function struct {
	MemoryMB int      `yaml:"memory_mb"`
	Timeout  Duration `yaml:"timeout"`
}

// VPC is an existing VPC, its subnets and, optionally, security groups.
// Without security groups, the stack creates one that allows all egress.
type VPC struct {
	ID             string   `yaml:"id"`
	Subnets        []string `yaml:"subnets"`
	SecurityGroups []string `yaml:"security_groups"`
}

// Enabled reports whether the functions run in a VPC.
func (v VPC) Enabled() bool { return v.ID != "" || len(v.Subnets) > 0 || len(v.SecurityGroups) > 0 }

// Alarms configures the CloudWatch alarms. Zero thresholds take infra's
// defaults.
type Alarms struct {
	// SNSTopic is the ARN of an existing topic every alarm notifies on
	// ALARM and OK. Without it alarms only change state (visible in the
	// console). The CDK context key alarmTopic overrides it.
	SNSTopic string `yaml:"sns_topic"`
	// Lag is the replication lag (source commit to target commit) above
	// which a target is alarmed.
	Lag Duration `yaml:"lag"`
	// OldestMessage is the age of the oldest batch on the FIFO queue above
	// which the pipeline is alarmed.
	OldestMessage Duration `yaml:"oldest_message"`
	// RetainedWALBytes (slot capture) and EventBacklog (trigger capture)
	// are the source-side backlogs that raise an alarm.
	RetainedWALBytes int64 `yaml:"retained_wal_bytes"`
	EventBacklog     int64 `yaml:"event_backlog"`
	// LoadStalled is how long an initial load may make no progress.
	LoadStalled Duration `yaml:"load_stalled"`
}

var (
	vpcIDRE    = regexp.MustCompile(`^vpc-[0-9a-f]{8,17}$`)
	subnetIDRE = regexp.MustCompile(`^subnet-[0-9a-f]{8,17}$`)
	sgIDRE     = regexp.MustCompile(`^sg-[0-9a-f]{8,17}$`)
	snsARNRE   = regexp.MustCompile(`^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_.-]{1,256}$`)
	kmsARNRE   = regexp.MustCompile(`^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:(key|alias)/[A-Za-z0-9/_-]+$`)
)

// logRetentionDays are the values CloudWatch Logs accepts.
var logRetentionDays = []int{1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653}

// isDeployNumber reports the numeric keys of the deploy section (see
// isNonString).
func isDeployNumber(path string) bool {
	switch path {
	case "deploy.load_concurrency", "deploy.log_retention_days",
		"deploy.alarms.retained_wal_bytes", "deploy.alarms.event_backlog":
		return true
	}
	return strings.HasPrefix(path, "deploy.functions.") && strings.HasSuffix(path, ".memory_mb")
}

func (d *Deploy) validate() []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("config: deploy.%s: "+format, append([]any{key}, args...)...))
	}
	for key, v := range map[string]time.Duration{"drain_every": d.DrainEvery.Duration, "schema_diff_every": d.SchemaDiffEvery.Duration} {
		if v != 0 && (v < time.Minute || v > 24*time.Hour || v%time.Minute != 0) {
			bad(key, "must be whole minutes between 1m and 24h (EventBridge rates), got %s", v)
		}
	}
	for _, f := range []struct {
		key string
		fn  Function
	}{{"drain", d.Functions.Drain}, {"schema_diff", d.Functions.SchemaDiff}, {"apply", d.Functions.Apply}, {"initial_load", d.Functions.InitialLoad}, {"load", d.Functions.Load}} {
		if m := f.fn.MemoryMB; m != 0 && (m < 128 || m > 10240) {
			bad("functions."+f.key+".memory_mb", "must be between 128 and 10240 (the Lambda limits), got %d", m)
		}
		if v := f.fn.Timeout.Duration; v != 0 && (v < time.Second || v > 15*time.Minute || v%time.Second != 0) {
			bad("functions."+f.key+".timeout", "must be whole seconds between 1s and 15m (the Lambda limits), got %s", v)
		}
	}
	if c := d.LoadConcurrency; c != 0 && (c < 2 || c > 1000) {
		bad("load_concurrency", "must be between 2 and 1000 (SQS event source maximum concurrency), got %d", c)
	}
	if r := d.LogRetentionDays; r != 0 && !slices.Contains(logRetentionDays, r) {
		bad("log_retention_days", "%d is not a CloudWatch Logs retention; use one of %v", r, logRetentionDays)
	}
	if d.VPC.Enabled() {
		if d.VPC.ID == "" {
			bad("vpc.id", "required when deploy.vpc is set")
		} else if !vpcIDRE.MatchString(d.VPC.ID) {
			bad("vpc.id", "%q is not a VPC id like vpc-0123456789abcdef0", d.VPC.ID)
		}
		if len(d.VPC.Subnets) == 0 {
			bad("vpc.subnets", "required when deploy.vpc is set: the private subnets the functions run in")
		}
	}
	for i, s := range d.VPC.Subnets {
		if !subnetIDRE.MatchString(s) {
			bad(fmt.Sprintf("vpc.subnets[%d]", i), "%q is not a subnet id like subnet-0123456789abcdef0", s)
		}
	}
	for i, s := range d.VPC.SecurityGroups {
		if !sgIDRE.MatchString(s) {
			bad(fmt.Sprintf("vpc.security_groups[%d]", i), "%q is not a security group id like sg-0123456789abcdef0", s)
		}
	}
	for i, k := range d.SecretsKMSKeys {
		if !kmsARNRE.MatchString(k) {
			bad(fmt.Sprintf("secrets_kms_keys[%d]", i), "%q is not a KMS key ARN", k)
		}
	}
	a := d.Alarms
	if a.SNSTopic != "" && !snsARNRE.MatchString(a.SNSTopic) {
		bad("alarms.sns_topic", "%q is not an SNS topic ARN", a.SNSTopic)
	}
	for key, v := range map[string]time.Duration{"lag": a.Lag.Duration, "oldest_message": a.OldestMessage.Duration, "load_stalled": a.LoadStalled.Duration} {
		if v < 0 || (v > 0 && v < time.Second) {
			bad("alarms."+key, "must be at least 1s, got %s", v)
		}
	}
	if a.RetainedWALBytes < 0 {
		bad("alarms.retained_wal_bytes", "must not be negative, got %d", a.RetainedWALBytes)
	}
	if a.EventBacklog < 0 {
		bad("alarms.event_backlog", "must not be negative, got %d", a.EventBacklog)
	}
	// Map iteration above is unordered; keep error order stable.
	slices.SortFunc(errs, func(x, y error) int { return strings.Compare(x.Error(), y.Error()) })
	return errs
}

// deploySection names a deploy type's section in "unknown key" errors.
func deploySection(typ string) string {
	if typ == "Deploy" {
		return "deploy"
	}
	return "deploy." + strings.ToLower(typ)
}
