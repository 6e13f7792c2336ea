package config

import (
	"strings"
	"testing"
	"time"
)

const withSecrets = `
name: orders
source:
  dsn_secret: arn:aws:secretsmanager:eu-west-1:123456789012:secret:pgferry/orders/source-AbCdEf
  tables: ["public.*"]
targets:
  replica:
    kind: postgres
    dsn_secret: pgferry/orders/replica
`

const fullDeploy = withSecrets + `
deploy:
  drain_every: 2m
  schema_diff_every: 15m
  functions:
    drain: {memory_mb: "${DRAIN_MB}", timeout: 4m}
    load: {memory_mb: 2048, timeout: 15m}
  load_concurrency: 8
  log_retention_days: 14
  vpc:
    id: vpc-0123456789abcdef0
    subnets: [subnet-0123456789abcdef0, subnet-0123456789abcdef1]
    security_groups: [sg-0123456789abcdef0]
  secrets_kms_keys: [arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab]
  alarms:
    sns_topic: arn:aws:sns:eu-west-1:123456789012:pgferry-alerts
    lag: 2m
    oldest_message: 20m
    retained_wal_bytes: 5368709120
    event_backlog: 500000
    load_stalled: 30m
`

func TestParseAcceptsSecretsInsteadOfDSNs(t *testing.T) {
	c, err := Parse([]byte(withSecrets), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Source.DSN != "" || !strings.HasSuffix(c.Source.DSNSecret, "source-AbCdEf") || c.Targets["replica"].DSNSecret != "pgferry/orders/replica" {
		t.Fatalf("secrets not kept: %+v %+v", c.Source, c.Targets)
	}
}

func TestParseReadsDeploySection(t *testing.T) {
	c, err := Parse([]byte(fullDeploy), env(map[string]string{"DRAIN_MB": "1536"}))
	if err != nil {
		t.Fatal(err)
	}
	d := c.Deploy
	if d.DrainEvery.Duration != 2*time.Minute || d.SchemaDiffEvery.Duration != 15*time.Minute ||
		d.Functions.Drain.MemoryMB != 1536 || d.Functions.Drain.Timeout.Duration != 4*time.Minute ||
		d.Functions.Load.MemoryMB != 2048 || d.LoadConcurrency != 8 || d.LogRetentionDays != 14 ||
		!d.VPC.Enabled() || len(d.VPC.Subnets) != 2 || d.VPC.SecurityGroups[0] != "sg-0123456789abcdef0" ||
		len(d.SecretsKMSKeys) != 1 || d.Alarms.SNSTopic == "" || d.Alarms.Lag.Duration != 2*time.Minute ||
		d.Alarms.RetainedWALBytes != 5<<30 || d.Alarms.EventBacklog != 500000 || d.Alarms.LoadStalled.Duration != 30*time.Minute {
		t.Fatalf("deploy section misread: %+v", d)
	}
}

func TestParseRefusesBadSecretsAndDeployNamingTheKey(t *testing.T) {
	cases := []struct {
		name, from, to, want string
	}{
		{"neither dsn nor secret", "  dsn_secret: arn:aws:secretsmanager:eu-west-1:123456789012:secret:pgferry/orders/source-AbCdEf\n", "", "source.dsn: required (or source.dsn_secret"},
		{"both dsn and secret", "  tables:", "  dsn: postgres://u@h/db\n  tables:", "source.dsn_secret: set either source.dsn or source.dsn_secret, not both"},
		{"target both", "    dsn_secret: pgferry/orders/replica", "    dsn_secret: pgferry/orders/replica\n    dsn: postgres://u@h/db", "targets.replica.dsn_secret: set either"},
		{"bad secret id", "dsn_secret: pgferry/orders/replica", "dsn_secret: \"not a secret!\"", `targets.replica.dsn_secret: "not a secret!" is neither`},
		{"target secret is source's", "dsn_secret: pgferry/orders/replica", "dsn_secret: arn:aws:secretsmanager:eu-west-1:123456789012:secret:pgferry/orders/source-AbCdEf", "targets.replica.dsn_secret: is the same as source.dsn_secret"},
		{"drain rate not minutes", "drain_every: 2m", "drain_every: 90s", "deploy.drain_every: must be whole minutes"},
		{"memory", "memory_mb: 2048", "memory_mb: 64", "deploy.functions.load.memory_mb: must be between 128 and 10240"},
		{"timeout", "timeout: 15m}", "timeout: 16m}", "deploy.functions.load.timeout: must be whole seconds between 1s and 15m"},
		{"load concurrency", "load_concurrency: 8", "load_concurrency: 1", "deploy.load_concurrency: must be between 2 and 1000"},
		{"log retention", "log_retention_days: 14", "log_retention_days: 10", "deploy.log_retention_days: 10 is not a CloudWatch Logs retention"},
		{"vpc without id", "    id: vpc-0123456789abcdef0\n", "", "deploy.vpc.id: required"},
		{"vpc without subnets", "    subnets: [subnet-0123456789abcdef0, subnet-0123456789abcdef1]\n", "", "deploy.vpc.subnets: required"},
		{"bad subnet", "subnet-0123456789abcdef1]", "subnet-nope]", `deploy.vpc.subnets[1]: "subnet-nope" is not a subnet id`},
		{"bad sg", "[sg-0123456789abcdef0]", "[sg0]", `deploy.vpc.security_groups[0]: "sg0" is not a security group id`},
		{"bad kms", "[arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab]", "[mykey]", "deploy.secrets_kms_keys[0]"},
		{"bad topic", "sns_topic: arn:aws:sns:eu-west-1:123456789012:pgferry-alerts", "sns_topic: pgferry-alerts", `deploy.alarms.sns_topic: "pgferry-alerts" is not an SNS topic ARN`},
		{"negative backlog", "event_backlog: 500000", "event_backlog: -1", "deploy.alarms.event_backlog: must not be negative"},
		{"bad lag", "lag: 2m", "lag: 1ms", "deploy.alarms.lag: must be at least 1s"},
		{"unknown alarm key", "lag: 2m", "lagg: 2m", `unknown key "lagg" in deploy.alarms`},
		{"unknown function key", "drain: {memory_mb", "drain: {memroy_mb", `unknown key "memroy_mb" in deploy.functions.<name>`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			doc := strings.Replace(fullDeploy, c.from, c.to, 1)
			if doc == fullDeploy {
				t.Fatalf("replacement %q not found", c.from)
			}
			_, err := Parse([]byte(doc), env(map[string]string{"DRAIN_MB": "1536"}))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v\nwant it to contain %q", err, c.want)
			}
		})
	}
}

func TestDeployedTextExpandsAndDropsDeploySectionAndComments(t *testing.T) {
	doc := strings.Replace(fullDeploy, "name: orders", "name: orders # the pipeline\n# a comment that would waste the 4 KB budget", 1)
	doc = strings.Replace(doc, "dsn_secret: pgferry/orders/replica", "dsn_secret: ${REPLICA_SECRET}", 1)
	lookup := env(map[string]string{"DRAIN_MB": "1536", "REPLICA_SECRET": "pgferry/orders/replica"})
	out, err := DeployedText([]byte(doc), lookup)
	if err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{"deploy", "#", "${", "vpc-", "sns"} {
		if strings.Contains(string(out), gone) {
			t.Fatalf("deployed text still holds %q:\n%s", gone, out)
		}
	}
	// The function parses it with its own (empty) environment.
	c, err := Parse(out, env(nil))
	if err != nil {
		t.Fatalf("deployed text does not parse: %v\n%s", err, out)
	}
	if c.Name != "orders" || c.Targets["replica"].DSNSecret != "pgferry/orders/replica" || c.Deploy.VPC.Enabled() {
		t.Fatalf("deployed config differs: %+v", c)
	}
	if _, err := DeployedText([]byte(doc), env(map[string]string{"DRAIN_MB": "1536"})); err == nil || !strings.Contains(err.Error(), "REPLICA_SECRET") {
		t.Fatalf("a missing variable must be refused at synth, got %v", err)
	}
}
