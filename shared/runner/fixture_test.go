package runner_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/apply"
	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/initload"
	"github.com/pgferry/pgferry/shared/load"
	"github.com/pgferry/pgferry/shared/localrun"
	"github.com/pgferry/pgferry/shared/runner"
	"github.com/pgferry/pgferry/shared/schemadiff"
	"github.com/pgferry/pgferry/shared/testenv"
	"github.com/pgferry/pgferry/shared/verify"
)

// fixture is one pipeline between two fresh databases on the test
// cluster, with its own queue, state table and bucket on the emulators.
type fixture struct {
	t              *testing.T
	cfg            *config.Config
	cfgYAML        string
	srcDSN, dstDSN string
	src, dst       *pgxpool.Pool
	p              *runner.Pipeline
	aws            *runner.Resources
	targets        map[string]apply.Applier
	log            *slog.Logger
}

func logger(t *testing.T) *slog.Logger {
	if os.Getenv("PGFERRY_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// captureModes are the capture modes every end-to-end test runs with.
var captureModes = []string{config.CaptureTrigger, config.CaptureSlot}

// forEachCapture runs fn as a subtest per capture mode.
func forEachCapture(t *testing.T, fn func(t *testing.T, mode string)) {
	for _, mode := range captureModes {
		t.Run(mode, func(t *testing.T) { fn(t, mode) })
	}
}

// newFixture creates source and target databases holding ddl (the target
// schema exists up front, as pg_dump --schema-only would make it) and a
// pipeline over them with trigger capture. extra is appended to the YAML
// configuration.
func newFixture(t *testing.T, ddl, extra string) *fixture {
	t.Helper()
	return newFixtureMode(t, config.CaptureTrigger, ddl, extra)
}

// newFixtureMode is newFixture with the given capture mode. Slot capture
// may give keyless tables REPLICA IDENTITY FULL, as the tests' keyless
// tables need.
func newFixtureMode(t *testing.T, mode, ddl, extra string) *fixture {
	t.Helper()
	return fixtureFrom(t, ddl, ddl, func(src, dst string) string {
		return fmt.Sprintf(`
name: %s
source:
  dsn: %q
  tables: ["public.*", "odd.*"]%s
targets:
  replica:
    kind: postgres
    dsn: %q
    schema_sync: false   # the target schema is made up front; schema_test.go covers sync
drain:
  interval: 100ms
%s`, testenv.Name("t"), src, slotKeys(mode), dst, extra)
	})
}

// fixtureFrom creates a source and a target database, runs srcDDL and
// dstDDL in them, and opens the pipeline from the YAML that yaml renders
// for their DSNs, with its queues, state table and bucket, as the local
// runner does (closed when the test ends).
func fixtureFrom(t *testing.T, srcDDL, dstDDL string, yaml func(src, dst string) string) *fixture {
	t.Helper()
	testenv.AWS(t)
	f := &fixture{t: t, log: logger(t)}
	f.srcDSN, f.dstDSN = testenv.NewDB(t, "src"), testenv.NewDB(t, "dst")
	f.src, f.dst = testenv.Pool(t, f.srcDSN), testenv.Pool(t, f.dstDSN)
	if srcDDL != "" {
		testenv.Exec(t, f.src, srcDDL)
	}
	if dstDDL != "" {
		testenv.Exec(t, f.dst, dstDDL)
	}
	f.cfgYAML = yaml(f.srcDSN, f.dstDSN)
	cfg, err := config.Parse([]byte(f.cfgYAML), os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	f.cfg = cfg
	ctx := context.Background()
	env, err := runner.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.p = runner.New(env, f.log)
	t.Cleanup(f.p.Close)
	for _, open := range []func(context.Context) error{
		f.p.OpenSource,
		func(ctx context.Context) error { return f.p.OpenTargets(ctx, false) },
		func(ctx context.Context) error { return f.p.OpenAWS(ctx, true) },
	} {
		if err := open(ctx); err != nil {
			t.Fatal(err)
		}
	}
	f.aws, f.targets = f.p.Res, f.p.Appliers()
	return f
}

// targetPool returns a pool on target name (closed when the test ends).
func (f *fixture) targetPool(name string) *pgxpool.Pool {
	return testenv.Pool(f.t, f.p.DSNs.Targets[name])
}

func (f *fixture) exec(sql string, args ...any) { f.t.Helper(); testenv.Exec(f.t, f.src, sql, args...) }

func (f *fixture) local() *localrun.Local {
	return &localrun.Local{
		Cfg:     f.cfg,
		Drainer: f.p.Drainer(runner.InstanceID(), nil, nil),
		Handler: &apply.Handler{Pipeline: f.cfg.Name, Targets: f.targets, Payloads: f.aws.Payloads, MaxAttempts: f.cfg.Apply.MaxAttempts},
		Queue:   f.aws.Queue,
		DLQ:     f.aws.DLQ,
		Log:     f.log,
	}
}

func (f *fixture) lastSent(ctx context.Context) (batch.Position, error) {
	cp, err := f.aws.State.Load(ctx)
	return cp.LastSent, err
}

// replicate runs the local runner until idle.
func (f *fixture) replicate() {
	f.t.Helper()
	// A hang guard, not a speed check: a 1M-row transaction on a 2-core
	// machine busy with other work took over 90 s.
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	if err := f.local().Run(ctx, true, f.lastSent); err != nil {
		f.t.Fatalf("replicate until idle: %v", err)
	}
}

// assertSame compares every replicated table, row count and checksum.
func (f *fixture) assertSame() {
	f.t.Helper()
	res, err := verify.Compare(context.Background(), f.src, map[string]verify.Target{"replica": verify.Postgres{Pool: f.dst}}, f.cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	if len(res) == 0 {
		f.t.Fatal("no tables were compared")
	}
	for _, r := range res {
		if !r.OK() {
			f.t.Errorf("%s differs: source %d rows (%s), target %d rows (%s), err %v",
				r.Table, r.SourceRows, r.SourceChecksum, r.TargetRows, r.TargetChecksum, r.Err)
		}
	}
}

// count returns a single integer from the target.
func (f *fixture) targetInt(sql string) int64 {
	f.t.Helper()
	var n int64
	if err := f.dst.QueryRow(context.Background(), sql).Scan(&n); err != nil {
		f.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// slotKeys returns the source keys that select a capture mode.
func slotKeys(mode string) string {
	if mode == config.CaptureSlot {
		return "\n  capture: slot\n  replica_identity_full: true"
	}
	return ""
}

// loader installs capture on the source, as --initial-load does first, and
// returns a loader of the pipeline's tables into its targets.
func (f *fixture) loader() *load.Loader {
	f.t.Helper()
	loaders, capture := f.loadParts()
	return initload.NewLoader(f.cfg, f.src, loaders, capture, f.aws.Loads, nil, f.log)
}

// loadParts returns the targets' loaders and the load capture, installed.
func (f *fixture) loadParts() (map[string]load.Target, load.Capture) {
	f.t.Helper()
	loaders, err := f.p.Loaders()
	if err != nil {
		f.t.Fatal(err)
	}
	capture, err := f.p.LoadCapture()
	if err != nil {
		f.t.Fatal(err)
	}
	if err := capture.Install(context.Background()); err != nil {
		f.t.Fatal(err)
	}
	return loaders, capture
}

// runWithLoad is functions/local --initial-load: capture installed, then
// l's loops with the initial load beside them (see localrun.Command).
func (f *fixture) runWithLoad(ctx context.Context, l *localrun.Local, untilIdle bool, opts initload.Options) error {
	loaders, capture := f.loadParts()
	return l.RunWith(ctx, untilIdle, f.lastSent, func(ctx context.Context) error {
		return initload.Run(ctx, f.cfg, f.aws.Loads, f.src, loaders, capture, opts, f.log)
	})
}

// initialLoad runs the initial load with the loops beside it and returns
// once every table is handed over to the change stream (the loops are
// stopped again; changes may still be queued).
func (f *fixture) initialLoad(ctx context.Context, opts initload.Options) error {
	done := errors.New("initial load handed over")
	loaders, capture := f.loadParts()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	err := f.local().RunWith(ctx, false, f.lastSent, func(ctx context.Context) error {
		if err := initload.Run(ctx, f.cfg, f.aws.Loads, f.src, loaders, capture, opts, f.log); err != nil {
			return err
		}
		cancel(done)
		return nil
	})
	if errors.Is(err, done) {
		return nil
	}
	return err
}

// schemaDiff runs the schema-diff function's work once.
func (f *fixture) schemaDiff(ctx context.Context, force bool) (schemadiff.Result, error) {
	return schemadiff.Run(ctx, f.cfg.Name, f.p.Syncers(), f.p.SchemaStream(runner.InstanceID()), force, nil, f.log)
}

// setConfig makes the fixture's pipeline run with cfg from now on (the
// drains it builds read it; targets and connections stay as opened).
func (f *fixture) setConfig(cfg *config.Config) {
	f.cfg = cfg
	f.p.Config = cfg
}
