package runner

import (
	"context"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/capture/slot"
	"github.com/pgferry/pgferry/shared/capture/trigger"
	"github.com/pgferry/pgferry/shared/checkpoint"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/drain"
)

// CaptureProbe reports the capture objects of both modes on cfg's source:
// the replication slot, and trigger capture's install state. It only
// reads.
func CaptureProbe(cfg *config.Config, src *pgxpool.Pool) drain.Probe {
	log := slog.New(slog.DiscardHandler)
	return func(ctx context.Context) (drain.Objects, error) {
		var o drain.Objects
		exists, err := slot.New(src, cfg, log).Exists(ctx)
		if err != nil {
			return o, err
		}
		if exists {
			o.Slot = cfg.SlotName()
		}
		installed, err := trigger.New(src, cfg, log).Installed(ctx)
		if err != nil {
			return o, err
		}
		if installed {
			o.Triggers = cfg.CaptureSchema()
		}
		return o, nil
	}
}

// CheckpointLoader reads the pipeline's checkpoint.
type CheckpointLoader interface {
	Load(ctx context.Context) (checkpoint.Checkpoint, error)
}

// CheckCapture refuses, with a *drain.SwitchError naming source.capture,
// to start the configured capture mode on a pipeline that runs with the
// other one (see drain.CheckCapture). Every path that installs capture or
// sends calls it first: the drain (itself, under its lease), the initial
// load and the local runner before it touches a target. It changes
// nothing.
func CheckCapture(ctx context.Context, cfg *config.Config, cps CheckpointLoader, src *pgxpool.Pool) error {
	cp, err := cps.Load(ctx)
	if err != nil {
		return err
	}
	return drain.CheckCapture(ctx, cp, cfg.Source.Capture, CaptureProbe(cfg, src))
}
