package runner_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgferry/pgferry/shared/fault"
)

// msgAcquired is the debug line a drain logs once it holds the lease.
const msgAcquired = `msg="drain lease acquired"`

// leaseSpan is one stretch a runner surely held the drain lease.
type leaseSpan struct{ from, to time.Time }

// leaseSpans reads the "drain lease acquired"/"releasing" debug lines of
// one runner's log. A span still open at the end runs to the zero time.
func leaseSpans(t *testing.T, log string) []leaseSpan {
	t.Helper()
	var out []leaseSpan
	sc := bufio.NewScanner(strings.NewReader(log))
	for sc.Scan() {
		line := sc.Text()
		acquired := strings.Contains(line, msgAcquired)
		releasing := strings.Contains(line, `msg="drain lease releasing"`)
		if !acquired && !releasing {
			continue
		}
		ts, _ := strings.CutPrefix(strings.Fields(line)[0], "time=")
		at, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			t.Fatalf("cannot read the time of %q: %v", line, err)
		}
		if acquired {
			out = append(out, leaseSpan{from: at})
		} else if n := len(out); n > 0 {
			out[n-1].to = at
		}
	}
	return out
}

// TestTwoRunnersNeverDrainAtTheSameTime runs two runners on one pipeline
// under a write load: they may take turns, but the stretches in which each
// held the drain lease must never overlap, and together they must deliver
// everything. A drain keeps the lease until it catches up, so under a
// steady load one runner may hold it throughout; after the load the test
// waits until each runner has held it a few times, however long a busy
// machine takes to get there.
func TestTwoRunnersNeverDrainAtTheSameTime(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two runners side by side for several seconds")
	}
	bin := buildLocalRunner(t)
	f := newFixture(t, crashDDL, "  lease: 5s\napply:\n  visibility: 3s\nbatch:\n  max_rows: 100\n")
	f.exec(`INSERT INTO parent SELECT g, 'p' || g FROM generate_series(1, $1::int) g`, crashParents)
	f.exec(`INSERT INTO accounts SELECT g, $2::bigint, 'x' FROM generate_series(1, $1::int) g`, crashAccounts, crashBalance)
	cfgPath := writeConfig(t, f.cfgYAML)
	logs := keepLogs(t)
	loadCtx, stopLoad := context.WithTimeout(context.Background(), 8*time.Second)
	defer stopLoad()
	load := startCrashLoad(t, f, loadCtx, 2, 7)
	var runners []*exec.Cmd
	var sections []*section
	for _, name := range []string{"runner A", "runner B"} {
		sec := logs.section(name)
		cmd := exec.Command(bin, "--config", cfgPath, "--log-level", "debug")
		cmd.Stderr = sec
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill() })
		runners, sections = append(runners, cmd), append(sections, sec)
	}
	load.wait()
	// Which runner wins the lease is up to the scheduler: wait for both to
	// have drained, with a bound that only a runner that never gets the
	// lease (a lease that is never released) exceeds.
	const turns = 2
	waitFor(t, 3*time.Minute, fmt.Sprintf("both runners to hold the drain lease %d times", turns), func() bool {
		return strings.Count(sections[0].String(), msgAcquired) >= turns && strings.Count(sections[1].String(), msgAcquired) >= turns
	})
	for _, cmd := range runners {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}
	a, b := leaseSpans(t, sections[0].String()), leaseSpans(t, sections[1].String())
	if len(a) == 0 || len(b) == 0 {
		t.Fatalf("lease spans: A %d, B %d; both runners should have drained in turn", len(a), len(b))
	}
	for _, x := range a {
		for _, y := range b {
			if x.to.IsZero() || y.to.IsZero() {
				t.Fatalf("a lease span never closed (A %v, B %v)", x, y)
			}
			if x.from.Before(y.to) && y.from.Before(x.to) {
				t.Fatalf("runners A and B held the drain lease at the same time: A %s..%s, B %s..%s",
					x.from.Format("15:04:05.000"), x.to.Format("15:04:05.000"), y.from.Format("15:04:05.000"), y.to.Format("15:04:05.000"))
			}
		}
	}
	t.Logf("lease spans: A %d, B %d, none overlapping", len(a), len(b))
	f.replicate()
	f.assertSame()
}

// TestCrashedHoldersLeaseExpiresAndWorkResumes crashes a runner while it
// holds the drain lease (after sending a batch, before checkpointing it).
// A second runner must wait for the lease to expire, take over, re-ship
// what was not checkpointed and finish with the target equal to the source.
func TestCrashedHoldersLeaseExpiresAndWorkResumes(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a lease to expire")
	}
	bin := buildFaultRunner(t)
	forEachCapture(t, func(t *testing.T, mode string) { testCrashedHolder(t, mode, bin) })
}

func testCrashedHolder(t *testing.T, mode, bin string) {
	// The second runner must find the lease still held, so the lease must
	// outlast its start on a busy machine: 15 s, where 5 s left a margin of
	// a few seconds between the crash and the second runner's first try.
	f := newFixtureMode(t, mode, `CREATE TABLE t (id int PRIMARY KEY, v text);`, "  lease: 15s\napply:\n  visibility: 3s\n")
	cfgPath := writeConfig(t, f.cfgYAML)
	logs := keepLogs(t)
	f.exec(`INSERT INTO t SELECT g, 'v' FROM generate_series(1, 100) g`)
	first := exec.Command(bin, "--config", cfgPath, "--log-level", "debug")
	first.Env = append(os.Environ(), "PGFERRY_FAULT="+fault.DrainSent+"@1")
	first.Stderr = logs.section("first runner (crashes holding the lease)")
	err := first.Run()
	crashed := time.Now()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("first runner: %v, want death by SIGKILL at %s", err, fault.DrainSent)
	}
	f.exec(`INSERT INTO t SELECT g, 'after the crash' FROM generate_series(101, 200) g`)

	secondLog := logs.section("second runner (--until-idle)")
	second := exec.Command(bin, "--config", cfgPath, "--until-idle", "--log-level", "debug", "--timeout", "60s")
	second.Stderr = secondLog
	if err := second.Run(); err != nil {
		t.Fatalf("second runner: %v", err)
	}
	if !strings.Contains(secondLog.String(), "another drain holds the lease") {
		t.Error("the second runner never found the crashed holder's lease: it should have waited for it to expire")
	}
	spans := leaseSpans(t, secondLog.String())
	if len(spans) == 0 || !spans[0].from.After(crashed) {
		t.Fatalf("the second runner's first lease %v does not follow the crash at %s", spans, crashed)
	}
	t.Logf("lease taken over %s after the crash", spans[0].from.Sub(crashed).Round(time.Millisecond))
	f.assertSame()
}
