package runner_test

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgferry/pgferry/shared/apply/rsapply"
	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/fault"
	"github.com/pgferry/pgferry/shared/queue"
	"github.com/pgferry/pgferry/shared/redshift"
	"github.com/pgferry/pgferry/shared/redshift/rstype"
	"github.com/pgferry/pgferry/shared/testenv"
	"github.com/pgferry/pgferry/shared/verify"
)

// newRedshiftFixture is a pipeline with two targets: replica, a
// PostgreSQL database holding ddl, and warehouse, a Redshift target on
// the stand-in (the Data API at AWS_ENDPOINT_URL_REDSHIFT_DATA, over a
// fresh database of the test cluster). warehouseKeys are added to the
// warehouse's configuration. The warehouse's tables are made from the
// source's catalog through rstype.Map (see makeWarehouseTables).
func newRedshiftFixture(t *testing.T, mode, ddl, warehouseKeys, extra string) *fixture {
	t.Helper()
	testenv.AWS(t)
	rsDSN := testenv.NewDB(t, "rs")
	rsDB := rsDBName(t, rsDSN)
	f := fixtureFrom(t, ddl, ddl, func(src, dst string) string {
		return fmt.Sprintf(`
name: %s
source:
  dsn: %q
  tables: ["public.*", "odd.*"]%s
targets:
  replica:
    kind: postgres
    dsn: %q
    schema_sync: false
  warehouse:
    kind: redshift
    data_api: {workgroup: wg-test, database: %s}
    copy_role_arn: "arn:aws:iam::000000000000:role/pgferry-copy"
%s
drain:
  interval: 100ms
%s`, testenv.Name("t"), src, slotKeys(mode), dst, rsDB, warehouseKeys, extra)
	})
	makeWarehouseTables(t, f)
	return f
}

func rsDBName(t *testing.T, dsn string) string {
	t.Helper()
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return cc.Database
}

// warehouse returns the Redshift executor the warehouse target reads with.
func (f *fixture) warehouse() redshift.Exec {
	f.t.Helper()
	for _, t := range f.p.Targets {
		if v, ok := t.Verifier.(verify.Redshift); ok {
			return v.Ex
		}
	}
	f.t.Fatal("no redshift target")
	return nil
}

// makeWarehouseTables creates every replicated source table on the
// warehouse, typed by rstype.Map, through the stand-in's Data API (so
// its gate checks the DDL as Redshift would).
//
// Temporary, until the Redshift schema sync is wired into the runner's
// redshift constructor: that Syncer will make these tables itself, and
// this function and its callers then go.
func makeWarehouseTables(t *testing.T, f *fixture) {
	t.Helper()
	ctx := context.Background()
	tc := f.cfg.Targets["warehouse"]
	p, s := tc.NumericDefault()
	opts := rstype.Options{NumericPrecision: p, NumericScale: s, JSONSuper: tc.JSONAsSuper()}
	tables, err := verify.Tables(ctx, f.src, f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	var stmts []string
	schemas := map[string]bool{}
	for _, tb := range tables {
		if !schemas[tb.Schema] && tb.Schema != "public" {
			schemas[tb.Schema] = true
			stmts = append(stmts, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{tb.Schema}.Sanitize())
		}
		stmts = append(stmts, warehouseDDL(t, f, tb, opts))
	}
	if err := f.warehouse().Tx(ctx, stmts); err != nil {
		t.Fatalf("create the warehouse tables: %v", err)
	}
}

func warehouseDDL(t *testing.T, f *fixture, tb batch.Table, opts rstype.Options) string {
	t.Helper()
	ctx := context.Background()
	rel := pgx.Identifier{tb.Schema, tb.Name}.Sanitize()
	rows, err := f.src.Query(ctx, `SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
		WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`, rel)
	if err != nil {
		t.Fatal(err)
	}
	var defs []string
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			t.Fatal(err)
		}
		defs = append(defs, pgx.Identifier{name}.Sanitize()+" "+rstype.Map(typ, opts))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var key []string
	if err := f.src.QueryRow(ctx, `SELECT coalesce(array_agg(a.attname::text ORDER BY array_position(i.indkey, a.attnum)), '{}')
		FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
		WHERE i.indrelid = $1::regclass AND i.indisprimary`, rel).Scan(&key); err != nil {
		t.Fatal(err)
	}
	if len(key) > 0 {
		q := make([]string, len(key))
		for i, k := range key {
			q[i] = pgx.Identifier{k}.Sanitize()
		}
		defs = append(defs, "PRIMARY KEY ("+strings.Join(q, ", ")+")")
	}
	return "CREATE TABLE " + rel + " (" + strings.Join(defs, ", ") + ")"
}

// assertBothSame compares every replicated table on both targets, the
// warehouse through its type map, and fails unless both were compared.
func (f *fixture) assertBothSame() {
	f.t.Helper()
	res, err := verify.Compare(context.Background(), f.src, f.p.Verifiers(), f.cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	seen := map[string]int{}
	for _, r := range res {
		seen[r.Target]++
		if !r.OK() {
			f.t.Errorf("%s on %s differs: source %d rows (%s), target %d rows (%s), err %v",
				r.Table, r.Target, r.SourceRows, r.SourceChecksum, r.TargetRows, r.TargetChecksum, r.Err)
		}
	}
	if seen["replica"] == 0 || seen["warehouse"] == 0 {
		f.t.Fatalf("tables compared per target: %v; want both targets", seen)
	}
}

// rsQuery runs one query on the warehouse and returns its first value.
func (f *fixture) rsValue(sql string) *string {
	f.t.Helper()
	rows, err := f.warehouse().Query(context.Background(), sql)
	if err != nil {
		f.t.Fatalf("%s: %v", sql, err)
	}
	if len(rows) != 1 || len(rows[0]) != 1 {
		f.t.Fatalf("%s: %d rows, want one value", sql, len(rows))
	}
	return rows[0][0]
}

// TestRedshiftTargetReplicatesAwkwardValuesThroughTheTypeMap replicates
// the awkward-values workload to a PostgreSQL and a Redshift target: the
// PostgreSQL target ends byte for byte equal, the Redshift target equal
// through the type map (numeric NaN as NULL, ±Infinity saturated,
// infinite dates replaced, arrays and ranges as text, jsonb as SUPER).
func TestRedshiftTargetReplicatesAwkwardValuesThroughTheTypeMap(t *testing.T) {
	forEachCapture(t, func(t *testing.T, mode string) {
		f := newRedshiftFixture(t, mode, awkwardDDL, "", "")
		awkwardRounds(f, f.assertBothSame)

		// What the map did, seen on the warehouse itself.
		if v := f.rsValue(`SELECT num FROM awkward WHERE id = 1`); v != nil {
			t.Errorf("numeric NaN is %q on Redshift, want NULL", *v)
		}
		if v := f.rsValue(`SELECT num FROM awkward WHERE id = 2`); v == nil || *v != "92233720368.54775807" {
			t.Errorf("numeric Infinity is %v on Redshift, want saturated to 92233720368.54775807", v)
		}
		if v := f.rsValue(`SELECT dt FROM awkward WHERE id = 2`); v == nil || *v != rstype.InfinityDate {
			t.Errorf("date infinity is %v on Redshift, want %s", v, rstype.InfinityDate)
		}
		// 224,000 characters of text fit varchar(65535) cut at 65535 bytes.
		if v := f.rsValue(`SELECT length(t) FROM awkward WHERE id = 40`); v == nil || *v != "65535" {
			t.Errorf("TOASTed text on Redshift has length %v, want truncated to 65535", v)
		}
	})
}

// TestRedshiftTargetReplicatesEveryKindOfChange runs the every-kind-of-
// change workload to both targets: key changes with cascades, deletes,
// identity and generated columns, rows moving between partitions,
// hostile identifiers, TRUNCATE. The keyless table stays off the
// warehouse (a Redshift target applies deletes and updates by key only,
// and refuses a keyless table's: see rsapply).
func TestRedshiftTargetReplicatesEveryKindOfChange(t *testing.T) {
	forEachCapture(t, func(t *testing.T, mode string) {
		f := newRedshiftFixture(t, mode, shapesDDL, `    exclude: ["public.keyless"]`, "")
		f.exec(`INSERT INTO parent SELECT g, 'p' || g FROM generate_series(1, 50) g`)
		f.exec(`INSERT INTO child SELECT g, g % 50 + 1, 'c' || g FROM generate_series(1, 200) g`)
		f.exec(`INSERT INTO keyless VALUES (1, 'dup'), (1, 'dup'), (1, 'dup'), (2, NULL)`)
		f.exec(`INSERT INTO ident (qty) SELECT g FROM generate_series(1, 20) g`)
		f.exec(`INSERT INTO measure SELECT CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END, date '2024-01-01' + g, g FROM generate_series(1, 100) g`)
		f.exec(`INSERT INTO odd."x""; DROP TABLE y; --" VALUES (1, 'a', 'b'), (2, NULL, 'from')`)
		f.replicate()
		f.assertBothSame()

		f.exec(`BEGIN;
			UPDATE parent SET id = id + 1000 WHERE id <= 5;
			DELETE FROM parent WHERE id BETWEEN 40 AND 45;
			INSERT INTO parent VALUES (2000, 'new'); INSERT INTO child VALUES (2000, 2000, 'new child');
			UPDATE parent SET name = 'renamed' WHERE id = 2000;
			COMMIT`)
		f.exec(`DELETE FROM keyless WHERE ctid = (SELECT ctid FROM keyless WHERE a = 1 LIMIT 1)`)
		f.exec(`UPDATE ident SET qty = qty * 10 WHERE id <= 5`)
		f.exec(`INSERT INTO ident (id, qty) OVERRIDING SYSTEM VALUE VALUES (500, 1)`)
		f.exec(`UPDATE measure SET region = 'eu' WHERE region = 'us' AND v < 20`)
		f.exec(`DELETE FROM measure_eu WHERE v > 90`)
		f.exec(`INSERT INTO measure_us VALUES ('us', '2030-01-01', 1)`)
		f.exec(`UPDATE odd."x""; DROP TABLE y; --" SET "Mixed Case" = 'changed' WHERE "col""; --" = 1`)
		f.replicate()
		f.assertBothSame()

		// No TRUNCATE of the partitioned table here: capture names the
		// partitions it empties, which a Redshift target does not have, so
		// such a batch parks (README, Redshift target, limits).
		f.exec(`TRUNCATE parent CASCADE`)
		f.exec(`INSERT INTO parent VALUES (1, 'after truncate')`)
		f.replicate()
		f.assertBothSame()
		if v := f.rsValue(`SELECT count(*) FROM child`); v == nil || *v != "0" {
			t.Errorf("child holds %v rows on Redshift after TRUNCATE parent CASCADE, want 0", v)
		}
		if v := f.rsValue(`SELECT count(*) FROM y`); v == nil || *v != "0" {
			t.Errorf("canary table y on Redshift: %v rows, want 0 (and present)", v)
		}
	})
}

// TestRedshiftBatchOverFortyStatementsStagesInASession applies one batch
// deleting from 30 tables through the Data API: 60 staging statements,
// more than one BatchExecuteStatement takes, run in earlier calls of one
// session, and the deciding transaction (36 statements) in the last. A
// batch whose transaction alone needs more than 40 statements (upserts
// into 30 tables: 66) is refused with a message that says so, and
// changes nothing.
func TestRedshiftBatchOverFortyStatementsStagesInASession(t *testing.T) {
	var ddl strings.Builder
	for i := range 30 {
		fmt.Fprintf(&ddl, "CREATE TABLE m%02d (id int PRIMARY KEY, v text);\n", i)
	}
	f := newRedshiftFixture(t, config.CaptureTrigger, ddl.String(), "", "")
	ctx := context.Background()
	// Ten tables per batch: 20 DML statements in the transaction.
	for r := range 3 {
		var ins strings.Builder
		for i := r * 10; i < r*10+10; i++ {
			fmt.Fprintf(&ins, "INSERT INTO m%02d SELECT g, 'v' || g FROM generate_series(1, 5) g;\n", i)
		}
		f.exec(ins.String())
		f.replicate()
	}
	f.assertBothSame()

	// Deletes: one statement each in the transaction, two in staging.
	var del strings.Builder
	for i := range 30 {
		fmt.Fprintf(&del, "DELETE FROM m%02d WHERE id = 1;\n", i)
	}
	f.exec(del.String())
	var ap *rsapply.Applier // the plain applier (its Loader role), under the schema-sync wrapper
	for _, tg := range f.p.Targets {
		if tg.Name == "warehouse" {
			ap = tg.Loader.(*rsapply.Applier)
		}
	}
	before := ap.Stats()
	f.replicate()
	f.assertBothSame()
	after := ap.Stats()
	if objs := after.Objects - before.Objects; objs != 60 {
		t.Errorf("the 30-table delete batch wrote %d S3 objects, want 60 (a file and a manifest per table)", objs)
	}
	// Two staging calls and the transaction, each polled at least once.
	if calls := after.Calls - before.Calls; calls < 6 {
		t.Errorf("the 30-table delete batch took %d Data API calls, want at least 3 BatchExecuteStatement and their polls", calls)
	}

	// Upserts into 30 tables in one batch, by hand: 66 statements.
	group := batch.Group(f.cfg.Name, "warehouse")
	wm, err := ap.Watermark(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	lineage := f.rsValue(`SELECT lineage FROM pgferry.watermarks`)
	b := &batch.Batch{Version: batch.VersionUpdates, Pipeline: f.cfg.Name, Target: "warehouse", Lineage: *lineage, Seq: 999,
		From: wm, To: batch.Position{Tick: wm.Tick + 1}}
	var segs []batch.Segment
	for i := range 30 {
		v := "big"
		segs = append(segs, batch.Segment{Table: batch.Table{Schema: "public", Name: fmt.Sprintf("m%02d", i)},
			Columns: []string{"id", "v"}, Key: []string{"id"}, Upserts: []batch.Row{{sp("2"), &v}}})
	}
	b.Epochs = []batch.Epoch{{Segments: segs}}
	_, err = ap.Apply(ctx, b)
	if err == nil || !strings.Contains(err.Error(), "the executor takes 40") {
		t.Fatalf("a 66-statement transaction: err %v, want a refusal naming the limit of 40", err)
	}
	if got, _ := ap.Watermark(ctx, group); got != wm {
		t.Fatalf("the refused batch moved the watermark from %s to %s", wm, got)
	}
	if v := f.rsValue(`SELECT count(*) FROM m00 WHERE v = 'big'`); v == nil || *v != "0" {
		t.Fatalf("the refused batch changed rows: %v", v)
	}

	// --reset forgets the pipeline's watermarks on the warehouse and
	// leaves the replicated rows alone.
	if err := f.p.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if v := f.rsValue(`SELECT count(*) FROM pgferry.watermarks`); v == nil || *v != "0" {
		t.Fatalf("after --reset the warehouse holds %v watermarks, want 0", v)
	}
	if v := f.rsValue(`SELECT count(*) FROM m00`); v == nil || *v != "4" {
		t.Fatalf("after --reset m00 holds %v rows on the warehouse, want its 4 replicated rows", v)
	}
}

func sp(s string) *string { return &s }

// TestRedshiftTargetSurvivesDuplicatesAndKilledRunners delivers every
// batch twice and out of order to both targets, then kills the runner
// (SIGKILL from a fault point) after the drain sent, after a Redshift
// batch was staged in S3 and before its transaction, and after an apply
// committed but before its message was deleted; a last run catches up
// and both targets end equal to the source, the warehouse through its
// type map.
func TestRedshiftTargetSurvivesDuplicatesAndKilledRunners(t *testing.T) {
	bin := buildFaultRunner(t)
	forEachCapture(t, func(t *testing.T, mode string) {
		f := newRedshiftFixture(t, mode, `CREATE TABLE acct (id int PRIMARY KEY, v int, note varchar(3));`, "",
			"  lease: 5s\napply:\n  visibility: 3s\n")
		ctx := context.Background()

		// Duplicates: three batches per target, each published again
		// after its successors.
		var msgs []queue.Message
		for _, stmt := range []string{
			`INSERT INTO acct SELECT g, g, 'ééé' FROM generate_series(1, 60) g`, // 6 bytes in varchar(12) on Redshift
			`UPDATE acct SET v = v * 2 WHERE id <= 30`,
			`DELETE FROM acct WHERE id > 50`,
		} {
			f.exec(stmt)
			msgs = append(msgs, drainBodies(t, f)...)
		}
		if len(msgs) < 6 {
			t.Fatalf("three writes made %d messages, want at least 6 (a batch per write and target)", len(msgs))
		}
		// Every message twice, the second copy after all its successors.
		for round := range 2 {
			for n, m := range msgs {
				if err := f.aws.Queue.Publish(ctx, m.Group, fmt.Sprintf("%s.dup%d.%d", m.DedupID, round, n), m.Body); err != nil {
					t.Fatal(err)
				}
			}
		}
		f.replicate()
		f.assertBothSame()
		if v := f.rsValue(`SELECT count(*) FROM acct`); v == nil || *v != "50" {
			t.Fatalf("warehouse holds %v rows after duplicate deliveries, want 50", v)
		}

		// Killed runners.
		cfgPath := writeConfig(t, f.cfgYAML)
		logs := keepLogs(t)
		next := 1000
		for _, point := range []string{fault.DrainSent, fault.ApplyStaged, fault.ApplyCommitted, fault.ApplyStaged} {
			fired := false
			for try := 0; try < stageTries && !fired; try++ {
				f.exec(`INSERT INTO acct SELECT g, g, 'k' FROM generate_series($1::int, $1::int + 20) g`, next)
				f.exec(`UPDATE acct SET v = v + 1 WHERE id % 7 = 0`)
				f.exec(`DELETE FROM acct WHERE id % 11 = 0 AND id > 1000`)
				next += 100
				fired = crashAt(t, bin, cfgPath, point, 1, logs.section(fmt.Sprintf("%s try %d", point, try+1)))
			}
			if !fired {
				t.Fatalf("fault point %s never fired", point)
			}
		}
		final := exec.CommandContext(ctx, bin, "--config", cfgPath, "--until-idle", "--timeout", "3m")
		final.Stderr = logs.section("final run")
		if out, err := final.Output(); err != nil {
			t.Fatalf("final --until-idle run: %v\n%s", err, out)
		}
		f.assertBothSame()
	})
}
