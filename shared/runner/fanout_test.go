package runner_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/schemadiff"
	"github.com/pgferry/pgferry/shared/testenv"
	"github.com/pgferry/pgferry/shared/verify"
)

// fanoutDDL is the crash test's schema plus a table in a second schema
// that a source trigger fills on every transfer, with an enum of that
// schema and a foreign key back to public: with apply_schema, both
// schemas land in one, and the references must follow.
const fanoutDDL = crashDDL + `
CREATE SCHEMA shop;
CREATE TYPE shop.direction AS ENUM ('credit', 'debit');
CREATE TABLE shop.ledger (id bigserial PRIMARY KEY, account_id int NOT NULL REFERENCES public.accounts (id), dir shop.direction NOT NULL, amount bigint NOT NULL);
CREATE FUNCTION shop.log_transfer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO shop.ledger (account_id, dir, amount)
	VALUES (NEW.id, CASE WHEN NEW.balance >= OLD.balance THEN 'credit' ELSE 'debit' END::shop.direction, abs(NEW.balance - OLD.balance));
	RETURN NULL;
END $$;
CREATE TRIGGER log_transfer AFTER UPDATE OF balance ON public.accounts FOR EACH ROW EXECUTE FUNCTION shop.log_transfer();`

// fanoutTables are fanoutDDL's tables, as the source names them.
var fanoutTables = []string{"public.accounts", "public.child", "public.parent", "shop.ledger"}

// newFanoutFixture is a pipeline from a source holding ddl to two empty
// targets whose schema pgferry builds (schema_sync on): "plain" keeps the
// source's schemas, "rep" gets every table in apply_schema rep. f.dst is
// plain; the returned pools are plain's and rep's, in that order.
func newFanoutFixture(t *testing.T, mode, ddl, extra string) (*fixture, []*pgxpool.Pool, map[string]schemadiff.Syncer) {
	t.Helper()
	repDSN := testenv.NewDB(t, "rep")
	f := fixtureFrom(t, ddl, "", func(src, dst string) string {
		return fmt.Sprintf(`
name: %s
source:
  dsn: %q
  tables: ["public.*", "shop.*"]%s
targets:
  plain:
    kind: postgres
    dsn: %q
  rep:
    kind: postgres
    dsn: %q
    apply_schema: rep
drain:
  interval: 100ms
%s`, testenv.Name("t"), src, slotKeys(mode), dst, repDSN, extra)
	})
	if got := f.cfg.TargetNames(); strings.Join(got, ",") != "plain,rep" {
		t.Fatalf("targets %v, want plain and rep", got)
	}
	return f, []*pgxpool.Pool{f.dst, f.targetPool("rep")}, f.p.Syncers()
}

// TestFanOutToTwoTargetsOneWithApplySchemaEndsEqual replicates a write
// load (transfers, FK parents and children, cascades, and a second schema
// written by a source trigger) to two targets at once, one of them
// folding every schema into apply_schema. Rows that exist before capture
// come through copy_existing. Both targets must end equal to the source,
// as --verify's own comparison sees it, and the apply_schema target must
// hold everything in its one schema and nothing elsewhere.
func TestFanOutToTwoTargetsOneWithApplySchemaEndsEqual(t *testing.T) {
	forEachCapture(t, func(t *testing.T, mode string) {
		f, pools, syncers := newFanoutFixture(t, mode, fanoutDDL, "batch:\n  max_rows: 200\n")
		ctx := context.Background()
		rep := pools[1]
		// As functions/local does at start: build both empty targets.
		if err := schemadiff.SyncAll(ctx, syncers); err != nil {
			t.Fatal(err)
		}
		f.exec(`INSERT INTO parent SELECT g, 'p' || g FROM generate_series(1, $1::int) g`, crashParents)
		f.exec(`INSERT INTO child (parent_id, note) SELECT g % $1::int + 1, 'c' || g FROM generate_series(1, 500) g`, crashParents)
		f.exec(`INSERT INTO accounts SELECT g, $2::bigint, repeat('x', 84) FROM generate_series(1, $1::int) g`, crashAccounts, crashBalance)
		f.exec(`UPDATE accounts SET balance = balance + 0 WHERE id <= 10`) // ledger rows that exist before capture

		loadCtx, stopLoad := context.WithTimeout(ctx, 8*time.Second)
		defer stopLoad()
		load := startCrashLoad(t, f, loadCtx, 3, chaosSeed(t))
		bg, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Add(1)
		var runErr error
		go func() { defer wg.Done(); runErr = schemaLocal(f, syncers).Run(bg, false, f.lastSent) }()
		stats := load.wait()
		stop()
		wg.Wait()
		if runErr != nil && bg.Err() == nil {
			t.Fatalf("runner under load: %v", runErr)
		}
		if stats.committed == 0 {
			t.Fatal("the write load committed nothing")
		}
		t.Logf("load: %d transactions committed, %d rolled back by the source", stats.committed, stats.aborted)
		replicateWith(t, schemaLocal(f, syncers), f)

		var out bytes.Buffer
		if err := verify.Report(ctx, f.cfg, f.src, f.p.Verifiers(), &out); err != nil {
			t.Fatalf("verify: %v\n%s", err, out.String())
		}
		if want := fmt.Sprintf("verify: all %d table comparisons match", 2*len(fanoutTables)); !strings.Contains(out.String(), want) {
			t.Fatalf("verify output lacks %q:\n%s", want, out.String())
		}
		for _, tbl := range fanoutTables {
			name := strings.SplitN(tbl, ".", 2)[1]
			if !strings.Contains(out.String(), tbl+" -> rep."+name+" ") {
				t.Errorf("verify did not compare %s with rep.%s on target rep:\n%s", tbl, name, out.String())
			}
			if n := f.sourceInt("SELECT count(*) FROM " + tbl); n == 0 {
				t.Errorf("source table %s is empty: the test proves nothing about it", tbl)
			}
		}
		var elsewhere string
		if err := rep.QueryRow(ctx, `SELECT coalesce(string_agg(schemaname || '.' || tablename, ', '), '') FROM pg_tables
			WHERE schemaname NOT IN ('rep', 'pgferry', 'pg_catalog', 'information_schema')`).Scan(&elsewhere); err != nil {
			t.Fatal(err)
		}
		if elsewhere != "" {
			t.Errorf("the apply_schema target holds tables outside rep: %s", elsewhere)
		}
		for _, p := range []struct {
			name, table string
			pool        *pgxpool.Pool
		}{{"plain", "public.accounts", f.dst}, {"rep", "rep.accounts", rep}} {
			var sum int64
			if err := p.pool.QueryRow(ctx, "SELECT sum(balance) FROM "+p.table).Scan(&sum); err != nil {
				t.Fatal(err)
			}
			if want := int64(crashAccounts * crashBalance); sum != want {
				t.Errorf("target %s: sum of balances %d, want %d", p.name, sum, want)
			}
		}
	})
}
