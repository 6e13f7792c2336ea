package runner

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/capture/slot"
	"github.com/pgferry/pgferry/shared/capture/trigger"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/drain"
	"github.com/pgferry/pgferry/shared/load"
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

// CheckCapture refuses, with a *drain.SwitchError naming source.capture,
// to start the configured capture mode on a pipeline that runs with the
// other one (see drain.CheckCapture). Every path that installs capture or
// sends calls it first: the drain (itself, under its lease), the initial
// load and the local runner before it touches a target. It changes
// nothing.
func (p *Pipeline) CheckCapture(ctx context.Context) error {
	cp, err := p.Res.State.Load(ctx)
	if err != nil {
		return err
	}
	return drain.CheckCapture(ctx, cp, p.Config.Source.Capture, CaptureProbe(p.Config, p.Source))
}

// LoadCapture returns the pipeline's capture as the initial load uses it
// (OpenAWS and OpenSource first). Its Install refuses a switched
// source.capture (CheckCapture) before it installs anything, and copies
// only keyless tables' existing rows into the stream: the load copies the
// keyed ones. Under slot capture, whether the pipeline has read from its
// slot before decides what a missing slot means (a fresh start, or a lost
// slot that must not be silently re-created), so Install asks the
// checkpoint, as the drain does.
func (p *Pipeline) LoadCapture() (load.Capture, error) {
	cfg, src := p.Config, p.Source
	log := p.Log.With("fn", "load")
	switch cfg.Source.Capture {
	case config.CaptureTrigger:
		c := trigger.New(src, cfg, log)
		c.KeylessCopyOnly = true
		return &loadCapture{p: p, install: c.Install, mark: c.Mark}, nil
	case config.CaptureSlot:
		c := slot.New(src, cfg, log)
		c.KeylessCopyOnly = true
		install := func(ctx context.Context) error {
			cp, err := p.Res.State.Load(ctx)
			if err != nil {
				return err
			}
			_, err = c.Install(ctx, cp.Lineage != "")
			return err
		}
		return &loadCapture{p: p, install: install, mark: c.Mark}, nil
	}
	return nil, fmt.Errorf("source.capture: the initial load does not support %q capture in this build", cfg.Source.Capture)
}

// loadCapture is a capture adapter as load.Capture: its own Mark, and an
// Install that checks the capture mode first.
type loadCapture struct {
	p       *Pipeline
	install func(context.Context) error
	mark    func(ctx context.Context, target string, t batch.Table, loadID string) error
}

func (c *loadCapture) Mark(ctx context.Context, target string, t batch.Table, loadID string) error {
	return c.mark(ctx, target, t, loadID)
}

func (c *loadCapture) Install(ctx context.Context) error {
	if err := c.p.CheckCapture(ctx); err != nil {
		return err
	}
	return c.install(ctx)
}
