package runner_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/fault"
	"github.com/pgferry/pgferry/shared/testenv"
)

// buildFaultRunner compiles functions/local with the fault points armed.
func buildFaultRunner(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "pgferry-local-faults")
	cmd := exec.Command("go", "build", "-tags", "faults", "-o", bin, "./functions/local")
	cmd.Dir = testenv.Root()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build -tags faults ./functions/local: %v\n%s", err, out)
	}
	return bin
}

// pgbenchPath finds pgbench on PATH or beside the server binaries.
func pgbenchPath(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("pgbench"); err == nil {
		return p
	}
	if m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pgbench"); len(m) > 0 {
		return m[len(m)-1]
	}
	t.Fatal("pgbench not found (localstack/pg-up installs it with PostgreSQL)")
	return ""
}

// TestKillAtEveryStageLosesNothing crashes the runner (SIGKILL, from a
// fault point inside the process) at every stage of the pipeline in turn,
// twice each, under pgbench plus a foreign-key load: after the window's
// snapshot is saved, after the send and before the checkpoint, after the
// checkpoint, inside the apply transaction, and after the apply committed
// but before the message is deleted. A last run must catch up and the
// target must equal the source exactly, table by table.
//
// Every crash happens by construction, not by luck: the writes flow until
// the last crash, so every point stays reachable, and a runner that has not
// reached its point in time is killed and started again, armed at the
// point's first hit, until the point's mark says it crashed there (bounded
// in tries and time). PGFERRY_CHAOS_SEED replays a run's schedule.
func TestKillAtEveryStageLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the runner with fault points and crashes it under load for about a minute")
	}
	seed := chaosSeed(t)
	bin := buildFaultRunner(t)
	pgbench := pgbenchPath(t)
	forEachCapture(t, func(t *testing.T, mode string) {
		testKillAtEveryStage(t, mode, bin, pgbench, rand.New(rand.NewPCG(seed, 0x57a6e)))
	})
}

// The bounds of the crash schedule. They only stop a run that cannot
// crash where it should; a busy machine makes a crash slower, never
// impossible, so they are several times what a quiet machine needs (a
// crash there takes a start, a lease expiry of 5 s and a few batches).
const (
	// stageTryFor is how long one runner may take to reach its point.
	stageTryFor = 60 * time.Second
	// stageTries is how many runners one scheduled crash may take.
	stageTries = 4
	// stageBudget bounds the whole schedule of one capture mode.
	stageBudget = 10 * time.Minute
)

func testKillAtEveryStage(t *testing.T, mode, bin, pgbench string, rng *rand.Rand) {
	f := newFixtureMode(t, mode, crashDDL, "  lease: 5s\napply:\n  visibility: 3s\nbatch:\n  max_rows: 300\n")
	cfgPath := writeConfig(t, f.cfgYAML)
	// pgbench's schema on both sides (its history table has no key), its
	// rows on the source only: they travel through capture.
	for _, c := range []struct{ dsn, steps string }{{f.srcDSN, "dtgvp"}, {f.dstDSN, "dtp"}} {
		out, err := exec.Command(pgbench, "-i", "-q", "-s", "1", "-I", c.steps, c.dsn).CombinedOutput()
		if err != nil {
			t.Fatalf("pgbench -i: %v\n%s", err, out)
		}
	}
	f.exec(`INSERT INTO parent SELECT g, 'p' || g FROM generate_series(1, $1::int) g`, crashParents)
	f.exec(`INSERT INTO accounts SELECT g, $2::bigint, repeat('x', 84) FROM generate_series(1, $1::int) g`, crashAccounts, crashBalance)

	logs := keepLogs(t)

	// Every apply-side and drain-side point, twice, in a seeded order, each
	// first armed at a seeded hit count.
	points := []string{fault.DrainSent, fault.DrainCheckpointed, fault.ApplyStaged, fault.ApplyCommitted}
	if mode == config.CaptureTrigger {
		points = append(points, fault.DrainWindowOpened) // slot capture has no windows
	}
	var schedule []string
	for range 2 {
		schedule = append(schedule, points...)
	}
	rng.Shuffle(len(schedule), func(i, j int) { schedule[i], schedule[j] = schedule[j], schedule[i] })

	// The writes go on until the last crash: a point is only reached while
	// there is something to drain and apply, however long the crashes take.
	loadCtx, stopLoad := context.WithCancel(context.Background())
	defer stopLoad()
	load := startCrashLoad(t, f, loadCtx, 2, rng.Uint64())
	bench := startBench(loadCtx, pgbench, f.srcDSN)

	started := time.Now()
	fired, tries := map[string]int{}, map[string]int{}
	for i, point := range schedule {
		hit := 1 + rng.IntN(3)
		for try := 1; ; try++ {
			if try > stageTries || time.Since(started) > stageBudget {
				t.Fatalf("crash %d of %d: %s did not fire in %d tries (%s into the schedule); crashes so far %v",
					i+1, len(schedule), point, try-1, time.Since(started).Round(time.Second), fired)
			}
			tries[point]++
			title := fmt.Sprintf("crash %d of %d, try %d, %s=%s@%d", i+1, len(schedule), try, fault.EnvSpec, point, hit)
			if crashAt(t, bin, cfgPath, point, hit, logs.section(title)) {
				fired[point]++
				break
			}
			// Not reached in time (a slow start, a lease to wait for): the
			// next runner crashes at the point's first hit.
			hit = 1
		}
		time.Sleep(time.Duration(200+rng.IntN(600)) * time.Millisecond)
	}
	stopLoad()
	for _, p := range points {
		if fired[p] < 2 {
			t.Errorf("fault point %s fired %d times, want 2: the test did not crash there", p, fired[p])
		}
	}
	t.Logf("%d crashes in %s; crashes per point %v, runners per point %v",
		len(schedule), time.Since(started).Round(time.Millisecond), fired, tries)

	stats := load.wait()
	benchTxns, err := bench.wait()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("load: %d FK transactions committed; pgbench: %d transactions", stats.committed, benchTxns)

	// A hang guard, not a speed test: the last run catches up on whatever
	// the crashed runners left, on however busy a machine.
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	var stdout bytes.Buffer
	final := exec.CommandContext(ctx, bin, "--config", cfgPath, "--until-idle", "--verify", "--timeout", "5m")
	final.Stdout, final.Stderr = &stdout, logs.section("final run (--until-idle --verify)")
	if err := final.Run(); err != nil {
		t.Fatalf("final --until-idle --verify run: %v\nstdout:\n%s", err, stdout.String())
	}
	f.assertSame()
	if got, want := f.targetInt(`SELECT sum(balance) FROM accounts`), int64(crashAccounts*crashBalance); got != want {
		t.Errorf("sum of balances on the target = %d, want %d", got, want)
	}
	if got := f.targetInt(`SELECT count(*) FROM pgbench_history`); got == 0 {
		t.Error("pgbench_history is empty on the target: pgbench's writes did not arrive")
	}
}

// crashAt runs the runner with point armed at its hit-th hit and reports
// whether it crashed there: it died by SIGKILL and the fault's mark names
// the point. A runner that has not crashed after stageTryFor is killed
// and reported as not crashed. Any other end of the runner fails the test.
func crashAt(t *testing.T, bin, cfgPath, point string, hit int, stderr io.Writer) bool {
	t.Helper()
	spec := fmt.Sprintf("%s@%d", point, hit)
	mark := filepath.Join(t.TempDir(), "crash-mark")
	cmd := exec.Command(bin, "--config", cfgPath)
	cmd.Env = append(os.Environ(), fault.EnvSpec+"="+spec, fault.EnvMark+"="+mark)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	timedOut := false
	select {
	case err = <-done:
	case <-time.After(stageTryFor):
		_ = cmd.Process.Kill()
		err, timedOut = <-done, true
	}
	marked, rerr := os.ReadFile(mark)
	if rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		t.Fatal(rerr)
	}
	crashed := string(marked) == spec+"\n"
	var ee *exec.ExitError
	killed := errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL
	switch {
	case len(marked) > 0 && !crashed:
		t.Fatalf("runner armed with %s left the mark %q", spec, marked)
	case crashed && !killed:
		t.Fatalf("runner armed with %s marked its crash but ended with %v, not SIGKILL", spec, err)
	case crashed:
		return true // also when the crash and the timeout's kill coincide
	case !timedOut:
		t.Fatalf("runner armed with %s ended without crashing there: %v", spec, err)
	}
	return false
}

// bench runs pgbench, rate-limited, in 5-second rounds until its context
// ends, so the source never goes quiet while a crash is pending.
type bench struct {
	done chan struct{}
	txns int64
	err  error
}

func startBench(ctx context.Context, pgbench, dsn string) *bench {
	b := &bench{done: make(chan struct{})}
	go func() {
		defer close(b.done)
		for ctx.Err() == nil {
			out, err := exec.Command(pgbench, "-n", "-c", "2", "-R", "200", "-T", "5", "-b", "tpcb-like", dsn).CombinedOutput()
			n, ok := processed(string(out))
			if err != nil || !ok {
				b.err = fmt.Errorf("pgbench: %v\n%s", err, out)
				return
			}
			b.txns += n
		}
	}()
	return b
}

// processed reads pgbench's "number of transactions actually processed".
func processed(out string) (int64, bool) {
	const prefix = "number of transactions actually processed: "
	n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimPrefix(firstLine(out, prefix), prefix)), 10, 64)
	return n, err == nil
}

// wait returns how many transactions pgbench committed in all rounds.
func (b *bench) wait() (int64, error) {
	<-b.done
	if b.err == nil && b.txns == 0 {
		return 0, errors.New("pgbench committed no transaction")
	}
	return b.txns, b.err
}

func firstLine(s, prefix string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}
