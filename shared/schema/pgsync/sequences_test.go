package pgsync_test

import (
	"context"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgferry/pgferry/shared/schema/pgsync"
	"github.com/pgferry/pgferry/shared/testenv"
)

// sequenceTables are replicated tables with every kind of sequence
// SyncSequences follows: serial (owned by a column), identity, and a
// standalone sequence a column default calls. Each has a text column, so
// a toast table beside it.
const sequenceTables = `
CREATE SEQUENCE public.ticket_no START 1000;
CREATE TABLE public.a (id serial PRIMARY KEY, body text);
CREATE TABLE public.b (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text);
CREATE TABLE public.c (no bigint DEFAULT nextval('public.ticket_no') PRIMARY KEY, body text);
`

// bulkSchema creates n tables that are not replicated, each with a serial
// and an identity column and a toast table: the size of catalog at which
// the planner, once it has statistics on the catalogs, stops joining
// pg_depend to pg_sequence first.
func bulkSchema(n int) string {
	return `CREATE SCHEMA bulk;
DO $$ BEGIN FOR i IN 1..` + strconv.Itoa(n) + ` LOOP
  EXECUTE format('CREATE TABLE bulk.t%s (id serial PRIMARY KEY, b bigint GENERATED ALWAYS AS IDENTITY, body text)', i);
  EXECUTE format('INSERT INTO bulk.t%s (body) VALUES (''x'')', i);
END LOOP; END $$;`
}

// TestSequencesSyncOnASourceWithAnalyzedCatalogs reproduces a source
// restored from a dump and ANALYZEd: with statistics on pg_class and
// pg_depend the planner is free to read pg_class before it has joined
// down to sequences, and a query that calls pg_sequence_last_value in a
// WHERE clause then calls it on a toast table or an index ("… is not a
// sequence", SQLSTATE 42809) and sequence sync never works. Each case
// forces a different plan shape; every one must read only sequences.
func TestSequencesSyncOnASourceWithAnalyzedCatalogs(t *testing.T) {
	cases := []struct {
		name, setup string
		settings    []string
	}{
		// No planner settings: enough tables that the default plan scans
		// pg_class with the filter before the hash join to pg_sequence.
		{name: "many tables", setup: bulkSchema(400)},
		{name: "no nested loops", setup: bulkSchema(20), settings: []string{"enable_nestloop = off"}},
		{name: "index scans only", setup: bulkSchema(20), settings: []string{"enable_hashjoin = off", "enable_nestloop = off"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, "")
			ctx := context.Background()
			testenv.Exec(t, e.src, sequenceTables)
			e.syncOnce()
			testenv.Exec(t, e.src, c.setup)
			testenv.Exec(t, e.src, `
				INSERT INTO a (body) SELECT 'x' FROM generate_series(1, 40);
				INSERT INTO b (body) SELECT 'x' FROM generate_series(1, 7);
				INSERT INTO c (body) SELECT 'x' FROM generate_series(1, 3);
				ANALYZE`)
			if len(c.settings) > 0 {
				var db string
				if err := e.src.QueryRow(ctx, `SELECT current_database()`).Scan(&db); err != nil {
					t.Fatal(err)
				}
				for _, s := range c.settings {
					testenv.Exec(t, e.src, "ALTER DATABASE "+pgx.Identifier{db}.Sanitize()+" SET "+s)
				}
				e.src.Reset() // new sessions pick the settings up
			}
			n, err := e.sync.SyncSequences(ctx)
			if err != nil {
				t.Fatalf("sync sequences: %v", err)
			}
			if got := e.targetString(`SELECT pg_sequence_last_value('a_id_seq') || ',' || pg_sequence_last_value('b_id_seq') || ',' || pg_sequence_last_value('ticket_no')`); got != "40,7,1002" || n != 3 {
				t.Fatalf("target sequences at %s (%d moved), want 40,7,1002 (3 moved)", got, n)
			}
		})
	}
}

// TestUnreadableSourceSequenceIsReportedAndTheRestStillMove: a source
// role that owns its tables owns their serial and identity sequences, but
// a standalone sequence a default calls may belong to someone else. Such
// a sequence is not skipped in silence (its target copy would stay behind
// and hand out duplicate keys after a failover): every readable sequence
// is moved, then the error names the unreadable one and the grant.
func TestUnreadableSourceSequenceIsReportedAndTheRestStillMove(t *testing.T) {
	e := newEnv(t, "")
	ctx := context.Background()
	admin := testenv.Pool(t, testenv.ClusterDSN(t))
	role := testenv.Name("seqrole")
	testenv.Exec(t, admin, "CREATE ROLE "+pgx.Identifier{role}.Sanitize()+" LOGIN")
	t.Cleanup(func() {
		// The role owns objects in the source database only.
		_, _ = e.src.Exec(context.Background(), "DROP OWNED BY "+pgx.Identifier{role}.Sanitize())
		if _, err := admin.Exec(context.Background(), "DROP ROLE "+pgx.Identifier{role}.Sanitize()); err != nil {
			t.Errorf("drop role %s: %v", role, err)
		}
	})
	testenv.Exec(t, e.src, sequenceTables)
	testenv.Exec(t, e.src, `ALTER TABLE a OWNER TO `+pgx.Identifier{role}.Sanitize()+`;
		ALTER TABLE b OWNER TO `+pgx.Identifier{role}.Sanitize()+`;
		ALTER TABLE c OWNER TO `+pgx.Identifier{role}.Sanitize()+`;
		INSERT INTO a (body) SELECT 'x' FROM generate_series(1, 40);
		INSERT INTO b (body) SELECT 'x' FROM generate_series(1, 7);
		INSERT INTO c (body) SELECT 'x' FROM generate_series(1, 3)`)
	e.syncOnce()

	// The same pipeline, read as the least-privileged role.
	u, err := url.Parse(e.srcDSN)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	weak := pgsync.New(testenv.Pool(t, u.String()), e.dst, e.cfg, "replica", logger())
	n, err := weak.SyncSequences(ctx)
	if !errors.Is(err, pgsync.ErrSequenceUnreadable) || !strings.Contains(err.Error(), "public.ticket_no") ||
		!strings.Contains(err.Error(), `GRANT SELECT ON SEQUENCE "public"."ticket_no" TO `+pgx.Identifier{role}.Sanitize()) {
		t.Fatalf("err = %v, want ErrSequenceUnreadable naming public.ticket_no and the grant", err)
	}
	if got := e.targetString(`SELECT pg_sequence_last_value('a_id_seq') || ',' || pg_sequence_last_value('b_id_seq') || ',' || coalesce(pg_sequence_last_value('ticket_no')::text, 'unset')`); got != "40,7,unset" || n != 2 {
		t.Fatalf("target sequences at %s (%d moved), want 40,7,unset (2 moved)", got, n)
	}

	testenv.Exec(t, e.src, "GRANT SELECT ON SEQUENCE public.ticket_no TO "+pgx.Identifier{role}.Sanitize())
	if _, err := weak.SyncSequences(ctx); err != nil {
		t.Fatalf("after the grant: %v", err)
	}
	if got := e.targetString(`SELECT pg_sequence_last_value('ticket_no')::text`); got != "1002" {
		t.Fatalf("ticket_no at %s after the grant, want 1002", got)
	}
}
