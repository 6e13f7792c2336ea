package runner_test

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/testenv"
)

// passwordRole creates a login role that must authenticate with a
// password (localstack/pg-up's pg_hba.conf asks members of
// pgferry_password_auth for one) and returns its name and password.
func passwordRole(t *testing.T, admin *pgxpool.Pool, extra string) (string, string) {
	t.Helper()
	ctx := context.Background()
	_, _ = admin.Exec(ctx, `DO $$ BEGIN CREATE ROLE pgferry_password_auth NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$`)
	user := testenv.Name("pw")
	password := "s3cret-" + testenv.Name("pw")
	testenv.Exec(t, admin, fmt.Sprintf(`CREATE ROLE %s LOGIN PASSWORD '%s' IN ROLE pgferry_password_auth %s`,
		pgx.Identifier{user}.Sanitize(), password, extra))
	t.Cleanup(func() {
		ctx := context.Background()
		_, _ = admin.Exec(ctx, "DROP OWNED BY "+pgx.Identifier{user}.Sanitize())
		_, _ = admin.Exec(ctx, "DROP ROLE "+pgx.Identifier{user}.Sanitize())
	})
	return user, password
}

// withUser returns dsn with its user and password replaced.
func withUser(t *testing.T, dsn, user, password string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(user, password)
	return u.String()
}

// TestBadInputGetsAClearErrorAndChangesNothing drives the runner binary
// with bad configuration, unreachable hosts, wrong passwords, missing
// privileges and data the target cannot hold. Each case must exit non-zero
// with an error that names the offending thing, must not echo a password,
// and must leave source and target as they were (or, for a batch the
// target refuses, must not write any of it).
func TestBadInputGetsAClearErrorAndChangesNothing(t *testing.T) {
	bin := buildLocalRunner(t)
	f := newFixture(t, `CREATE TABLE t (id int PRIMARY KEY, v text);`, "")
	admin := testenv.Pool(t, testenv.ClusterDSN(t))
	f.exec(`INSERT INTO t VALUES (1, 'one')`)

	pwUser, pw := passwordRole(t, admin, "")
	testenv.Exec(t, f.src, "GRANT SELECT ON t TO "+pgx.Identifier{pwUser}.Sanitize())
	// A role that may connect and read but not create a schema.
	weak, weakPW := passwordRole(t, admin, "")
	testenv.Exec(t, f.src, "GRANT SELECT ON t TO "+pgx.Identifier{weak}.Sanitize())
	// A role that may create schemas but owns no replicated table.
	creator, creatorPW := passwordRole(t, admin, "")
	srcDB := strings.TrimPrefix(mustURL(t, f.srcDSN).Path, "/")
	testenv.Exec(t, admin, fmt.Sprintf("GRANT CREATE ON DATABASE %s TO %s", pgx.Identifier{srcDB}.Sanitize(), pgx.Identifier{creator}.Sanitize()))

	unreachable := "postgres://someone:" + pw + "@127.0.0.1:1/db?sslmode=disable&connect_timeout=3"
	wrongPW := withUser(t, f.srcDSN, pwUser, "not-"+pw)
	base := f.cfgYAML
	// with replaces one line of the working configuration.
	with := func(from, to string) string {
		if !strings.Contains(base, from) {
			t.Fatalf("fixture YAML has no %q", from)
		}
		return strings.Replace(base, from, to, 1)
	}
	srcLine := fmt.Sprintf("dsn: %q", f.srcDSN)
	dstLine := fmt.Sprintf("dsn: %q", f.dstDSN)

	// Target-only constraints for the "target cannot hold it" cases, each
	// on its own table so they do not interfere.
	testenv.Exec(t, f.src, `CREATE TABLE narrow (id int PRIMARY KEY, code text); CREATE TABLE typed (id int PRIMARY KEY, n text)`)
	testenv.Exec(t, f.dst, `CREATE TABLE narrow (id int PRIMARY KEY, code varchar(3)); CREATE TABLE typed (id int PRIMARY KEY, n int)`)

	type check func(t *testing.T)
	// state lists every schema and table on both sides: a refused start
	// must leave it exactly as it was.
	state := func(t *testing.T) string {
		t.Helper()
		var out []string
		for _, p := range []*pgxpool.Pool{f.src, f.dst} {
			var s string
			if err := p.QueryRow(context.Background(), `SELECT string_agg(n.nspname || '.' || coalesce(c.relname, ''), ',' ORDER BY n.nspname, c.relname)
				FROM pg_namespace n LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relkind IN ('r', 'p')
				WHERE n.nspname NOT LIKE 'pg\_%' AND n.nspname <> 'information_schema'`).Scan(&s); err != nil {
				t.Fatal(err)
			}
			out = append(out, s)
		}
		return strings.Join(out, " | ")
	}
	var before string
	untouched := func(t *testing.T) {
		t.Helper()
		if after := state(t); after != before {
			t.Errorf("schemas or tables changed:\nbefore %s\nafter  %s", before, after)
		}
	}
	noRows := func(table string) check {
		return func(t *testing.T) {
			t.Helper()
			if got := f.targetInt("SELECT count(*) FROM " + pgx.Identifier{table}.Sanitize()); got != 0 {
				t.Errorf("target table %s holds %d rows of a refused batch", table, got)
			}
		}
	}
	only := func(table string) string {
		return with(`tables: ["public.*", "odd.*"]`, fmt.Sprintf(`tables: ["public.%s"]`, table))
	}

	cases := []struct {
		name  string
		yaml  string   // configuration (empty: the working one)
		args  []string // extra flags
		setup func()
		// noIdle: run without --until-idle (a flag error must stop even a
		// continuous run).
		noIdle bool
		want   []string // every one must appear in the error output
		after  check
	}{
		{name: "unknown key", yaml: with("name:", "nmae: x\nname:"), want: []string{`unknown key "nmae"`}, after: untouched},
		{name: "missing source dsn", yaml: with(srcLine, `capture: trigger`), want: []string{"source.dsn: required"}, after: untouched},
		{name: "bad pattern", yaml: with(`tables: ["public.*", "odd.*"]`, `tables: ["public.[x"]`), want: []string{"source.tables[0]", "public.[x"}, after: untouched},
		{name: "unqualified pattern", yaml: with(`tables: ["public.*", "odd.*"]`, `tables: ["orders"]`), want: []string{"source.tables[0]", "schema-qualified"}, after: untouched},
		{name: "duplicate target name", yaml: with("  replica:\n", "  replica:\n    kind: postgres\n    "+dstLine+"\n  replica:\n"), want: []string{"replica", "already defined"}, after: untouched},
		{name: "kind that does not exist", yaml: with("kind: postgres", "kind: oracle"), want: []string{"targets.replica.kind", `"oracle"`}, after: untouched},
		{name: "capture mode that does not exist", yaml: with("tables:", "capture: wal\n  tables:"), want: []string{"source.capture", `"wal"`}, after: untouched},
		{name: "unset environment variable", yaml: with(srcLine, `dsn: "${PGFERRY_TEST_NOT_SET}"`), want: []string{"source.dsn", "PGFERRY_TEST_NOT_SET"}, after: untouched},
		{name: "bad duration", yaml: with("interval: 100ms", "interval: soon"), want: []string{"drain.interval", "soon"}, after: untouched},
		{name: "no targets", yaml: base[:strings.Index(base, "targets:")] + "drain:\n  interval: 100ms\n", want: []string{"targets: required"}, after: untouched},
		{name: "malformed dsn", yaml: with(dstLine, `dsn: "postgres://u@localhost:notaport/db"`), want: []string{"targets.replica.dsn"}, after: untouched},
		{name: "target is the source", yaml: with(dstLine, srcLine), want: []string{"targets.replica.dsn", "same as source.dsn"}, after: untouched},
		{name: "config file missing", args: []string{"--config", "/nonexistent/pgferry.yaml"}, want: []string{"/nonexistent/pgferry.yaml"}, after: untouched},
		{name: "verify without until-idle", args: []string{"--verify"}, noIdle: true, want: []string{"--verify needs --until-idle"}, after: untouched},
		{name: "bad log level", args: []string{"--log-level", "loud"}, want: []string{"--log-level"}, after: untouched},
		{name: "unreachable source", yaml: with(srcLine, fmt.Sprintf("dsn: %q", unreachable)), want: []string{"source", "127.0.0.1:1"}, after: untouched},
		{name: "unreachable target", yaml: with(dstLine, fmt.Sprintf("dsn: %q", unreachable)), want: []string{"targets.replica", "127.0.0.1:1"}, after: untouched},
		{name: "wrong source password", yaml: with(srcLine, fmt.Sprintf("dsn: %q", wrongPW)), want: []string{"source", pwUser, "password authentication failed"}, after: untouched},
		{name: "wrong target password", yaml: with(dstLine, fmt.Sprintf("dsn: %q", withUser(t, f.dstDSN, pwUser, "not-"+pw))), want: []string{"targets.replica", pwUser, "password authentication failed"}, after: untouched},
		{name: "database that does not exist", yaml: with(dstLine, fmt.Sprintf("dsn: %q", strings.Replace(f.dstDSN, mustURL(t, f.dstDSN).Path, "/no_such_db", 1))), want: []string{"targets.replica", "no_such_db"}, after: untouched},
		{name: "source role without CREATE", yaml: with(srcLine, fmt.Sprintf("dsn: %q", withUser(t, f.srcDSN, weak, weakPW))), want: []string{"CREATE on the database", weak}, after: untouched},
		{name: "source role that owns no table", yaml: strings.Replace(only("t"), srcLine, fmt.Sprintf("dsn: %q", withUser(t, f.srcDSN, creator, creatorPW)), 1),
			want: []string{"public.t", "TRIGGER and SELECT", "nothing was changed"}, after: untouched},
		{name: "value too long for the target", yaml: strings.Replace(only("narrow"), "interval: 100ms", "interval: 100ms\napply:\n  max_attempts: 1", 1), setup: func() { f.exec(`INSERT INTO narrow VALUES (1, 'toolong')`) },
			want: []string{"dead-letter", "public.narrow", "22001", "--redrive"}, after: noRows("narrow")},
		{name: "value of the wrong type for the target", yaml: strings.Replace(only("typed"), "interval: 100ms", "interval: 100ms\napply:\n  max_attempts: 1", 1), setup: func() { f.exec(`INSERT INTO typed VALUES (1, 'abc')`) },
			want: []string{"public.typed", "22P02", "column n"}, after: noRows("typed")},
	}
	if len(cases) < 20 {
		t.Fatalf("only %d cases", len(cases))
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			yaml := c.yaml
			if yaml == "" {
				yaml = base
			}
			// A pipeline of its own for every case: queues, capture schema
			// and watermarks never carry over from one case to the next.
			yaml = strings.Replace(yaml, "name: "+f.cfg.Name, "name: "+testenv.Name("bad"), 1)
			before = state(t)
			cfgPath := writeConfig(t, yaml)
			if c.setup != nil {
				c.setup()
			}
			args := []string{"--config", cfgPath}
			if !c.noIdle {
				args = append(args, "--until-idle", "--timeout", "40s")
			}
			args = append(args, c.args...)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			var out bytes.Buffer
			cmd := exec.CommandContext(ctx, bin, args...)
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			if err == nil {
				t.Fatalf("exit 0, want a failure; output:\n%s", out.String())
			}
			msg := out.String()
			if strings.Contains(msg, "not idle after") {
				t.Fatalf("timed out instead of failing clearly:\n%s", msg)
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error output does not mention %q:\n%s", w, msg)
				}
			}
			for _, secret := range []string{pw, weakPW, creatorPW} {
				if strings.Contains(msg, secret) {
					t.Errorf("output reveals a password:\n%s", msg)
				}
			}
			if c.after != nil {
				c.after(t)
			}
		})
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
