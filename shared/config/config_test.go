package config

import (
	"strings"
	"testing"
)

const valid = `
name: demo
source:
  dsn: "postgres://u:p@localhost:5432/src?sslmode=disable"
  capture: trigger
  tables: ["public.*"]
targets:
  replica:
    kind: postgres
    dsn: "postgres://u:p@localhost:5432/dst?sslmode=disable"
`

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestParseValidAppliesDefaults(t *testing.T) {
	c, err := Parse([]byte(valid), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Batch.MaxRows != 5000 || c.QueueName() != "pgferry-demo.fifo" || c.CaptureSchema() != "pgferry_demo" || !c.Source.CopyExisting() {
		t.Fatalf("defaults not applied: %+v", c)
	}
	if !c.Replicated("public", "orders") || c.Replicated("pgferry_demo", "events") || c.Replicated("other", "x") {
		t.Fatal("pattern matching is wrong")
	}
}

func TestParseExpandsEnvironmentInValuesOnly(t *testing.T) {
	doc := strings.Replace(valid, `"postgres://u:p@localhost:5432/src?sslmode=disable"`, `"${SRC}"`, 1)
	// A value with YAML syntax in it must stay one string.
	src := "host=localhost dbname=src password='p#: [x]'"
	c, err := Parse([]byte(doc), env(map[string]string{"SRC": src}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Source.DSN != src {
		t.Fatalf("source.dsn = %q, want %q", c.Source.DSN, src)
	}
}

func TestParseRefusesBadInputNamingTheKey(t *testing.T) {
	cases := []struct {
		name, from, to, want string
	}{
		{"unknown top-level key", "name: demo", "name: demo\nfoo: 1", `unknown key "foo" in the top level`},
		{"unknown source key", "capture: trigger", "capture: trigger\n  dsm: x", `unknown key "dsm" in source`},
		{"missing name", "name: demo", "", "name: required"},
		{"bad name", "name: demo", "name: Demo-1", "name: \"Demo-1\" must be"},
		{"missing source dsn", `dsn: "postgres://u:p@localhost:5432/src?sslmode=disable"`, "", "source.dsn: required"},
		{"unknown capture", "capture: trigger", "capture: wal", `source.capture: "wal" is not one of`},
		{"no tables", `tables: ["public.*"]`, "", "source.tables: required"},
		{"unqualified pattern", `tables: ["public.*"]`, `tables: ["orders"]`, "source.tables[0]: pattern \"orders\" must be schema-qualified"},
		{"bad glob", `tables: ["public.*"]`, `tables: ["public.[x"]`, "source.tables[0]: pattern"},
		{"bad exclude", `tables: ["public.*"]`, "tables: [\"public.*\"]\n  exclude: [\"x\"]", "source.exclude[0]"},
		{"no targets", "targets:", "targets: {}\nx:", "unknown key"},
		{"unknown kind", "kind: postgres", "kind: mysql", `targets.replica.kind: "mysql" is not one of`},
		{"missing kind", "kind: postgres", "", "targets.replica.kind: required"},
		{"missing target dsn", `dsn: "postgres://u:p@localhost:5432/dst?sslmode=disable"`, "", "targets.replica.dsn: required"},
		{"target same as source", "5432/dst", "5432/src", "targets.replica.dsn: is the same as source.dsn"},
		{"malformed dsn", `"postgres://u:p@localhost:5432/dst?sslmode=disable"`, `"postgres://u:p@localhost:notaport/dst"`, "targets.replica.dsn: not a valid"},
		{"bad target name", "  replica:", "  Replica:", `target name "Replica"`},
		{"duplicate target name", "  replica:\n", "  replica:\n    kind: postgres\n  replica:\n", "already defined"},
		{"bad max rows", "name: demo", "name: demo\nbatch: {max_rows: -1}", "batch.max_rows: must be at least 1"},
		{"bad interval", "name: demo", "name: demo\ndrain: {interval: soon}", `drain.interval: "soon" is not a duration`},
		{"bad lease in block style", "name: demo", "name: demo\ndrain:\n  interval: 1s\n  lease: long", `drain.lease: "long" is not a duration`},
		{"inline limit too big", "name: demo", "name: demo\nbatch: {inline_limit: 5000000}", "batch.inline_limit"},
		{"queue not fifo", "name: demo", "name: demo\naws: {queue: plain}", "aws.queue"},
		{"apply_schema without schema sync", "kind: postgres", "kind: postgres\n    apply_schema: rep\n    schema_sync: false", "targets.replica.apply_schema: needs schema sync"},
		{"missing env var", `"postgres://u:p@localhost:5432/src?sslmode=disable"`, `"${NOPE}"`, "source.dsn: environment variable NOPE is not set"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			doc := strings.Replace(valid, c.from, c.to, 1)
			if doc == valid {
				t.Fatalf("test case did not change the document (from %q)", c.from)
			}
			_, err := Parse([]byte(doc), env(nil))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got error %v, want one containing %q", err, c.want)
			}
		})
	}
}

func TestErrorsNeverEchoPasswords(t *testing.T) {
	doc := strings.Replace(valid, "5432/dst?sslmode=disable", "notaport/dst", 1)
	doc = strings.Replace(doc, "u:p@", "u:s3cret-pw@", -1)
	_, err := Parse([]byte(doc), env(nil))
	if err == nil || strings.Contains(err.Error(), "s3cret-pw") {
		t.Fatalf("error %v leaks the password", err)
	}
}

func TestPatternQuotedParts(t *testing.T) {
	p, err := ParsePattern(`"my.schema"."Tab*"`)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Match("my.schema", "Tab*") || p.Match("my.schema", "Table") {
		t.Fatal("quoted parts must match literally")
	}
	g, _ := ParsePattern("sales.order_?")
	if !g.Match("sales", "order_1") || g.Match("sales", "order_12") {
		t.Fatal("glob parts must match as globs")
	}
}

func TestRulesFingerprintFollowsWhatATargetReceives(t *testing.T) {
	base := `
name: fp
source: {dsn: "postgres://u@localhost:5432/src", tables: ["public.*"]}
targets:
  a:
    kind: postgres
    dsn: "postgres://u@localhost:5432/a"
    deletes: hard
    rules: [{table: public.t, filter: [{column: c, op: eq, value: "x"}]}]
`
	fp := func(doc string) (string, error) {
		c, err := Parse([]byte(doc), func(string) (string, bool) { return "", false })
		if err != nil {
			return "", err
		}
		return c.RulesFingerprint("a"), nil
	}
	was, err := fp(base)
	if err != nil {
		t.Fatal(err)
	}
	for doc, same := range map[string]bool{
		strings.Replace(base, "    deletes: hard\n", "", 1):                                                           true, // hard is the default
		strings.Replace(base, "localhost:5432/a", "other:5432/a", 1):                                                  true,
		strings.Replace(base, "deletes: hard\n", "deletes: hard\n    accept_rules_change: \"0123456789abcdef\"\n", 1): true,
		strings.Replace(base, `value: "x"`, `value: "y"`, 1):                                                          false,
		strings.Replace(base, "deletes: hard", "deletes: soft", 1):                                                    false,
		strings.Replace(base, "deletes: hard\n", "deletes: hard\n    tables: [\"public.t\"]\n", 1):                    false,
	} {
		got, err := fp(doc)
		if err != nil {
			t.Fatalf("%v in\n%s", err, doc)
		}
		if (got == was) != same {
			t.Errorf("fingerprint %s vs %s, want same=%v for\n%s", got, was, same, doc)
		}
	}
	_, err = fp(strings.Replace(base, "deletes: hard\n", "deletes: hard\n    accept_rules_change: yes\n", 1))
	if err == nil || !strings.Contains(err.Error(), "targets.a.accept_rules_change") {
		t.Fatalf("err = %v, want a bad acknowledgement refused naming its key", err)
	}
}
