package runner_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/runner"
)

// secretValues answers GetSecretValue from a map and counts the calls.
// It is a hand-written fake for pure logic: the SDK round trip itself is
// tested in shared/secrets.
type secretValues struct {
	values map[string]string
	calls  int
}

func (s *secretValues) GetSecretValue(_ context.Context, in *secretsmanager.GetSecretValueInput, _ ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
	s.calls++
	v, ok := s.values[aws.ToString(in.SecretId)]
	if !ok {
		return nil, os.ErrNotExist
	}
	return &secretsmanager.GetSecretValueOutput{SecretString: aws.String(v)}, nil
}

const secretsYAML = `
name: shop
source:
  dsn_secret: pgferry/shop/source
  tables: ["public.*"]
targets:
  a:
    kind: postgres
    dsn_secret: pgferry/shop/replica
  b:
    kind: postgres
    dsn_secret: pgferry/shop/replica
    apply_schema: copy
  c:
    kind: postgres
    dsn: postgres://plain@localhost:5432/c
`

// TestResolvedDSNsLeaveTheConfigurationAsLoaded: secrets resolve into the
// DSNs value the wiring passes on, each distinct secret fetched once, and
// the configuration keeps its dsn_secret keys and no secret value.
func TestResolvedDSNsLeaveTheConfigurationAsLoaded(t *testing.T) {
	cfg, err := config.Parse([]byte(secretsYAML), os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	sm := &secretValues{values: map[string]string{
		"pgferry/shop/source":  "postgres://rep:src-pw@db:5432/shop",
		"pgferry/shop/replica": "postgres://rep:dst-pw@replica:5432/shop",
	}}
	dsns, err := runner.ResolveDSNs(context.Background(), cfg, sm, runner.All)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := dsns.Source, "postgres://rep:src-pw@db:5432/shop"; got != want {
		t.Errorf("source = %q, want %q", got, want)
	}
	for name, want := range map[string]string{
		"a": "postgres://rep:dst-pw@replica:5432/shop",
		"b": "postgres://rep:dst-pw@replica:5432/shop",
		"c": "postgres://plain@localhost:5432/c",
	} {
		if got := dsns.Targets[name]; got != want {
			t.Errorf("targets.%s = %q, want %q", name, got, want)
		}
	}
	if got, want := sm.calls, 2; got != want {
		t.Errorf("secrets fetched %d times, want %d (once per distinct secret)", got, want)
	}
	if cfg.Source.DSN != "" || cfg.Targets["a"].DSN != "" || cfg.Targets["b"].DSN != "" {
		t.Errorf("the configuration was changed: source.dsn %q, targets.a.dsn %q, targets.b.dsn %q",
			cfg.Source.DSN, cfg.Targets["a"].DSN, cfg.Targets["b"].DSN)
	}
	if cfg.Source.DSNSecret != "pgferry/shop/source" {
		t.Errorf("source.dsn_secret = %q, changed", cfg.Source.DSNSecret)
	}

	// A target secret holding the source's database is refused, naming
	// the key and the secret but not the value.
	sm.values["pgferry/shop/replica"] = sm.values["pgferry/shop/source"]
	_, err = runner.ResolveDSNs(context.Background(), cfg, sm, runner.All)
	if err == nil || !strings.Contains(err.Error(), "targets.a.dsn_secret") || strings.Contains(err.Error(), "src-pw") {
		t.Fatalf("err = %v, want it to name targets.a.dsn_secret and not the password", err)
	}
}

// TestPlainDSNsNeedNoSecretsManager: without dsn_secret nothing is
// fetched, so the local runner and tests need no Secrets Manager.
func TestPlainDSNsNeedNoSecretsManager(t *testing.T) {
	cfg, err := config.Parse([]byte(strings.NewReplacer(
		"dsn_secret: pgferry/shop/source", "dsn: postgres://u@localhost:5432/src",
		"dsn_secret: pgferry/shop/replica", "dsn: postgres://u@localhost:5432/dst").Replace(secretsYAML)), os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	dsns, err := runner.ResolveDSNs(context.Background(), cfg, nil, runner.All)
	if err != nil {
		t.Fatal(err)
	}
	if dsns.Source != cfg.Source.DSN || dsns.Targets["a"] != cfg.Targets["a"].DSN || len(dsns.Targets) != 3 {
		t.Fatalf("dsns = %+v, want the configured ones", dsns)
	}
}

const saltYAML = `
name: shop
hash_salt_secret: pgferry/shop/salt
source:
  dsn: postgres://u@localhost:5432/src
  tables: ["public.*"]
targets:
  wh:
    kind: postgres
    dsn: postgres://u@localhost:5432/wh
    rules: [{table: public.customers, hash: [phone]}]
`

// TestHashSaltSecretResolvesOnceWithoutEchoingTheSalt: hash_salt_secret is
// fetched once into HashSalt; a salt too short, or a secret that cannot be
// read, is refused naming the key and the secret but never the value.
func TestHashSaltSecretResolvesOnceWithoutEchoingTheSalt(t *testing.T) {
	cfg, err := config.Parse([]byte(saltYAML), os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HashSalt != "" {
		t.Fatalf("hash_salt = %q before resolving", cfg.HashSalt)
	}
	sm := &secretValues{values: map[string]string{"pgferry/shop/salt": "  a-long-and-secret-salt-value\n"}}
	if err := runner.ResolveHashSalt(context.Background(), cfg, sm); err != nil {
		t.Fatal(err)
	}
	if cfg.HashSalt != "a-long-and-secret-salt-value" || sm.calls != 1 {
		t.Fatalf("hash_salt = %q after %d calls, want the trimmed secret after 1", cfg.HashSalt, sm.calls)
	}

	cfg.HashSalt = ""
	sm.values["pgferry/shop/salt"] = "short-s3cret"
	err = runner.ResolveHashSalt(context.Background(), cfg, sm)
	if err == nil || !strings.Contains(err.Error(), "hash_salt_secret") || !strings.Contains(err.Error(), "pgferry/shop/salt") || strings.Contains(err.Error(), "short-s3cret") {
		t.Fatalf("err = %v, want a refusal naming hash_salt_secret and the secret, not the value", err)
	}
	if cfg.HashSalt != "" {
		t.Fatalf("a refused salt was kept: %q", cfg.HashSalt)
	}
	delete(sm.values, "pgferry/shop/salt")
	if err := runner.ResolveHashSalt(context.Background(), cfg, sm); err == nil || !strings.Contains(err.Error(), "hash_salt_secret") {
		t.Fatalf("err = %v, want an unreadable secret refused naming hash_salt_secret", err)
	}

	// Without hash_salt_secret no call is made (the local runner with
	// hash_salt from the environment needs no Secrets Manager).
	plain, err := config.Parse([]byte(strings.Replace(saltYAML, "hash_salt_secret: pgferry/shop/salt", `hash_salt: "0123456789abcdef"`, 1)), os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	if err := runner.ResolveHashSalt(context.Background(), plain, nil); err != nil || plain.HashSalt != "0123456789abcdef" {
		t.Fatalf("hash_salt %q, err %v: want it untouched and no call", plain.HashSalt, err)
	}
}

func TestHashSaltKeysAreValidated(t *testing.T) {
	for doc, want := range map[string]string{
		strings.Replace(saltYAML, "hash_salt_secret: pgferry/shop/salt", "hash_salt_secret: pgferry/shop/salt\nhash_salt: \"0123456789abcdef\"", 1): "hash_salt_secret: set either hash_salt or hash_salt_secret",
		strings.Replace(saltYAML, "pgferry/shop/salt", `"not a secret!"`, 1):                                                                        "hash_salt_secret: \"not a secret!\" is neither",
		strings.Replace(saltYAML, "hash_salt_secret: pgferry/shop/salt", "", 1):                                                                     "or hash_salt_secret",
	} {
		_, err := config.Parse([]byte(doc), os.LookupEnv)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want it to contain %q", err, want)
		}
	}
}

// TestEachFunctionFetchesOnlyTheSecretsItIsGranted: the deployed drain
// may read the source's secret alone and apply (without schema sync) the
// targets' alone; fetching the others would fail with AccessDenied at
// cold start. Here a secret store holding only what is granted stands in.
func TestEachFunctionFetchesOnlyTheSecretsItIsGranted(t *testing.T) {
	cfg, err := config.Parse([]byte(secretsYAML), os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	onlySource := &secretValues{values: map[string]string{"pgferry/shop/source": "postgres://rep:src-pw@db:5432/shop"}}
	dsns, err := runner.ResolveDSNs(context.Background(), cfg, onlySource, runner.Need{Source: true})
	if err != nil || dsns.Source == "" || len(dsns.Targets) != 0 {
		t.Fatalf("drain's DSNs = %+v, %v: want the source's only", dsns, err)
	}
	onlyTargets := &secretValues{values: map[string]string{"pgferry/shop/replica": "postgres://rep:dst-pw@replica:5432/shop"}}
	dsns, err = runner.ResolveDSNs(context.Background(), cfg, onlyTargets, runner.Need{Targets: true})
	if err != nil || dsns.Source != "" || dsns.Targets["a"] == "" || dsns.Targets["c"] == "" {
		t.Fatalf("apply's DSNs = %+v, %v: want the targets' only", dsns, err)
	}
}
