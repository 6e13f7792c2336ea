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

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/drain"
	"github.com/pgferry/pgferry/shared/queue/sqsadmin"
	"github.com/pgferry/pgferry/shared/runner"
	"github.com/pgferry/pgferry/shared/testenv"
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
func livePipeline(t *testing.T, from, ddl string) *fixture {
	t.Helper()
	f := newFixtureMode(t, from, ddl, "")
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

// forgetRecordedMode removes the capture mode from f's checkpoint item,
// as a version that did not record it would have left it.
func forgetRecordedMode(t *testing.T, f *fixture) {
	t.Helper()
	db := dynamodb.NewFromConfig(testenv.AWSConfig(t))
	_, err := db.UpdateItem(context.Background(), &dynamodb.UpdateItemInput{
		TableName:        aws.String(f.cfg.StateTableName()),
		Key:              map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: "drain#" + f.cfg.Name}},
		UpdateExpression: aws.String("REMOVE capture"),
	})
	if err != nil {
		t.Fatal(err)
	}
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
		f := livePipeline(t, from, switchDDL)
		ctx := context.Background()
		yaml := switchedYAML(f, to)
		cfgPath := writeConfig(t, yaml)
		if from == config.CaptureTrigger {
			// As saved before the mode was recorded: the refusal must read
			// it from the checkpoint's shape.
			forgetRecordedMode(t, f)
		}
		srcBefore, dstBefore := sourceCapture(t, f), targetState(t, f.dst)
		cpBefore, err := f.aws.State.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got, inferred := cpBefore.Mode(); got != from || inferred != (from == config.CaptureTrigger) {
			t.Fatalf("checkpoint mode = %q (inferred %v), want %q", got, inferred, from)
		}

		want := []string{"source.capture", `captures with "` + from + `"`, `asks for "` + to + `"`, "--reset", "TRUNCATE", "without a primary key", "--initial-load", cfgPath}
		if from == config.CaptureSlot {
			want = append(want, "replication slot "+f.cfg.SlotName()+" keeps holding WAL")
		} else {
			want = append(want, "mode read from its positions")
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
		env, err := runner.Start(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		p := runner.New(env, f.log)
		p.Source, p.Res = f.src, f.aws
		_, err = p.Drainer(runner.InstanceID(), nil, nil).Run(ctx)
		if !errors.Is(err, drain.ErrCaptureSwitch) {
			t.Errorf("drain run with capture %s: err = %v, want ErrCaptureSwitch", to, err)
		}
		if err := p.CheckCapture(ctx); !errors.Is(err, drain.ErrCaptureSwitch) {
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
		// the pending changes, deletes included, and records its mode.
		f.replicate()
		f.assertSame()
		if cp, err := f.aws.State.Load(ctx); err != nil || cp.Capture != from {
			t.Errorf("checkpoint records capture %q (err %v), want %q", cp.Capture, err, from)
		}
	})
}

// TestSwitchingCaptureModeByResetAndReloadEndsEqual follows the procedure
// the refusal prints, on a live pipeline with changes (deletes among them)
// captured but never shipped, more made after the reset, and writes going
// on during the reload: set the new mode, --reset, then --initial-load
// --until-idle. The old mode's objects are gone, the checkpoint records
// the new mode, and every table ends equal to the source.
func TestSwitchingCaptureModeByResetAndReloadEndsEqual(t *testing.T) {
	bin := buildLocalRunner(t)
	forEachCapture(t, func(t *testing.T, from string) {
		to := otherMode(from)
		f := livePipeline(t, from, switchDDL+"CREATE TABLE k (v text);")
		f.exec(`INSERT INTO k SELECT 'k' || g FROM generate_series(1, 20) g`)
		f.replicate()
		f.exec(`DELETE FROM k WHERE v IN ('k1', 'k2')`) // pending too
		ctx := context.Background()
		yaml := switchedYAML(f, to)
		cfgPath := writeConfig(t, yaml)

		if err, out := runBin(t, bin, "--config", cfgPath, "--reset"); err != nil {
			t.Fatalf("--reset: %v\n%s", err, out)
		}
		if got := sourceCapture(t, f); got != "" {
			t.Fatalf("capture objects left on the source after --reset: %s", got)
		}
		// The tables without a primary key, which capture copies whole.
		testenv.Exec(t, f.dst, `TRUNCATE k`)
		// Made while nothing captures: only the reload can bring them.
		f.exec(`DELETE FROM a WHERE id BETWEEN 31 AND 35`)
		f.exec(`UPDATE b SET n = 1000 WHERE id BETWEEN 6 AND 10`)
		f.exec(`INSERT INTO a VALUES (200, 'after reset')`)
		f.exec(`DELETE FROM k WHERE v = 'k3'`)

		// Writes go on while the reload starts (--until-idle waits for a
		// pause in the writes, so they stop after a while).
		wctx, stop := context.WithTimeout(ctx, 4*time.Second)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := 0; wctx.Err() == nil; i++ {
				_, _ = f.src.Exec(wctx, `INSERT INTO b VALUES ($1, $2)`, 1000+i, i)
				_, _ = f.src.Exec(wctx, `DELETE FROM a WHERE id = $1`, 36+i%10)
				_, _ = f.src.Exec(wctx, `UPDATE b SET n = n + 1 WHERE id = $1`, 1+i%40)
				time.Sleep(20 * time.Millisecond)
			}
		}()
		err, out := runBin(t, bin, "--config", cfgPath, "--initial-load", "--until-idle", "--timeout", "150s")
		stop()
		<-done
		if err != nil {
			t.Fatalf("--initial-load --until-idle: %v\n%s", err, out)
		}
		var written int
		if err := f.src.QueryRow(ctx, `SELECT count(*) FROM b WHERE id >= 1000`).Scan(&written); err != nil || written == 0 {
			t.Fatalf("the writer wrote %d rows during the reload (err %v)", written, err)
		}

		// From here the pipeline runs under the new mode.
		f.setConfig(parse(t, yaml))
		f.exec(`DELETE FROM b WHERE id BETWEEN 11 AND 15`)
		f.exec(`INSERT INTO k VALUES ('after')`)
		f.replicate()
		f.assertSame()
		cp, err := f.aws.State.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if cp.Capture != to {
			t.Errorf("checkpoint records capture %q, want %q", cp.Capture, to)
		}
		objs := sourceCapture(t, f)
		if old := "slots: " + f.cfg.SlotName(); to == config.CaptureTrigger && strings.Contains(objs, old) {
			t.Errorf("the old slot is still on the source: %s", objs)
		}
		if to == config.CaptureSlot && strings.Contains(objs, "triggers:") {
			t.Errorf("the old triggers are still on the source: %s", objs)
		}
	})
}
