package runner_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/testenv"
)

const damageDDL = `
CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, price numeric(10,2) NOT NULL);
CREATE TABLE notes (id int PRIMARY KEY, body text);
CREATE TABLE blanks (id int PRIMARY KEY, v text);
CREATE SCHEMA shop;
CREATE TABLE shop.tags (id int PRIMARY KEY, label text NOT NULL);`

// TestVerifyNamesEveryDamagedTableAndFails replicates to two targets (one
// with apply_schema), damages each target after the fact (a changed
// value, a missing row, an extra row, a NULL where the source has an
// empty string), and runs the local runner binary with --until-idle
// --verify: it must exit 1, mark exactly the damaged table on the damaged
// target as a mismatch (saying whether the count or only the checksum
// caught it), report every other table and target as matching, and name
// each damaged one in its error.
func TestVerifyNamesEveryDamagedTableAndFails(t *testing.T) {
	bin := buildLocalRunner(t)
	f, pools, _ := newFanoutFixture(t, config.CaptureTrigger, damageDDL, "")
	plain, rep := pools[0], pools[1]
	cfgPath := writeConfig(t, f.cfgYAML)
	logs := keepLogs(t)
	// Rows before capture: copy_existing brings them to both targets.
	f.exec(`INSERT INTO items SELECT g, 'item ' || g, g * 1.25 FROM generate_series(1, 30) g;
		INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 20) g;
		INSERT INTO blanks SELECT g, CASE WHEN g % 3 = 0 THEN '' ELSE 'v' || g END FROM generate_series(1, 15) g;
		INSERT INTO shop.tags SELECT g, 'tag ' || g FROM generate_series(1, 10) g;`)

	run := func(title string) (string, string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
		defer cancel()
		var stdout, stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, bin, "--config", cfgPath, "--until-idle", "--verify", "--timeout", "120s")
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		fmt.Fprintf(logs.section(title), "%s\n--- stdout:\n%s", stderr.String(), stdout.String())
		return stdout.String(), stderr.String(), err
	}
	out, _, err := run("first run: replicate and verify")
	if err != nil {
		t.Fatalf("first --until-idle --verify run: %v\n%s", err, out)
	}
	if !strings.Contains(out, "verify: all 8 table comparisons match") {
		t.Fatalf("first run does not report 8 matching comparisons:\n%s", out)
	}

	testenv.Exec(t, plain, `UPDATE items SET price = price + 1 WHERE id = 7`) // same count: only the checksum can tell
	testenv.Exec(t, rep, `DELETE FROM rep.notes WHERE id = 3`)
	testenv.Exec(t, plain, `INSERT INTO shop.tags VALUES (11, 'stray')`)
	testenv.Exec(t, rep, `UPDATE rep.blanks SET v = NULL WHERE id = 6`) // '' on the source

	out, stderr, err := run("second run: verify the damaged targets")
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("second run: %v, want exit status 1\nstdout:\n%s", err, out)
	}
	checksum := "MISMATCH: same row count, checksums differ"
	for _, want := range []struct{ table, target, rows, status string }{
		{"public.blanks", "plain", "15 15", "match"},
		{"public.blanks -> rep.blanks", "rep", "15 15", checksum},
		{"public.items", "plain", "30 30", checksum},
		{"public.items -> rep.items", "rep", "30 30", "match"},
		{"public.notes", "plain", "20 20", "match"},
		{"public.notes -> rep.notes", "rep", "20 19", "MISMATCH: row counts differ"},
		{"shop.tags", "plain", "10 11", "MISMATCH: row counts differ"},
		{"shop.tags -> rep.tags", "rep", "10 10", "match"},
	} {
		counts := strings.Fields(want.rows)
		line := `(?m)^` + regexp.QuoteMeta(want.table) + ` +` + want.target + ` +` + counts[0] + ` +` + counts[1] + `  ` + regexp.QuoteMeta(want.status)
		if want.status == "match" {
			line += `$`
		}
		if !regexp.MustCompile(line).MatchString(out) {
			t.Errorf("no line for %s on %s with %s rows and %q in:\n%s", want.table, want.target, want.rows, want.status, out)
		}
	}
	if strings.Contains(out, "verify: all") {
		t.Errorf("stdout claims everything matches:\n%s", out)
	}
	if want := "pgferry: verify: 4 of 8 table comparisons differ: public.blanks -> rep.blanks on target rep, public.items on target plain, " +
		"public.notes -> rep.notes on target rep, shop.tags on target plain\n"; !strings.HasSuffix(stderr, want) {
		t.Errorf("stderr does not end with %q:\n%s", want, stderr)
	}
}
