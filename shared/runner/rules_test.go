package runner_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/drain"
	"github.com/pgferry/pgferry/shared/initload"
	"github.com/pgferry/pgferry/shared/queue"
	"github.com/pgferry/pgferry/shared/rules"
	"github.com/pgferry/pgferry/shared/runner"
	"github.com/pgferry/pgferry/shared/schemadiff"
	"github.com/pgferry/pgferry/shared/testenv"
	"github.com/pgferry/pgferry/shared/verify"
)

// rulesDDL: customers carry personal data; orders and events are plain.
// customers has REPLICA IDENTITY FULL, which slot capture needs for a
// filtered table.
const rulesDDL = `
CREATE TABLE orders (id int PRIMARY KEY, customer_id int, amount numeric NOT NULL, status text NOT NULL);
CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, email text UNIQUE, phone text,
  ssn text CHECK (ssn <> ''), country text, score numeric, bio text);
ALTER TABLE customers REPLICA IDENTITY FULL;
ALTER TABLE orders REPLICA IDENTITY FULL;
CREATE INDEX ON customers (ssn);
CREATE TABLE events (id int PRIMARY KEY, kind text NOT NULL);
CREATE TABLE events_archive (id int PRIMARY KEY);`

// rulesTargets: "full" gets everything as is; "wh" gets customers in DE or
// FR with personal data removed or disguised, orders with soft deletes
// and without the cancelled ones, and events only as they are inserted.
const rulesTargets = `
    tables: ["public.*"]
    exclude: ["public.events_*"]
    deletes: soft
    rules:
      - table: public.customers
        columns: {exclude: [ssn]}
        mask: {email: {keep_first: 1, keep_last: 4}}
        hash: [phone]
        replace: {name: {regex: "^Dr\\.\\s*", with: ""}}
        filter: [{column: country, op: in, value: [DE, FR]}, {column: score, op: gte, value: 10}]
      - table: public.orders
        filter: [{column: status, op: ne, value: cancelled}]
      - table: public.events
        operations: [insert]
`

func newRulesFixture(t *testing.T, mode, ddl, whRules string) (*fixture, *pgxpool.Pool, map[string]schemadiff.Syncer) {
	t.Helper()
	whDSN := testenv.NewDB(t, "wh")
	f := fixtureFrom(t, ddl, "", func(src, dst string) string {
		return fmt.Sprintf(`
name: %s
hash_salt: "a-salt-of-sixteen-or-more"
source:
  dsn: %q
  tables: ["public.*"]%s
targets:
  full:
    kind: postgres
    dsn: %q
  wh:
    kind: postgres
    dsn: %q%s
drain:
  interval: 100ms
`, testenv.Name("t"), src, slotKeys(mode), dst, whDSN, whRules)
	})
	syncers := f.p.Syncers()
	if err := schemadiff.SyncAll(context.Background(), syncers); err != nil {
		t.Fatal(err)
	}
	return f, f.targetPool("wh"), syncers
}

// drainOnly runs one drain and returns the bodies it queued per target,
// leaving them on the queue for apply.
func (f *fixture) drainOnly(ctx context.Context) map[string][]string {
	f.t.Helper()
	d := f.p.Drainer(runner.InstanceID(), nil, nil)
	// The runner that just went idle released its lease; on a busy
	// machine the release may have timed out, and then the lease lasts
	// until it expires (drain.lease).
	for deadline := time.Now().Add(f.cfg.Drain.Lease.Duration + 5*time.Second); ; {
		_, err := d.Run(ctx)
		if errors.Is(err, drain.ErrBusy) && time.Now().Before(deadline) {
			time.Sleep(500 * time.Millisecond)
			continue
		}
		if err != nil {
			f.t.Fatalf("drain: %v", err)
		}
		break
	}
	out := map[string][]string{}
	var held []queue.Message
	for {
		msgs, err := f.aws.Queue.Receive(ctx, 10, time.Second, 30*time.Second)
		if err != nil {
			f.t.Fatal(err)
		}
		if len(msgs) == 0 {
			break
		}
		for _, m := range msgs {
			body, err := queue.Open(ctx, f.aws.Payloads, m.Body)
			if err != nil {
				f.t.Fatal(err)
			}
			b, err := batch.Decode(body)
			if err != nil {
				f.t.Fatal(err)
			}
			out[b.Target] = append(out[b.Target], string(body))
			held = append(held, m)
		}
	}
	for _, m := range held {
		if err := f.aws.Queue.SetVisibility(ctx, m, 0); err != nil {
			f.t.Fatal(err)
		}
	}
	return out
}

func rowsOf(t *testing.T, pool *pgxpool.Pool, sql string) string {
	t.Helper()
	rows, err := pool.Query(context.Background(), sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			t.Fatal(err)
		}
		var parts []string
		for _, v := range vals {
			if v == nil {
				parts = append(parts, "NULL")
				continue
			}
			parts = append(parts, fmt.Sprint(v))
		}
		out = append(out, strings.Join(parts, "|"))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(out, "\n")
}

// TestRulesShapeEachTargetBeforeTheBatchLeaves drives two targets with
// different rules through both capture modes: column exclusion, mask,
// hash, replace, filters on two columns with rows crossing the filter in
// both directions, per-operation rules, soft deletes with a re-insert,
// and a TRUNCATE under soft deletes. The excluded and raw values must
// never be in the wh target's queued bodies, and must be in full's.
func TestRulesShapeEachTargetBeforeTheBatchLeaves(t *testing.T) {
	forEachCapture(t, func(t *testing.T, mode string) {
		f, wh, syncers := newRulesFixture(t, mode, rulesDDL, rulesTargets)
		ctx := context.Background()

		// Schema sync: no ssn (nor its check and index), phone is text
		// (hashed), email lost its unique constraint (masked values may
		// collide), and every table has the soft-delete column.
		if got, want := rowsOf(t, wh, `SELECT string_agg(column_name || ':' || data_type, ',' ORDER BY ordinal_position) FROM information_schema.columns
			WHERE table_schema = 'public' AND table_name = 'customers'`),
			"id:integer,name:text,email:text,phone:text,country:text,score:numeric,bio:text,_pgferry_deleted_at:timestamp with time zone"; got != want {
			t.Fatalf("wh customers columns:\n got %s\nwant %s", got, want)
		}
		if n := rowsOf(t, wh, `SELECT count(*) FROM pg_indexes WHERE tablename = 'customers' AND indexdef NOT LIKE '%(id)'`); n != "0" {
			t.Errorf("wh customers kept %s indexes on removed or masked columns", n)
		}

		// A first cycle ships and applies the schema job, so each group's
		// next message is the data batch drainOnly reads.
		replicateWith(t, schemaLocal(f, syncers), f)
		f.exec(`INSERT INTO customers VALUES
			(1, 'Dr. Ann Smith', 'ann.smith@example.com', '+49 1234', '111-22-3333', 'DE', 50, 'x'),
			(2, 'Bob', 'bob@example.org', '+33 5678', '222-33-4444', 'FR', 5, 'y'),   -- score too low
			(3, 'Cy', 'cy@example.net', '+1 999', '333-44-5555', 'US', 90, 'z'),       -- country out
			(4, 'Dee', 'dee@example.com', NULL, '444-55-6666', 'DE', 20, 'w')`)
		f.exec(`INSERT INTO orders VALUES (1, 1, 10, 'open'), (2, 1, 20, 'cancelled'), (3, 4, 30, 'open')`)
		f.exec(`INSERT INTO events VALUES (1, 'signup'), (2, 'login')`)
		bodies := f.drainOnly(ctx)
		f.t.Logf("queued: %d batches for wh, %d for full", len(bodies["wh"]), len(bodies["full"]))
		whText, fullText := strings.Join(bodies["wh"], "\n"), strings.Join(bodies["full"], "\n")
		for _, secret := range []string{"111-22-3333", "444-55-6666", "ann.smith@example.com", "+49 1234", "Dr. Ann", "cy@example.net", "cancelled"} {
			if strings.Contains(whText, secret) {
				t.Errorf("wh's queued batches hold %q", secret)
			}
			if !strings.Contains(fullText, secret) {
				t.Errorf("full's queued batches lack %q: the check above proves nothing", secret)
			}
		}
		replicateWith(t, schemaLocal(f, syncers), f)
		if got, want := rowsOf(t, wh, `SELECT id, name, email, phone, country, score::text, _pgferry_deleted_at FROM customers ORDER BY id`),
			"1|Ann Smith|a****************.com|"+rules.Hash("a-salt-of-sixteen-or-more", "+49 1234")+"|DE|50|NULL\n"+
				"4|Dee|d**********.com|NULL|DE|20|NULL"; got != want {
			t.Fatalf("wh customers:\n got %s\nwant %s", got, want)
		}
		var pgHash string
		if err := f.src.QueryRow(ctx, `SELECT encode(sha256(convert_to('a-salt-of-sixteen-or-more' || '+49 1234', 'UTF8')), 'hex')`).Scan(&pgHash); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(rowsOf(t, wh, `SELECT phone FROM customers WHERE id = 1`), pgHash) {
			t.Errorf("the hash is not the documented SQL expression's %s", pgHash)
		}

		// Across the filter: 1 leaves (soft-deleted), 2 enters whole, 3
		// stays out; events: updates and deletes are not let through;
		// orders: a delete is soft, 2 is re-inserted open.
		f.exec(`UPDATE customers SET country = 'US' WHERE id = 1`)
		f.exec(`UPDATE customers SET score = 15, bio = (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 300) g) WHERE id = 2`)
		f.exec(`UPDATE customers SET name = 'Cyrus' WHERE id = 3`)
		f.exec(`UPDATE events SET kind = 'changed'`)
		f.exec(`DELETE FROM events WHERE id = 1`)
		f.exec(`INSERT INTO events VALUES (3, 'logout')`)
		f.exec(`DELETE FROM orders WHERE id = 3`)
		f.exec(`UPDATE orders SET status = 'open' WHERE id = 2`)
		replicateWith(t, schemaLocal(f, syncers), f)
		if got, want := rowsOf(t, wh, `SELECT id, name, country, score::text, length(bio), _pgferry_deleted_at IS NOT NULL FROM customers ORDER BY id`),
			"1|Ann Smith|DE|50|1|true\n2|Bob|FR|15|9600|false\n4|Dee|DE|20|1|false"; got != want {
			t.Errorf("wh customers after the boundary:\n got %s\nwant %s", got, want)
		}
		if got, want := rowsOf(t, wh, `SELECT id, kind FROM events ORDER BY id`), "1|signup\n2|login\n3|logout"; got != want {
			t.Errorf("wh events (inserts only):\n got %s\nwant %s", got, want)
		}
		if got, want := rowsOf(t, wh, `SELECT id, status, _pgferry_deleted_at IS NOT NULL FROM orders ORDER BY id`), "1|open|false\n2|open|false\n3|open|true"; got != want {
			t.Errorf("wh orders:\n got %s\nwant %s", got, want)
		}
		// The deletion time is the source's commit time.
		var lag time.Duration
		if err := wh.QueryRow(ctx, `SELECT now() - _pgferry_deleted_at FROM orders WHERE id = 3`).Scan(&lag); err != nil {
			t.Fatal(err)
		}
		if lag < 0 || lag > 5*time.Minute {
			t.Errorf("order 3 deleted %s ago: not its commit time", lag)
		}
		// A re-insert clears the mark.
		f.exec(`INSERT INTO orders VALUES (3, 4, 31, 'open')`)
		f.exec(`UPDATE customers SET country = 'DE' WHERE id = 1`)
		f.exec(`UPDATE customers SET score = 16 WHERE id = 2`) // bio unchanged, in TOAST
		replicateWith(t, schemaLocal(f, syncers), f)
		if got, want := rowsOf(t, wh, `SELECT id, amount::text, _pgferry_deleted_at FROM orders WHERE id = 3`), "3|31|NULL"; got != want {
			t.Errorf("re-inserted order: got %s want %s", got, want)
		}
		if got, want := rowsOf(t, wh, `SELECT id, _pgferry_deleted_at, score::text, length(bio) FROM customers WHERE id IN (1, 2) ORDER BY id`), "1|NULL|50|1\n2|NULL|16|9600"; got != want {
			t.Errorf("customers 1 (back in the filter) and 2 (updated around a TOAST value):\n got %s\nwant %s", got, want)
		}
		if got := rowsOf(t, wh, `SELECT count(*) FROM pg_tables WHERE tablename = 'events_archive'`); got != "0" {
			t.Errorf("wh has events_archive, which its exclude leaves out")
		}
		// full got everything as is.
		if got, want := rowsOf(t, f.dst, `SELECT count(*) FROM customers WHERE ssn IS NOT NULL`), "4"; got != want {
			t.Errorf("full customers with ssn: %s, want %s", got, want)
		}
		if got, want := rowsOf(t, f.dst, `SELECT string_agg(id::text, ',' ORDER BY id) FROM events`), "2,3"; got != want {
			t.Errorf("full events: %s, want %s", got, want)
		}
	})
}

// TestRulesThatCannotBeHonouredStopTheDrainNamingTheKey: refused at
// start, nothing shipped; under slot capture a filtered table needs
// REPLICA IDENTITY FULL.
func TestRulesThatCannotBeHonouredStopTheDrainNamingTheKey(t *testing.T) {
	ddl := `CREATE TABLE customers (id int PRIMARY KEY, email text, score int, country text);`
	cases := []struct{ mode, rule, want string }{
		{"trigger", `{table: public.nothing, columns: {exclude: [email]}}`, "targets.wh.rules[0].table"},
		{"trigger", `{table: public.customers, columns: {exclude: [nope]}}`, "targets.wh.rules[0].columns.exclude"},
		{"trigger", `{table: public.customers, mask: {score: {keep_first: 1}}}`, "targets.wh.rules[0].mask.score"},
		{"trigger", `{table: public.customers, hash: [id]}`, "targets.wh.rules[0].hash"},
		{"slot", `{table: public.customers, filter: [{column: country, op: eq, value: DE}]}`, "REPLICA IDENTITY FULL"},
	}
	for _, c := range cases {
		t.Run(c.want, func(t *testing.T) {
			f, _, _ := newRulesFixture(t, c.mode, ddl, "\n    rules: ["+c.rule+"]")
			ctx := context.Background()
			_, err := f.p.Drainer(runner.InstanceID(), nil, nil).Run(ctx)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("drain: %v, want an error naming %s", err, c.want)
			}
			if cp, err := f.aws.State.Load(ctx); err != nil || cp.Seq != 0 {
				t.Fatalf("checkpoint %+v (%v): something was shipped", cp, err)
			}
		})
	}
}

// TestInitialLoadAndVerifyGoThroughRules: rows that exist before the
// pipeline are copied by the initial load through wh's rules, agree with
// streamed ones, and --verify compares them through the rules (and still
// catches a changed value on the target).
func TestInitialLoadAndVerifyGoThroughRules(t *testing.T) {
	forEachCapture(t, func(t *testing.T, mode string) {
		f, wh, syncers := newRulesFixture(t, mode, rulesDDL, rulesTargets)
		ctx := context.Background()
		f.exec(`INSERT INTO customers SELECT g, CASE WHEN g % 3 = 0 THEN 'Dr. ' ELSE '' END || 'name' || g, 'user' || g || '@example.com',
			'+49 ' || g, 'ssn' || g, (ARRAY['DE', 'FR', 'US'])[g % 3 + 1], g % 40, 'bio' FROM generate_series(1, 3000) g`)
		f.exec(`INSERT INTO orders SELECT g, g % 3000 + 1, g, CASE WHEN g % 4 = 0 THEN 'cancelled' ELSE 'open' END FROM generate_series(1, 2000) g`)
		f.exec(`INSERT INTO events SELECT g, 'k' FROM generate_series(1, 10) g`)
		l := schemaLocal(f, syncers)
		if err := f.runWithLoad(ctx, l, true, initload.Options{ChunkRows: 700}); err != nil {
			t.Fatal(err)
		}
		// Then streamed changes on top, across the filter both ways.
		f.exec(`UPDATE customers SET country = 'US' WHERE id BETWEEN 1 AND 100`)
		f.exec(`UPDATE customers SET country = 'DE', score = 30 WHERE id BETWEEN 2900 AND 3000`)
		f.exec(`DELETE FROM orders WHERE id <= 50`)
		replicateWith(t, l, f)

		var out strings.Builder
		if err := verify.Report(ctx, f.cfg, f.src, f.p.Verifiers(), &out); err != nil {
			t.Fatalf("verify: %v\n%s", err, out.String())
		}
		// full: 4 tables; wh: customers and orders (events_archive is
		// excluded, events lets only inserts through and is not compared).
		if want := "verify: all 6 table comparisons match"; !strings.Contains(out.String(), want) {
			t.Fatalf("verify output lacks %q:\n%s", want, out.String())
		}
		want := rowsOf(t, f.src, `SELECT count(*) FROM customers WHERE country IN ('DE', 'FR') AND score >= 10`)
		if got := rowsOf(t, wh, `SELECT count(*) FROM customers WHERE _pgferry_deleted_at IS NULL`); got != want || got == "0" {
			t.Fatalf("wh holds %s live customers, want %s", got, want)
		}
		if got := rowsOf(t, wh, `SELECT count(*) FROM customers WHERE name LIKE 'Dr.%' OR email LIKE 'user%' OR phone LIKE '+49%'`); got != "0" {
			t.Fatalf("%s wh customers hold raw values", got)
		}
		testenv.Exec(t, wh, `UPDATE customers SET name = 'changed' WHERE id = (SELECT min(id) FROM customers WHERE _pgferry_deleted_at IS NULL)`)
		out.Reset()
		err := verify.Report(ctx, f.cfg, f.src, f.p.Verifiers(), &out)
		if err == nil || !strings.Contains(err.Error(), "public.customers on target wh") {
			t.Fatalf("verify after a change on wh: %v\n%s", err, out.String())
		}
	})
}
