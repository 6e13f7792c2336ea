package runner_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgferry/pgferry/shared/apply"
	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/runner"
)

// TestBenchR7PeakRSS is benchmark R7, run by make bench
// (PGFERRY_BENCH_R7=1): the peak RSS of the drain and of the apply, each
// in a process of its own (this test binary run again as
// TestR7Child), for a 10k-row batch (goal <= 128 MB) and for one N-row
// transaction in slot mode (goal <= 256 MB; rows of about 100 bytes).
// PGFERRY_BENCH_R7_ROWS lists the transaction sizes (default
// 1000000,3000000): peak RSS must not grow with them.
func TestBenchR7PeakRSS(t *testing.T) {
	if os.Getenv("PGFERRY_BENCH_R7") == "" {
		t.Skip("benchmark: set PGFERRY_BENCH_R7=1 (make bench does)")
	}
	sizes := []int{1_000_000, 3_000_000}
	if s := os.Getenv("PGFERRY_BENCH_R7_ROWS"); s != "" {
		sizes = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				t.Fatalf("PGFERRY_BENCH_R7_ROWS=%q: %v", s, err)
			}
			sizes = append(sizes, n)
		}
	}
	const row = `g, repeat(md5(g::text), 3)` // ~100 bytes a row
	type workload struct {
		name    string
		maxRows int
		write   string
		goalMB  int
	}
	ws := []workload{{"10k-row batch", 10_000,
		`DO $$ BEGIN FOR i IN 0..9 LOOP INSERT INTO big SELECT ` + row + ` FROM generate_series(i*1000+1, i*1000+1000) g; COMMIT; END LOOP; END $$`, 128}}
	for _, n := range sizes {
		ws = append(ws, workload{fmt.Sprintf("one %d-row transaction", n), 5000,
			fmt.Sprintf(`INSERT INTO big SELECT %s FROM generate_series(1, %d) g`, row, n), 256})
	}
	for _, w := range ws {
		t.Run(w.name, func(t *testing.T) {
			f := newFixtureMode(t, config.CaptureSlot, `CREATE TABLE big (id int PRIMARY KEY, v text)`,
				fmt.Sprintf("batch:\n  max_rows: %d\n", w.maxRows))
			f.replicate() // installs the slot
			cfgPath := filepath.Join(t.TempDir(), "pipeline.yaml")
			if err := os.WriteFile(cfgPath, []byte(f.cfgYAML), 0o600); err != nil {
				t.Fatal(err)
			}
			f.exec(w.write)
			drainKB, drainT := r7Child(t, "drain", cfgPath)
			applyKB, applyT := r7Child(t, "apply", cfgPath)
			f.assertSame()
			fmt.Printf("R7  %-28s drain peak RSS %4d MB (%s), apply peak RSS %4d MB (%s) (goal <= %d MB)\n",
				w.name+":", drainKB>>10, drainT.Round(time.Second), applyKB>>10, applyT.Round(time.Second), w.goalMB)
		})
	}
}

// r7Child runs role (drain or apply) in a child process and returns its
// peak RSS in KiB and how long it ran.
func r7Child(t *testing.T, role, cfgPath string) (int64, time.Duration) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestR7Child$", "-test.count=1")
	cmd.Env = append(os.Environ(), "PGFERRY_R7_ROLE="+role, "PGFERRY_R7_CONFIG="+cfgPath)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "PASS") {
		t.Fatalf("%s child: %v\n%s", role, err, out)
	}
	return cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss, time.Since(start)
}

// TestR7Child is one side of TestBenchR7PeakRSS: it drains the pipeline
// until caught up, or applies what is queued until the target holds what
// was shipped.
func TestR7Child(t *testing.T) {
	role := os.Getenv("PGFERRY_R7_ROLE")
	if role == "" {
		t.Skip("run by TestBenchR7PeakRSS")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Hour)
	defer cancel()
	data, err := os.ReadFile(os.Getenv("PGFERRY_R7_CONFIG"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(data, os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	env, err := runner.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := runner.New(env, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer p.Close()
	if err := p.OpenSource(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.OpenTargets(ctx, false); err != nil {
		t.Fatal(err)
	}
	if err := p.OpenAWS(ctx, false); err != nil {
		t.Fatal(err)
	}
	if role == "drain" {
		d := p.Drainer(runner.InstanceID(), nil, nil)
		for {
			st, err := d.Run(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.CaughtUp {
				return
			}
		}
	}
	cp, err := p.Res.State.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h := &apply.Handler{Pipeline: cfg.Name, Targets: p.Appliers(), Payloads: p.Res.Payloads, MaxAttempts: cfg.Apply.MaxAttempts}
	group := batch.Group(cfg.Name, cfg.TargetNames()[0])
	for {
		wm, err := h.Targets[cfg.TargetNames()[0]].Watermark(ctx, group)
		if err != nil {
			t.Fatal(err)
		}
		if wm.Compare(cp.LastSent) >= 0 {
			return
		}
		msgs, err := p.Res.Queue.Receive(ctx, 10, time.Second, 30*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			if _, _, err := h.Handle(ctx, m.Body); err != nil {
				t.Fatal(err)
			}
			if err := p.Res.Queue.Delete(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
	}
}
