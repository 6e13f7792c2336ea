package runner_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/drain"
	"github.com/pgferry/pgferry/shared/queue/sqsadmin"
	"github.com/pgferry/pgferry/shared/runner"
)

const switchDDL = `CREATE TABLE a (id int PRIMARY KEY, v text);
CREATE TABLE b (id bigint PRIMARY KEY, n int);`

// otherMode is the capture mode that is not mode.
func otherMode(mode string) string {
	if mode == config.CaptureSlot {
		return config.CaptureTrigger
	}
	return config.CaptureSlot
}

// livePipeline is a pipeline under capture mode from that has replicated
// inserts, updates and deletes, with more of each committed on the source
// but not yet drained.
func livePipeline(t *testing.T, from string) *fixture {
	t.Helper()
	f := newFixtureMode(t, from, switchDDL, "")
	f.exec(`INSERT INTO a SELECT g, 'v' || g FROM generate_series(1, 50) g`)
	f.exec(`INSERT INTO b SELECT g, g FROM generate_series(1, 50) g`)
	f.replicate()
	f.exec(`UPDATE a SET v = 'changed' WHERE id <= 10`)
	f.exec(`DELETE FROM a WHERE id BETWEEN 11 AND 20`)
	f.exec(`DELETE FROM b WHERE id > 40`)
	f.exec(`INSERT INTO b SELECT g, -g FROM generate_series(51, 60) g`)
	f.replicate()
	f.assertSame()
	// Pending: committed, captured, not yet shipped.
	f.exec(`DELETE FROM a WHERE id BETWEEN 21 AND 30`)
	f.exec(`UPDATE b SET n = 0 WHERE id <= 5`)
	f.exec(`INSERT INTO a VALUES (100, 'pending')`)
	return f
}

// switchedYAML is f's configuration with source.capture set to to.
func switchedYAML(f *fixture, to string) string {
	tables := `tables: ["public.*", "odd.*"]`
	from := f.cfg.Source.Capture
	if !strings.Contains(f.cfgYAML, tables+slotKeys(from)) {
		f.t.Fatalf("fixture YAML has no %q", tables+slotKeys(from))
	}
	keys := slotKeys(to)
	if keys == "" {
		keys = "\n  capture: " + to
	}
	return strings.Replace(f.cfgYAML, tables+slotKeys(from), tables+keys, 1)
}

// parse parses a configuration or fails the test.
func parse(t *testing.T, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml), os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// sourceCapture describes every capture object of f's pipeline on the
// source: its slot, publication, capture schema and triggers.
func sourceCapture(t *testing.T, f *fixture) string {
	t.Helper()
	var s string
	err := f.src.QueryRow(context.Background(), `SELECT concat_ws(' | ',
		'slots: ' || (SELECT string_agg(slot_name, ',') FROM pg_replication_slots WHERE slot_name = $1),
		'publications: ' || (SELECT string_agg(pubname, ',') FROM pg_publication WHERE pubname = $1),
		'schemas: ' || (SELECT string_agg(nspname, ',') FROM pg_namespace WHERE nspname = $1),
		'triggers: ' || (SELECT string_agg(tgname, ',' ORDER BY tgname) FROM pg_trigger WHERE tgname LIKE 'pgferry\_%'))`,
		"pgferry_"+f.cfg.Name).Scan(&s)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// targetState is everything a refused start must leave alone on the
// target: schemas, tables, every row, and the watermarks.
func targetState(t *testing.T, dst *pgxpool.Pool) string {
	t.Helper()
	var s string
	err := dst.QueryRow(context.Background(), `SELECT concat_ws(' | ',
		(SELECT string_agg(n.nspname || '.' || coalesce(c.relname, ''), ',' ORDER BY n.nspname, c.relname)
		 FROM pg_namespace n LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relkind IN ('r', 'p')
		 WHERE n.nspname NOT LIKE 'pg\_%' AND n.nspname <> 'information_schema'),
		(SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM a t),
		(SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM b t),
		(SELECT string_agg(w::text, ',' ORDER BY w::text) FROM pgferry.watermarks w))`).Scan(&s)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// runBin runs the local runner binary and returns its exit error and
// output.
func runBin(t *testing.T, bin string, args ...string) (error, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return err, out.String()
}

// TestSwitchingCaptureModeOnALivePipelineIsRefused: a pipeline that has
// replicated under one capture mode, with changes (deletes among them)
// captured but not yet shipped, is started with the other mode. The local
// runner (continuous, --until-idle, --initial-load) and the drain
// function's path all refuse, naming source.capture, both modes and the
// way to switch; the old mode's slot (which keeps holding WAL) is named.
// Nothing of the new mode is installed on the source (no triggers or
// capture schema; no slot or publication), nothing is sent, the
// checkpoint and the target stay as they were. Going back to the old mode
// then delivers every pending change.
func TestSwitchingCaptureModeOnALivePipelineIsRefused(t *testing.T) {
	bin := buildLocalRunner(t)
	forEachCapture(t, func(t *testing.T, from string) {
		to := otherMode(from)
		f := livePipeline(t, from)
		ctx := context.Background()
		yaml := switchedYAML(f, to)
		cfgPath := writeConfig(t, yaml)
		srcBefore, dstBefore := sourceCapture(t, f), targetState(t, f.dst)
		cpBefore, err := f.aws.State.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := cpBefore.Mode(); got != from {
			t.Fatalf("checkpoint mode = %q, want %q", got, from)
		}

		want := []string{"source.capture", `captures with "` + from + `"`, `asks for "` + to + `"`, "--reset", "--initial-load", cfgPath}
		if from == config.CaptureSlot {
			want = append(want, "replication slot "+f.cfg.SlotName()+" keeps holding WAL")
		}
		for _, args := range [][]string{
			{"--until-idle", "--timeout", "60s"},
			{"--initial-load", "--until-idle", "--timeout", "60s"},
			{}, // continuous: must stop, not retry for ever
		} {
			err, out := runBin(t, bin, append([]string{"--config", cfgPath}, args...)...)
			if err == nil {
				t.Fatalf("runner %v exited 0, want a refusal; output:\n%s", args, out)
			}
			for _, w := range want {
				if !strings.Contains(out, w) {
					t.Errorf("runner %v: output does not mention %q:\n%s", args, w, out)
				}
			}
			if len(args) == 0 {
				t.Logf("refusal:\n%s", out)
			}
		}
		// The drain function's path (and the initial-load function's check).
		cfg := parse(t, yaml)
		_, err = runner.NewDrainer(cfg, f.src, f.aws, runner.InstanceID(), f.log, nil).Run(ctx)
		if !errors.Is(err, drain.ErrCaptureSwitch) {
			t.Errorf("drain run with capture %s: err = %v, want ErrCaptureSwitch", to, err)
		}
		if err := runner.CheckCaptureEnv(ctx, cfg, f.src); !errors.Is(err, drain.ErrCaptureSwitch) {
			t.Errorf("initial-load check with capture %s: err = %v, want ErrCaptureSwitch", to, err)
		}

		if after := sourceCapture(t, f); after != srcBefore {
			t.Errorf("capture objects on the source changed:\nbefore %s\nafter  %s", srcBefore, after)
		}
		if from == config.CaptureSlot && !strings.Contains(srcBefore, "slots: "+f.cfg.SlotName()) {
			t.Errorf("the slot is gone: %s", srcBefore)
		}
		if after := targetState(t, f.dst); after != dstBefore {
			t.Errorf("the target changed:\nbefore %s\nafter  %s", dstBefore, after)
		}
		if vis, inFlight, err := sqsadmin.Depth(ctx, f.aws.SQS, f.aws.Queue.URL()); err != nil || vis+inFlight != 0 {
			t.Errorf("queue holds %d+%d messages (err %v), want none sent", vis, inFlight, err)
		}
		cpAfter, err := f.aws.State.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if cpAfter != cpBefore {
			t.Errorf("checkpoint changed:\nbefore %+v\nafter  %+v", cpBefore, cpAfter)
		}

		// Nothing was lost: back on its own mode the pipeline delivers
		// the pending changes, deletes included.
		f.replicate()
		f.assertSame()
	})
}
