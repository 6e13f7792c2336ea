package config

import (
	"strings"
	"testing"
)

const validRedshift = `
name: demo
source:
  dsn: "postgres://u:p@localhost:5432/src?sslmode=disable"
  tables: ["public.*"]
targets:
  warehouse:
    kind: redshift
    data_api: {workgroup: wg-1, database: dev, secret_arn: "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rs-AbCdEf"}
    staging: {bucket: my-bucket, prefix: pgferry/}
    copy_role_arn: "arn:aws:iam::123456789012:role/pgferry-copy"
    numeric: "38,10"
    json: varchar
`

func TestParseRedshiftTarget(t *testing.T) {
	c, err := Parse([]byte(validRedshift), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	w := c.Targets["warehouse"]
	if p, s := w.NumericDefault(); p != 38 || s != 10 {
		t.Fatalf("numeric = %d,%d, want 38,10", p, s)
	}
	if w.JSONAsSuper() || w.DataAPI.Workgroup != "wg-1" || c.StagingBucket(w) != "my-bucket" || c.StagingPrefix("warehouse") != "pgferry/" {
		t.Fatalf("redshift keys not read: %+v", w)
	}
	// Defaults: numeric 19,8, json super, staging in the pipeline bucket.
	doc := strings.NewReplacer(`    staging: {bucket: my-bucket, prefix: pgferry/}`+"\n", "", `    numeric: "38,10"`+"\n", "", "    json: varchar\n", "").Replace(validRedshift)
	c, err = Parse([]byte(doc), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	w = c.Targets["warehouse"]
	if p, s := w.NumericDefault(); p != 19 || s != 8 || !w.JSONAsSuper() || c.StagingBucket(w) != "pgferry-demo-payloads" ||
		c.StagingPrefix("warehouse") != "pgferry/demo/warehouse/" {
		t.Fatalf("defaults: numeric %d,%d super %v bucket %s prefix %s", p, s, w.JSONAsSuper(), c.StagingBucket(w), c.StagingPrefix("warehouse"))
	}
	// A direct connection instead of the Data API.
	doc = strings.Replace(validRedshift, `data_api: {workgroup: wg-1, database: dev, secret_arn: "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rs-AbCdEf"}`,
		`dsn: "postgres://u:p@rs.example.com:5439/dev"`, 1)
	if _, err := Parse([]byte(doc), env(nil)); err != nil {
		t.Fatal(err)
	}
	// A cluster with a database user.
	doc = strings.Replace(validRedshift, `{workgroup: wg-1, database: dev, secret_arn: "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rs-AbCdEf"}`,
		`{cluster: prod, database: dev, db_user: loader}`, 1)
	if _, err := Parse([]byte(doc), env(nil)); err != nil {
		t.Fatal(err)
	}
}

func TestParseRefusesBadRedshiftKeysNamingThem(t *testing.T) {
	api := `data_api: {workgroup: wg-1, database: dev, secret_arn: "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rs-AbCdEf"}`
	cases := []struct{ name, from, to, want string }{
		{"no endpoint", api, "", "targets.warehouse.data_api: required for kind redshift"},
		{"both endpoints", api, api + "\n    dsn: \"postgres://u@h:5439/dev\"", "targets.warehouse.data_api: set either"},
		{"neither workgroup nor cluster", "workgroup: wg-1, ", "", "targets.warehouse.data_api.workgroup: required"},
		{"workgroup and cluster", "workgroup: wg-1,", "workgroup: wg-1, cluster: c,", "targets.warehouse.data_api.cluster: set either"},
		{"bad workgroup", "workgroup: wg-1", "workgroup: WG", `targets.warehouse.data_api.workgroup: "WG" is not`},
		{"no database", " database: dev,", "", "targets.warehouse.data_api.database: required"},
		{"db_user on a workgroup", "secret_arn:", "db_user: u, secret_arn:", "targets.warehouse.data_api.db_user:"},
		{"bad secret", `secret_arn: "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rs-AbCdEf"`, `secret_arn: "a b"`, "targets.warehouse.data_api.secret_arn:"},
		{"unknown data_api key", "database: dev,", "database: dev, port: 1,", `unknown key "port" in targets.<name>.data_api`},
		{"unknown staging key", "prefix: pgferry/", "prefix: pgferry/, region: x", `unknown key "region" in targets.<name>.staging`},
		{"bad bucket", "bucket: my-bucket", "bucket: My_Bucket", "targets.warehouse.staging.bucket:"},
		{"bad prefix", "prefix: pgferry/", "prefix: pgferry", "targets.warehouse.staging.prefix:"},
		{"no copy role", `    copy_role_arn: "arn:aws:iam::123456789012:role/pgferry-copy"` + "\n", "", "targets.warehouse.copy_role_arn: required"},
		{"bad copy role", `role/pgferry-copy"`, `user/x"`, "targets.warehouse.copy_role_arn:"},
		{"bad numeric", `"38,10"`, `"40,2"`, "targets.warehouse.numeric:"},
		{"numeric not p,s", `"38,10"`, `"wide"`, "targets.warehouse.numeric:"},
		{"scale over precision", `"38,10"`, `"5,6"`, "targets.warehouse.numeric:"},
		{"bad json", "json: varchar", "json: text", `targets.warehouse.json: "text" is not one of super, varchar`},
	}
	for _, c := range cases {
		doc := strings.Replace(validRedshift, c.from, c.to, 1)
		if doc == validRedshift {
			t.Fatalf("%s: replacement did not apply", c.name)
		}
		_, err := Parse([]byte(doc), env(nil))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error containing %q", c.name, err, c.want)
		}
	}
	// Redshift keys on a postgres target.
	doc := valid + "    json: super\n    copy_role_arn: \"arn:aws:iam::123456789012:role/r\"\n"
	_, err := Parse([]byte(doc), env(nil))
	if err == nil || !strings.Contains(err.Error(), "targets.replica.json: only for kind redshift") ||
		!strings.Contains(err.Error(), "targets.replica.copy_role_arn: only for kind redshift") {
		t.Fatalf("got %v", err)
	}
}
