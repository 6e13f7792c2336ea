package runner_test

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgferry/pgferry/shared/testenv"
)

// TestPasswordsNeverReachLogsErrorsOrMetrics replicates with password-
// authenticated DSNs at debug log level with metrics on, then fails to
// reach a host with the same password: the password must appear nowhere
// the runner writes, in plain or URL-encoded form.
func TestPasswordsNeverReachLogsErrorsOrMetrics(t *testing.T) {
	bin := buildLocalRunner(t)
	f := newFixture(t, `CREATE TABLE t (id int PRIMARY KEY, v text);`, "")
	admin := testenv.Pool(t, testenv.ClusterDSN(t))
	user, pw := passwordRole(t, admin, "SUPERUSER")
	pw += "/#?&" // characters a DSN must escape, so both spellings are checked
	testenv.Exec(t, admin, "ALTER ROLE "+quoteIdent(user)+" PASSWORD '"+pw+"'")
	f.exec(`INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 100) g`)

	yaml := strings.Replace(f.cfgYAML, f.srcDSN, withUser(t, f.srcDSN, user, pw), 1)
	yaml = strings.Replace(yaml, f.dstDSN, withUser(t, f.dstDSN, user, pw), 1)
	dir := t.TempDir()
	cfgPath, metricsPath := filepath.Join(dir, "pipeline.yaml"), filepath.Join(dir, "metrics.emf")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	run := func(cfg string, wantOK bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, "--config", cfg, "--until-idle", "--verify", "--log-level", "debug", "--metrics", metricsPath, "--timeout", "60s")
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); (err == nil) != wantOK {
			t.Fatalf("run with %s: err = %v, want success %v\n%s", cfg, err, wantOK, out.String())
		}
	}
	run(cfgPath, true)
	if !strings.Contains(out.String(), "all 1 table comparisons match") {
		t.Fatalf("replication with password DSNs did not verify:\n%s", out.String())
	}

	// The same password against a port nobody listens on.
	bad := strings.Replace(yaml, withUser(t, f.dstDSN, user, pw), "postgres://"+url.UserPassword(user, pw).String()+"@127.0.0.1:1/x?sslmode=disable", 1)
	badPath := filepath.Join(dir, "unreachable.yaml")
	if err := os.WriteFile(badPath, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	run(badPath, false)

	metricsOut, err := os.ReadFile(metricsPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(metricsOut, []byte(`"RowsApplied"`)) {
		t.Fatalf("no metrics were written, so the check below proves nothing:\n%s", metricsOut)
	}
	for _, spelling := range []string{pw, url.QueryEscape(pw), url.PathEscape(pw), url.UserPassword("x", pw).String()[2:]} {
		for what, text := range map[string]string{"logs and errors": out.String(), "metrics": string(metricsOut)} {
			if strings.Contains(text, spelling) {
				t.Errorf("the %s contain the password (as %q)", what, spelling)
			}
		}
	}
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
