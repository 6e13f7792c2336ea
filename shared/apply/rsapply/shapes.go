package rsapply

import "regexp"

// Shape is one form of statement the applier sends to Redshift.
type Shape struct {
	Name string
	// Example shows the form; names and values vary.
	Example string
	// RunOnRedshift says whether the shape has been run against a real
	// Redshift (not the stand-in, not PostgreSQL). None has: no Redshift
	// was reachable where this was written. TestRealRedshift runs them all
	// when PGFERRY_REDSHIFT_* are set; flip these when it has passed.
	RunOnRedshift bool
	// Unverified lists what only a real Redshift can confirm.
	Unverified string
	match      *regexp.Regexp
}

// Shapes lists every statement shape the applier sends.
var Shapes = []Shape{
	{Name: "create schema", Example: `CREATE SCHEMA IF NOT EXISTS "pgferry"`,
		match: regexp.MustCompile(`^CREATE SCHEMA IF NOT EXISTS `)},
	{Name: "create watermark table", Example: `CREATE TABLE IF NOT EXISTS "pgferry".watermarks (… varchar, numeric(20,0), bigint, timestamptz, PRIMARY KEY …)`,
		Unverified: "an informational PRIMARY KEY and DEFAULT '' in CREATE TABLE IF NOT EXISTS",
		match:      regexp.MustCompile(`^CREATE TABLE IF NOT EXISTS "pgferry"\.watermarks `)},
	{Name: "read watermark", Example: `SELECT tick, tx, lineage FROM "pgferry".watermarks WHERE pipeline = 'p' AND msg_group = 'p.t'`,
		match: regexp.MustCompile(`^SELECT tick, tx, lineage FROM `)},
	{Name: "read catalog", Example: `SELECT column_name, data_type, character_maximum_length, numeric_precision, numeric_scale FROM information_schema.columns WHERE …`,
		Unverified: "data_type spellings Redshift reports for SUPER and VARBYTE (rstype.ParseColumn accepts several)",
		match:      regexp.MustCompile(`^SELECT column_name, data_type, `)},
	{Name: "lock watermarks", Example: `LOCK "pgferry".watermarks`,
		match: regexp.MustCompile(`^LOCK "pgferry"\.watermarks$`)},
	{Name: "guard", Example: `SELECT 1 / CASE WHEN (SELECT count(*) FROM "pgferry".watermarks WHERE … AND tick = 10 AND tx = 0 AND lineage = 'L') = 1 THEN 1 ELSE 0 END`,
		Unverified: "that a scalar subquery inside CASE is evaluated at run time, so the division by zero fails the batch transaction",
		match:      regexp.MustCompile(`^SELECT 1 / CASE WHEN \(SELECT count\(\*\) FROM "pgferry"\.watermarks `)},
	{Name: "create stage", Example: `CREATE TEMP TABLE "pgferry_stage_1" AS SELECT "id", "id" AS "pgferry_match_0" FROM "s"."t" WHERE 1 = 0`,
		Unverified: "CTAS of a temp table in a BatchExecuteStatement, and that it survives into later calls of the same Data API session (SessionId)",
		match:      regexp.MustCompile(`^CREATE TEMP TABLE "pgferry_stage_\d+" AS SELECT .* WHERE 1 = 0$`)},
	{Name: "copy", Example: `COPY "pgferry_stage_1" ("id", …) FROM 's3://b/k.manifest' IAM_ROLE 'arn:…' CSV GZIP MANIFEST TIMEFORMAT 'auto' DATEFORMAT 'auto' COMPUPDATE OFF STATUPDATE OFF`,
		Unverified: `the default NULL AS '\N' in CSV mode and whether a quoted "\N" stays a string; VARBYTE read as hex; JSON text into SUPER; ` +
			`'auto' reading "+00" offsets, BC dates and 24:00-free times; NaN and Infinity into REAL/DOUBLE PRECISION`,
		match: regexp.MustCompile(`^COPY "pgferry_stage_\d+" \(.*\) FROM 's3://.*' IAM_ROLE '.*' CSV GZIP MANIFEST `)},
	{Name: "row-count check", Example: `SELECT 1 / CASE WHEN (SELECT count(*) FROM "pgferry_stage_1") = 3 AND … THEN 1 ELSE 0 END`,
		match: regexp.MustCompile(`^SELECT 1 / CASE WHEN \(SELECT count\(\*\) FROM "pgferry_stage_\d+"\) = \d+`)},
	{Name: "truncate as delete", Example: `DELETE FROM "s"."t"`,
		match: regexp.MustCompile(`^DELETE FROM "(?:[^"]|"")+"\."(?:[^"]|"")+"$`)},
	{Name: "delete using stage", Example: `DELETE FROM "s"."t" USING "pgferry_stage_1" WHERE "s"."t"."id" = "pgferry_stage_1"."id"`,
		Unverified: "a three-part schema.table.column reference to the (unaliased) DELETE target",
		match:      regexp.MustCompile(`^DELETE FROM "(?:[^"]|"")+"\."(?:[^"]|"")+" USING "pgferry_stage_\d+" WHERE `)},
	{Name: "insert from stage", Example: `INSERT INTO "s"."t" ("id", "note") SELECT "id", "note" FROM "pgferry_stage_1"`,
		match: regexp.MustCompile(`^INSERT INTO "(?:[^"]|"")+"\."(?:[^"]|"")+" \(.*\) SELECT .* FROM "pgferry_stage_\d+"$`)},
	{Name: "update from stage", Example: `UPDATE "s"."t" SET "note" = "pgferry_stage_2"."note" FROM "pgferry_stage_2" WHERE "s"."t"."id" = "pgferry_stage_2"."pgferry_match_0"`,
		match: regexp.MustCompile(`^UPDATE "(?:[^"]|"")+"\."(?:[^"]|"")+" SET .* FROM "pgferry_stage_\d+" WHERE `)},
	{Name: "delete watermark", Example: `DELETE FROM "pgferry".watermarks WHERE pipeline = 'p' AND msg_group = 'p.t'`,
		match: regexp.MustCompile(`^DELETE FROM "pgferry"\.watermarks WHERE `)},
	{Name: "insert watermark", Example: `INSERT INTO "pgferry".watermarks (…) VALUES ('p', 'p.t', 20, 0, 2, 'L', '2025-01-02 03:04:05.000000+00')`,
		match: regexp.MustCompile(`^INSERT INTO "pgferry"\.watermarks `)},
	{Name: "drop stages", Example: `DROP TABLE "pgferry_stage_1", "pgferry_stage_2"`,
		Unverified: "dropping several temp tables in one DROP TABLE inside the transaction",
		match:      regexp.MustCompile(`^DROP TABLE "pgferry_stage_\d+"(?:, "pgferry_stage_\d+")*$`)},
	// The initial load (load.go, hold.go).
	{Name: "create load tables", Example: `CREATE TABLE IF NOT EXISTS "pgferry".loads (…)`, Unverified: "an informational PRIMARY KEY in CREATE TABLE IF NOT EXISTS",
		match: regexp.MustCompile(`^CREATE TABLE IF NOT EXISTS "pgferry"\.load(?:s|_chunks|_held) `)},
	{Name: "read loading tables", Example: `SELECT tbl_schema, tbl_name, load_id FROM "pgferry".loads WHERE pipeline = 'p' AND state = 'loading'`,
		match: regexp.MustCompile(`^SELECT tbl_schema, tbl_name, load_id FROM "pgferry"\.loads WHERE `)},
	{Name: "read load status", Example: `SELECT l.load_id, l.state, l.chunks, count(c.chunk) FROM "pgferry".loads l LEFT JOIN "pgferry".load_chunks c ON … GROUP BY …`,
		match: regexp.MustCompile(`^SELECT l\.load_id, l\.state, l\.chunks, count\(c\.chunk\) FROM "pgferry"\.loads l\s+LEFT JOIN `)},
	{Name: "read chunk record", Example: `SELECT row_count FROM "pgferry".load_chunks WHERE load_id = 'x' AND chunk = 3`,
		match: regexp.MustCompile(`^SELECT row_count FROM "pgferry"\.load_chunks WHERE `)},
	{Name: "read held changes", Example: `SELECT tick, tx, part, data FROM "pgferry".load_held WHERE … ORDER BY tick, tx, part, piece`,
		match: regexp.MustCompile(`^SELECT tick, tx, part, data FROM "pgferry"\.load_held WHERE `)},
	{Name: "count held changes", Example: `SELECT count(*) FROM "pgferry".load_held WHERE pipeline = 'p' AND …`,
		match: regexp.MustCompile(`^SELECT count\(\*\) FROM "pgferry"\.load_held WHERE `)},
	{Name: "lock load chunks", Example: `LOCK "pgferry".load_chunks`,
		match: regexp.MustCompile(`^LOCK "pgferry"\.load_chunks$`)},
	{Name: "empty a table for a new load", Example: `DELETE FROM "s"."t" WHERE NOT EXISTS (SELECT 1 FROM "pgferry".loads WHERE … AND load_id = 'x')`,
		Unverified: "an uncorrelated NOT EXISTS in a DELETE's WHERE",
		match:      regexp.MustCompile(`^DELETE FROM "(?:[^"]|"")+"\."(?:[^"]|"")+" WHERE NOT EXISTS \(SELECT 1 FROM "pgferry"\.loads WHERE `)},
	{Name: "drop older chunk records", Example: `DELETE FROM "pgferry".load_chunks WHERE load_id IN (SELECT load_id FROM "pgferry".loads WHERE … AND load_id <> 'x')`,
		match: regexp.MustCompile(`^DELETE FROM "pgferry"\.load_chunks WHERE load_id (?:IN \(|= )`)},
	{Name: "drop older load", Example: `DELETE FROM "pgferry".loads WHERE pipeline = 'p' AND … AND load_id <> 'x'`,
		match: regexp.MustCompile(`^DELETE FROM "pgferry"\.loads WHERE `)},
	{Name: "begin load", Example: `INSERT INTO "pgferry".loads (…) SELECT 'p', 's', 't', 'x', 'loading', 4, '…' WHERE NOT EXISTS (SELECT 1 FROM "pgferry".loads WHERE …)`,
		Unverified: "INSERT … SELECT of constants without FROM, with WHERE NOT EXISTS over a table (leader-node vs compute-node planning)",
		match:      regexp.MustCompile(`^INSERT INTO "pgferry"\.loads \(.*\) SELECT .* WHERE NOT EXISTS `)},
	{Name: "chunk guard", Example: `SELECT 1 / CASE WHEN (SELECT count(*) FROM "pgferry".loads WHERE … AND state = 'loading') = 1 AND (SELECT count(*) FROM "pgferry".load_chunks WHERE …) = 0 THEN 1 ELSE 0 END`,
		match: regexp.MustCompile(`^SELECT 1 / CASE WHEN \(SELECT count\(\*\) FROM "pgferry"\.loads WHERE `)},
	{Name: "hold changes", Example: `COPY "pgferry".load_held ("pipeline", …, "data") FROM 's3://b/k/held.manifest' IAM_ROLE 'arn:…' CSV GZIP MANIFEST COMPUPDATE OFF STATUPDATE OFF`,
		match: regexp.MustCompile(`^COPY "pgferry"\.load_held \(.*\) FROM 's3://.*' IAM_ROLE '.*' CSV GZIP MANIFEST `)},
	{Name: "copy chunk", Example: `COPY "s"."t" ("id", …) FROM 's3://b/load/x/3.manifest' IAM_ROLE 'arn:…' CSV GZIP MANIFEST TIMEFORMAT 'auto' DATEFORMAT 'auto' COMPUPDATE OFF STATUPDATE OFF`,
		Unverified: "as for copy; COPY straight into the user table inside a transaction",
		match:      regexp.MustCompile(`^COPY "(?:[^"]|"")+"\."(?:[^"]|"")+" \(.*\) FROM 's3://.*' IAM_ROLE '.*' CSV GZIP MANIFEST `)},
	{Name: "record chunk", Example: `INSERT INTO "pgferry".load_chunks (load_id, chunk, row_count, copied_at) VALUES ('x', 3, 1000, '…')`,
		match: regexp.MustCompile(`^INSERT INTO "pgferry"\.load_chunks `)},
	{Name: "held count check", Example: `SELECT 1 / CASE WHEN (SELECT count(*) FROM "pgferry".load_held WHERE … AND tick = 20 AND tx = 0) = 2 THEN 1 ELSE 0 END`,
		match: regexp.MustCompile(`^SELECT 1 / CASE WHEN \(SELECT count\(\*\) FROM "pgferry"\.load_held WHERE `)},
	{Name: "hand over: drop held changes", Example: `DELETE FROM "pgferry".load_held WHERE pipeline = 'p' AND …`,
		match: regexp.MustCompile(`^DELETE FROM "pgferry"\.load_held WHERE `)},
	{Name: "hand over: table loaded", Example: `UPDATE "pgferry".loads SET state = 'loaded', finished_at = '…' WHERE …`,
		match: regexp.MustCompile(`^UPDATE "pgferry"\.loads SET state = 'loaded'`)},
}

// ShapeOf returns the shape of stmt, or nil if it has none (a statement
// the list does not know, which TestGoldenStatements refuses).
func ShapeOf(stmt string) *Shape {
	for i := range Shapes {
		if Shapes[i].match.MatchString(stmt) {
			return &Shapes[i]
		}
	}
	return nil
}
