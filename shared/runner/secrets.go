package runner

import (
	"context"
	"fmt"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/secrets"
)

// ResolveSecrets fills source.dsn and every targets.<name>.dsn that is given
// as a dsn_secret, from AWS Secrets Manager. Deployed functions call it once
// at cold start, right after loading the configuration; a rotated secret is
// picked up by the next cold start. With no dsn_secret in cfg it does nothing
// and makes no AWS call, so plain DSNs (the local runner) keep working.
// Errors name the configuration key and the secret, never the value.
func ResolveSecrets(ctx context.Context, cfg *config.Config) error {
	if !hasSecrets(cfg) {
		return nil
	}
	ac, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRetryMaxAttempts(8))
	if err != nil {
		return fmt.Errorf("aws: %w", err)
	}
	return ResolveSecretsWith(ctx, cfg, secretsmanager.NewFromConfig(ac))
}

// ResolveSecretsWith is ResolveSecrets with a given client. Each distinct
// secret is fetched once. On error cfg is left partly resolved and must not
// be used.
func ResolveSecretsWith(ctx context.Context, cfg *config.Config, c secrets.Client) error {
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
	if id := cfg.Source.DSNSecret; id != "" {
		dsn, err := resolve("source.dsn_secret", id)
		if err != nil {
			return err
		}
		cfg.Source.DSN = dsn
	}
	for _, name := range cfg.TargetNames() {
		t := cfg.Targets[name]
		if t.DSNSecret == "" {
			continue
		}
		key := "targets." + name + ".dsn_secret"
		dsn, err := resolve(key, t.DSNSecret)
		if err != nil {
			return err
		}
		// Two secrets holding the same database would make the pipeline
		// replicate a database into itself.
		if dsn == cfg.Source.DSN {
			return fmt.Errorf("config: %s: secret %s holds the same connection string as the source; a target must be a different database", key, t.DSNSecret)
		}
		t.DSN = dsn
		cfg.Targets[name] = t
	}
	return nil
}

func hasSecrets(cfg *config.Config) bool {
	if cfg.Source.DSNSecret != "" {
		return true
	}
	for _, t := range cfg.Targets {
		if t.DSNSecret != "" {
			return true
		}
	}
	return false
}
