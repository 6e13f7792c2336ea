// Command local runs a pipeline's functions in one process, on timers that
// stand in for EventBridge and the SQS event source, against whatever AWS
// endpoints the standard SDK environment names.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/pgferry/pgferry/shared/localrun"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "pgferry:", err)
		os.Exit(1)
	}
}

func run() error {
	c := localrun.Command{Out: os.Stdout, Err: os.Stderr}
	flag.StringVar(&c.ConfigPath, "config", "", "pipeline configuration file (YAML)")
	flag.BoolVar(&c.UntilIdle, "until-idle", false, "exit 0 once every committed source change is applied to every target")
	flag.BoolVar(&c.InitialLoad, "initial-load", false, "copy existing rows of the configured tables first")
	flag.BoolVar(&c.Verify, "verify", false, "after --until-idle, compare row counts and checksums of every table")
	timeout := flag.Duration("timeout", 10*time.Minute, "with --until-idle, give up after this long")
	logLevel := flag.String("log-level", "info", "debug, info, warn or error")
	logFile := flag.String("log-file", "", "append log lines to this file instead of stderr (progress and results stay on the terminal)")
	flag.BoolVar(&c.Reset, "reset", false, "remove the pipeline's capture objects, queued batches, checkpoint and target watermarks, then exit")
	flag.BoolVar(&c.Redrive, "redrive", false, "apply the batches parked in the dead-letter queue, in order, then exit (or go on with --until-idle)")
	metricsPath := flag.String("metrics", "", "append CloudWatch EMF metric lines to this file")
	loadTables := flag.String("load-tables", "", "with --initial-load: comma-separated patterns narrowing the tables to load")
	flag.BoolVar(&c.Reload, "reload", false, "with --initial-load: copy the tables again even if an earlier load finished")
	flag.BoolVar(&c.Plan, "plan", false, "print the DDL schema sync would run against each target, change nothing, and exit")
	flag.Parse()
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	logOut, err := appendTo(*logFile, "--log-file", os.Stderr)
	if err != nil {
		return err
	}
	c.Log = slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: level}))
	if c.Metrics, err = appendTo(*metricsPath, "--metrics", nil); err != nil {
		return err
	}
	if *loadTables != "" {
		c.LoadTables = strings.Split(*loadTables, ",")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if c.UntilIdle {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, *timeout, fmt.Errorf("--until-idle: not idle after %s", *timeout))
		defer cancel()
	}
	return c.Run(ctx)
}

// appendTo opens path for appending until exit, or returns def if empty.
func appendTo(path, flag string, def io.Writer) (io.Writer, error) {
	if path == "" {
		return def, nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	return f, nil
}
