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
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/testenv"
)

const crashDDL = `
CREATE TABLE parent (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE child (id bigserial PRIMARY KEY, parent_id int NOT NULL REFERENCES parent(id) ON DELETE CASCADE, note text);
CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL, filler text);`

const (
	crashAccounts = 2000
	crashBalance  = 1000 // per account; transfers keep the sum
	crashParents  = 200
)

// TestKillNineAtRandomMomentsLosesNothing runs the local runner binary
// under a concurrent write load and SIGKILLs it at random moments, then
// lets one last run catch up: the target must end up equal to the source,
// and must never show half a source transaction on the way.
// PGFERRY_CHAOS_SEED replays a run's kill schedule.
func TestKillNineAtRandomMomentsLosesNothing(t *testing.T) {
	forEachCapture(t, func(t *testing.T, mode string) {
		if testing.Short() {
			t.Skip("builds the runner binary and kills it under load for about 35 s")
		}
		seed := chaosSeed(t)
		rng := rand.New(rand.NewPCG(seed, 0x5eed))

		bin := buildLocalRunner(t)

		// The extra YAML continues the fixture's drain: section (it ends with
		// "drain:\n  interval: 100ms\n"). A short lease lets the next runner
		// drain soon after a killed one; a short visibility brings a killed
		// runner's in-flight messages back quickly; small batches make many.
		f := newFixtureMode(t, mode, crashDDL, "  lease: 5s\napply:\n  visibility: 3s\nbatch:\n  max_rows: 200\n")
		if got, want := f.cfg.Drain.Lease.Duration, 5*time.Second; got != want {
			t.Fatalf("drain.lease = %s, want %s: the fixture's YAML layout changed", got, want)
		}
		cfgPath := writeConfig(t, f.cfgYAML)

		// Rows that exist before capture is installed travel through the
		// copy-existing path of the first runner that drains.
		f.exec(`INSERT INTO parent SELECT g, 'p' || g FROM generate_series(1, $1::int) g`, crashParents)
		f.exec(`INSERT INTO child (parent_id, note) SELECT g % $1::int + 1, 'c' || g FROM generate_series(1, 1000) g`, crashParents)
		f.exec(`INSERT INTO accounts SELECT g, $2::bigint, repeat('x', 84) FROM generate_series(1, $1::int) g`, crashAccounts, crashBalance)

		logs := keepLogs(t)

		// Write load, bounded in time.
		const loadFor = 16 * time.Second
		loadCtx, stopLoad := context.WithTimeout(context.Background(), loadFor)
		defer stopLoad()
		load := startCrashLoad(t, f, loadCtx, 4, rng.Uint64())

		// Atomicity: transfers keep the sum of balances, and the seed rows
		// arrive in one source transaction, so the target only ever holds no
		// accounts or all of them with the full sum.
		watchCtx, stopWatch := context.WithCancel(context.Background())
		defer stopWatch()
		watched := make(chan error, 1)
		go func() { watched <- watchAccounts(watchCtx, f) }()

		if os.Getenv("PGFERRY_TEST_LOG") != "" {
			go monitor(watchCtx, f, logs.section("queue depth and watermark"))
		}

		// The kill schedule spans the load: each runner lives 300-1500 ms, and
		// the rest of the load's time is spread over the pauses between runs,
		// in which leases expire and in-flight messages come back.
		started := time.Now()
		cycles := 6 + rng.IntN(3)
		lives, weights := make([]time.Duration, cycles), make([]float64, cycles-1)
		idle, sum := loadFor-time.Second, 0.0
		for i := range cycles {
			lives[i] = time.Duration(300+rng.IntN(1201)) * time.Millisecond
			idle -= lives[i]
		}
		for i := range weights {
			weights[i] = 0.2 + rng.Float64()
			sum += weights[i]
		}
		for i, life := range lives {
			p := startRunner(t, bin, cfgPath, logs, fmt.Sprintf("run %d, started %s, killed after %s", i+1, time.Now().Format("15:04:05.000"), life))
			time.Sleep(life)
			p.kill()
			if i < cycles-1 {
				time.Sleep(time.Duration(float64(idle) * weights[i] / sum))
			}
		}
		t.Logf("%d kill -9 cycles in %s", cycles, time.Since(started).Round(time.Millisecond))

		stats := load.wait()
		t.Logf("load: %d transactions committed, %d rolled back by the source (deadlock, FK race)", stats.committed, stats.aborted)
		if stats.committed == 0 {
			t.Fatal("the write load committed nothing")
		}
		// How much the killed runners did (batches checkpointed as shipped),
		// for the log: a run in which they did nothing tests only the final run.
		shippedByKilled := shipped(t, f)

		// The last run must catch up and verify by itself.
		caught := time.Now()
		// A hang guard, not a speed test, generous for a busy machine.
		ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
		defer cancel()
		var stdout bytes.Buffer
		cmd := exec.CommandContext(ctx, bin, "--config", cfgPath, "--until-idle", "--verify", "--timeout", "5m")
		cmd.Stdout = &stdout
		cmd.Stderr = logs.section("final run (--until-idle --verify)")
		err := cmd.Run()
		t.Logf("killed runners shipped %d batches; the final run shipped %d more and caught up and verified in %s",
			shippedByKilled, shipped(t, f)-shippedByKilled, time.Since(caught).Round(time.Millisecond))
		if err != nil {
			t.Fatalf("final --until-idle --verify run: %v\nstdout:\n%s", err, stdout.String())
		}
		if out := stdout.String(); !strings.Contains(out, "all") || !strings.Contains(out, "match") {
			t.Fatalf("final run's stdout does not report that all tables match:\n%s", out)
		}

		stopWatch()
		if err := <-watched; err != nil {
			t.Error(err)
		}
		f.assertSame()
		for _, tbl := range []string{"parent", "child", "accounts"} {
			var n int64
			if err := f.src.QueryRow(context.Background(), "SELECT count(*) FROM "+pgx.Identifier{tbl}.Sanitize()).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				t.Errorf("source table %s is empty: the test proves nothing about it", tbl)
			}
		}
		if got, want := f.targetInt(`SELECT sum(balance) FROM accounts`), int64(crashAccounts*crashBalance); got != want {
			t.Errorf("sum of balances on the target = %d, want %d", got, want)
		}
	})
}

// shipped returns how many batches the drain has checkpointed as shipped.
func shipped(t *testing.T, f *fixture) uint64 {
	t.Helper()
	cp, err := f.aws.State.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return cp.Seq
}

// buildLocalRunner compiles functions/local once for the test.
func buildLocalRunner(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "pgferry-local")
	cmd := exec.Command("go", "build", "-o", bin, "./functions/local")
	cmd.Dir = testenv.Root()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./functions/local: %v\n%s", err, out)
	}
	return bin
}

// runnerLogs keeps every runner's stderr, shown only when the test fails
// (or PGFERRY_TEST_LOG is set, which also turns on debug logging).
type runnerLogs struct {
	mu  sync.Mutex
	all []*section
}

type section struct {
	title string
	mu    sync.Mutex
	buf   bytes.Buffer
}

func (s *section) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (l *runnerLogs) section(title string) *section {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := &section{title: title}
	l.all = append(l.all, s)
	return s
}

func (l *runnerLogs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, s := range l.all {
		s.mu.Lock()
		fmt.Fprintf(&b, "=== runner stderr: %s ===\n%s", s.title, s.buf.String())
		s.mu.Unlock()
	}
	return b.String()
}

type runnerProc struct {
	cmd  *exec.Cmd
	once sync.Once
}

// startRunner starts the runner in continuous mode; the process is killed
// at cleanup if the test has not killed it.
func startRunner(t *testing.T, bin, cfgPath string, logs *runnerLogs, title string) *runnerProc {
	t.Helper()
	args := []string{"--config", cfgPath}
	if os.Getenv("PGFERRY_TEST_LOG") != "" {
		args = append(args, "--log-level", "debug")
	}
	cmd := exec.Command(bin, args...)
	cmd.Stderr = logs.section(title)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start runner: %v", err)
	}
	p := &runnerProc{cmd: cmd}
	t.Cleanup(p.kill)
	return p
}

// kill sends SIGKILL and reaps the process.
func (p *runnerProc) kill() {
	p.once.Do(func() {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
	})
}

type loadStats struct{ committed, aborted int64 }

type crashLoad struct {
	wg    sync.WaitGroup
	stats loadStats
}

func (l *crashLoad) wait() loadStats {
	l.wg.Wait()
	return l.stats
}

// startCrashLoad runs small source transactions on workers goroutines
// until ctx ends. Unexpected errors fail the test.
func startCrashLoad(t *testing.T, f *fixture, ctx context.Context, workers int, seed uint64) *crashLoad {
	l := &crashLoad{}
	var nextParent atomic.Int64
	nextParent.Store(100000)
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for ctx.Err() == nil {
				err := pgx.BeginFunc(ctx, f.src, func(tx pgx.Tx) error {
					return crashTxn(ctx, tx, rng, &nextParent)
				})
				switch {
				case err == nil:
					atomic.AddInt64(&l.stats.committed, 1)
				case ctx.Err() != nil:
					return
				case expectedRollback(err):
					atomic.AddInt64(&l.stats.aborted, 1)
				default:
					t.Errorf("write load: %v", err)
					return
				}
				time.Sleep(time.Duration(rng.IntN(3)) * time.Millisecond)
			}
		}()
	}
	return l
}

// crashTxn is one small source transaction of the load.
func crashTxn(ctx context.Context, tx pgx.Tx, rng *rand.Rand, nextParent *atomic.Int64) error {
	run := func(sql string, args ...any) error {
		_, err := tx.Exec(ctx, sql, args...)
		return err
	}
	// someParent picks an existing parent near a random id.
	someParent := `(SELECT id FROM parent WHERE id >= $1 ORDER BY id LIMIT 1)`
	switch p := rng.IntN(100); {
	case p < 50: // transfer between two accounts, lower id first (no deadlock)
		a, b := 1+rng.IntN(crashAccounts), 1+rng.IntN(crashAccounts)
		if a == b {
			b = a%crashAccounts + 1
		}
		amt := int64(1 + rng.IntN(100))
		if a > b {
			a, b, amt = b, a, -amt
		}
		if err := run(`UPDATE accounts SET balance = balance - $2 WHERE id = $1`, a, amt); err != nil {
			return err
		}
		return run(`UPDATE accounts SET balance = balance + $2 WHERE id = $1`, b, amt)
	case p < 75: // new children for an existing parent
		return run(`INSERT INTO child (parent_id, note) SELECT `+someParent+`, 'n' || g FROM generate_series(1, $2::int) g`,
			1+rng.IntN(crashParents), 1+rng.IntN(3))
	case p < 85: // delete a few children
		return run(`DELETE FROM child WHERE id IN (SELECT id FROM child WHERE parent_id = `+someParent+` LIMIT 2)`,
			1+rng.IntN(crashParents))
	case p < 92: // touch children's notes
		return run(`UPDATE child SET note = note || '+' WHERE parent_id = `+someParent, 1+rng.IntN(crashParents))
	case p < 97: // replace a parent: delete it (cascading), add a new one with children
		if err := run(`DELETE FROM parent WHERE id = `+someParent, 1+rng.IntN(crashParents)); err != nil {
			return err
		}
		id := nextParent.Add(1)
		if err := run(`INSERT INTO parent VALUES ($1::int, 'new ' || $1::int)`, id); err != nil {
			return err
		}
		if err := run(`INSERT INTO child (parent_id, note) SELECT $1::int, 'of new' FROM generate_series(1, 3)`, id); err != nil {
			return err
		}
		// Move the child across parents within the transaction too.
		return run(`UPDATE child SET parent_id = $1::int WHERE id = (SELECT id FROM child WHERE parent_id <> $1::int ORDER BY id DESC LIMIT 1)`, id)
	default: // a 50-row statement
		return run(`UPDATE accounts SET filler = md5(random()::text) WHERE id BETWEEN $1 AND $1 + 49`, 1+rng.IntN(crashAccounts-49))
	}
}

// expectedRollback reports source errors that concurrent writers cause by
// themselves: deadlocks, serialization failures, and a child inserted for
// a parent another transaction just deleted.
func expectedRollback(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.Code {
	case "40P01", "40001", "23503":
		return true
	}
	return false
}

// watchAccounts samples the target until ctx ends and reports the first
// state that no source transaction boundary could have produced.
func watchAccounts(ctx context.Context, f *fixture) error {
	for {
		var n, sum int64
		err := f.dst.QueryRow(ctx, `SELECT count(*), coalesce(sum(balance), 0) FROM accounts`).Scan(&n, &sum)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("watch target accounts: %w", err)
		}
		if !(n == 0 && sum == 0) && !(n == crashAccounts && sum == crashAccounts*crashBalance) {
			return fmt.Errorf("target showed half a source transaction: %d accounts with balance sum %d (want 0 and 0, or %d and %d)",
				n, sum, crashAccounts, crashAccounts*crashBalance)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// monitor writes the queue depth and the target's watermark every 100 ms,
// to see where a stalled pipeline waits.
func monitor(ctx context.Context, f *fixture, w io.Writer) {
	group := batch.Group(f.cfg.Name, "replica")
	for ctx.Err() == nil {
		vis, inflight, err := f.aws.Queue.Depth(ctx)
		wm, werr := f.targets["replica"].Watermark(ctx, group)
		cp, cerr := f.aws.State.Load(ctx)
		fmt.Fprintf(w, "%s queued %d in flight %d (%v) | applied %s (%v) | shipped %s seq %d (%v)\n",
			time.Now().Format("15:04:05.000"), vis, inflight, err, wm, werr, cp.LastSent, cp.Seq, cerr)
		time.Sleep(100 * time.Millisecond)
	}
}
