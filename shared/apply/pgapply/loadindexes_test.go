package pgapply_test

import (
	"context"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/apply/pgapply"
	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/load"
)

const indexedDDL = `
CREATE TABLE t (id int PRIMARY KEY, v text, w int);
CREATE INDEX t_w ON t (w);
CREATE INDEX t_lower_v ON t (lower(v));
CREATE UNIQUE INDEX t_v ON t (v);
ALTER TABLE t ADD CONSTRAINT t_vw UNIQUE (v, w);`

// secondaryIndexes lists t's non-primary index definitions, sorted.
func secondaryIndexes(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = 'public.t'::regclass AND NOT indisprimary`)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// handOver copies t's only chunk (empty) and applies a batch carrying its
// load mark, so the hand-over rebuilds the unique indexes.
func handOver(t *testing.T, a *pgapply.Applier, loadID string, seq uint64) {
	t.Helper()
	ctx := context.Background()
	if _, _, err := a.CopyChunk(ctx, load.ChunkCopy{Table: tbl, LoadID: loadID, N: 0, Columns: []string{"id", "v", "w"}, Where: "true"},
		func(context.Context, io.Writer, bool) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := a.RebuildIndexes(ctx, tbl); err != nil {
		t.Fatalf("rebuild non-unique indexes: %v", err)
	}
	mark := batch.Segment{Table: batch.LoadMarks(pipeline), Columns: []string{batch.MarkTarget, batch.MarkSchema, batch.MarkTable, batch.MarkLoadID},
		Key: []string{batch.MarkTarget, batch.MarkSchema, batch.MarkTable}, Upserts: []batch.Row{{v(target), v(tbl.Schema), v(tbl.Name), v(loadID)}}}
	mustApply(t, a, mk(seq, pos(seq-1, 0), pos(seq, 0), mark))
	st, _, err := a.LoadStatus(ctx, tbl)
	if err != nil || !st.Loaded {
		t.Fatalf("load of t not handed over (%+v, %v)", st, err)
	}
}

// TestIndexRebuildKeepsAnIndexAlreadyThereAndReplacesAWrongOne drops t's
// indexes for a load, then has the objects come back behind the load's
// back as a schema sync or an earlier crashed rebuild would leave them:
// one as held, one under the held name with another definition. The
// rebuild (run twice, as a chunk retry does) and the hand-over neither
// fail nor duplicate anything: t ends with exactly its indexes.
func TestIndexRebuildKeepsAnIndexAlreadyThereAndReplacesAWrongOne(t *testing.T) {
	a, pool := newTarget(t, indexedDDL)
	ctx := context.Background()
	want := secondaryIndexes(t, pool)
	if err := a.BeginLoad(ctx, group, tbl, "L1", 1, true); err != nil {
		t.Fatal(err)
	}
	// Begun again (a retried Prepare): nothing more to drop, nothing lost.
	if err := a.BeginLoad(ctx, group, tbl, "L1", 1, true); err != nil {
		t.Fatal(err)
	}
	if got := secondaryIndexes(t, pool); len(got) != 0 {
		t.Fatalf("indexes left after the load began: %q", got)
	}
	for _, q := range []string{
		`CREATE INDEX t_w ON t (w)`,                            // as held
		`CREATE INDEX t_lower_v ON t (upper(v))`,               // held name, other definition
		`ALTER TABLE t ADD CONSTRAINT t_vw UNIQUE (v, w)`,      // as held
		`CREATE UNIQUE INDEX t_v ON t (v) WHERE w IS NOT NULL`, // held name, other definition
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if err := a.RebuildIndexes(ctx, tbl); err != nil {
			t.Fatalf("rebuild with indexes already there: %v", err)
		}
	}
	handOver(t, a, "L1", 1)
	if got := secondaryIndexes(t, pool); !slices.Equal(got, want) {
		t.Fatalf("indexes after the load:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var held int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pgferry.load_indexes`).Scan(&held); err != nil || held != 0 {
		t.Fatalf("%d indexes still held after the hand-over (%v)", held, err)
	}
}

// TestIndexRebuildAfterACrashBetweenDropAndRebuild: a load that dropped
// the indexes and died (the held rows are all that is left) is reset or
// restarted; either way every index comes back exactly once.
func TestIndexRebuildAfterACrashBetweenDropAndRebuild(t *testing.T) {
	a, pool := newTarget(t, indexedDDL)
	ctx := context.Background()
	want := secondaryIndexes(t, pool)
	if err := a.BeginLoad(ctx, group, tbl, "L1", 1, true); err != nil {
		t.Fatal(err)
	}
	// A new load generation over the crashed one: it drops nothing more
	// (the indexes are gone) and keeps the held rows.
	if err := a.BeginLoad(ctx, group, tbl, "L2", 1, true); err != nil {
		t.Fatal(err)
	}
	handOver(t, a, "L2", 1)
	if got := secondaryIndexes(t, pool); !slices.Equal(got, want) {
		t.Fatalf("indexes after the restarted load:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// And a reset of a load that holds indexes brings them back too.
	if err := a.BeginLoad(ctx, group, tbl, "L3", 1, true); err != nil {
		t.Fatal(err)
	}
	if err := pgapply.ResetLoads(ctx, pool, pipeline); err != nil {
		t.Fatal(err)
	}
	if got := secondaryIndexes(t, pool); !slices.Equal(got, want) {
		t.Fatalf("indexes after a reset:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
