package runner_test

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// writeConfig writes a pipeline configuration into the test's temporary
// directory and returns its path.
func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pipeline.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// keepLogs collects runner output, shown when the test fails or
// PGFERRY_TEST_LOG is set.
func keepLogs(t *testing.T) *runnerLogs {
	logs := &runnerLogs{}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("PGFERRY_TEST_LOG") != "" {
			t.Log(logs.String())
		}
	})
	return logs
}

// chaosSeed returns the seed of a randomised test, PGFERRY_CHAOS_SEED when
// set, and logs how to replay it.
func chaosSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("PGFERRY_CHAOS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("PGFERRY_CHAOS_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("chaos seed %d (replay with PGFERRY_CHAOS_SEED=%d)", seed, seed)
	return seed
}
