package runner

import (
	"context"
	"log/slog"
	"os"

	"github.com/pgferry/pgferry/shared/config"
)

// Boot is a Lambda's cold start: a JSON logger on stderr (EMF metric lines
// go to stdout), the configuration from the environment (config.FromEnv)
// and its Secrets Manager DSNs resolved. The logger is usable even when
// the error is not nil; it carries the pipeline and fn fields once the
// configuration is known. The caller decides to exit.
func Boot(ctx context.Context, fn string) (*config.Config, *slog.Logger, error) {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("fn", fn)
	cfg, err := config.FromEnv()
	if err != nil {
		return nil, log, err
	}
	log = log.With("pipeline", cfg.Name)
	if err := ResolveSecrets(ctx, cfg); err != nil {
		return nil, log, err
	}
	return cfg, log, nil
}
