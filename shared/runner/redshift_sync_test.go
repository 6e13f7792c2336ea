package runner_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgferry/pgferry/shared/initload"
	"github.com/pgferry/pgferry/shared/schemadiff"
	"github.com/pgferry/pgferry/shared/testenv"
)

const rsSyncDDL = `
CREATE TABLE items (id bigint PRIMARY KEY, name text, qty int, price numeric(12,2), note varchar(20));
CREATE TABLE tags (id int PRIMARY KEY, label varchar(10) NOT NULL);
INSERT INTO items SELECT g, 'item ' || g, g % 50, g * 1.25, 'n' || g FROM generate_series(1, 6000) g;
INSERT INTO tags SELECT g, 't' || g FROM generate_series(1, 300) g;
`

// newRedshiftSyncFixture is a pipeline from a source holding ddl (and
// rows) to two empty targets whose schemas pgferry builds and keeps in
// step: a PostgreSQL replica and a Redshift warehouse on the stand-in.
// Nothing is made by hand on either.
func newRedshiftSyncFixture(t *testing.T, mode, ddl string) *fixture {
	t.Helper()
	testenv.AWS(t)
	rsDB := rsDBName(t, testenv.NewDB(t, "rs"))
	f := fixtureFrom(t, ddl, "", func(src, dst string) string {
		return fmt.Sprintf(`
name: %s
source:
  dsn: %q
  tables: ["public.*"]%s
targets:
  replica:
    kind: postgres
    dsn: %q
  warehouse:
    kind: redshift
    data_api: {workgroup: wg-test, database: %s}
    copy_role_arn: "arn:aws:iam::000000000000:role/pgferry-copy"
drain:
  interval: 100ms
load:
  chunk_rows: 1500
  parallelism: 2
`, testenv.Name("t"), src, slotKeys(mode), dst, rsDB)
	})
	if err := schemadiff.SyncAll(context.Background(), f.p.Syncers()); err != nil {
		t.Fatalf("schema sync at start: %v", err)
	}
	return f
}

// TestRedshiftTargetIsBuiltLoadedUnderWritesAndFollowsDDL is
// functions/local --initial-load on empty targets, one of them Redshift:
// schema sync builds the warehouse from the source, the initial load
// copies the existing rows in chunks while writes go on, and a round of
// DDL mid-stream (a new column used at once, a renamed column, a widened
// varchar, a new table) reaches the warehouse through schema jobs and
// retry-after-DDL. Both targets end equal to the source through the type
// map, under both capture modes.
func TestRedshiftTargetIsBuiltLoadedUnderWritesAndFollowsDDL(t *testing.T) {
	forEachCapture(t, func(t *testing.T, mode string) {
		f := newRedshiftSyncFixture(t, mode, rsSyncDDL)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()

		wctx, stopWriters := context.WithCancel(ctx)
		var wg sync.WaitGroup
		var committed atomic.Int64
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; wctx.Err() == nil; i++ {
				if _, err := f.src.Exec(wctx, `UPDATE items SET qty = qty + 1, note = 'w' || $1::int WHERE id = $2`, i, 1+(i*37)%6000); err != nil {
					return
				}
				if _, err := f.src.Exec(wctx, `INSERT INTO items VALUES ($1, 'new', 1, 2.5, NULL)`, 100000+i); err != nil {
					return
				}
				if _, err := f.src.Exec(wctx, `DELETE FROM tags WHERE id = $1`, 1+i%300); err != nil {
					return
				}
				committed.Add(3)
				time.Sleep(5 * time.Millisecond)
			}
		}()
		err := f.initialLoad(ctx, initload.Options{})
		stopWriters()
		wg.Wait()
		if err != nil {
			t.Fatalf("initial load: %v", err)
		}
		if committed.Load() < 10 {
			t.Fatalf("only %d writes committed during the load: the test proves little", committed.Load())
		}
		f.replicate()
		f.assertBothSame()
		if got := f.rsValue(`SELECT count(*) FROM pgferry.loads WHERE state = 'loaded'`); got == nil || *got != "2" {
			t.Errorf("warehouse load state: %v tables loaded, want 2", got)
		}

		// DDL mid-stream, each change used by the writes right after it.
		f.exec(`ALTER TABLE items ADD COLUMN colour varchar(12)`)
		f.exec(`UPDATE items SET colour = 'red' WHERE id % 7 = 0`)
		f.exec(`ALTER TABLE items RENAME COLUMN note TO remark`)
		f.exec(`UPDATE items SET remark = 'renamed' WHERE id % 11 = 0`)
		f.exec(`ALTER TABLE tags ALTER COLUMN label TYPE varchar(40)`)
		f.exec(`INSERT INTO tags VALUES (1000, 'a label longer than ten')`)
		f.exec(`CREATE TABLE extras (id int PRIMARY KEY, payload jsonb)`)
		f.exec(`INSERT INTO extras SELECT g, jsonb_build_object('g', g) FROM generate_series(1, 40) g`)
		f.replicate()
		if _, err := f.schemaDiff(ctx, false); err != nil {
			t.Fatalf("schema-diff: %v", err)
		}
		f.replicate()
		f.assertBothSame()
		if got := f.rsValue(`SELECT count(*) FROM public.items WHERE remark = 'renamed'`); got == nil || *got == "0" {
			t.Errorf("renamed column on the warehouse holds %v rows with the new value", got)
		}
		if got := f.rsValue(`SELECT count(*) FROM public.extras`); got == nil || *got != "40" {
			t.Errorf("new table on the warehouse holds %v rows, want 40", got)
		}
	})
}
