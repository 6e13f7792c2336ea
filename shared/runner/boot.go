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
//
// It also resolves hash_salt_secret into cfg.HashSalt (ResolveHashSalt).
func Start(ctx context.Context, cfg *config.Config) (*Env, error) {
	return start(ctx, cfg, All, true)
}

// needs says which connection strings each function resolves at cold
// start, as infra/iam.go grants their secrets: the drain reads the source
// only, apply the targets (and the source when a target follows its
// schema); the others read both.
func needs(fn string, cfg *config.Config) Need {
	switch fn {
	case "drain":
		return Need{Source: true}
	case "apply":
		return Need{Source: cfg.SyncsSchema(), Targets: true}
	}
	return All
}

// saltUsers are the functions that run the hash rules, and so need
// hash_salt_secret (infra grants it to them only): the drain ships rows
// through the rules, the load copies chunks through them.
var saltUsers = map[string]bool{"drain": true, "load": true}

func start(ctx context.Context, cfg *config.Config, need Need, salt bool) (*Env, error) {
	ac, err := awsenv.Load(ctx)
	if err != nil {
		return nil, err
	}
	sm := secretsmanager.NewFromConfig(ac)
	dsns, err := ResolveDSNs(ctx, cfg, sm, need)
	if err != nil {
		return nil, err
	}
	if salt {
		if err := ResolveHashSalt(ctx, cfg, sm); err != nil {
			return nil, err
		}
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
	env, err := start(ctx, cfg, needs(fn, cfg), saltUsers[fn])
	if err != nil {
		return nil, log, err
	}
	return env, log, nil
}
