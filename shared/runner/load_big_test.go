package runner_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgferry/pgferry/shared/initload"
)

const loadBigDDL = awkwardDDL + `
CREATE TABLE plain (id bigint PRIMARY KEY, grp int NOT NULL, t text, ts timestamptz, n numeric,
                    g int GENERATED ALWAYS AS (grp * 2) STORED);
CREATE INDEX plain_grp ON plain (grp);
CREATE TABLE pairs (a int, b text, v float8, PRIMARY KEY (a, b));
CREATE TABLE measure (region text, at date, v numeric, PRIMARY KEY (region, at)) PARTITION BY LIST (region);
CREATE TABLE measure_eu PARTITION OF measure FOR VALUES IN ('eu');
CREATE TABLE measure_us PARTITION OF measure FOR VALUES IN ('us');
CREATE TABLE ident (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text);
CREATE TABLE parent (id int PRIMARY KEY, name text UNIQUE);
CREATE TABLE child (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES parent (id) ON DELETE CASCADE, note text);
CREATE TABLE keyless (a int, b text);`

// awkwardCopies multiplies awkwardRows's three rows into n×3 rows with
// new ids.
const awkwardCopies = `
INSERT INTO awkward SELECT g * 10 + a.id, f8, f4, num, num_p, ia, ta, md, lb, j, jb, m, mo, d, p, r, tr, ip, cn, mac, bv, tsv,
       t, b, ts, tsn, dt, iv, u, pt, x
FROM awkward a CROSS JOIN generate_series(1, $1::int) g WHERE a.id < 10`

// TestInitialLoadUnderWritesEndsEqual loads a populated source of about
// 1.1M rows in tables of awkward types (enums, arrays of enums and
// composites, which travel as text COPY; NaN, infinities, json as written,
// bytea, generated and identity columns, composite keys, a partitioned
// table, foreign keys, a keyless table) while writers keep updating,
// deleting, inserting and moving keys in every table, then catches up:
// source and target must be equal, row for row.
func TestInitialLoadUnderWritesEndsEqual(t *testing.T) {
	if testing.Short() {
		t.Skip("loads about 1.1M rows under a write load (about a minute)")
	}
	f := newFixture(t, loadBigDDL, "load:\n  chunk_rows: 40000\n  parallelism: 2\n")
	ctx := context.Background()
	seeded := time.Now()
	f.exec(awkwardRows)
	f.exec(awkwardCopies, 100000)
	f.exec(`INSERT INTO plain (id, grp, t, ts, n) SELECT g, g % 100, repeat('p', g % 50) || g, '2024-01-01'::timestamptz + g * interval '1 min', g / 7.0
		FROM generate_series(1, 500000) g`)
	f.exec(`INSERT INTO pairs SELECT g % 1000, 'b' || (g / 1000), g * 0.5 FROM generate_series(1, 150000) g`)
	f.exec(`INSERT INTO measure SELECT r, DATE '1950-01-01' + g, g FROM generate_series(1, 25000) g, unnest(ARRAY['eu', 'us']) r`)
	f.exec(`INSERT INTO ident (v) SELECT 'i' || g FROM generate_series(1, 50000) g`)
	f.exec(`INSERT INTO parent SELECT g, 'p' || g FROM generate_series(1, 20000) g`)
	f.exec(`INSERT INTO child SELECT g, g % 20000 + 1, 'c' || g FROM generate_series(1, 50000) g`)
	f.exec(`INSERT INTO keyless SELECT g % 100, 'k' FROM generate_series(1, 10000) g`)
	var total int64
	for _, tbl := range []string{"awkward", "plain", "pairs", "measure", "ident", "parent", "child", "keyless"} {
		var n int64
		if err := f.src.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{tbl}.Sanitize()).Scan(&n); err != nil {
			t.Fatal(err)
		}
		total += n
	}
	if total < 1_000_000 {
		t.Fatalf("source holds %d rows, want at least 1M", total)
	}
	t.Logf("seeded %d rows in %s", total, time.Since(seeded).Round(time.Millisecond))

	// Writers run until the load has handed every table over.
	wctx, stopWriters := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var committed atomic.Int64
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(w)))
			for wctx.Err() == nil {
				err := pgx.BeginFunc(wctx, f.src, func(tx pgx.Tx) error { return loadWrites(wctx, tx, rng, w) })
				switch {
				case err == nil:
					committed.Add(1)
				case wctx.Err() != nil:
					return
				case loadRollback(err):
				default:
					t.Errorf("write load: %v", err)
					return
				}
			}
		}()
	}

	loadCtx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	started := time.Now()
	opts := initload.Options{}
	if os.Getenv("PGFERRY_TEST_LOG") != "" {
		opts.Progress = os.Stderr
	}
	err := f.initialLoad(loadCtx, opts)
	stopWriters()
	wg.Wait()
	if err != nil {
		t.Fatalf("initial load: %v", err)
	}
	t.Logf("initial load of %d rows handed over in %s while %d write transactions committed", total, time.Since(started).Round(time.Millisecond), committed.Load())
	if committed.Load() < 20 {
		t.Fatalf("only %d write transactions committed during the load: the test proves little", committed.Load())
	}
	caught := time.Now()
	f.replicate()
	t.Logf("caught up in %s", time.Since(caught).Round(time.Millisecond))
	f.assertSame()
	if got := f.targetInt(`SELECT count(*) FROM pgferry.loads WHERE state = 'loaded'`); got != 7 {
		t.Errorf("%d tables marked loaded on the target, want the 7 keyed ones", got)
	}
	if got := f.targetInt(`SELECT count(*) FROM pg_indexes WHERE indexname IN ('plain_grp', 'parent_name_key')`); got != 2 {
		t.Errorf("%d of 2 secondary indexes rebuilt", got)
	}
}

// loadWrites is one source transaction of the write load: changes of
// every kind to rows anywhere in the tables, so they hit chunks already
// copied, being copied and not yet copied.
func loadWrites(ctx context.Context, tx pgx.Tx, rng *rand.Rand, w int) error {
	run := func(sql string, args ...any) error {
		_, err := tx.Exec(ctx, sql, args...)
		return err
	}
	id := 1 + rng.IntN(500000)
	switch rng.IntN(10) {
	case 0:
		return run(`UPDATE plain SET t = t || 'u', grp = grp + 1 WHERE id BETWEEN $1 AND $1 + 20`, id)
	case 1:
		return run(`DELETE FROM plain WHERE id = $1`, id)
	case 2: // move a key far away and back into another chunk
		if err := run(`UPDATE plain SET id = id + 1000000 + $2 * 100000000::bigint WHERE id = $1`, id, w); err != nil {
			return err
		}
		return run(`UPDATE plain SET id = $1 WHERE id = $2 AND NOT EXISTS (SELECT 1 FROM plain WHERE id = $1)`, 1+rng.IntN(500000), id+1000000+w*100000000)
	case 3:
		return run(`INSERT INTO plain (id, grp, t) VALUES ($1, 1, 'new') ON CONFLICT (id) DO UPDATE SET t = 'reinserted'`, 2000000+w*10000000+rng.IntN(1000000))
	case 4:
		return run(`UPDATE awkward SET num = num + 1, mo = mo || 'ok'::mood, t = coalesce(t, '') || 'x' WHERE id = $1`, (1+rng.IntN(100000))*10+1+rng.IntN(3))
	case 5:
		if err := run(`UPDATE pairs SET v = v + 1 WHERE a = $1 AND b = $2`, rng.IntN(1000), "b"+strconv.Itoa(rng.IntN(150))); err != nil {
			return err
		}
		return run(`DELETE FROM pairs WHERE a = $1 AND b = $2`, rng.IntN(1000), "b"+strconv.Itoa(rng.IntN(150)))
	case 6:
		return run(`UPDATE measure SET v = v + 1 WHERE region = $1 AND at = DATE '1950-01-01' + $2::int`, []string{"eu", "us"}[rng.IntN(2)], 1+rng.IntN(25000))
	case 7:
		if err := run(`INSERT INTO ident (v) VALUES ('w')`); err != nil {
			return err
		}
		return run(`DELETE FROM ident WHERE id = $1`, 1+rng.IntN(50000))
	case 8:
		p := 1 + rng.IntN(20000)
		if err := run(`DELETE FROM parent WHERE id = $1`, p); err != nil { // cascades to children
			return err
		}
		if err := run(`INSERT INTO parent VALUES ($1, $2)`, p, "again"+strconv.Itoa(p)); err != nil {
			return err
		}
		return run(`INSERT INTO child VALUES ($2, $1, 'n') ON CONFLICT (id) DO NOTHING`, p, 100000+w*1000000+rng.IntN(900000))
	default:
		if err := run(`INSERT INTO keyless VALUES ($1, 'w')`, rng.IntN(100)); err != nil {
			return err
		}
		return run(`DELETE FROM keyless WHERE ctid = (SELECT ctid FROM keyless WHERE a = $1 LIMIT 1)`, rng.IntN(100))
	}
}

// loadRollback reports errors the write load causes itself: those of
// expectedRollback, and two writers moving keys onto the same id.
func loadRollback(err error) bool {
	var pgErr *pgconn.PgError
	return expectedRollback(err) || errors.As(err, &pgErr) && pgErr.Code == "23505"
}
