package runner_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgferry/pgferry/shared/metrics"
	"github.com/pgferry/pgferry/shared/testenv"
)

// sequenceSyncMetrics returns the SequenceSyncFailures values the EMF
// lines in out carry for target, in order.
func sequenceSyncMetrics(t *testing.T, out []byte, target string) []float64 {
	t.Helper()
	var vals []float64
	for _, line := range bytes.Split(bytes.TrimSpace(out), []byte("\n")) {
		var doc map[string]any
		if err := json.Unmarshal(line, &doc); err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		if v, ok := doc[metrics.SequenceSyncFailures].(float64); ok && doc[metrics.DimTarget] == target {
			vals = append(vals, v)
		}
	}
	return vals
}

// TestUntilIdleFailsWhileTargetSequencesCannotBeAdvanced: the target's
// schema was made by its owner (pg_dump --schema-only) and pgferry's role
// was granted the tables but not their sequences, the classic omission
// (GRANT … ON ALL TABLES does not cover sequences). Every batch applies,
// but the target's sequences stay at their start, so a failover would hand
// out keys the source already used. --until-idle must not call that
// success: it exits non-zero naming the target and the error, and
// SequenceSyncFailures is 1 for the target. After the grant the same run
// succeeds, the sequence is moved and the metric goes back to 0.
func TestUntilIdleFailsWhileTargetSequencesCannotBeAdvanced(t *testing.T) {
	bin := buildLocalRunner(t)
	const ddl = `CREATE TABLE items (id serial PRIMARY KEY, name text)`
	f := newFixture(t, ddl, "")
	f.exec(`INSERT INTO items (name) SELECT 'n' || g FROM generate_series(1, 25) g`)

	admin := testenv.Pool(t, testenv.ClusterDSN(t))
	role := testenv.Name("applier")
	ident := pgx.Identifier{role}.Sanitize()
	testenv.Exec(t, admin, "CREATE ROLE "+ident+" LOGIN")
	t.Cleanup(func() {
		ctx := context.Background()
		_, _ = f.dst.Exec(ctx, "DROP OWNED BY "+ident) // its pgferry schema on the target
		if _, err := admin.Exec(ctx, "DROP ROLE "+ident); err != nil {
			t.Errorf("drop role %s: %v", role, err)
		}
	})
	dstDB := strings.TrimPrefix(mustURL(t, f.dstDSN).Path, "/")
	testenv.Exec(t, admin, fmt.Sprintf("GRANT CREATE ON DATABASE %s TO %s", pgx.Identifier{dstDB}.Sanitize(), ident))
	testenv.Exec(t, f.dst, "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "+ident)
	// pgferry's own schema on the target is the role's, made by its run
	// (the fixture made one as superuser).
	testenv.Exec(t, f.dst, "DROP SCHEMA pgferry CASCADE")

	u := mustURL(t, f.dstDSN)
	u.User = url.User(role)
	yaml := strings.Replace(f.cfgYAML, fmt.Sprintf("dsn: %q", f.dstDSN), fmt.Sprintf("dsn: %q", u.String()), 1)
	yaml = strings.Replace(yaml, "schema_sync: false", "schema_sync: true ", 1)
	if yaml == f.cfgYAML {
		t.Fatal("the fixture's YAML did not change")
	}
	dir := t.TempDir()
	cfgPath, metricsPath := filepath.Join(dir, "pipeline.yaml"), filepath.Join(dir, "metrics.emf")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func() (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		var out bytes.Buffer
		cmd := exec.CommandContext(ctx, bin, "--config", cfgPath, "--until-idle", "--metrics", metricsPath, "--timeout", "90s")
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}

	out, err := run()
	if err == nil {
		t.Fatalf("--until-idle succeeded while the target's sequence cannot be advanced:\n%s", out)
	}
	for _, want := range []string{"sequence sync failed for target replica", "permission denied for sequence items_id_seq", "42501", "needs SELECT and UPDATE on it"} {
		if !strings.Contains(out, want) {
			t.Errorf("the run's output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "pgferry: idle") {
		t.Errorf("the run reported idle:\n%s", out)
	}
	if got := f.targetInt(`SELECT count(*) FROM items`); got != 25 {
		t.Errorf("target holds %d rows, want all 25 applied: only the sequence is behind", got)
	}
	emf, err := os.ReadFile(metricsPath)
	if err != nil {
		t.Fatal(err)
	}
	vals := sequenceSyncMetrics(t, emf, "replica")
	if len(vals) == 0 || vals[len(vals)-1] != 1 {
		t.Fatalf("SequenceSyncFailures for replica = %v, want ending in 1:\n%s", vals, emf)
	}

	testenv.Exec(t, f.dst, "GRANT SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO "+ident)
	f.exec(`INSERT INTO items (name) VALUES ('late')`)
	if out, err := run(); err != nil {
		t.Fatalf("after the grant: %v\n%s", err, out)
	}
	if got := f.targetInt(`SELECT pg_sequence_last_value('items_id_seq')`); got != 26 {
		t.Errorf("target items_id_seq at %d after the grant, want 26", got)
	}
	emf, err = os.ReadFile(metricsPath)
	if err != nil {
		t.Fatal(err)
	}
	if vals := sequenceSyncMetrics(t, emf, "replica"); vals[len(vals)-1] != 0 {
		t.Errorf("SequenceSyncFailures for replica = %v after the grant, want ending in 0", vals)
	}
}

// TestUntilIdleSucceedsWhenAFailingAfterCycleRecovers: a failure that
// passes (here the first two attempts fail, as a sequence a DDL was still
// creating would) is retried within the run and does not fail it.
func TestUntilIdleSucceedsWhenAFailingAfterCycleRecovers(t *testing.T) {
	f := newFixture(t, `CREATE TABLE t (id int PRIMARY KEY, v text)`, "")
	f.exec(`INSERT INTO t SELECT g, 'v' FROM generate_series(1, 10) g`)
	l := f.local()
	var calls atomic.Int32
	l.AfterCycle = func(context.Context) error {
		if calls.Add(1) <= 2 {
			return errors.New("not yet")
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := l.Run(ctx, true, f.lastSent); err != nil {
		t.Fatalf("until idle: %v (after %d attempts)", err, calls.Load())
	}
	if n := calls.Load(); n < 3 {
		t.Fatalf("AfterCycle ran %d times, so the run never met a failure to retry", n)
	}
	f.assertSame()
}
