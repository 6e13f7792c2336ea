package runner_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgferry/pgferry/shared/apply"
	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/fault"
	"github.com/pgferry/pgferry/shared/queue"
	"github.com/pgferry/pgferry/shared/runner"
)

// failingParts is a payload store whose reads of spilled parts fail from
// the one numbered at (from 1): the apply dies in the middle of the
// stream, with earlier parts written in its transaction.
type failingParts struct {
	queue.PayloadStore
	at, gets int
}

var errPartLost = errors.New("simulated failure reading a part")

func (s *failingParts) Get(ctx context.Context, key string) ([]byte, error) {
	if strings.Contains(key, "/spill-") {
		s.gets++
		if s.gets >= s.at {
			return nil, errPartLost
		}
	}
	return s.PayloadStore.Get(ctx, key)
}

// TestSlotSpilledTransactionAppliesWholeOrNothing: one source transaction
// of key changes, deletes, re-inserts and keyless duplicates, each key
// touched again and again far apart (so in different parts with
// batch.max_rows 500), ships as one spilled batch. An apply that fails in
// the middle of its parts leaves the target and its watermark as they
// were; the next delivery applies it whole, equal to the source, and a
// duplicate delivery is a replay.
func TestSlotSpilledTransactionAppliesWholeOrNothing(t *testing.T) {
	f := newFixtureMode(t, config.CaptureSlot, `CREATE TABLE kv (id int PRIMARY KEY, v text);
		CREATE TABLE bag (a int, b text)`, "batch:\n  max_rows: 500\n")
	f.exec(`INSERT INTO kv SELECT g, 'v' || g FROM generate_series(1, 2000) g`)
	f.exec(`INSERT INTO bag SELECT g % 7, 'b' FROM generate_series(1, 300) g`)
	f.replicate()
	f.assertSame()
	ctx := context.Background()
	group := batch.Group(f.cfg.Name, "replica")
	wm, err := f.targets["replica"].Watermark(ctx, group)
	if err != nil {
		t.Fatal(err)
	}

	f.exec(`BEGIN;
		UPDATE kv SET id = -id;                                  -- every key changes
		DELETE FROM kv WHERE id % 3 = 0;
		INSERT INTO kv SELECT g, 'new' FROM generate_series(1, 1500) g; -- old keys come back
		UPDATE kv SET id = -id + 10000, v = v || '!' WHERE id < 0 AND id % 2 = 0;
		UPDATE kv SET v = 'last' WHERE id % 5 = 0;
		DELETE FROM bag WHERE a = 3;
		INSERT INTO bag SELECT 3, 'again' FROM generate_series(1, 40);
		UPDATE bag SET b = 'changed' WHERE a = 5;
		COMMIT`)
	var shipped []*batch.Batch
	dctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if _, err := f.p.Drainer(runner.InstanceID(), func(b *batch.Batch) { shipped = append(shipped, b) }, nil).Run(dctx); err != nil {
		t.Fatal(err)
	}
	if len(shipped) != 1 || len(shipped[0].Parts) < 4 {
		t.Fatalf("shipped %d batches (first with %d parts), want 1 spilled in at least 4 parts", len(shipped), len(shipped[0].Parts))
	}
	msgs, err := f.aws.Queue.Receive(ctx, 10, time.Second, 30*time.Second)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("receive: %d messages, err %v; want 1", len(msgs), err)
	}
	body := msgs[0].Body
	sum := func() int64 {
		return f.targetInt(`SELECT (SELECT count(*) + sum(id) + sum(length(v)) FROM kv) + (SELECT count(*) + sum(a) + sum(length(b)) FROM bag)`)
	}
	was := sum()

	broken := &apply.Handler{Pipeline: f.cfg.Name, Targets: f.targets, Payloads: &failingParts{PayloadStore: f.aws.Payloads, at: 3}}
	if _, _, err := broken.Handle(ctx, body); !errors.Is(err, errPartLost) {
		t.Fatalf("apply with its third part unreadable: err = %v, want the simulated failure", err)
	}
	if got := sum(); got != was {
		t.Fatalf("a failed apply changed the target (checksum %d, was %d)", got, was)
	}
	if got, err := f.targets["replica"].Watermark(ctx, group); err != nil || got != wm {
		t.Fatalf("watermark after a failed apply: %s (err %v), want %s", got, err, wm)
	}

	h := &apply.Handler{Pipeline: f.cfg.Name, Targets: f.targets, Payloads: f.aws.Payloads}
	b, res, err := h.Handle(ctx, body)
	if err != nil || !res.Applied || res.Rows != b.Rows() {
		t.Fatalf("apply: %+v, err %v; want applied, %d rows", res, err, b.Rows())
	}
	f.assertSame()
	if _, res, err := h.Handle(ctx, body); err != nil || res.Applied {
		t.Fatalf("duplicate delivery: %+v, err %v; want a replay", res, err)
	}
	f.assertSame()
}

// TestSpilledTransactionSurvivesKillMidSpillAndMidApply SIGKILLs the
// runner binary while it writes the third part of a spilled transaction,
// then (the next run) while it applies the third part: the target never
// shows any of the transaction until a last run applies it whole.
func TestSpilledTransactionSurvivesKillMidSpillAndMidApply(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the runner binary with fault points")
	}
	bin := buildFaultRunner(t)
	f := newFixtureMode(t, config.CaptureSlot, `CREATE TABLE t (id int PRIMARY KEY, v text); CREATE TABLE s (id int PRIMARY KEY, v text)`,
		"  lease: 5s\napply:\n  visibility: 3s\nbatch:\n  max_rows: 500\n")
	f.exec(`INSERT INTO s VALUES (1, 'before')`)
	f.replicate()
	cfgPath := writeConfig(t, f.cfgYAML)
	logs := keepLogs(t)
	f.exec(`BEGIN; INSERT INTO t SELECT g, 'v' FROM generate_series(1, 4000) g; UPDATE s SET v = 'after'; COMMIT`)
	whole := func() {
		t.Helper()
		n := f.targetInt(`SELECT count(*) FROM t`)
		after := f.targetInt(`SELECT count(*) FROM s WHERE v = 'after'`)
		if !(n == 0 && after == 0) && !(n == 4000 && after == 1) {
			t.Fatalf("target shows part of the transaction: %d rows in t, s updated: %v", n, after == 1)
		}
	}
	for _, point := range []string{fault.DrainSpilled, fault.ApplyPart} {
		mark := filepath.Join(t.TempDir(), "mark")
		cmd := exec.Command(bin, "--config", cfgPath, "--until-idle", "--timeout", "90s", "--log-level", "debug")
		cmd.Env = append(os.Environ(), fault.EnvSpec+"="+point+"@3", fault.EnvMark+"="+mark)
		cmd.Stderr = logs.section("runner killed at " + point)
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("runner armed at %s: %v, want death by SIGKILL", point, err)
		}
		if got, _ := os.ReadFile(mark); string(got) != point+"@3\n" {
			t.Fatalf("runner armed at %s died elsewhere (mark %q)", point, got)
		}
		whole()
		if n := f.targetInt(`SELECT count(*) FROM t`); n != 0 {
			t.Fatalf("after a kill at %s the target has %d rows of the transaction, want none", point, n)
		}
	}
	last := exec.Command(bin, "--config", cfgPath, "--until-idle", "--timeout", "90s", "--log-level", "debug")
	last.Stderr = logs.section("last runner (--until-idle)")
	if err := last.Run(); err != nil {
		t.Fatalf("last runner: %v", err)
	}
	whole()
	f.assertSame()
}
