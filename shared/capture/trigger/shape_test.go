package trigger

import (
	"context"
	_ "embed"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/drain"
	"github.com/pgferry/pgferry/shared/testenv"
	sqlfiles "github.com/pgferry/pgferry/sql"
)

// captureV2 is sql/source/capture.sql as version 2 shipped it, to test
// upgrades of an existing install.
//
//go:embed testdata/capture_v2.sql
var captureV2 string

// newCapture makes a source database with ddl, and trigger capture for
// it (not installed yet).
func newCapture(t *testing.T, ddl string) (*Capture, *pgxpool.Pool) {
	t.Helper()
	dsn := testenv.NewDB(t, "trig")
	pool := testenv.Pool(t, dsn)
	testenv.Exec(t, pool, ddl)
	cfg, err := config.Parse(fmt.Appendf(nil, `
name: %s
source:
  dsn: %q
  tables: ["public.*"]
  copy_existing: false
targets:
  replica:
    kind: postgres
    dsn: "postgres://nobody@127.0.0.1:1/none"
`, testenv.Name("s"), dsn), os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	return New(pool, cfg, slog.New(slog.NewTextHandler(io.Discard, nil))), pool
}

// changes reads every change captured since install, in stream order.
func changes(t *testing.T, c *Capture) []batch.Change {
	t.Helper()
	ctx := context.Background()
	prev, err := c.InitialSnapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cur, err := c.CurrentSnapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []batch.Change
	if err := c.ReadWindow(ctx, prev, cur, 0, func(txn *drain.Txn) error {
		out = append(out, txn.Changes...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// onOneConn runs each statement on the same connection, so that the
// session's record of the shapes it met is used.
func onOneConn(t *testing.T, pool *pgxpool.Pool, stmts ...string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

func TestShapesFollowSchemaChangesInOneWindow(t *testing.T) {
	c, pool := newCapture(t, `CREATE TABLE t (id int PRIMARY KEY, a text)`)
	ctx := context.Background()
	if err := c.Install(ctx); err != nil {
		t.Fatal(err)
	}
	onOneConn(t, pool,
		`INSERT INTO t VALUES (1, 'x')`,
		`ALTER TABLE t ADD COLUMN b int`,
		`INSERT INTO t VALUES (2, 'y', 3)`,
		`ALTER TABLE t RENAME COLUMN a TO c`,
		`INSERT INTO t VALUES (3, 'z', 4)`,
		// a schema change inside the writing transaction
		`BEGIN; INSERT INTO t VALUES (4, 'w', 5); ALTER TABLE t RENAME COLUMN b TO d; INSERT INTO t VALUES (5, 'v', 6); COMMIT`,
		// two names swapped: the same set of names in another order
		`ALTER TABLE t RENAME COLUMN c TO tmp; ALTER TABLE t RENAME COLUMN d TO c; ALTER TABLE t RENAME COLUMN tmp TO d`,
		`INSERT INTO t VALUES (6, 'u', 7)`,
		// dropped and added again: the same names, the column moved last
		`ALTER TABLE t DROP COLUMN d; ALTER TABLE t ADD COLUMN d text`,
		`INSERT INTO t VALUES (7, 8, 's')`,
		`UPDATE t SET id = 70 WHERE id = 7`,
	)
	want := [][]string{
		{"id", "a"}, {"id", "a", "b"}, {"id", "c", "b"}, {"id", "c", "b"}, {"id", "c", "d"},
		{"id", "d", "c"}, {"id", "c", "d"}, {"id", "c", "d"},
	}
	got := changes(t, c)
	if len(got) != len(want) {
		t.Fatalf("got %d changes, want %d: %+v", len(got), len(want), got)
	}
	for i, ch := range got {
		if !slices.Equal(ch.Columns, want[i]) {
			t.Errorf("change %d (%c %v): columns %v, want %v", i, ch.Op, ch.New, ch.Columns, want[i])
		}
		if !slices.Equal(ch.Key, []string{"id"}) {
			t.Errorf("change %d: key %v, want [id]", i, ch.Key)
		}
	}
	// The row written as (6, 'u', 7) after the swap: d = 'u', c = 7.
	if r := got[5].New[0]; *r[1] != "u" || *r[2] != "7" {
		t.Errorf("row after the swap decoded as %v", r)
	}
	// The last one changed its key: its old row travels.
	if last := got[len(got)-1]; len(last.Old) != 1 || *last.Old[0][0] != "7" {
		t.Errorf("key change: old rows %v, want the row with id 7", last.Old)
	}
}

func TestOldRowsOnlyWhenNeeded(t *testing.T) {
	c, pool := newCapture(t, `
		CREATE TABLE k (id int PRIMARY KEY, v text);
		CREATE TABLE kq (name text PRIMARY KEY, v int);
		CREATE TABLE kc (a int, b int, v text, PRIMARY KEY (a, b));
		CREATE TABLE kl (a int, v text);
		CREATE TABLE kd (id int PRIMARY KEY DEFERRABLE, v text);
		CREATE TABLE kf (id int PRIMARY KEY, v text);
		ALTER TABLE kf REPLICA IDENTITY FULL;
		CREATE TABLE ki (id int PRIMARY KEY, code text NOT NULL, v text);
		CREATE UNIQUE INDEX ki_code ON ki (code);
		ALTER TABLE ki REPLICA IDENTITY USING INDEX ki_code;
		INSERT INTO k VALUES (1, 'a'), (2, 'b'), (3, 'c');
		INSERT INTO kq VALUES ('plain', 1), ('with space', 2), ('x,y', 3);
		INSERT INTO kc VALUES (1, 1, 'a'), (1, 2, 'b');
		INSERT INTO kl VALUES (1, 'a');
		INSERT INTO kd VALUES (2, 'b'), (3, 'c');
		INSERT INTO kf VALUES (1, 'a');
		INSERT INTO ki VALUES (1, 'A', 'a');`)
	ctx := context.Background()
	if err := c.Install(ctx); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		sql  string
		old  []string // first field of each old row kept
		key  []string
		name string
	}{
		{`UPDATE k SET v = 'z' WHERE id = 1`, nil, []string{"id"}, "keyed, key unchanged"},
		{`UPDATE k SET id = 10 WHERE id = 1`, []string{"1"}, []string{"id"}, "keyed, key changed"},
		{`UPDATE k SET id = id * 10 + 1 WHERE id IN (2, 3)`, []string{"2", "3"}, []string{"id"}, "two keys changed"},
		// A deferrable key is no replica identity: every old row, keyed by
		// the primary key of the catalog the drain reads.
		{`UPDATE kd SET id = 5 - id`, []string{"2", "3"}, []string{"id"}, "keys swapped within the statement"},
		{`UPDATE kq SET v = 9 WHERE name = 'plain'`, nil, []string{"name"}, "text key"},
		{`UPDATE kq SET v = 9 WHERE name = 'x,y'`, []string{"x,y"}, []string{"name"}, "quoted leading key: kept"},
		{`UPDATE kq SET name = 'x,z' WHERE name = 'x,y'`, []string{"x,y"}, []string{"name"}, "quoted leading key changed"},
		{`UPDATE kc SET v = 'z' WHERE a = 1`, nil, []string{"a", "b"}, "composite key unchanged"},
		{`UPDATE kc SET b = b + 10 WHERE a = 1`, []string{"1", "1"}, []string{"a", "b"}, "composite key changed"},
		{`UPDATE kl SET v = 'z'`, []string{"1"}, nil, "no key"},
		{`UPDATE kf SET v = 'z'`, []string{"1"}, []string{"id"}, "replica identity full"},
		{`UPDATE ki SET v = 'z'`, nil, []string{"code"}, "replica identity index unchanged"},
		{`UPDATE ki SET id = 2`, nil, []string{"code"}, "primary key changed, identity index not"},
		{`UPDATE ki SET code = 'B'`, []string{"2"}, []string{"code"}, "replica identity index changed"},
		{`UPDATE k SET v = v WHERE false`, nil, nil, "nothing updated: no event"},
	}
	var stmts []string
	for _, tc := range cases {
		stmts = append(stmts, tc.sql)
	}
	onOneConn(t, pool, stmts...)
	got := changes(t, c)
	if len(got) != len(cases)-1 {
		t.Fatalf("got %d changes, want %d", len(got), len(cases)-1)
	}
	for i, ch := range got {
		tc := cases[i]
		var old []string
		for _, r := range ch.Old {
			old = append(old, *r[0])
		}
		slices.Sort(old)
		if !slices.Equal(old, tc.old) {
			t.Errorf("%s (%s): old rows with first fields %v, want %v", tc.name, tc.sql, old, tc.old)
		}
		if !slices.Equal(ch.Key, tc.key) {
			t.Errorf("%s: key %v, want %v", tc.name, ch.Key, tc.key)
		}
	}
}

func TestShapeRegisteredAgainAfterReinstall(t *testing.T) {
	c, pool := newCapture(t, `CREATE TABLE t (id int PRIMARY KEY, a text)`)
	ctx := context.Background()
	if err := c.Install(ctx); err != nil {
		t.Fatal(err)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `INSERT INTO t VALUES (1, 'x')`); err != nil {
		t.Fatal(err)
	}
	// What --reset does, then a new install; the writer's session lives on.
	testenv.Exec(t, pool, "DROP SCHEMA "+pgx.Identifier{c.schema}.Sanitize()+" CASCADE")
	c = New(pool, c.cfg, c.log)
	if err := c.Install(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO t VALUES (2, 'y')`); err != nil {
		t.Fatal(err)
	}
	got := changes(t, c)
	if len(got) != 1 || *got[0].New[0][0] != "2" || !slices.Equal(got[0].Columns, []string{"id", "a"}) {
		t.Fatalf("after reinstall got %+v", got)
	}
}

func TestUpgradeFromVersion2KeepsEventsReadable(t *testing.T) {
	c, pool := newCapture(t, `CREATE TABLE t (id int PRIMARY KEY, a text); INSERT INTO t VALUES (1, 'x')`)
	ctx := context.Background()
	// An install of version 2, as that version's Install made it.
	sch := pgx.Identifier{c.schema}.Sanitize()
	testenv.Exec(t, pool, strings.ReplaceAll(captureV2, "@schema@", sch))
	testenv.Exec(t, pool, fmt.Sprintf(`INSERT INTO %s.state (version, initial_snapshot) VALUES (2, pg_current_snapshot()::text)`, sch))
	if err := c.SyncTables(ctx); err != nil {
		t.Fatal(err)
	}
	// Events of version 2, one of them in a transaction still open while
	// the upgrade runs: it waits for the writer, and the writer's next
	// statement, after the upgrade, writes version 3.
	onOneConn(t, pool, `INSERT INTO t VALUES (2, 'y')`, `UPDATE t SET a = 'z' WHERE id = 1`)
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO t VALUES (3, 'w')`); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Install(ctx) }()
	// The upgrade waits for the open writer (lock_timeout is 5s).
	testenv.Exec(t, pool, "SELECT pg_sleep(0.5)")
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	var version int
	var index bool
	if err := pool.QueryRow(ctx, fmt.Sprintf(`SELECT version, to_regclass('%s.events_txid') IS NOT NULL FROM %s.state`, sch, sch)).Scan(&version, &index); err != nil {
		t.Fatal(err)
	}
	if version != sqlfiles.CaptureVersion || index {
		t.Fatalf("after upgrade: version %d, index on ev_txid kept %v", version, index)
	}
	onOneConn(t, pool, `UPDATE t SET a = 'q' WHERE id = 2`, `ALTER TABLE t ADD COLUMN b int`, `INSERT INTO t VALUES (4, 'v', 5)`)
	got := changes(t, c)
	type row struct {
		op   batch.Op
		cols int
		old  int
	}
	want := []row{{batch.Insert, 2, 0}, {batch.Update, 2, 1}, {batch.Insert, 2, 0}, {batch.Update, 2, 0}, {batch.Insert, 3, 0}}
	if len(got) != len(want) {
		t.Fatalf("got %d changes, want %d: %+v", len(got), len(want), got)
	}
	for i, ch := range got {
		if g := (row{ch.Op, len(ch.Columns), len(ch.Old)}); g != want[i] {
			t.Errorf("change %d: %+v, want %+v (columns %v)", i, g, want[i], ch.Columns)
		}
	}
}

// TestSettingsCheckedWhereTheTextDependsOnThem: since version 4 a
// statement checks the session's output settings only when a column's
// text depends on them. A column whose type changes to one that does
// (int to timestamptz) in a session with other settings must make the
// next rows be captured in the canonical form: the shape (which records
// whether to check) follows the column types, not only the names.
func TestSettingsCheckedWhereTheTextDependsOnThem(t *testing.T) {
	c, pool := newCapture(t, `CREATE TABLE t (id int PRIMARY KEY, v int, w text)`)
	if err := c.Install(context.Background()); err != nil {
		t.Fatal(err)
	}
	onOneConn(t, pool,
		`SET DateStyle = 'SQL, DMY'`, `SET TimeZone = 'Asia/Kolkata'`,
		`INSERT INTO t VALUES (1, 7, 'a')`,
		`ALTER TABLE t ALTER COLUMN v TYPE timestamptz USING to_timestamp(v)`,
		`INSERT INTO t VALUES (2, '2024-01-02 03:04:05+00', 'b')`,
		`UPDATE t SET w = 'c' WHERE id = 2`)
	got := changes(t, c)
	want := []string{"7", "2024-01-02 03:04:05+00", "2024-01-02 03:04:05+00"}
	if len(got) != len(want) {
		t.Fatalf("got %d changes, want %d", len(got), len(want))
	}
	for i, ch := range got {
		if v := *ch.New[0][1]; v != want[i] {
			t.Errorf("change %d: v = %q, want %q (canonical: ISO, UTC)", i, v, want[i])
		}
	}
}
