package runner_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/testenv"
)

// Real schemas: public sample databases that nobody here wrote
// (testdata/samples/*/README.md says where each comes from and how it is
// loaded), replicated the way a new user would do it, with the least
// privileges the README asks for.

// sample is one vendored sample database and what the test does to it.
type sample struct {
	name string
	// load fills an empty database, connected as the tables' owner.
	load func(ctx context.Context, c *pgx.Conn) error
	// write runs one realistic statement of the application's workload.
	write func(ctx context.Context, p *pgxpool.Pool, rng *rand.Rand) error
	// ddl are schema changes made while the runner runs, each followed at
	// once by writes that need it.
	ddl []sampleDDL
}

type sampleDDL struct{ name, ddl, writes string }

var samples = []sample{pagila, chinook}

// TestSampleDatabasesReplicateUnderWritesAndDDL loads each sample into a
// source owned by a role without superuser, points a pipeline at an empty
// target whose role owns only its schema, and starts the runner with
// --initial-load while the sample's own application writes; once the load
// has handed every table over, the source's schema changes (a column with
// a default, a partition, a table with foreign keys, an enum label used at
// once, indexes created and dropped). After the writes stop, a run with
// --until-idle --verify must pass, every table must be equal row by row,
// and the target's catalog must equal the source's.
func TestSampleDatabasesReplicateUnderWritesAndDDL(t *testing.T) {
	bin := buildLocalRunner(t)
	for _, s := range samples {
		t.Run(s.name, func(t *testing.T) {
			forEachCapture(t, func(t *testing.T, mode string) { testSample(t, bin, s, mode) })
		})
	}
}

func testSample(t *testing.T, bin string, s sample, mode string) {
	ctx := context.Background()
	started := time.Now()
	f, cfgPath, owner := newSampleFixture(t, s, mode)
	logs := keepLogs(t)
	t.Logf("%s loaded into the source in %s", s.name, time.Since(started).Round(time.Millisecond))

	// The application keeps writing through everything below.
	wctx, stopWrites := context.WithCancel(ctx)
	defer stopWrites()
	w := startSampleWrites(t, wctx, s, owner, chaosSeed(t))

	run := startRunnerArgs(t, bin, logs, "runner (--initial-load, continuous)", "--config", cfgPath, "--initial-load")
	loaded := time.Now()
	waitLoaded(t, f, run, 90*time.Second)
	t.Logf("initial load handed every table over in %s", time.Since(loaded).Round(time.Millisecond))

	for _, d := range s.ddl {
		if _, err := w.owner.Exec(ctx, d.ddl); err != nil {
			t.Fatalf("source DDL %q: %v", d.name, err)
		}
		if _, err := w.owner.Exec(ctx, d.writes); err != nil {
			t.Fatalf("writes after %q: %v", d.name, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	time.Sleep(time.Second)
	stopWrites()
	committed, failed := w.wait()
	t.Logf("workload: %d statements committed, %d failed", committed, failed)
	if committed == 0 {
		t.Fatal("the workload committed nothing: the test proves nothing")
	}
	run.stop(t)

	// A user's last step: catch up and verify.
	final := time.Now()
	fctx, cancel := context.WithTimeout(ctx, 150*time.Second)
	defer cancel()
	var stdout bytes.Buffer
	cmd := exec.CommandContext(fctx, bin, "--config", cfgPath, "--until-idle", "--verify", "--timeout", "120s")
	cmd.Stdout = &stdout
	cmd.Stderr = logs.section("final run (--until-idle --verify)")
	err := cmd.Run()
	t.Logf("final run caught up and verified in %s; whole run %s", time.Since(final).Round(time.Millisecond), time.Since(started).Round(time.Millisecond))
	if err != nil {
		t.Errorf("final --until-idle --verify run: %v\nstdout:\n%s", err, stdout.String())
	} else if !strings.Contains(stdout.String(), "all") || !strings.Contains(stdout.String(), "match") {
		t.Errorf("final run's stdout does not report that all tables match:\n%s", stdout.String())
	}

	f.assertSame()
	if d, err := rowsDiff(ctx, f.src, f.dst); err != nil {
		t.Errorf("compare rows: %v", err)
	} else if d != "" {
		t.Errorf("tables differ row by row:\n%s", d)
	}
	if d, err := catalogDiff(ctx, f.src, f.dst); err != nil {
		t.Errorf("compare catalogs: %v", err)
	} else if d != "" {
		t.Errorf("target catalog differs from the source's:\n%s", d)
	}
}

// newSampleFixture makes the least-privilege set-up the README describes
// and loads the sample:
//   - the source role owns the tables (it loads the sample) and has CREATE
//     on the database, no superuser; REPLICATION only for slot capture;
//   - the target role has CREATE on the database (for the pgferry schema)
//     and owns the public schema, into which schema sync creates every
//     table; it may set session_replication_role (PostgreSQL 15's GRANT
//     SET ON PARAMETER), without which tables with foreign keys cannot be
//     loaded in parallel chunks.
//
// It returns the fixture (its pools connect as the cluster's superuser,
// for the assertions), the path of the pipeline's configuration (which
// connects as the two roles) and the source role's DSN.
func newSampleFixture(t *testing.T, s sample, mode string) (*fixture, string, string) {
	t.Helper()
	ctx := context.Background()
	testenv.AWS(t)
	admin := testenv.Pool(t, testenv.ClusterDSN(t))
	// Roles first: cleanups run last-in first-out, so the databases
	// holding their objects are dropped before the roles.
	srcAttrs := "NOSUPERUSER NOREPLICATION"
	if mode == config.CaptureSlot {
		srcAttrs = "NOSUPERUSER REPLICATION"
	}
	owner := newRole(t, admin, "own", srcAttrs)
	writer := newRole(t, admin, "tgt", "NOSUPERUSER NOREPLICATION")

	f := &fixture{t: t, log: logger(t)}
	f.srcDSN, f.dstDSN = testenv.NewDB(t, "src"), testenv.NewDB(t, "dst")
	f.src, f.dst = testenv.Pool(t, f.srcDSN), testenv.Pool(t, f.dstDSN)
	srcDB, dstDB := dbName(t, f.srcDSN), dbName(t, f.dstDSN)
	testenv.Exec(t, admin, fmt.Sprintf("GRANT CREATE ON DATABASE %s TO %s", srcDB, owner))
	testenv.Exec(t, f.src, "ALTER SCHEMA public OWNER TO "+owner)
	testenv.Exec(t, admin, fmt.Sprintf("GRANT CREATE ON DATABASE %s TO %s", dstDB, writer))
	testenv.Exec(t, f.dst, "ALTER SCHEMA public OWNER TO "+writer)
	testenv.Exec(t, admin, "GRANT SET ON PARAMETER session_replication_role TO "+writer)
	t.Cleanup(func() {
		_, _ = admin.Exec(context.Background(), "REVOKE SET ON PARAMETER session_replication_role FROM "+writer)
	})
	if mode == config.CaptureSlot {
		// The slot outlives the runner; a database with a slot cannot be
		// dropped. (Registered after NewDB: runs before the drop.)
		t.Cleanup(func() {
			_, _ = admin.Exec(context.Background(), `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1`, strings.Trim(srcDB, `"`))
		})
	}

	ownerDSN, writerDSN := roleDSN(t, f.srcDSN, owner), roleDSN(t, f.dstDSN, writer)
	c, err := pgx.Connect(ctx, ownerDSN)
	if err != nil {
		t.Fatal(err)
	}
	err = s.load(ctx, c)
	c.Close(ctx)
	if err != nil {
		t.Fatalf("load sample %s: %v", s.name, err)
	}
	// As pg_restore's users do, and as autovacuum would soon.
	testenv.Exec(t, f.src, "ANALYZE")

	f.cfgYAML = fmt.Sprintf(`
name: %s
source:
  dsn: %q
  tables: ["public.*"]%s
targets:
  replica:
    kind: postgres
    dsn: %q
drain:
  interval: 100ms
load:
  chunk_rows: 4000
  parallelism: 2
`, testenv.Name("s"), ownerDSN, slotKeys(mode), writerDSN)
	cfg, err := config.Parse([]byte(f.cfgYAML), os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	f.cfg = cfg
	return f, writeConfig(t, f.cfgYAML), ownerDSN
}

// newRole creates a login role (trusted by the test cluster's pg_hba.conf)
// and drops it when the test ends, after what it owns.
func newRole(t *testing.T, admin *pgxpool.Pool, prefix, attrs string) string {
	t.Helper()
	name := testenv.Name(prefix)
	ident := pgx.Identifier{name}.Sanitize()
	testenv.Exec(t, admin, "CREATE ROLE "+ident+" LOGIN "+attrs)
	t.Cleanup(func() {
		ctx := context.Background()
		_, _ = admin.Exec(ctx, "DROP OWNED BY "+ident)
		if _, err := admin.Exec(ctx, "DROP ROLE "+ident); err != nil {
			t.Logf("drop role %s: %v", name, err)
		}
	})
	return ident
}

func dbName(t *testing.T, dsn string) string {
	t.Helper()
	return pgx.Identifier{strings.TrimPrefix(mustURL(t, dsn).Path, "/")}.Sanitize()
}

// roleDSN is dsn connecting as role (quoted identifier), without a
// password: the test cluster trusts local connections.
func roleDSN(t *testing.T, dsn, role string) string {
	t.Helper()
	u := mustURL(t, dsn)
	u.User = url.User(strings.Trim(role, `"`))
	return u.String()
}

// waitLoaded waits until the target has handed every loaded table over to
// the change stream, failing if the runner exits first.
func waitLoaded(t *testing.T, f *fixture, r *bgRunner, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if r.exited() {
			t.Fatalf("the runner exited during the initial load: %v", r.err)
		}
		var total, loaded int64
		err := f.dst.QueryRow(context.Background(), `SELECT count(*), count(*) FILTER (WHERE state = 'loaded') FROM pgferry.loads`).Scan(&total, &loaded)
		if err == nil && total > 0 && total == loaded {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("initial load not handed over after %s", limit)
}

// bgRunner is the runner binary running in the background.
type bgRunner struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func startRunnerArgs(t *testing.T, bin string, logs *runnerLogs, title string, args ...string) *bgRunner {
	t.Helper()
	if os.Getenv("PGFERRY_TEST_LOG") != "" {
		args = append(args, "--log-level", "debug")
	}
	r := &bgRunner{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	r.cmd.Stderr = logs.section(title)
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("start runner: %v", err)
	}
	go func() { r.err = r.cmd.Wait(); close(r.done) }()
	t.Cleanup(func() {
		if !r.exited() {
			_ = r.cmd.Process.Kill()
			<-r.done
		}
	})
	return r
}

func (r *bgRunner) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// stop asks the runner to stop (SIGTERM, as a user's Ctrl-C) and waits.
func (r *bgRunner) stop(t *testing.T) {
	t.Helper()
	if r.exited() {
		t.Fatalf("the runner had exited while the workload ran: %v", r.err)
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.done
		t.Errorf("the runner did not stop within 30 s of SIGTERM")
	}
}

// sampleWrites is the application's workload: one goroutine writing
// through the source role, statement by statement.
type sampleWrites struct {
	owner             *pgxpool.Pool
	wg                sync.WaitGroup
	committed, failed atomic.Int64
	mu                sync.Mutex
	errs              []string
}

func startSampleWrites(t *testing.T, ctx context.Context, s sample, dsn string, seed uint64) *sampleWrites {
	t.Helper()
	w := &sampleWrites{owner: testenv.Pool(t, dsn)}
	rng := rand.New(rand.NewPCG(seed, 0x5a3))
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		for ctx.Err() == nil {
			err := s.write(ctx, w.owner, rng)
			switch {
			case err == nil:
				w.committed.Add(1)
			case ctx.Err() == nil:
				w.failed.Add(1)
				w.mu.Lock()
				if len(w.errs) < 5 {
					w.errs = append(w.errs, err.Error())
				}
				w.mu.Unlock()
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	t.Cleanup(func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, e := range w.errs {
			t.Logf("workload statement failed: %s", e)
		}
	})
	return w
}

func (w *sampleWrites) wait() (committed, failed int64) {
	w.wg.Wait()
	return w.committed.Load(), w.failed.Load()
}

// ---- loading the vendored files ----

func sampleFile(name string) (io.ReadCloser, error) {
	p := filepath.Join(testenv.Root(), "testdata", "samples", name)
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	if !strings.HasSuffix(p, ".gz") {
		return f, nil
	}
	z, err := gzip.NewReader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return struct {
		io.Reader
		io.Closer
	}{z, f}, nil
}

// runScript runs a SQL script as psql would, on one connection: plain
// statements go through the simple protocol, COPY … FROM stdin blocks
// through COPY. skip drops lines a non-superuser cannot run or psql
// meta-commands (each sample's README lists them).
func runScript(ctx context.Context, c *pgx.Conn, name string, skip func(line string) bool) error {
	r, err := sampleFile(name)
	if err != nil {
		return err
	}
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	var stmts, rows strings.Builder
	copying := ""
	flush := func() error {
		if stmts.Len() == 0 {
			return nil
		}
		_, err := c.Exec(ctx, stmts.String())
		stmts.Reset()
		return err
	}
	line := 0
	for sc.Scan() {
		line++
		l := sc.Text()
		switch {
		case copying != "":
			if l == `\.` {
				if _, err := c.PgConn().CopyFrom(ctx, strings.NewReader(rows.String()), copying); err != nil {
					return fmt.Errorf("%s:%d: %s: %w", name, line, copying, err)
				}
				copying = ""
				rows.Reset()
				continue
			}
			rows.WriteString(l)
			rows.WriteByte('\n')
		case skip(l):
		case strings.HasPrefix(l, "COPY ") && strings.HasSuffix(l, " FROM stdin;"):
			if err := flush(); err != nil {
				return fmt.Errorf("%s before line %d: %w", name, line, err)
			}
			copying = strings.TrimSuffix(l, ";")
		default:
			stmts.WriteString(l)
			stmts.WriteByte('\n')
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := flush(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// ownerStatement reports a pg_dump line that gives an object to another
// role: the loading role owns what it creates.
func ownerStatement(l string) bool {
	return strings.HasPrefix(l, "ALTER ") && strings.Contains(l, " OWNER TO ") && strings.HasSuffix(l, ";")
}

// exec1 runs one statement with arguments in its own transaction.
func exec1(ctx context.Context, p *pgxpool.Pool, sql string, args ...any) error {
	_, err := p.Exec(ctx, sql, args...)
	return err
}
