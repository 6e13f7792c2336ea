package rsapply

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/redshiftdata"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/payload/s3store"
	"github.com/pgferry/pgferry/shared/redshift"
)

// realVars configure TestRealRedshift.
var realVars = []string{"PGFERRY_REDSHIFT_WORKGROUP", "PGFERRY_REDSHIFT_DATABASE", "PGFERRY_REDSHIFT_BUCKET", "PGFERRY_REDSHIFT_COPY_ROLE_ARN"}

// TestRealRedshift applies the golden batch's shapes to a real Redshift
// Serverless workgroup through the Data API, with real AWS credentials.
// Opt-in: set PGFERRY_REDSHIFT_WORKGROUP, _DATABASE, _BUCKET and
// _COPY_ROLE_ARN (optionally _SECRET_ARN); it skips, saying so, without them.
func TestRealRedshift(t *testing.T) {
	var missing []string
	for _, v := range realVars {
		if os.Getenv(v) == "" {
			missing = append(missing, v)
		}
	}
	if len(missing) > 0 {
		t.Skipf("no real Redshift configured: set %s to run the statement shapes against one", strings.Join(missing, ", "))
	}
	ctx := context.Background()
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ex := redshift.NewDataAPI(redshiftdata.NewFromConfig(awsCfg), config.RedshiftDataAPI{
		Workgroup: os.Getenv("PGFERRY_REDSHIFT_WORKGROUP"), Database: os.Getenv("PGFERRY_REDSHIFT_DATABASE"),
		SecretARN: os.Getenv("PGFERRY_REDSHIFT_SECRET_ARN")})
	schema := "pgferry_test_" + strings.ReplaceAll(strings.ToLower(t.Name()), "/", "_")
	sch := quote(schema)
	if err := ex.Tx(ctx, []string{"DROP SCHEMA IF EXISTS " + sch + " CASCADE", "CREATE SCHEMA " + sch,
		"CREATE TABLE " + sch + ".orders (id integer NOT NULL, note varchar(8) NOT NULL, amount numeric(19,8), doc super, at timestamptz)"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ex.Tx(context.Background(), []string{"DROP SCHEMA IF EXISTS " + sch + " CASCADE"}) })
	bucket := os.Getenv("PGFERRY_REDSHIFT_BUCKET")
	a, err := New(ctx, ex, NewS3Objects(s3store.NewClient(awsCfg), bucket), Options{Pipeline: "rstest", Target: "warehouse",
		Bucket: bucket, Prefix: "pgferry-test/", CopyRoleARN: os.Getenv("PGFERRY_REDSHIFT_COPY_ROLE_ARN"), Log: slog.Default()})
	if err != nil {
		t.Fatal(err)
	}
	tbl := batch.Table{Schema: schema, Name: "orders"}
	wm, err := a.Watermark(ctx, batch.Group("rstest", "warehouse"))
	if err != nil {
		t.Fatal(err)
	}
	b := &batch.Batch{Version: batch.VersionUpdates, Pipeline: "rstest", Target: "warehouse", Lineage: "real", Seq: 1,
		From: wm, To: batch.Position{Tick: wm.Tick + 1}, Epochs: []batch.Epoch{{Segments: []batch.Segment{
			{Table: tbl, Columns: orderCols, Key: []string{"id"}, Upserts: []batch.Row{
				row("1", "a \"quoted\", multi\nline", "1.005", `{"k": "v"}`, "2024-01-02 03:04:05+00"),
				row("2", "ééééé", "-Infinity", "<NULL>", "-infinity"), row("3", "", "NaN", "<NULL>", "<NULL>")},
				Deletes: []batch.Row{row("4")}},
			{Table: tbl, Columns: []string{"id", "note"}, Key: []string{"id"}, Update: true, Upserts: []batch.Row{row("30", "moved")}, Match: []batch.Row{row("3")}},
		}}}}
	if res, err := a.Apply(ctx, b); err != nil || !res.Applied {
		t.Fatalf("apply: %+v, %v", res, err)
	}
	if res, err := a.Apply(ctx, b); err != nil || res.Applied {
		t.Fatalf("replay: %+v, %v", res, err)
	}
	rows, err := ex.Query(ctx, "SELECT id, note, amount FROM "+sch+".orders ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rows {
		got = append(got, *r[0]+"|"+*r[1])
	}
	if want := "1|a \"quote,2|éééé,30|moved"; strings.Join(got, ",") != want {
		t.Fatalf("rows %q, want %q", strings.Join(got, ","), want)
	}
}
