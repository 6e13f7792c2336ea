package runner_test

import (
	"context"
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
	"github.com/pgferry/pgferry/shared/load"
	"github.com/pgferry/pgferry/shared/runner"
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
	aws            *runner.AWS
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
	f, _ := fixtureFrom(t, ddl, ddl, func(src, dst string) string {
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
	return f
}

// fixtureFrom creates a source and a target database, runs srcDDL and
// dstDDL in them, and builds the pipeline from the YAML that yaml renders
// for their DSNs, with its queues, state table and bucket. It returns the
// targets' pools (closed when the test ends) beside the fixture.
func fixtureFrom(t *testing.T, srcDDL, dstDDL string, yaml func(src, dst string) string) (*fixture, []*pgxpool.Pool) {
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
	if f.aws, err = runner.ConnectAWS(ctx, cfg, env.AWS, true); err != nil {
		t.Fatal(err)
	}
	targets, pools, err := runner.Targets(ctx, cfg, env.DSNs, f.log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, p := range pools {
			p.Close()
		}
	})
	f.targets = targets
	return f, pools
}

func (f *fixture) exec(sql string, args ...any) { f.t.Helper(); testenv.Exec(f.t, f.src, sql, args...) }

func (f *fixture) local() *runner.Local {
	return &runner.Local{
		Cfg:     f.cfg,
		Drainer: runner.NewDrainer(f.cfg, f.src, f.aws, runner.InstanceID(), f.log, nil),
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
	res, err := verify.Compare(context.Background(), f.src, map[string]*pgxpool.Pool{"replica": f.dst}, f.cfg)
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
// returns a loader of the pipeline's tables into targets.
func (f *fixture) loader(targets map[string]apply.Applier) *load.Loader {
	f.t.Helper()
	ctx := context.Background()
	capture, err := runner.LoadCapture(f.cfg, f.src, f.aws.State, f.log)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := capture.Install(ctx); err != nil {
		f.t.Fatal(err)
	}
	loader, err := runner.NewLoader(f.cfg, f.src, targets, capture, f.aws.Loads, nil, f.log)
	if err != nil {
		f.t.Fatal(err)
	}
	return loader
}
