package runner

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/runner/awsenv"
)

// Env is what a process resolves once at start and then passes to
// everything it wires: the configuration (never changed after loading),
// the connection strings with their secrets resolved, and the AWS SDK
// configuration every client is built from.
type Env struct {
	Config *config.Config
	DSNs   DSNs
	AWS    aws.Config
}

// Start resolves an Env for a loaded configuration: the AWS SDK
// configuration (awsenv.Load: once per process, every client is built
// from it) and the DSNs, fetching any dsn_secret from
// Secrets Manager (ResolveDSNs; no AWS call when there is none).
func Start(ctx context.Context, cfg *config.Config) (*Env, error) {
	ac, err := awsenv.Load(ctx)
	if err != nil {
		return nil, err
	}
	dsns, err := ResolveDSNs(ctx, cfg, secretsmanager.NewFromConfig(ac))
	if err != nil {
		return nil, err
	}
	return &Env{Config: cfg, DSNs: dsns, AWS: ac}, nil
}

// Boot is a Lambda's cold start: a JSON logger on stderr (EMF metric lines
// go to stdout), the configuration from the environment (config.FromEnv)
// and its Env (Start). The logger is usable even when the error is not
// nil; it carries the pipeline and fn fields once the configuration is
// known. The caller decides to exit.
func Boot(ctx context.Context, fn string) (*Env, *slog.Logger, error) {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("fn", fn)
	cfg, err := config.FromEnv()
	if err != nil {
		return nil, log, err
	}
	log = log.With("pipeline", cfg.Name)
	env, err := Start(ctx, cfg)
	if err != nil {
		return nil, log, err
	}
	return env, log, nil
}
