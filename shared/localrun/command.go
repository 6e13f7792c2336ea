package localrun

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/pgferry/pgferry/shared/apply"
	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/drain"
	"github.com/pgferry/pgferry/shared/initload"
	"github.com/pgferry/pgferry/shared/metrics"
	"github.com/pgferry/pgferry/shared/runner"
	"github.com/pgferry/pgferry/shared/schemadiff"
	"github.com/pgferry/pgferry/shared/verify"
)

// Command is one run of the local runner (functions/local), its flags
// parsed: what DESIGN §6 calls the local runner's contract.
type Command struct {
	ConfigPath  string // --config
	UntilIdle   bool   // --until-idle
	InitialLoad bool   // --initial-load
	Verify      bool   // --verify
	Reset       bool   // --reset
	Redrive     bool   // --redrive
	Plan        bool   // --plan
	Reload      bool   // --reload
	LoadTables  []string
	// Metrics receives CloudWatch EMF lines (--metrics); nil: none.
	Metrics io.Writer
	// Out receives results (plans, verify tables); Err progress and the
	// closing lines.
	Out, Err io.Writer
	Log      *slog.Logger
}

// Check refuses flag combinations that make no sense.
func (c *Command) Check() error {
	switch {
	case c.ConfigPath == "":
		return errors.New("--config is required")
	case c.Verify && !c.UntilIdle:
		return errors.New("--verify needs --until-idle")
	case (len(c.LoadTables) > 0 || c.Reload) && !c.InitialLoad:
		return errors.New("--load-tables and --reload need --initial-load")
	}
	return nil
}

// Run runs the command until it is done or ctx ends.
func (c *Command) Run(ctx context.Context) error {
	if err := c.Check(); err != nil {
		return err
	}
	cfg, err := config.Load(c.ConfigPath)
	if err != nil {
		return err
	}
	log := c.Log.With("pipeline", cfg.Name)
	env, err := runner.Start(ctx, cfg)
	if err != nil {
		return err
	}
	p := runner.New(env, log)
	defer p.Close()
	// Reach the source and every target before creating anything
	// anywhere, so a wrong DSN or password changes nothing.
	if err := p.OpenSource(ctx); err != nil {
		return err
	}
	if c.Plan {
		if err := p.OpenTargets(ctx, true); err != nil {
			return err
		}
		return schemadiff.PrintPlans(ctx, cfg, p.Planners(), c.Out)
	}
	var emf *metrics.EMF
	if c.Metrics != nil {
		emf = metrics.New(c.Metrics)
	}
	p.Metrics = emf
	if err := p.OpenTargets(ctx, false); err != nil {
		return err
	}
	if err := p.OpenAWS(ctx, true); err != nil {
		return err
	}
	if c.Reset {
		return p.Reset(ctx)
	}
	// A switch of source.capture on a live pipeline is refused before
	// anything is installed, sent or changed on a target.
	if err := p.CheckCapture(ctx); err != nil {
		if sw := (*drain.SwitchError)(nil); errors.As(err, &sw) {
			sw.Config = c.ConfigPath
		}
		return err
	}
	// Empty or lagging targets are brought up to the source's schema
	// before anything is applied or loaded.
	if err := schemadiff.SyncAll(ctx, p.Syncers()); err != nil {
		return err
	}
	handler := p.Handler(emf)
	if c.Redrive {
		st, err := apply.Redrive(ctx, handler, p.Res.DLQ, log.With("fn", "redrive"))
		fmt.Fprintf(c.Err, "pgferry: redrive: %d parked batches applied\n", st.Applied)
		if err != nil || !c.UntilIdle {
			return err
		}
	}
	err = c.replicate(ctx, p, handler, emf)
	if cause := context.Cause(ctx); err != nil && cause != nil && !errors.Is(cause, context.Canceled) {
		err = cause
	}
	if err != nil || !c.UntilIdle {
		return err
	}
	fmt.Fprintln(c.Err, "pgferry: idle: every committed change is applied to every target")
	switch {
	case c.Verify:
		return verify.Report(context.WithoutCancel(ctx), cfg, p.Source, p.Verifiers(), c.Out)
	case c.InitialLoad:
		tables, err := initload.Tables(context.WithoutCancel(ctx), cfg, p.Source, c.LoadTables)
		if err != nil {
			return err
		}
		return verify.ReportCounts(context.WithoutCancel(ctx), p.Source, p.Verifiers(), cfg, tables, c.Out)
	}
	return nil
}

// replicate runs the loops (beside the initial load with --initial-load)
// and prints the summary line.
func (c *Command) replicate(ctx context.Context, p *runner.Pipeline, handler *apply.Handler, emf *metrics.EMF) error {
	cfg := p.Config
	progress := &Progress{W: c.Err}
	shipped := func(b *batch.Batch) {
		progress.Shipped(b)
		drain.EmitShipped(emf, b)
	}
	syncers := p.Syncers()
	l := &Local{
		Cfg:      cfg,
		Drainer:  p.Drainer(runner.InstanceID(), shipped, emf),
		Handler:  handler,
		Queue:    p.Res.Queue,
		DLQ:      p.Res.DLQ,
		Log:      p.Log,
		Progress: progress,
		Metrics:  emf,
		AfterCycle: func(ctx context.Context) error {
			_, err := schemadiff.SyncSequences(ctx, cfg.Name, syncers, emf)
			return err
		},
	}
	defer func() { fmt.Fprintln(c.Err, "pgferry:", progress.Summary()) }()
	if !c.InitialLoad {
		return l.Run(ctx, c.UntilIdle, p.LastSent)
	}
	loaders, err := p.Loaders()
	if err != nil {
		return err
	}
	capture, err := p.LoadCapture()
	if err != nil {
		return err
	}
	// Capture before any copy (and before the drain would install it,
	// copying keyed tables' rows into the stream too): every change after
	// this reaches the stream.
	if err := capture.Install(ctx); err != nil {
		return err
	}
	opts := initload.Options{Tables: c.LoadTables, Reload: c.Reload, Progress: c.Err}
	return l.RunWith(ctx, c.UntilIdle, p.LastSent, func(ctx context.Context) error {
		if err := initload.Run(ctx, cfg, p.Res.Loads, p.Source, loaders, capture, opts, p.Log); err != nil {
			return err
		}
		if !c.UntilIdle {
			p.Log.Info("initial load done; replicating on")
		}
		return nil
	})
}
