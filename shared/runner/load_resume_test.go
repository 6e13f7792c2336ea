package runner_test

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/load"
)

// TestKilledLoadResumesWithoutRecopying runs the local runner binary with
// --initial-load, SIGKILLs it once some chunks are copied, and runs it
// again: the second run must resume the same plan, copy only the chunks
// the first did not finish (no chunk is copied twice), catch up with the
// writes made meanwhile, and verify equal.
func TestKilledLoadResumesWithoutRecopying(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the runner binary and kills it mid-load")
	}
	bin := buildLocalRunner(t)
	forEachCapture(t, func(t *testing.T, mode string) { testKilledLoadResumes(t, bin, mode) })
}

func testKilledLoadResumes(t *testing.T, bin, mode string) {
	f := newFixtureMode(t, mode, `
CREATE TABLE big (id int PRIMARY KEY, grp int, t text);
CREATE INDEX big_grp ON big (grp);
CREATE TABLE small (k text PRIMARY KEY, v int);`, "load:\n  chunk_rows: 2000\n  parallelism: 1\n")
	ctx := context.Background()
	f.exec(`INSERT INTO big SELECT g, g % 50, md5(g::text) FROM generate_series(1, 300000) g`)
	f.exec(`INSERT INTO small SELECT 'k' || g, g FROM generate_series(1, 20000) g`)
	cfgPath := writeConfig(t, f.cfgYAML)
	logs := keepLogs(t)

	// Writes run through both runs and the pause between them.
	wctx, stopWrites := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; wctx.Err() == nil; i++ {
			_, err := f.src.Exec(wctx, `UPDATE big SET t = 'w' || $1::text WHERE id = $1::int * 7919 % 300000 + 1`, i)
			if err == nil {
				_, err = f.src.Exec(wctx, `DELETE FROM big WHERE id = $1::int * 104729 % 300000 + 1`, i)
			}
			if err != nil && wctx.Err() == nil {
				t.Errorf("write load: %v", err)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	defer func() { stopWrites(); wg.Wait() }()

	store := f.aws.Loads
	tbl := batch.Table{Schema: "public", Name: "big"}
	first := exec.Command(bin, "--config", cfgPath, "--initial-load", "--until-idle", "--timeout", "5m")
	first.Stderr = logs.section("first run (killed mid-load)")
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	p1 := &runnerProc{cmd: first}
	t.Cleanup(p1.kill)
	var plan *load.Plan
	var doneAtKill map[int]bool
	var err error
	// A hang guard, generous for a busy machine: ten chunks of 2000 rows.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if time.Now().After(deadline) {
			t.Fatal("the first run copied fewer than 10 chunks of big in 3 min")
		}
		if plan, err = store.Plan(ctx, f.cfg.Name, "replica", tbl); err != nil {
			t.Fatal(err)
		}
		if plan != nil {
			if doneAtKill, err = store.Done(ctx, plan); err != nil {
				t.Fatal(err)
			}
			if len(doneAtKill) >= 10 {
				p1.kill()
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Chunks that finished between the poll and the kill count as done
	// before the kill too.
	if doneAtKill, err = store.Done(ctx, plan); err != nil {
		t.Fatal(err)
	}
	if len(doneAtKill) >= len(plan.Chunks) {
		t.Fatalf("all %d chunks were copied before the kill: the test proves nothing about resuming", len(plan.Chunks))
	}
	t.Logf("killed with %d of %d chunks of big copied", len(doneAtKill), len(plan.Chunks))
	time.Sleep(500 * time.Millisecond)

	var stdout bytes.Buffer
	second := exec.Command(bin, "--config", cfgPath, "--initial-load", "--until-idle", "--verify", "--timeout", "5m")
	second.Stdout = &stdout
	second.Stderr = logs.section("second run (resumes)")
	go func() { time.Sleep(2 * time.Second); stopWrites() }()
	if err := second.Run(); err != nil {
		t.Fatalf("second run: %v\nstdout:\n%s", err, stdout.String())
	}
	if out := stdout.String(); !strings.Contains(out, "all") || !strings.Contains(out, "match") {
		t.Fatalf("second run does not report that all tables match:\n%s", out)
	}
	again, err := store.Plan(ctx, f.cfg.Name, "replica", tbl)
	if err != nil {
		t.Fatal(err)
	}
	if again.LoadID != plan.LoadID || !again.Finished {
		t.Fatalf("after the second run the plan is %q (finished %v), want the first run's %q, finished", again.LoadID, again.Finished, plan.LoadID)
	}
	copies, err := store.Copies(ctx, plan)
	if err != nil {
		t.Fatal(err)
	}
	if len(copies) != len(plan.Chunks) {
		t.Errorf("%d of %d chunks recorded", len(copies), len(plan.Chunks))
	}
	for n, c := range copies {
		if c > 1 {
			t.Errorf("chunk %d was copied %d times", n, c)
		}
		if doneAtKill[n] && c != 1 {
			t.Errorf("chunk %d, done before the kill, has %d copies", n, c)
		}
	}
	if !strings.Contains(logs.String(), "resuming") {
		t.Error("the second run's log does not say it resumed")
	}
	stopWrites()
	wg.Wait()
	f.replicate()
	f.assertSame()
	if got := f.targetInt(`SELECT count(*) FROM pg_indexes WHERE indexname = 'big_grp'`); got != 1 {
		t.Error("the secondary index of big was not rebuilt")
	}
}
