package runner_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pgferry/pgferry/shared/checkpoint"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/drain"
	"github.com/pgferry/pgferry/shared/runner"
)

// TestChangedRulesAreRefusedUntilAcknowledged: the drain records each
// target's rules fingerprint in the checkpoint; after a target's rules
// change on a running pipeline, the next drain refuses before shipping,
// naming targets.<name>.rules, the reload procedure and the
// acknowledgement; once acknowledged, the new rules apply from the next
// batch and their fingerprint is recorded.
func TestChangedRulesAreRefusedUntilAcknowledged(t *testing.T) {
	forEachCapture(t, func(t *testing.T, mode string) {
		f, wh, syncers := newRulesFixture(t, mode, rulesDDL, rulesTargets)
		ctx := context.Background()
		// A first cycle ships and applies the schema job.
		replicateWith(t, schemaLocal(f, syncers), f)
		f.exec(`INSERT INTO orders VALUES (1, 1, 10, 'open'), (2, 1, 20, 'cancelled')`)
		replicateWith(t, schemaLocal(f, syncers), f)
		if got := rowsOf(t, wh, `SELECT string_agg(id::text, ',' ORDER BY id) FROM orders`); got != "1" {
			t.Fatalf("wh orders %q before the change, want 1 (cancelled filtered out)", got)
		}
		before, err := f.aws.State.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		oldFP := f.cfg.RulesFingerprint("wh")
		if rec := checkpoint.DecodeRules(before.Rules); rec["wh"] != oldFP || rec["full"] != f.cfg.RulesFingerprint("full") {
			t.Fatalf("checkpoint records rules %q, want wh=%s and full's", before.Rules, oldFP)
		}

		// The operator lets cancelled orders through to wh.
		changed := strings.Replace(f.cfgYAML, "filter: [{column: status, op: ne, value: cancelled}]", "filter: [{column: status, op: ne, value: refunded}]", 1)
		if changed == f.cfgYAML {
			t.Fatal("the orders rule was not found in the fixture's configuration")
		}
		cfg, err := config.Parse([]byte(changed), os.LookupEnv)
		if err != nil {
			t.Fatal(err)
		}
		newFP := cfg.RulesFingerprint("wh")
		if newFP == oldFP || cfg.RulesFingerprint("full") != f.cfg.RulesFingerprint("full") {
			t.Fatalf("fingerprints: wh %s → %s, full %s → %s", oldFP, newFP, f.cfg.RulesFingerprint("full"), cfg.RulesFingerprint("full"))
		}
		f.setConfig(cfg)
		f.exec(`INSERT INTO orders VALUES (3, 1, 30, 'cancelled')`)
		err = drainOnce(ctx, f)
		if !errors.Is(err, drain.ErrRulesChanged) {
			t.Fatalf("drain after a rules change: err = %v, want ErrRulesChanged", err)
		}
		for _, want := range []string{"targets.wh.rules", oldFP, newFP, "reload", `targets.wh.accept_rules_change: "` + newFP + `"`} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("refusal lacks %q:\n%v", want, err)
			}
		}
		if strings.Contains(err.Error(), "targets.full") {
			t.Errorf("refusal names the unchanged target full:\n%v", err)
		}
		after, err := f.aws.State.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if after.Pos != before.Pos || after.Seq != before.Seq || after.Rules != before.Rules {
			t.Fatalf("a refused drain moved the checkpoint: %+v → %+v", before, after)
		}
		if msgs, err := f.aws.Queue.Receive(ctx, 10, time.Second, time.Second); err != nil || len(msgs) != 0 {
			t.Fatalf("a refused drain queued %d messages (err %v)", len(msgs), err)
		}

		// An acknowledgement of another fingerprint is no acknowledgement.
		stale := strings.Replace(changed, "    deletes: soft\n", "    deletes: soft\n    accept_rules_change: \""+oldFP+"\"\n", 1)
		if cfg, err = config.Parse([]byte(stale), os.LookupEnv); err != nil {
			t.Fatal(err)
		}
		f.setConfig(cfg)
		if err := drainOnce(ctx, f); !errors.Is(err, drain.ErrRulesChanged) {
			t.Fatalf("drain acknowledged with the old fingerprint: err = %v, want ErrRulesChanged", err)
		}

		acked := strings.Replace(changed, "    deletes: soft\n", "    deletes: soft\n    accept_rules_change: \""+newFP+"\"\n", 1)
		if cfg, err = config.Parse([]byte(acked), os.LookupEnv); err != nil {
			t.Fatal(err)
		}
		f.setConfig(cfg)
		replicateWith(t, schemaLocal(f, syncers), f)
		// From the next batch on, under the new rules; the row filtered
		// before the change stays missing until the documented reload.
		if got := rowsOf(t, wh, `SELECT string_agg(id::text, ',' ORDER BY id) FROM orders`); got != "1,3" {
			t.Fatalf("wh orders %q after the acknowledged change, want 1,3", got)
		}
		final, err := f.aws.State.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if rec := checkpoint.DecodeRules(final.Rules); rec["wh"] != newFP {
			t.Fatalf("checkpoint records rules %q, want wh=%s", final.Rules, newFP)
		}
	})
}

// drainOnce runs one drain, waiting out a lease the previous run may
// still hold.
func drainOnce(ctx context.Context, f *fixture) error {
	d := f.p.Drainer(runner.InstanceID(), nil, nil)
	for deadline := time.Now().Add(f.cfg.Drain.Lease.Duration + 5*time.Second); ; {
		_, err := d.Run(ctx)
		if errors.Is(err, drain.ErrBusy) && time.Now().Before(deadline) {
			time.Sleep(500 * time.Millisecond)
			continue
		}
		return err
	}
}
