package runner_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/initload"
	"github.com/pgferry/pgferry/shared/load"
	"github.com/pgferry/pgferry/shared/schema/schematest"
	"github.com/pgferry/pgferry/shared/schemadiff"
	"github.com/pgferry/pgferry/shared/testenv"
)

// loadSchemaDDL has every kind of secondary index the load drops: a
// plain one, a unique index, a unique constraint, an expression index and
// a partial unique index.
const loadSchemaDDL = `
CREATE TABLE items (id int PRIMARY KEY, grp int NOT NULL, code text, ref text CONSTRAINT items_ref_key UNIQUE, note text);
CREATE INDEX items_grp ON items (grp);
CREATE UNIQUE INDEX items_code ON items (code);
CREATE INDEX items_lower_note ON items (lower(note));
CREATE UNIQUE INDEX items_note_partial ON items (note) WHERE grp = 0;
CREATE TABLE other (id int PRIMARY KEY, v text);
CREATE INDEX other_v ON other (v);`

// newLoadSchemaFixture is the runner as functions/local wires it for
// --initial-load on an empty target with schema sync on: the drain and
// apply loops write through the schema-syncing appliers, the load through
// the targets' loaders, and the target's schema is synced at start.
func newLoadSchemaFixture(t *testing.T, mode string) (*fixture, map[string]schemadiff.Syncer) {
	t.Helper()
	f := fixtureFrom(t, loadSchemaDDL, "", func(src, dst string) string {
		return fmt.Sprintf(`
name: %s
source:
  dsn: %q
  tables: ["public.*"]%s
targets:
  replica:
    kind: postgres
    dsn: %q
drain:
  interval: 100ms
load:
  chunk_rows: 1000
  parallelism: 2
`, testenv.Name("t"), src, slotKeys(mode), dst)
	})
	syncers := f.p.Syncers()
	if err := schemadiff.SyncAll(context.Background(), syncers); err != nil {
		t.Fatal(err)
	}
	f.exec(`INSERT INTO items SELECT g, g % 10, 'c' || g, 'r' || g, 'n' || g FROM generate_series(1, 8000) g`)
	f.exec(`INSERT INTO other SELECT g, 'v' || g FROM generate_series(1, 1000) g`)
	f.exec(`ANALYZE items, other`)
	return f, syncers
}

// TestInitialLoadIntoASchemaSyncedTargetEndsWithTheSourceIndexes loads
// into a target that schema sync built, with schema sync running while
// the load holds the secondary indexes it dropped: sync must not put them
// back under the load (a unique one would make chunks copied at different
// moments collide), and the load's rebuild must not fail on an index that
// is already there. The target ends with exactly the source's indexes.
func TestInitialLoadIntoASchemaSyncedTargetEndsWithTheSourceIndexes(t *testing.T) {
	forEachCapture(t, func(t *testing.T, mode string) {
		f, syncers := newLoadSchemaFixture(t, mode)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()

		// Begin the load (it drops the secondary indexes), then let schema
		// sync run while it holds them, as a schema job or the start-up
		// sync of another runner does.
		beginLoad(t, f)
		plan, err := syncers["replica"].Sync(ctx)
		if err != nil {
			t.Fatalf("schema sync while the load holds the indexes: %v", err)
		}
		if !plan.Empty() {
			t.Errorf("schema sync while the load holds the indexes ran %q, want nothing (the load rebuilds them)", plan.SQL())
		}

		// functions/local --initial-load --until-idle resumes the load.
		l := schemaLocal(f, syncers)
		if err := f.runWithLoad(ctx, l, true, initload.Options{}); err != nil {
			t.Fatalf("initial load: %v", err)
		}
		schematest.AssertSameCatalog(t, f.src, f.dst)
		f.assertSame()
		if n := f.targetInt(`SELECT count(*) FROM pgferry.load_indexes`); n != 0 {
			t.Errorf("%d indexes still recorded as held by the load after it finished", n)
		}
	})
}

// TestInitialLoadWithSchemaSyncFromScratch is functions/local
// --initial-load --until-idle on an empty target, untouched: start-up
// sync, the first schema job and the load's workers race as they come.
func TestInitialLoadWithSchemaSyncFromScratch(t *testing.T) {
	f, syncers := newLoadSchemaFixture(t, config.CaptureTrigger)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l := schemaLocal(f, syncers)
	if err := f.runWithLoad(ctx, l, true, initload.Options{}); err != nil {
		t.Fatalf("initial load: %v", err)
	}
	schematest.AssertSameCatalog(t, f.src, f.dst)
	f.assertSame()
}

// beginLoad installs capture and begins the load of every table, as
// --initial-load does before it copies (the secondary indexes are dropped).
func beginLoad(t *testing.T, f *fixture) {
	t.Helper()
	ctx := context.Background()
	loader := f.loader()
	tables, err := initload.Tables(ctx, f.cfg, f.src, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := loader.Prepare(ctx, "replica", tables, load.Options{ChunkRows: 1000, DropIndexes: true}); err != nil {
		t.Fatal(err)
	}
	if n := f.targetInt(`SELECT count(*) FROM pg_indexes WHERE schemaname = 'public' AND indexname NOT LIKE '%pkey'`); n != 0 {
		t.Fatalf("%d secondary indexes left on the target after the load began, want them all dropped", n)
	}
}

// TestSourceIndexChangesDuringALoadReachTheRebuild changes and drops
// indexes on the source while the load holds them: schema sync rewrites
// the load's list instead of the table, and the load ends with the
// source's indexes as they are now, none of the old ones.
func TestSourceIndexChangesDuringALoadReachTheRebuild(t *testing.T) {
	f, syncers := newLoadSchemaFixture(t, config.CaptureTrigger)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	beginLoad(t, f)
	f.exec(`DROP INDEX items_lower_note; DROP INDEX items_grp; CREATE INDEX items_grp ON items (grp, id);
		ALTER TABLE items DROP CONSTRAINT items_ref_key; ALTER TABLE items ADD CONSTRAINT items_ref_key UNIQUE (ref, grp);
		CREATE INDEX items_new ON items (note, grp)`)
	plan, err := syncers["replica"].Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Only the new index is created now; it was never held.
	if got := plan.SQL(); strings.Count(got, ";") != 1 || !strings.Contains(got, "items_new") {
		t.Errorf("schema sync while the load holds the indexes ran %q, want only the new index", got)
	}
	l := schemaLocal(f, syncers)
	if err := f.runWithLoad(ctx, l, true, initload.Options{}); err != nil {
		t.Fatalf("initial load: %v", err)
	}
	schematest.AssertSameCatalog(t, f.src, f.dst)
	f.assertSame()
}
