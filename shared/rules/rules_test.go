package rules

import (
	"context"
	"strings"
	"testing"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/config"
)

type fakeCatalog map[batch.Table]TableInfo

func (f fakeCatalog) Table(_ context.Context, t batch.Table) (TableInfo, bool, error) {
	i, ok := f[t]
	return i, ok, nil
}

var customers = batch.Table{Schema: "public", Name: "customers"}

var custInfo = TableInfo{Table: customers, Key: []string{"id"}, Columns: []Column{
	{Name: "id", Type: "integer", Category: 'N'}, {Name: "name", Type: "text", Category: 'S'},
	{Name: "email", Type: "text", Category: 'S'}, {Name: "ssn", Type: "text", Category: 'S'},
	{Name: "country", Type: "text", Category: 'S'}, {Name: "score", Type: "numeric", Category: 'N'},
	{Name: "seen", Type: "timestamp with time zone", Category: 'D'}, {Name: "vip", Type: "boolean", Category: 'B'},
}}

var custCols = []string{"id", "name", "email", "ssn", "country", "score", "seen", "vip"}

func parse(t *testing.T, targets string) *config.Config {
	t.Helper()
	doc := `
name: demo
hash_salt: "0123456789abcdef"
source: {dsn: "postgres://u:p@localhost:5432/src", tables: ["public.*"]}
targets:
` + targets
	c, err := config.Parse([]byte(doc), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func s(v string) batch.Value { return &v }

func row(vals ...string) batch.Row {
	r := make(batch.Row, len(vals))
	for i, v := range vals {
		if v != "\\N" {
			r[i] = s(v)
		}
	}
	return r
}

func text(r batch.Row) string {
	var b []string
	for _, v := range r {
		switch {
		case v == nil:
			b = append(b, "NULL")
		case v == batch.Unchanged:
			b = append(b, "?")
		default:
			b = append(b, *v)
		}
	}
	return strings.Join(b, "|")
}

func TestMaskKeepsEndsAndHidesShortValues(t *testing.T) {
	for _, c := range []struct {
		in          string
		first, last int
		want        string
	}{
		{"jane@example.com", 1, 4, "j***********.com"},
		{"ab", 1, 1, "**"},
		{"äbcdé", 1, 1, "ä***é"},
		{"secret", 0, 0, "******"},
	} {
		if got := Mask(c.in, c.first, c.last); got != c.want {
			t.Errorf("Mask(%q, %d, %d) = %q, want %q", c.in, c.first, c.last, got, c.want)
		}
	}
	// encode(sha256(convert_to('salt' || 'x', 'UTF8')), 'hex') in PostgreSQL.
	if got, want := Hash("salt", "x"), "c9ef43a03d58f2cb9b0c4b069c179595739f5181a5565c8db5dbb124564ea819"; got != want {
		t.Errorf("Hash(salt, x) = %s, want %s", got, want)
	}
}

func TestFilterOperators(t *testing.T) {
	r := row("1", "Dr. Ann", "ann@x.org", "123", "DE", "10.50", "2024-05-01 10:00:00+00", "t")
	cases := []struct {
		filter string
		want   bool
	}{
		{`{column: country, op: eq, value: DE}`, true},
		{`{column: country, op: ne, value: DE}`, false},
		{`{column: score, op: gt, value: 9}`, true}, // numeric, not text order
		{`{column: score, op: gte, value: 10.5}`, true},
		{`{column: score, op: lt, value: 10.5}`, false},
		{`{column: score, op: lte, value: "10.50"}`, true},
		{`{column: country, op: in, value: [FR, DE]}`, true},
		{`{column: country, op: not_in, value: [FR, DE]}`, false},
		{`{column: email, op: contains, value: "@x."}`, true},
		{`{column: name, op: regex, value: "^Dr\\."}`, true},
		{`{column: ssn, op: is_null}`, false},
		{`{column: ssn, op: not_null}`, true},
		{`{column: seen, op: gt, value: "2024-05-01 11:00:00+02"}`, true},
		{`{column: seen, op: lt, value: "2024-05-01"}`, false},
		{`{column: vip, op: eq, value: true}`, true},
		{`{column: id, op: in, value: [1, 2]}`, true}, // a filter on a key is fine
	}
	for _, c := range cases {
		cfg := parse(t, `  a: {kind: postgres, dsn: "postgres://u:p@localhost:5432/a", rules: [{table: public.customers, filter: [`+c.filter+`]}]}`)
		p, err := New(cfg, fakeCatalog{customers: custInfo}).Target("a").Plan(context.Background(), customers, custCols, []string{"id"})
		if err != nil {
			t.Fatalf("%s: %v", c.filter, err)
		}
		got, err := p.Pass(r)
		if err != nil || got != c.want {
			t.Errorf("%s: Pass = %v, %v; want %v", c.filter, got, err, c.want)
		}
	}
}

// fold runs changes through a target's rules and a compactor, as the
// drain does, and returns the segments' rows as text.
func fold(t *testing.T, set *Set, target string, commit int64, chs ...batch.Change) (cols []string, upserts, deletes []string) {
	t.Helper()
	f := NewFanout(set, []string{target})
	for _, ch := range chs {
		if err := f.Add(context.Background(), ch); err != nil {
			t.Fatal(err)
		}
	}
	f.Commit(commit)
	for _, e := range f.Epochs(target) {
		for _, sg := range e.Segments {
			cols = sg.Columns
			prefix := ""
			if sg.Update {
				prefix = "upd:"
			}
			for _, r := range sg.Upserts {
				upserts = append(upserts, prefix+text(r))
			}
			for _, r := range sg.Deletes {
				deletes = append(deletes, text(r))
			}
		}
	}
	return cols, upserts, deletes
}

func ins(rows ...batch.Row) batch.Change {
	return batch.Change{Table: customers, Op: batch.Insert, Columns: custCols, Key: []string{"id"}, New: rows}
}

func upd(old, new batch.Row) batch.Change {
	return batch.Change{Table: customers, Op: batch.Update, Columns: custCols, Key: []string{"id"}, Old: []batch.Row{old}, New: []batch.Row{new}}
}

func del(old batch.Row) batch.Change {
	return batch.Change{Table: customers, Op: batch.Delete, Columns: custCols, Key: []string{"id"}, Old: []batch.Row{old}}
}

func TestColumnsMaskHashReplaceShapeRows(t *testing.T) {
	cfg := parse(t, `  a:
    kind: postgres
    dsn: "postgres://u:p@localhost:5432/a"
    rules:
      - table: public.customers
        columns: {exclude: [ssn, seen, vip]}
        mask: {email: {keep_first: 1, keep_last: 4}}
        hash: [country]
        replace: {name: {regex: "^Dr\\.\\s*", with: ""}}
`)
	set := New(cfg, fakeCatalog{customers: custInfo})
	cols, ups, _ := fold(t, set, "a", 0, ins(row("1", "Dr. Ann", "ann@x.org", "123", "DE", "1", "2024-05-01", "t")))
	if got, want := strings.Join(cols, ","), "id,name,email,country,score"; got != want {
		t.Fatalf("columns %s, want %s", got, want)
	}
	if got, want := ups[0], "1|Ann|a****.org|"+Hash("0123456789abcdef", "DE")+"|1"; got != want {
		t.Fatalf("row %s, want %s", got, want)
	}
}

func TestIncludeKeepsOnlyNamedColumns(t *testing.T) {
	cfg := parse(t, `  a: {kind: postgres, dsn: "postgres://u:p@localhost:5432/a", rules: [{table: "public.*", columns: {include: [id, email]}}]}`)
	cols, ups, _ := fold(t, New(cfg, fakeCatalog{}), "a", 0, ins(row("1", "Ann", "ann@x.org", "123", "DE", "1", "2024-05-01", "t")))
	if got := strings.Join(cols, ",") + " " + ups[0]; got != "id,email 1|ann@x.org" {
		t.Fatalf("got %s", got)
	}
}

func TestFilterBoundaryBothWays(t *testing.T) {
	cfg := parse(t, `  a: {kind: postgres, dsn: "postgres://u:p@localhost:5432/a", rules: [{table: public.customers, columns: {include: [id, country]}, filter: [{column: country, op: eq, value: DE}]}]}`)
	set := New(cfg, fakeCatalog{customers: custInfo})
	de := row("1", "Ann", "a@x", "1", "DE", "1", "2024-05-01", "t")
	fr := row("1", "Ann", "a@x", "1", "FR", "1", "2024-05-01", "t")
	// Passed, then no longer: a delete of the row.
	if _, ups, dels := fold(t, set, "a", 0, upd(de, fr)); len(ups) != 0 || strings.Join(dels, ";") != "1" {
		t.Fatalf("leaving the filter: upserts %v deletes %v, want a delete of 1", ups, dels)
	}
	// Failed, then passes: the whole row goes in.
	if _, ups, dels := fold(t, set, "a", 0, upd(fr, de)); strings.Join(ups, ";") != "1|DE" || len(dels) != 0 {
		t.Fatalf("entering the filter: upserts %v deletes %v, want 1|DE", ups, dels)
	}
	// An insert that fails is not sent; deleted later, it still is not.
	if _, ups, dels := fold(t, set, "a", 0, ins(fr)); len(ups)+len(dels) != 0 {
		t.Fatalf("a failing insert was sent: %v %v", ups, dels)
	}
}

func TestOperationsLetThroughOnlyTheNamedOnes(t *testing.T) {
	cfg := parse(t, `  a: {kind: postgres, dsn: "postgres://u:p@localhost:5432/a", rules: [{table: public.customers, columns: {include: [id, name]}, operations: [insert, update]}]}`)
	set := New(cfg, fakeCatalog{customers: custInfo})
	r1 := row("1", "Ann", "a@x", "1", "DE", "1", "2024-05-01", "t")
	r2 := row("2", "Bob", "b@x", "1", "DE", "1", "2024-05-01", "t")
	_, ups, dels := fold(t, set, "a", 0, ins(r1), ins(r2), del(r2))
	// The delete is dropped: the insert of 2 stays.
	if strings.Join(ups, ";") != "1|Ann;2|Bob" || len(dels) != 0 {
		t.Fatalf("upserts %v deletes %v", ups, dels)
	}
}

func TestSoftDeleteKeepsLastImageAndReinsertClearsIt(t *testing.T) {
	cfg := parse(t, `  a: {kind: postgres, dsn: "postgres://u:p@localhost:5432/a", deletes: soft, rules: [{table: public.customers, columns: {include: [id, name]}}]}`)
	set := New(cfg, fakeCatalog{customers: custInfo})
	r1 := row("1", "Ann", "a@x", "1", "DE", "1", "2024-05-01", "t")
	key1 := row("1", "\\N", "\\N", "\\N", "\\N", "\\N", "\\N", "\\N") // a key-only old row
	// A delete of a row the batch has not seen: an update of deleted-at only.
	cols, ups, dels := fold(t, set, "a", 1714557600000, del(key1))
	if strings.Join(cols, ",") != "id,"+config.DeletedAtColumn || strings.Join(ups, ";") != "upd:1|2024-05-01 10:00:00.000+00" || len(dels) != 0 {
		t.Fatalf("cols %v upserts %v deletes %v", cols, ups, dels)
	}
	// Inserted and deleted in one batch: the last image, marked deleted.
	_, ups, _ = fold(t, set, "a", 1714557600000, ins(r1), del(key1))
	if strings.Join(ups, ";") != "1|Ann|2024-05-01 10:00:00.000+00" {
		t.Fatalf("insert+delete: %v", ups)
	}
	// Deleted, then inserted again: the row, not deleted.
	_, ups, dels = fold(t, set, "a", 1714557600000, del(key1), ins(r1))
	if strings.Join(ups, ";") != "1|Ann|NULL" || len(dels) != 0 {
		t.Fatalf("delete+reinsert: %v %v", ups, dels)
	}
}

func TestTableSubsetsAndTargetsWithoutRules(t *testing.T) {
	cfg := parse(t, `  a: {kind: postgres, dsn: "postgres://u:p@localhost:5432/a", tables: ["public.orders"]}
  b: {kind: postgres, dsn: "postgres://u:p@localhost:5432/b"}`)
	set := New(cfg, fakeCatalog{})
	f := NewFanout(set, []string{"a", "b"})
	if err := f.Add(context.Background(), ins(row("1", "Ann", "a@x", "1", "DE", "1", "2024-05-01", "t"))); err != nil {
		t.Fatal(err)
	}
	if n := len(f.Epochs("a")); n != 0 {
		t.Fatalf("target a got customers (%d epochs)", n)
	}
	if n := len(f.Epochs("b")); n != 1 {
		t.Fatalf("target b got %d epochs, want 1", n)
	}
}

func TestRulesThatCannotBeHonouredAreRefusedNamingTheKey(t *testing.T) {
	cases := []struct{ rule, want string }{
		{`{table: public.nothing, hash: [email]}`, "targets.a.rules[0].table"},
		{`{table: public.customers, columns: {exclude: [nope]}}`, `targets.a.rules[0].columns.exclude: column "nope"`},
		{`{table: public.customers, mask: {score: {keep_first: 1}}}`, "targets.a.rules[0].mask.score: masks text-like columns only"},
		{`{table: public.customers, hash: [id]}`, `targets.a.rules[0].hash: "id" is a key column`},
		{`{table: public.customers, columns: {include: [email]}}`, `leaves out key column "id"`},
		{`{table: public.customers, filter: [{column: score, op: gt, value: abc}]}`, "targets.a.rules[0].filter[0].value"},
	}
	for _, c := range cases {
		cfg := parse(t, `  a: {kind: postgres, dsn: "postgres://u:p@localhost:5432/a", rules: [`+c.rule+`]}`)
		err := New(cfg, fakeCatalog{customers: custInfo}).Check(context.Background(), config.CaptureTrigger, []batch.Table{customers})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want %q", c.rule, err, c.want)
		}
	}
	// Slot capture: a filter needs REPLICA IDENTITY FULL.
	cfg := parse(t, `  a: {kind: postgres, dsn: "postgres://u:p@localhost:5432/a", rules: [{table: public.customers, filter: [{column: country, op: eq, value: DE}]}]}`)
	err := New(cfg, fakeCatalog{customers: custInfo}).Check(context.Background(), config.CaptureSlot, []batch.Table{customers})
	if err == nil || !strings.Contains(err.Error(), `REPLICA IDENTITY FULL`) {
		t.Errorf("slot filter without FULL: %v", err)
	}
}

func TestAColumnThatDisappearsStopsTheFanoutNamingTheRule(t *testing.T) {
	cfg := parse(t, `  a: {kind: postgres, dsn: "postgres://u:p@localhost:5432/a", rules: [{table: public.customers, mask: {email: {keep_first: 1}}}]}`)
	f := NewFanout(New(cfg, fakeCatalog{customers: custInfo}), []string{"a"})
	ch := batch.Change{Table: customers, Op: batch.Insert, Columns: []string{"id", "name"}, Key: []string{"id"}, New: []batch.Row{row("1", "x")}}
	err := f.Add(context.Background(), ch)
	if err == nil || !strings.Contains(err.Error(), "targets.a.rules[0].mask") {
		t.Fatalf("err %v, want one naming targets.a.rules[0].mask", err)
	}
}

func TestLoadMarksPassThroughUnshaped(t *testing.T) {
	cfg := parse(t, `  a: {kind: postgres, dsn: "postgres://u:p@localhost:5432/a", tables: ["public.orders"], deletes: soft}`)
	marks := batch.LoadMarks("demo")
	f := NewFanout(New(cfg, fakeCatalog{}), []string{"a"})
	ch := batch.Change{Table: marks, Op: batch.Insert, Columns: []string{"target", "tbl_schema"}, New: []batch.Row{row("a", "public")}}
	if err := f.Add(context.Background(), ch); err != nil {
		t.Fatal(err)
	}
	if e := f.Epochs("a"); len(e) != 1 || len(e[0].Segments) != 1 || strings.Join(e[0].Segments[0].Columns, ",") != "target,tbl_schema" {
		t.Fatalf("load mark shaped or dropped: %+v", e)
	}
}

func TestANilSetHasNoTargets(t *testing.T) {
	var s *Set
	if s.Target("a") != nil || s.Ready(context.Background()) != nil {
		t.Fatal("a nil Set must mean no rules")
	}
}

// TestHashWithoutAResolvedSaltIsRefused: with hash_salt_secret the salt
// arrives at start (runner.ResolveHashSalt); a process that did not
// resolve it must refuse to hash rather than hash without a salt.
func TestHashWithoutAResolvedSaltIsRefused(t *testing.T) {
	doc := `
name: demo
hash_salt_secret: pgferry/demo/salt
source: {dsn: "postgres://u:p@localhost:5432/src", tables: ["public.*"]}
targets:
  a:
    kind: postgres
    dsn: "postgres://u:p@localhost:5432/a"
    rules: [{table: public.customers, hash: [country]}]
`
	cfg, err := config.Parse([]byte(doc), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(cfg, fakeCatalog{customers: custInfo}).Target("a").Plan(context.Background(), customers, custCols, []string{"id"})
	if err == nil || !strings.Contains(err.Error(), "targets.a.rules[0].hash") || !strings.Contains(err.Error(), "hash_salt_secret") {
		t.Fatalf("err = %v, want a refusal naming targets.a.rules[0].hash and hash_salt_secret", err)
	}
	cfg.HashSalt = "resolved-salt-0123456789"
	plan, err := New(cfg, fakeCatalog{customers: custInfo}).Target("a").Plan(context.Background(), customers, custCols, []string{"id"})
	if err != nil || plan == nil {
		t.Fatalf("with the salt resolved: plan %v, err %v", plan, err)
	}
}

// RowsDiffer names what makes a target's row count differ from the
// source's by design, per table; a table no such rule matches must count
// the same.
func TestRowsDifferNamesWhatKeepsCountsApart(t *testing.T) {
	cfg := parse(t, `  f: {kind: postgres, dsn: "postgres://u:p@localhost:5432/f", rules: [{table: public.customers, filter: [{column: country, op: eq, value: DE}]}]}
  o: {kind: postgres, dsn: "postgres://u:p@localhost:5432/o", rules: [{table: public.customers, operations: [insert, update, truncate]}, {table: public.orders, operations: [insert, update, delete]}]}
  m: {kind: postgres, dsn: "postgres://u:p@localhost:5432/m", rules: [{table: public.customers, mask: {email: {keep_first: 1, keep_last: 1}}}]}
  s: {kind: postgres, dsn: "postgres://u:p@localhost:5432/s", deletes: soft}`)
	set := New(cfg, fakeCatalog{})
	customers, orders := batch.Table{Schema: "public", Name: "customers"}, batch.Table{Schema: "public", Name: "orders"}
	for _, c := range []struct {
		target string
		table  batch.Table
		want   string
	}{
		{"f", customers, "row filter"},
		{"f", orders, ""},
		{"o", customers, "deletes not replicated"},
		{"o", orders, "truncates not replicated"},
		{"m", customers, ""},
		{"s", orders, "soft deletes"},
	} {
		if got := set.Target(c.target).RowsDiffer(c.table); got != c.want {
			t.Errorf("target %s, %s: %q, want %q", c.target, c.table, got, c.want)
		}
	}
}
