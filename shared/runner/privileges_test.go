package runner_test

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pgferry/pgferry/shared/testenv"
)

// TestTargetRoleMissingAPrivilegeGetsAnErrorNamingIt runs the runner
// against an empty target (schema sync on) with a role that lacks one of
// the privileges README "Target privileges" lists. Each run must fail
// with an error that names the missing privilege, the object it is on and
// the role, rather than a bare "permission denied".
func TestTargetRoleMissingAPrivilegeGetsAnErrorNamingIt(t *testing.T) {
	bin := buildLocalRunner(t)
	testenv.AWS(t)
	admin := testenv.Pool(t, testenv.ClusterDSN(t))
	cases := []struct {
		name string
		// grant gives the role (%[1]s) what it does have, on the target
		// database (%[2]s); it runs as the administrator, in the target
		// database, except GRANT … ON DATABASE and ON PARAMETER, which run
		// in the cluster's.
		dbGrants, schemaGrants []string
		args                   []string
		want                   []string
	}{
		{
			name:         "no CREATE on the database",
			schemaGrants: []string{"ALTER SCHEMA public OWNER TO %[1]s"},
			want:         []string{"targets.replica", "CREATE on the database", "pgferry"},
		},
		{
			name:     "no CREATE on the schema the tables go to",
			dbGrants: []string{"GRANT CREATE ON DATABASE %[2]s TO %[1]s", "GRANT SET ON PARAMETER session_replication_role TO %[1]s"},
			want:     []string{"targets.replica", "CREATE on schema public"},
		},
		{
			name:         "may not set session_replication_role, so tables with foreign keys cannot be loaded",
			dbGrants:     []string{"GRANT CREATE ON DATABASE %[2]s TO %[1]s"},
			schemaGrants: []string{"ALTER SCHEMA public OWNER TO %[1]s"},
			args:         []string{"--initial-load"},
			want:         []string{"public.child", "child_parent_id_fkey", "session_replication_role", "GRANT SET ON PARAMETER session_replication_role"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			role := newRole(t, admin, "tgt", "NOSUPERUSER NOREPLICATION")
			srcDSN, dstDSN := testenv.NewDB(t, "src"), testenv.NewDB(t, "dst")
			src, dst := testenv.Pool(t, srcDSN), testenv.Pool(t, dstDSN)
			testenv.Exec(t, src, `CREATE TABLE parent (id int PRIMARY KEY); CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent);
				INSERT INTO parent VALUES (1); INSERT INTO child VALUES (1, 1)`)
			db := dbName(t, dstDSN)
			for _, g := range c.dbGrants {
				testenv.Exec(t, admin, fmt.Sprintf(g, role, db))
			}
			for _, g := range c.schemaGrants {
				testenv.Exec(t, dst, fmt.Sprintf(g, role, db))
			}
			t.Cleanup(func() {
				_, _ = admin.Exec(context.Background(), "REVOKE SET ON PARAMETER session_replication_role FROM "+role)
			})
			cfg := writeConfig(t, fmt.Sprintf(`
name: %s
source:
  dsn: %q
  tables: ["public.*"]
targets:
  replica:
    kind: postgres
    dsn: %q
drain:
  interval: 100ms
`, testenv.Name("priv"), srcDSN, roleDSN(t, dstDSN, role)))
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			var out bytes.Buffer
			cmd := exec.CommandContext(ctx, bin, append([]string{"--config", cfg, "--until-idle", "--timeout", "40s"}, c.args...)...)
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Run(); err == nil {
				t.Fatalf("exit 0, want a failure; output:\n%s", out.String())
			}
			msg := out.String()
			if strings.Contains(msg, "not idle after") {
				t.Fatalf("timed out instead of failing clearly:\n%s", msg)
			}
			for _, w := range append(c.want, strings.Trim(role, `"`)) {
				if !strings.Contains(msg, w) {
					t.Errorf("error output does not mention %q:\n%s", w, msg)
				}
			}
		})
	}
}
