package runner_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/pgferry/pgferry/shared/config"
)

// Every name here is built to break SQL that pastes identifiers or values
// into its text.
const hostileDDL = `
CREATE SCHEMA "a'b; DROP SCHEMA public CASCADE; --";
CREATE TABLE "a'b; DROP SCHEMA public CASCADE; --"."x""; DROP TABLE y; --" (
    "id""); DROP TABLE y; --" int PRIMARY KEY,
    """; DROP TABLE y; --" text,
    "$1" text,
    "'); DELETE FROM y; --" text,
    "\N" text,
    "%s%v" text,
    "ÜNÏCØDÉ 表" text
);
CREATE TABLE "a'b; DROP SCHEMA public CASCADE; --"."keyless""; TRUNCATE y; --" ("v""; --" text);
CREATE TABLE y (id int PRIMARY KEY, note text);
INSERT INTO y VALUES (1, 'must survive');
`

// TestHostileIdentifiersReplicateAndNothingElseHappens replicates tables
// and columns named like SQL injections, in both capture modes: the rows
// must arrive, and the canary table y must be untouched on both sides, with
// no other table created or dropped.
func TestHostileIdentifiersReplicateAndNothingElseHappens(t *testing.T) {
	forEachCapture(t, func(t *testing.T, mode string) {
		f := newFixtureMode(t, mode, hostileDDL, "")
		// Replicate the hostile schema (a quoted pattern) and nothing else.
		f.setTables(`['"a''b; DROP SCHEMA public CASCADE; --".*']`)
		tables := func(ctx context.Context) (string, string) {
			var s, d string
			q := `SELECT string_agg(schemaname || '.' || tablename, ',' ORDER BY schemaname, tablename) FROM pg_tables
				WHERE schemaname NOT IN ('pg_catalog', 'information_schema') AND schemaname NOT LIKE 'pgferry%'`
			if err := f.src.QueryRow(ctx, q).Scan(&s); err != nil {
				t.Fatal(err)
			}
			if err := f.dst.QueryRow(ctx, q).Scan(&d); err != nil {
				t.Fatal(err)
			}
			return s, d
		}
		ctx := context.Background()
		srcBefore, dstBefore := tables(ctx)

		hostile := `"a'b; DROP SCHEMA public CASCADE; --"."x""; DROP TABLE y; --"`
		f.exec(`INSERT INTO ` + hostile + ` VALUES (1, '''; DROP TABLE y; --', '$1', E'\\N', NULL, '%s', 'ok'), (2, NULL, NULL, '''); DELETE FROM y; --', '\N', '%v', '表')`)
		f.exec(`INSERT INTO "a'b; DROP SCHEMA public CASCADE; --"."keyless""; TRUNCATE y; --" VALUES ('"; TRUNCATE y; --'), ('"; TRUNCATE y; --')`)
		f.replicate()
		f.exec(`UPDATE ` + hostile + ` SET "'); DELETE FROM y; --" = 'changed', "id""); DROP TABLE y; --" = 3 WHERE "id""); DROP TABLE y; --" = 1`)
		f.exec(`DELETE FROM "a'b; DROP SCHEMA public CASCADE; --"."keyless""; TRUNCATE y; --" WHERE ctid = (SELECT min(ctid) FROM "a'b; DROP SCHEMA public CASCADE; --"."keyless""; TRUNCATE y; --")`)
		f.replicate()
		f.assertSame()

		if got := f.targetInt(`SELECT count(*) FROM ` + hostile); got != 2 {
			t.Errorf("hostile table holds %d rows on the target, want 2", got)
		}
		for _, p := range []struct {
			name string
			q    func(string) int64
		}{{"source", f.sourceInt}, {"target", f.targetInt}} {
			if got := p.q(`SELECT count(*) FROM y WHERE note = 'must survive'`); got != 1 {
				t.Errorf("canary table y on the %s lost its row", p.name)
			}
		}
		if srcAfter, dstAfter := tables(ctx); srcAfter != srcBefore || dstAfter != dstBefore {
			t.Errorf("tables changed:\nsource before %s\nsource after  %s\ntarget before %s\ntarget after  %s", srcBefore, srcAfter, dstBefore, dstAfter)
		}
	})
}

// setTables replaces the fixture's table patterns (a YAML list).
func (f *fixture) setTables(list string) {
	f.t.Helper()
	const old = `tables: ["public.*", "odd.*"]`
	if !strings.Contains(f.cfgYAML, old) {
		f.t.Fatalf("fixture YAML has no %s", old)
	}
	f.cfgYAML = strings.Replace(f.cfgYAML, old, "tables: "+list, 1)
	cfg, err := config.Parse([]byte(f.cfgYAML), os.LookupEnv)
	if err != nil {
		f.t.Fatal(err)
	}
	f.setConfig(cfg)
}

// sourceInt returns a single integer from the source.
func (f *fixture) sourceInt(sql string) int64 {
	f.t.Helper()
	var n int64
	if err := f.src.QueryRow(context.Background(), sql).Scan(&n); err != nil {
		f.t.Fatalf("%s: %v", sql, err)
	}
	return n
}
