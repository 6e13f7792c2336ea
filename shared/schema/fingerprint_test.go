package schema_test

import (
	"context"
	"testing"

	"github.com/pgferry/pgferry/shared/schema"
	"github.com/pgferry/pgferry/shared/testenv"
)

func TestFingerprintNoticesFunctionAndViewChanges(t *testing.T) {
	ctx := context.Background()
	db := testenv.Pool(t, testenv.NewDB(t, "fp"))
	testenv.Exec(t, db, `CREATE TABLE t (id int PRIMARY KEY, v text);
		CREATE FUNCTION f(x int DEFAULT 1) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT x + 1; END;
		CREATE FUNCTION _acc(int, int) RETURNS int LANGUAGE sql AS $$ SELECT $1 + $2 $$;
		CREATE AGGREGATE total(int) (SFUNC = _acc, STYPE = int, INITCOND = '0');
		CREATE VIEW v AS SELECT id FROM t;
		CREATE MATERIALIZED VIEW m AS SELECT count(*) AS n FROM t`)
	fp := func() string {
		t.Helper()
		s, err := schema.Fingerprint(ctx, db, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	last := fp()
	for _, c := range []struct {
		ddl     string
		changes bool
	}{
		{`INSERT INTO t VALUES (1, 'a'); ANALYZE t; REFRESH MATERIALIZED VIEW m`, false},
		{`CREATE OR REPLACE FUNCTION f(x int DEFAULT 1) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT x + 2; END`, true},
		{`CREATE OR REPLACE FUNCTION f(x int DEFAULT 5) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT x + 2; END`, true},
		{`CREATE OR REPLACE AGGREGATE total(int) (SFUNC = _acc, STYPE = int, INITCOND = '10')`, true},
		{`CREATE OR REPLACE VIEW v AS SELECT id FROM t WHERE id > 0`, true},
		{`ALTER VIEW v SET (security_barrier = true)`, true},
		{`CREATE OR REPLACE VIEW v WITH (security_barrier = true) AS SELECT id, v FROM t WHERE id > 0`, true},
		{`DROP MATERIALIZED VIEW m; CREATE MATERIALIZED VIEW m AS SELECT count(*) AS n FROM t`, true},
		{`CREATE PROCEDURE p() LANGUAGE sql AS $$ SELECT 1 $$`, true},
		{`DROP VIEW v`, true},
	} {
		testenv.Exec(t, db, c.ddl)
		now := fp()
		if changed := now != last; changed != c.changes {
			t.Errorf("after %s: fingerprint changed = %v, want %v", c.ddl, changed, c.changes)
		}
		last = now
	}
}
