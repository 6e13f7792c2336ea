package runner

import (
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/secrets"
)

// DSNs are the connection strings a process connects with: source.dsn and
// targets.<name>.dsn as configured, or the value of their dsn_secret.
// They are kept apart from the configuration so that the configuration
// stays what was loaded, and a DSN with a password in it lives only where
// a connection is opened.
type DSNs struct {
	Source  string
	Targets map[string]string // by target name
}

// Need says which connection strings a process resolves. A deployed
// function is granted only the secrets it reads (infra/iam.go), so it
// must not fetch the others: the drain reads the source's alone, apply
// the targets' (and the source's only with schema sync).
type Need struct{ Source, Targets bool }

// All is what the local runner and most functions need.
var All = Need{Source: true, Targets: true}

// ResolveDSNs returns cfg's connection strings that need names (the
// others stay empty), fetching each dsn_secret from Secrets Manager
// through c. Deployed functions call it once at cold
// start (Start); a rotated secret is picked up by the next cold start.
// With no dsn_secret in cfg it makes no call (c may be nil), so plain DSNs
// (the local runner, tests) keep working. Each distinct secret is fetched
// once. cfg is not changed. Errors name the configuration key and the
// secret, never the value.
func ResolveDSNs(ctx context.Context, cfg *config.Config, c secrets.Client, need Need) (DSNs, error) {
	out := DSNs{Targets: make(map[string]string, len(cfg.Targets))}
	if need.Source {
		out.Source = cfg.Source.DSN
	}
	fetched := map[string]string{}
	resolve := func(key, id string) (string, error) {
		if dsn, ok := fetched[id]; ok {
			return dsn, nil
		}
		dsn, err := secrets.DSN(ctx, c, id)
		if err != nil {
			return "", fmt.Errorf("config: %s: %w", key, err)
		}
		fetched[id] = dsn
		return dsn, nil
	}
	if id := cfg.Source.DSNSecret; id != "" && need.Source {
		dsn, err := resolve("source.dsn_secret", id)
		if err != nil {
			return DSNs{}, err
		}
		out.Source = dsn
	}
	for _, name := range cfg.TargetNames() {
		if !need.Targets {
			break
		}
		t := cfg.Targets[name]
		out.Targets[name] = t.DSN
		if t.DSNSecret == "" {
			continue
		}
		key := "targets." + name + ".dsn_secret"
		dsn, err := resolve(key, t.DSNSecret)
		if err != nil {
			return DSNs{}, err
		}
		// Two secrets holding the same database would make the pipeline
		// replicate a database into itself.
		if need.Source && dsn == out.Source {
			return DSNs{}, fmt.Errorf("config: %s: secret %s holds the same connection string as the source; a target must be a different database", key, t.DSNSecret)
		}
		out.Targets[name] = dsn
	}
	return out, nil
}

// minSaltLen is the shortest salt accepted (as config asks of hash_salt).
const minSaltLen = 16

// ResolveHashSalt fetches hash_salt_secret, when set, and puts its value
// in cfg.HashSalt, where the hash rules read it. It makes one
// GetSecretValue call, at start, like ResolveDSNs; without
// hash_salt_secret it makes none (c may be nil). The value is the secret's
// whole SecretString, surrounding white space removed. Errors name the key
// and the secret, never the value; the salt is never logged.
func ResolveHashSalt(ctx context.Context, cfg *config.Config, c secrets.Client) error {
	id := cfg.HashSaltSecret
	if id == "" {
		return nil
	}
	if c == nil {
		return fmt.Errorf("config: hash_salt_secret: secret %s: no Secrets Manager client", id)
	}
	out, err := c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(id)})
	if err != nil {
		return fmt.Errorf("config: hash_salt_secret: secret %s: %w", id, err)
	}
	if out.SecretString == nil {
		return fmt.Errorf("config: hash_salt_secret: secret %s has no SecretString (binary secrets are not supported)", id)
	}
	salt := strings.TrimSpace(*out.SecretString)
	if len(salt) < minSaltLen {
		return fmt.Errorf("config: hash_salt_secret: secret %s holds %d characters; a salt needs at least %d so that hashed values cannot be reversed by a dictionary", id, len(salt), minSaltLen)
	}
	cfg.HashSalt = salt
	return nil
}
