package runner_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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
// several times each, under pgbench plus a foreign-key load: after the
// window's snapshot is saved, after the send and before the checkpoint,
// after the checkpoint, inside the apply transaction, and after the apply
// committed but before the message is deleted. A last run must catch up
// and the target must equal the source exactly, table by table.
// PGFERRY_CHAOS_SEED replays a run's schedule.
func TestKillAtEveryStageLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the runner with fault points and crashes it under load for about 40 s")
	}
	seed := chaosSeed(t)
	bin := buildFaultRunner(t)
	pgbench := pgbenchPath(t)
	forEachCapture(t, func(t *testing.T, mode string) {
		testKillAtEveryStage(t, mode, bin, pgbench, rand.New(rand.NewPCG(seed, 0x57a6e)))
	})
}

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
	// at a seeded hit count.
	points := []string{fault.DrainSent, fault.DrainCheckpointed, fault.ApplyStaged, fault.ApplyCommitted}
	if mode == config.CaptureTrigger {
		points = append(points, fault.DrainWindowOpened) // slot capture has no windows
	}
	var schedule []string
	for range 2 {
		schedule = append(schedule, points...)
	}
	rng.Shuffle(len(schedule), func(i, j int) { schedule[i], schedule[j] = schedule[j], schedule[i] })

	loadFor := time.Duration(len(schedule))*2500*time.Millisecond + 2*time.Second
	loadCtx, stopLoad := context.WithTimeout(context.Background(), loadFor)
	defer stopLoad()
	load := startCrashLoad(t, f, loadCtx, 2, rng.Uint64())
	bench := exec.Command(pgbench, "-n", "-c", "2", "-T", strconv.Itoa(int(loadFor/time.Second)-1), "-b", "tpcb-like", f.srcDSN)
	var benchOut bytes.Buffer
	bench.Stdout, bench.Stderr = &benchOut, &benchOut
	if err := bench.Start(); err != nil {
		t.Fatal(err)
	}

	fired := map[string]int{}
	for i, point := range schedule {
		hit := 1 + rng.IntN(3)
		spec := fmt.Sprintf("%s@%d", point, hit)
		sec := logs.section(fmt.Sprintf("run %d, PGFERRY_FAULT=%s", i+1, spec))
		cmd := exec.Command(bin, "--config", cfgPath)
		cmd.Env = append(os.Environ(), "PGFERRY_FAULT="+spec)
		cmd.Stderr = sec
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("run %d (%s) ended without the fault's SIGKILL: %v", i+1, spec, err)
			}
			fired[point]++
		case <-time.After(8 * time.Second):
			// The point was not reached this often in time: kill it anyway.
			_ = cmd.Process.Kill()
			<-done
		}
		time.Sleep(time.Duration(200+rng.IntN(600)) * time.Millisecond)
	}
	for _, p := range points {
		if fired[p] == 0 {
			t.Errorf("fault point %s never fired: the test did not crash there", p)
		}
	}
	t.Logf("crashes per point: %v", fired)

	stats := load.wait()
	_ = bench.Wait()
	if !strings.Contains(benchOut.String(), "number of transactions actually processed") {
		t.Fatalf("pgbench did not run:\n%s", benchOut.String())
	}
	t.Logf("load: %d FK transactions committed; pgbench: %s", stats.committed,
		strings.TrimSpace(firstLine(benchOut.String(), "number of transactions actually processed")))

	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	var stdout bytes.Buffer
	final := exec.CommandContext(ctx, bin, "--config", cfgPath, "--until-idle", "--verify", "--timeout", "120s")
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

func firstLine(s, prefix string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}
