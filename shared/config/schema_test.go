package config

import (
	"strings"
	"testing"
)

func TestSchemaSyncKeys(t *testing.T) {
	base := `
name: p
source: {dsn: "postgres://a@h/s", tables: ["public.*"]}
targets:
  a: {kind: postgres, dsn: "postgres://a@h/a", apply_schema: rep}
  b: {kind: postgres, dsn: "postgres://a@h/b", schema_sync: false}
`
	c, err := Parse([]byte(base), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	if !c.Targets["a"].SyncsSchema() || c.Targets["b"].SyncsSchema() || !c.SyncsSchema() {
		t.Fatalf("schema_sync: a %v, b %v, pipeline %v; want true, false, true", c.Targets["a"].SyncsSchema(), c.Targets["b"].SyncsSchema(), c.SyncsSchema())
	}
	if c.Targets["a"].ApplySchema != "rep" {
		t.Fatalf("apply_schema = %q", c.Targets["a"].ApplySchema)
	}
	_, err = Parse([]byte(strings.Replace(base, "apply_schema: rep", "apply_schema: pg_temp", 1)), func(string) (string, bool) { return "", false })
	if err == nil || !strings.Contains(err.Error(), "targets.a.apply_schema") {
		t.Fatalf("err = %v, want a refusal naming targets.a.apply_schema", err)
	}
}
