package runner_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgferry/pgferry/shared/apply"
	"github.com/pgferry/pgferry/shared/fault"
	"github.com/pgferry/pgferry/shared/localrun"
	"github.com/pgferry/pgferry/shared/metrics"
	"github.com/pgferry/pgferry/shared/queue"
	"github.com/pgferry/pgferry/shared/testenv"
)

// TestPoisonBatchIsParkedBlocksItsGroupAndIsRedriven: a batch that breaks
// a constraint only the target has is retried apply.max_attempts times,
// parked in the dead-letter queue with its error, reported by name, keeps
// later batches of its group from overtaking it, survives a redrive that
// still fails, and is applied by a redrive once the cause is fixed.
func TestPoisonBatchIsParkedBlocksItsGroupAndIsRedriven(t *testing.T) {
	forEachCapture(t, testPoisonBatch)
}

func testPoisonBatch(t *testing.T, mode string) {
	f := newFixtureMode(t, mode, `CREATE TABLE items (id int PRIMARY KEY, qty int NOT NULL); CREATE TABLE other (id int PRIMARY KEY);`,
		"apply:\n  max_attempts: 2\n")
	testenv.Exec(t, f.dst, `ALTER TABLE items ADD CONSTRAINT qty_is_small CHECK (qty < 100)`)
	f.exec(`INSERT INTO items VALUES (1, 5), (2, 7)`)
	f.replicate()

	var emf section // a buffer safe for the runner's goroutines
	run := func() error {
		l := f.local()
		l.Handler.Metrics = metrics.New(&emf)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		return l.Run(ctx, true, f.lastSent)
	}

	f.exec(`INSERT INTO items VALUES (3, 500)`)
	err := run()
	if !errors.Is(err, localrun.ErrPoison) {
		t.Fatalf("until-idle with a poison batch: err = %v, want ErrPoison", err)
	}
	for _, want := range []string{"dead-letter queue", "after 2 attempts", "qty_is_small", "23514", "--redrive", "for target replica"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("poison error does not mention %q: %v", want, err)
		}
	}
	parked := dlqMessages(t, f)
	if len(parked) != 1 {
		t.Fatalf("dead-letter queue holds %d messages, want 1", len(parked))
	}
	if e := parked[0].Attrs[apply.AttrError]; !strings.Contains(e, "qty_is_small") {
		t.Errorf("parked message's error attribute = %q, want the constraint's name", e)
	}
	if got, want := parked[0].Attrs[apply.AttrAttempts], "2"; got != want {
		t.Errorf("parked after %s attempts, want %s", got, want)
	}
	for _, want := range []string{`"` + metrics.PoisonBatches + `":1`, `"` + metrics.GroupBlocked + `":1`, `"` + metrics.ApplyFailures + `":1`} {
		if !strings.Contains(emf.String(), want) {
			t.Errorf("metrics lack %s:\n%s", want, emf.String())
		}
	}

	// A later transaction must not overtake the parked one, and the next
	// until-idle run names what it waits for.
	f.exec(`INSERT INTO other VALUES (1)`)
	err = run()
	if !errors.Is(err, localrun.ErrBlocked) || !strings.Contains(err.Error(), "qty_is_small") {
		t.Fatalf("until-idle behind a parked batch: err = %v, want ErrBlocked naming the parked batch's error", err)
	}
	if got := f.targetInt(`SELECT count(*) FROM other`); got != 0 {
		t.Fatalf("a later batch overtook the parked one: target has %d rows in other", got)
	}

	// Redrive before the fix: still failing, still parked, nothing lost.
	h := f.local().Handler
	st, err := apply.Redrive(context.Background(), h, f.aws.DLQ, f.log)
	if !errors.Is(err, apply.ErrRedrive) || st.Applied != 0 || st.Failing != 1 {
		t.Fatalf("redrive before the fix: stats %+v, err %v; want ErrRedrive with 1 failing group", st, err)
	}
	if n := len(dlqMessages(t, f)); n != 1 {
		t.Fatalf("after a failed redrive the dead-letter queue holds %d messages, want 1", n)
	}

	testenv.Exec(t, f.dst, `ALTER TABLE items DROP CONSTRAINT qty_is_small`)
	st, err = apply.Redrive(context.Background(), h, f.aws.DLQ, f.log)
	if err != nil || st.Applied != 1 {
		t.Fatalf("redrive after the fix: stats %+v, err %v; want 1 applied", st, err)
	}
	if n := len(dlqMessages(t, f)); n != 0 {
		t.Fatalf("after redrive the dead-letter queue holds %d messages, want 0", n)
	}
	if err := run(); err != nil {
		t.Fatalf("until-idle after redrive: %v", err)
	}
	f.assertSame()
}

// dlqMessages peeks at every message in the fixture's dead-letter queue.
func dlqMessages(t *testing.T, f *fixture) []queue.Message {
	t.Helper()
	ctx := context.Background()
	var out []queue.Message
	seen := map[string]bool{}
	for empty := 0; empty < 2; {
		msgs, err := f.aws.DLQ.Receive(ctx, 10, 0, 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		fresh := 0
		for _, m := range msgs {
			if !seen[m.ID] {
				seen[m.ID] = true
				out = append(out, m)
				fresh++
			}
		}
		if fresh == 0 {
			empty++
		}
		for _, m := range msgs {
			defer func() { _ = f.aws.DLQ.SetVisibility(ctx, m, 0) }()
		}
	}
	return out
}

// TestCrashWhileParkingLosesNothing crashes the runner after a poison batch
// reached the dead-letter queue and before it left its own queue: the batch
// is then in both. The next run must park it again (not apply past it),
// and after the fix one redrive must leave nothing behind.
func TestCrashWhileParkingLosesNothing(t *testing.T) {
	bin := buildFaultRunner(t)
	f := newFixture(t, `CREATE TABLE items (id int PRIMARY KEY, qty int NOT NULL);`, "apply:\n  max_attempts: 2\n  visibility: 2s\n")
	testenv.Exec(t, f.dst, `ALTER TABLE items ADD CONSTRAINT qty_is_small CHECK (qty < 100)`)
	f.exec(`INSERT INTO items VALUES (1, 5)`)
	f.exec(`INSERT INTO items VALUES (2, 500)`)
	cfgPath := writeConfig(t, f.cfgYAML)
	run := func(env string, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, append([]string{"--config", cfgPath}, args...)...)
		cmd.Env = append(os.Environ(), env)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("PGFERRY_FAULT="+fault.ApplyParked+"@1", "--until-idle", "--timeout", "60s")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("first run: %v, want death at %s\n%s", err, fault.ApplyParked, out)
	}
	if n := len(dlqMessages(t, f)); n != 1 {
		t.Fatalf("after the crash the dead-letter queue holds %d messages, want 1", n)
	}
	out, err = run("", "--until-idle", "--timeout", "60s")
	if err == nil || !strings.Contains(out, "qty_is_small") {
		t.Fatalf("second run: %v, want a failure naming the parked batch\n%s", err, out)
	}
	if got := f.targetInt(`SELECT count(*) FROM items`); got != 0 {
		t.Fatalf("the target holds %d items: part of the poison batch's window was applied", got)
	}
	testenv.Exec(t, f.dst, `ALTER TABLE items DROP CONSTRAINT qty_is_small`)
	if out, err := run("", "--redrive", "--until-idle", "--verify", "--timeout", "60s"); err != nil {
		t.Fatalf("redrive and catch up: %v\n%s", err, out)
	}
	if n := len(dlqMessages(t, f)); n != 0 {
		t.Fatalf("after the redrive the dead-letter queue holds %d messages, want 0", n)
	}
	f.assertSame()
}
