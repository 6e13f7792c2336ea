package runner_test

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"github.com/pgferry/pgferry/shared/fault"
)

// TestDeleteAfterAnUnconfirmedBatchReachesTheTarget kills a runner at each
// point between a batch's publish and its checkpoint (in either order),
// then deletes and updates rows that batch inserted. The next runner reads
// the killed one's transactions again together with the deletes; the
// target, which applies the killed runner's batch from the queue as well
// as whatever the next runner ships, must end equal to the source. (Slot
// capture used to re-cut one wider batch from the same start, whose net
// changes leave out rows inserted and deleted within it: applied over the
// first batch, it left the deleted rows on the target.)
func TestDeleteAfterAnUnconfirmedBatchReachesTheTarget(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a runner and waits for its lease to expire")
	}
	bin := buildFaultRunner(t)
	forEachCapture(t, func(t *testing.T, mode string) {
		for _, point := range []string{fault.DrainSent, fault.DrainCheckpointed} {
			t.Run(point, func(t *testing.T) {
				f := newFixtureMode(t, mode, `CREATE TABLE t (id int PRIMARY KEY, v text);`, "  lease: 5s\napply:\n  visibility: 3s\n")
				cfgPath := writeConfig(t, f.cfgYAML)
				logs := keepLogs(t)
				f.exec(`INSERT INTO t SELECT g, 'v' FROM generate_series(1, 100) g`)
				first := exec.Command(bin, "--config", cfgPath, "--log-level", "debug")
				first.Env = append(os.Environ(), "PGFERRY_FAULT="+point+"@1")
				first.Stderr = logs.section("first runner (killed at " + point + ")")
				err := first.Run()
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
					t.Fatalf("first runner: %v, want death by SIGKILL at %s", err, point)
				}
				f.exec(`DELETE FROM t WHERE id <= 50`)
				f.exec(`UPDATE t SET v = 'after the kill' WHERE id > 90`)
				f.exec(`INSERT INTO t SELECT g, 'after the kill' FROM generate_series(101, 110) g`)

				second := exec.Command(bin, "--config", cfgPath, "--until-idle", "--log-level", "debug", "--timeout", "90s")
				second.Stderr = logs.section("second runner (--until-idle)")
				if err := second.Run(); err != nil {
					t.Fatalf("second runner: %v", err)
				}
				f.assertSame()
			})
		}
	})
}
