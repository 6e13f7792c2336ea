package slot_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/capture/slot"
	"github.com/pgferry/pgferry/shared/capture/trigger"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/drain"
	"github.com/pgferry/pgferry/shared/testenv"
)

// source is a fresh source database with a pipeline configuration.
type source struct {
	t    *testing.T
	dsn  string
	pool *pgxpool.Pool
	cfg  *config.Config
	log  *slog.Logger
}

func newSource(t *testing.T, ddl, sourceKeys string) *source {
	t.Helper()
	s := &source{t: t, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	s.dsn = testenv.NewDB(t, "src")
	s.pool = testenv.Pool(t, s.dsn)
	testenv.Exec(t, s.pool, ddl)
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
name: %s
source:
  dsn: %q
  tables: ["public.*"]
  %s
targets:
  replica: {kind: postgres, dsn: "postgres://nobody@127.0.0.1:1/none"}
`, testenv.Name("s"), s.dsn, sourceKeys)), os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	s.cfg = cfg
	return s
}

func (s *source) exec(sql string, args ...any) { s.t.Helper(); testenv.Exec(s.t, s.pool, sql, args...) }

// readSlot returns the changes of every transaction committed so far.
func (s *source) readSlot(c *slot.Capture, from slot.LSN) []batch.Change {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	token, err := c.Heartbeat(ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	st, err := c.Open(ctx, from)
	if err != nil {
		s.t.Fatal(err)
	}
	var out []batch.Change
	for {
		ev, err := st.Next()
		if err != nil {
			s.t.Fatal(err)
		}
		if ev.Kind == slot.EventChange {
			out = append(out, ev.Change)
		}
		if ev.Kind == slot.EventCommit && ev.Heartbeat == token {
			_ = st.Close(ctx, 0)
			return out
		}
	}
}

func render(rows []batch.Row) []string {
	var out []string
	for _, r := range rows {
		var b strings.Builder
		for _, v := range r {
			switch {
			case v == nil:
				b.WriteString("<null>|")
			case v == batch.Unchanged:
				b.WriteString("<unchanged>|")
			default:
				fmt.Fprintf(&b, "%q|", *v)
			}
		}
		out = append(out, b.String())
	}
	return out
}

// TestValuesAreByteIdenticalToTriggerCapture captures the same rows with
// both capture modes and compares every value's text. The database's own
// defaults print dates, times, floats, bytea and intervals differently
// from the canonical settings, and the writer's session differs again:
// neither may leak into captured values.
func TestValuesAreByteIdenticalToTriggerCapture(t *testing.T) {
	s := newSource(t, `CREATE TYPE mood AS ENUM ('sad', 'happy');
		CREATE TABLE v (id int PRIMARY KEY, f8 float8, f4 float4, num numeric, ts timestamptz, tsn timestamp, d date,
		  iv interval, b bytea, j json, jb jsonb, ta text[], m mood, r tstzrange, ip inet, pt point, t text)`, "capture: slot")
	db := strings.TrimPrefix(s.dsn[strings.LastIndex(s.dsn, "/"):], "/")
	db = db[:strings.IndexByte(db+"?", '?')]
	s.exec(fmt.Sprintf(`ALTER DATABASE %q SET DateStyle = 'SQL, DMY'; ALTER DATABASE %q SET TimeZone = 'Asia/Kolkata';
		ALTER DATABASE %q SET extra_float_digits = -3; ALTER DATABASE %q SET bytea_output = 'escape';
		ALTER DATABASE %q SET IntervalStyle = 'sql_standard'`, db, db, db, db, db))

	ctx := context.Background()
	trig := trigger.New(s.pool, s.cfg, s.log)
	if err := trig.Install(ctx); err != nil {
		t.Fatal(err)
	}
	prev, err := trig.CurrentSnapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sc := slot.New(s.pool, s.cfg, s.log)
	info, err := sc.Install(ctx, false)
	if err != nil {
		t.Fatal(err)
	}

	writer := testenv.Pool(t, s.dsn) // new connections: the database defaults apply
	testenv.Exec(t, writer, `SET DateStyle = 'German'; SET TimeZone = 'America/St_Johns'; SET extra_float_digits = 0;
		INSERT INTO v VALUES
		 (1, 0.1 + 0.2, 1.1, 'NaN', '2024-02-29 23:59:59.123456+05:30', '1999-12-31 23:59:59', '4713-01-01 BC',
		  '1 year 2 mons -3 days 04:05:06.7', '\x00ff5c0a', '{ "b" : 1,  "a":2 }', '{"b":1}', ARRAY['a"b', NULL, 'c,d'],
		  'happy', '[2024-01-01 10:00+02,infinity)', '10.1.2.3/8', '(1.5,-2)', E'tab\there\r\nCRLF back\\slash'),
		 (2, '-Infinity', '-0', 'Infinity', '-infinity', 'infinity', 'infinity', '0', '', 'null', '[]', '{}',
		  'sad', 'empty', '::1', NULL, ''),
		 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`)

	cur, err := trig.CurrentSnapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var fromTrigger []batch.Row
	err = trig.ReadWindow(ctx, prev, cur, 0, func(txn *drain.Txn) error {
		for _, ch := range txn.Changes {
			fromTrigger = append(fromTrigger, ch.New...)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var fromSlot []batch.Row
	for _, ch := range s.readSlot(sc, info.Start) {
		fromSlot = append(fromSlot, ch.New...)
	}
	got, want := render(fromSlot), render(fromTrigger)
	if len(want) != 3 || strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("slot capture values differ from trigger capture's:\nslot:    %s\ntrigger: %s", strings.Join(got, "\n         "), strings.Join(want, "\n         "))
	}
}

// TestTableWithoutReplicaIdentity: a keyless table is refused, naming it,
// and nothing is published (its UPDATEs keep working); allowed by
// source.replica_identity_full it gets REPLICA IDENTITY FULL and joins
// the publication, and its UPDATEs still work.
func TestTableWithoutReplicaIdentity(t *testing.T) {
	ddl := `CREATE TABLE keyed (id int PRIMARY KEY); CREATE TABLE "no key" (a int, b text); INSERT INTO "no key" VALUES (1, 'x')`
	ctx := context.Background()
	published := func(s *source) string {
		var names string
		err := s.pool.QueryRow(ctx, `SELECT coalesce(string_agg(tablename, ',' ORDER BY tablename), '') FROM pg_publication_tables WHERE pubname = $1`,
			s.cfg.PublicationName()).Scan(&names)
		if err != nil {
			t.Fatal(err)
		}
		return names
	}

	refused := newSource(t, ddl, "capture: slot")
	_, err := slot.New(refused.pool, refused.cfg, refused.log).Install(ctx, false)
	if !errors.Is(err, slot.ErrNoReplicaIdentity) || !strings.Contains(err.Error(), `public.no key`) ||
		!strings.Contains(err.Error(), "replica_identity_full") || strings.Contains(err.Error(), "keyed") {
		t.Fatalf("keyless table: err = %v, want ErrNoReplicaIdentity naming public.no key only and the key to set", err)
	}
	if got := published(refused); got != "" {
		t.Fatalf("publication holds %q after a refused set-up, want nothing", got)
	}
	refused.exec(`UPDATE "no key" SET b = 'still works'`)

	allowed := newSource(t, ddl, "capture: slot\n  replica_identity_full: true")
	if _, err := slot.New(allowed.pool, allowed.cfg, allowed.log).Install(ctx, false); err != nil {
		t.Fatal(err)
	}
	var ident string
	if err := allowed.pool.QueryRow(ctx, `SELECT relreplident::text FROM pg_class WHERE oid = '"no key"'::regclass`).Scan(&ident); err != nil {
		t.Fatal(err)
	}
	if ident != "f" {
		t.Fatalf("replica identity of the keyless table = %q, want f (FULL)", ident)
	}
	if got, want := published(allowed), "keyed,no key"; got != want {
		t.Fatalf("publication holds %q, want %q", got, want)
	}
	allowed.exec(`UPDATE "no key" SET b = 'still works'; DELETE FROM "no key"`)
}

// TestUnchangedToastValueIsMarked: an UPDATE that leaves an out-of-line
// value alone arrives with batch.Unchanged in its place (never NULL), and
// with REPLICA IDENTITY FULL the old row supplies the value instead.
func TestUnchangedToastValueIsMarked(t *testing.T) {
	s := newSource(t, `CREATE TABLE docs (id int PRIMARY KEY, n int, big text);
		CREATE TABLE full_docs (id int PRIMARY KEY, n int, big text); ALTER TABLE full_docs REPLICA IDENTITY FULL`, "capture: slot")
	c := slot.New(s.pool, s.cfg, s.log)
	info, err := c.Install(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	big := `(SELECT string_agg(md5(g::text), '') FROM generate_series(1, 6400) g)`
	s.exec(`INSERT INTO docs VALUES (1, 0, ` + big + `); INSERT INTO full_docs VALUES (1, 0, ` + big + `)`)
	s.exec(`UPDATE docs SET n = 1; UPDATE full_docs SET n = 1`)
	var updates []batch.Change
	for _, ch := range s.readSlot(c, info.Start) {
		if ch.Op == batch.Update {
			updates = append(updates, ch)
		}
	}
	if len(updates) != 2 {
		t.Fatalf("read %d updates, want 2", len(updates))
	}
	if got := updates[0].New[0][2]; got != batch.Unchanged {
		t.Fatalf("docs: unchanged big value arrived as %v, want batch.Unchanged", got)
	}
	if got := updates[1].New[0][2]; got == nil || got == batch.Unchanged || len(*got) != 204800 {
		t.Fatalf("full_docs: the old row must supply the unchanged big value, got %v", got)
	}
}
