// Command local runs a pipeline's functions in one process, on timers that
// stand in for EventBridge and the SQS event source, against whatever AWS
// endpoints the standard SDK environment names.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/apply"
	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/drain"
	"github.com/pgferry/pgferry/shared/metrics"
	"github.com/pgferry/pgferry/shared/runner"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "pgferry:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		cfgPath     = flag.String("config", "", "pipeline configuration file (YAML)")
		untilIdle   = flag.Bool("until-idle", false, "exit 0 once every committed source change is applied to every target")
		initialLoad = flag.Bool("initial-load", false, "copy existing rows of the configured tables first")
		doVerify    = flag.Bool("verify", false, "after --until-idle, compare row counts and checksums of every table")
		timeout     = flag.Duration("timeout", 10*time.Minute, "with --until-idle, give up after this long")
		logLevel    = flag.String("log-level", "info", "debug, info, warn or error")
		logFile     = flag.String("log-file", "", "append log lines to this file instead of stderr (progress and results stay on the terminal)")
		reset       = flag.Bool("reset", false, "remove the pipeline's capture objects, queued batches, checkpoint and target watermarks, then exit")
		redrive     = flag.Bool("redrive", false, "apply the batches parked in the dead-letter queue, in order, then exit (or go on with --until-idle)")
		metricsPath = flag.String("metrics", "", "append CloudWatch EMF metric lines to this file")
		loadTables  = flag.String("load-tables", "", "with --initial-load: comma-separated patterns narrowing the tables to load")
		reload      = flag.Bool("reload", false, "with --initial-load: copy the tables again even if an earlier load finished")
		plan        = flag.Bool("plan", false, "print the DDL schema sync would run against each target, change nothing, and exit")
	)
	flag.Parse()
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	logOut := os.Stderr
	if *logFile != "" {
		f, err := os.OpenFile(*logFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return fmt.Errorf("--log-file: %w", err)
		}
		defer f.Close()
		logOut = f
	}
	log := slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: level}))
	if *cfgPath == "" {
		return errors.New("--config is required")
	}
	if *doVerify && !*untilIdle {
		return errors.New("--verify needs --until-idle")
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	if (*loadTables != "" || *reload) && !*initialLoad {
		return errors.New("--load-tables and --reload need --initial-load")
	}
	log = log.With("pipeline", cfg.Name)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *untilIdle {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, *timeout, fmt.Errorf("--until-idle: not idle after %s", *timeout))
		defer cancel()
	}

	env, err := runner.Start(ctx, cfg)
	if err != nil {
		return err
	}
	// Reach both databases before creating anything anywhere, so a wrong
	// DSN or password changes nothing.
	src, err := runner.Connect(ctx, "source", env.DSNs.Source)
	if err != nil {
		return err
	}
	defer src.Close()
	if *plan {
		return printPlans(ctx, cfg, env.DSNs, src, log)
	}
	targets, pools, err := runner.Targets(ctx, cfg, env.DSNs, log)
	if err != nil {
		return err
	}
	defer runner.CloseAll(pools)
	aws, err := runner.ConnectAWS(ctx, cfg, env.AWS, true)
	if err != nil {
		return err
	}

	if *reset {
		return runner.Reset(ctx, cfg, aws, src, pools, log)
	}
	// A switch of source.capture on a live pipeline is refused before
	// anything is installed, sent or changed on a target.
	if err := runner.CheckCapture(ctx, cfg, aws.State, src); err != nil {
		if sw := (*drain.SwitchError)(nil); errors.As(err, &sw) {
			sw.Config = *cfgPath
		}
		return err
	}
	// Schema sync: wrap the appliers, and bring empty or lagging targets
	// up to the source's schema before anything is applied or loaded.
	// (The initial load writes through the plain appliers.)
	syncers := runner.SchemaSyncers(cfg, src, pools, log)
	applyTargets := maps.Clone(targets)
	runner.WithSchemaSync(cfg, applyTargets, syncers, pools, log)
	if err := runner.SyncSchemas(ctx, cfg, syncers); err != nil {
		return err
	}

	var emf *metrics.EMF
	if *metricsPath != "" {
		f, err := os.OpenFile(*metricsPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return fmt.Errorf("--metrics: %w", err)
		}
		defer f.Close()
		emf = metrics.New(f)
	}
	handler := &apply.Handler{
		Pipeline: cfg.Name, Targets: applyTargets, Payloads: aws.Payloads,
		MaxAttempts: cfg.Apply.MaxAttempts, Metrics: emf,
	}
	if *redrive {
		st, err := runner.Redrive(ctx, handler, aws.DLQ, log.With("fn", "redrive"))
		fmt.Fprintf(os.Stderr, "pgferry: redrive: %d parked batches applied\n", st.Applied)
		if err != nil || !*untilIdle {
			return err
		}
	}

	progress := &runner.Progress{W: os.Stderr}
	shipped := func(b *batch.Batch) {
		progress.Shipped(b)
		runner.EmitShipped(emf, b)
	}
	l := &runner.Local{
		Cfg:      cfg,
		Drainer:  runner.NewDrainer(cfg, src, aws, runner.InstanceID(), log.With("fn", "drain"), shipped, runner.WithMetrics(emf)),
		Handler:  handler,
		Queue:    aws.Queue,
		DLQ:      aws.DLQ,
		Log:      log,
		Progress: progress,
		Metrics:  emf,
		AfterCycle: func(ctx context.Context) error {
			_, err := runner.SyncSequences(ctx, cfg.Name, syncers, emf)
			return err
		},
	}
	lastSent := func(ctx context.Context) (batch.Position, error) {
		cp, err := aws.State.Load(ctx)
		return cp.LastSent, err
	}
	var loadPatterns []string
	if *loadTables != "" {
		loadPatterns = strings.Split(*loadTables, ",")
	}
	if *initialLoad {
		err = runner.RunWithLoad(ctx, l, *untilIdle, lastSent, cfg, aws, src, targets, runner.LoadOptions{Tables: loadPatterns, Reload: *reload, Progress: os.Stderr}, log)
	} else {
		err = l.Run(ctx, *untilIdle, lastSent)
	}
	if cause := context.Cause(ctx); err != nil && cause != nil && !errors.Is(cause, context.Canceled) {
		err = cause
	}
	fmt.Fprintln(os.Stderr, "pgferry:", progress.Summary())
	if err != nil || !*untilIdle {
		return err
	}
	fmt.Fprintln(os.Stderr, "pgferry: idle: every committed change is applied to every target")
	if *initialLoad && !*doVerify {
		return runner.PrintLoadCounts(context.Background(), cfg, src, pools, loadPatterns, os.Stdout)
	}
	if *doVerify {
		return runner.PrintVerify(context.Background(), cfg, src, pools, os.Stdout)
	}
	return nil
}

// printPlans connects to every target without installing anything and
// prints the DDL schema sync would run there (--plan).
func printPlans(ctx context.Context, cfg *config.Config, dsns runner.DSNs, src *pgxpool.Pool, log *slog.Logger) error {
	pools, err := runner.ConnectTargets(ctx, cfg, dsns)
	if err != nil {
		return err
	}
	defer runner.CloseAll(pools)
	return runner.PrintPlans(ctx, cfg, src, pools, os.Stdout, log)
}
