package runner_test

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgferry/pgferry/shared/testenv"
)

// viaProxy returns dsn with its host:port replaced by addr.
func viaProxy(t *testing.T, dsn, addr string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = addr
	return u.String()
}

// TestOutagesRecoverWithoutLoss runs the runner through proxies and takes
// each dependency away in turn while the source keeps writing: the target
// database, the source database, SQS and S3, DynamoDB, and then DynamoDB
// throttling half of all requests. The runner must ride every outage out
// (retrying with backoff, never exiting, never parking a batch) and a
// final run must find the target equal to the source.
func TestOutagesRecoverWithoutLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("takes dependencies away for about 30 s")
	}
	bin := buildLocalRunner(t)
	forEachCapture(t, func(t *testing.T, mode string) { testOutages(t, mode, bin) })
}

func testOutages(t *testing.T, mode, bin string) {
	f := newFixtureMode(t, mode, crashDDL, "  lease: 5s\napply:\n  visibility: 3s\n  max_attempts: 2\nbatch:\n  max_rows: 300\n")
	f.exec(`INSERT INTO parent SELECT g, 'p' || g FROM generate_series(1, $1::int) g`, crashParents)
	f.exec(`INSERT INTO accounts SELECT g, $2::bigint, repeat('x', 84) FROM generate_series(1, $1::int) g`, crashAccounts, crashBalance)

	srcURL, _ := url.Parse(f.srcDSN)
	dstURL, _ := url.Parse(f.dstDSN)
	sqsURL, _ := url.Parse(os.Getenv("AWS_ENDPOINT_URL_SQS"))
	srcProxy := testenv.NewProxy(t, srcURL.Host)
	dstProxy := testenv.NewProxy(t, dstURL.Host)
	sqsProxy := testenv.NewProxy(t, sqsURL.Host)
	ddb := testenv.NewHTTPFaults(t, os.Getenv("AWS_ENDPOINT_URL_DYNAMODB"))

	yaml := strings.Replace(f.cfgYAML, f.srcDSN, viaProxy(t, f.srcDSN, srcProxy.Addr()), 1)
	yaml = strings.Replace(yaml, f.dstDSN, viaProxy(t, f.dstDSN, dstProxy.Addr()), 1)
	cfgPath := writeConfig(t, yaml)
	env := append(os.Environ(),
		"AWS_ENDPOINT_URL_SQS=http://"+sqsProxy.Addr(),
		"AWS_ENDPOINT_URL_S3=http://"+sqsProxy.Addr(),
		"AWS_ENDPOINT_URL_DYNAMODB="+ddb.URL())

	logs := keepLogs(t)
	runLog := logs.section("runner through every outage")
	cmd := exec.Command(bin, "--config", cfgPath)
	cmd.Env, cmd.Stderr = env, runLog
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	loadCtx, stopLoad := context.WithCancel(context.Background())
	defer stopLoad()
	load := startCrashLoad(t, f, loadCtx, 2, 42)

	outage := func(name string, down, up func(), d time.Duration) {
		time.Sleep(2 * time.Second)
		t.Logf("%s: down for %s", name, d)
		down()
		time.Sleep(d)
		up()
		select {
		case err := <-exited:
			t.Fatalf("the runner exited during the %s outage: %v", name, err)
		default:
		}
	}
	outage("target database", dstProxy.Cut, dstProxy.Restore, 4*time.Second)
	outage("source database", srcProxy.Cut, srcProxy.Restore, 4*time.Second)
	outage("SQS and S3", sqsProxy.Cut, sqsProxy.Restore, 4*time.Second)
	outage("DynamoDB", func() { ddb.SetDown(true) }, func() { ddb.SetDown(false) }, 4*time.Second)
	// The throttling lasts until a request met it: a runner still backing
	// off after the outage before may send none for several seconds.
	outage("DynamoDB throttling 70% of requests", func() { ddb.Throttle(0.7) }, func() {
		waitFor(t, 2*time.Minute, "a DynamoDB request to be throttled", func() bool { return ddb.Throttled.Load() > 0 })
		ddb.Throttle(0)
	}, 6*time.Second)
	time.Sleep(2 * time.Second)
	stopLoad()
	stats := load.wait()
	if stats.committed == 0 {
		t.Fatal("the write load committed nothing")
	}
	if ddb.Throttled.Load() == 0 {
		t.Error("no DynamoDB request was throttled: the throttling phase proved nothing")
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(2 * time.Minute): // a hang guard, generous for a busy machine
		t.Fatal("the runner did not stop within 2 min of SIGTERM")
	}
	if !strings.Contains(runLog.String(), "retry") {
		t.Error("the runner's log shows no retries: were the outages noticed at all?")
	}

	var stdout bytes.Buffer
	final := exec.Command(bin, "--config", cfgPath, "--until-idle", "--verify", "--timeout", "5m")
	final.Env, final.Stdout, final.Stderr = env, &stdout, logs.section("final run (--until-idle --verify)")
	if err := final.Run(); err != nil {
		t.Fatalf("final --until-idle --verify run: %v\nstdout:\n%s", err, stdout.String())
	}
	f.assertSame()
	if n := len(dlqMessages(t, f)); n != 0 {
		t.Errorf("%d batches were parked in the dead-letter queue by an outage; outages must only delay", n)
	}
	t.Logf("%d source transactions; %d DynamoDB requests throttled", stats.committed, ddb.Throttled.Load())
}

func (s *section) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}
