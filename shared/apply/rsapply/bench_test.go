package rsapply_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/redshiftdata"
	"github.com/jackc/pgx/v5"

	"github.com/pgferry/pgferry/shared/apply/rsapply"
	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/payload/s3store"
	"github.com/pgferry/pgferry/shared/redshift"
	"github.com/pgferry/pgferry/shared/runner/awsenv"
	"github.com/pgferry/pgferry/shared/testenv"
)

// BenchmarkRedshiftApply applies upsert batches (half new keys, half
// updates) through the Data API to the Redshift stand-in, spread over 1
// or 10 tables, and reports rows/s and the cost drivers per 1,000 rows:
// S3 objects written (a data file and a manifest per table and column
// set) and Data API requests (BatchExecuteStatement, DescribeStatement
// polls, ExecuteStatement and GetStatementResult reads of the watermark
// and the catalog). The stand-in runs on PostgreSQL: rows/s says nothing
// about a real Redshift; the object and call counts are the applier's own
// and carry over.
func BenchmarkRedshiftApply(b *testing.B) {
	ctx := context.Background()
	testenv.AWS(b)
	ac, err := awsenv.Load(ctx)
	if err != nil {
		b.Fatal(err)
	}
	bucket := testenv.Name("rsbench")
	s3c := s3store.NewClient(ac)
	if err := s3store.EnsureBucket(ctx, s3c, bucket); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct{ rows, tables int }{{1000, 1}, {10000, 1}, {1000, 10}, {10000, 10}} {
		b.Run(fmt.Sprintf("rows=%d-tables=%d", c.rows, c.tables), func(b *testing.B) {
			dsn := testenv.NewDB(b, "rsbench")
			cc, err := pgx.ParseConfig(dsn)
			if err != nil {
				b.Fatal(err)
			}
			ex := redshift.NewDataAPI(redshiftdata.NewFromConfig(ac), config.RedshiftDataAPI{Workgroup: "bench", Database: cc.Database})
			var ddl []string
			for t := range c.tables {
				ddl = append(ddl, fmt.Sprintf(`CREATE TABLE t%d (id bigint, v varchar(256), n numeric(19,8), at timestamptz, PRIMARY KEY (id))`, t))
			}
			if err := ex.Tx(ctx, ddl); err != nil {
				b.Fatal(err)
			}
			ap, err := rsapply.New(ctx, ex, rsapply.NewS3Objects(s3c, bucket), rsapply.Options{
				Pipeline: "bench", Target: "wh", Bucket: bucket, Prefix: "stage/", CopyRoleARN: "arn:aws:iam::000000000000:role/copy",
				Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				b.Fatal(err)
			}
			cols := []string{"id", "v", "n", "at"}
			per := c.rows / c.tables
			var took time.Duration
			before := ap.Stats()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				var segs []batch.Segment
				for t := range c.tables {
					rows := make([]batch.Row, per)
					for r := range rows {
						// Keys overlap the previous batch by half: updates.
						id := strconv.Itoa(i*per/2 + r)
						v, n, at := "value "+id+" with some text", id+".25", "2024-05-01 10:00:00+00"
						rows[r] = batch.Row{&id, &v, &n, &at}
					}
					segs = append(segs, batch.Segment{Table: batch.Table{Schema: "public", Name: "t" + strconv.Itoa(t)}, Columns: cols, Key: []string{"id"}, Upserts: rows})
				}
				bt := &batch.Batch{Version: batch.VersionUpdates, Pipeline: "bench", Target: "wh", Lineage: "L", Seq: uint64(i + 1),
					From: batch.Position{Tick: uint64(i)}, To: batch.Position{Tick: uint64(i + 1)}, Epochs: []batch.Epoch{{Segments: segs}}}
				t0 := time.Now()
				if _, err := ap.Apply(ctx, bt); err != nil {
					b.Fatal(err)
				}
				took += time.Since(t0)
			}
			after := ap.Stats()
			k := float64(c.rows*b.N) / 1000
			b.ReportMetric(float64(c.rows*b.N)/took.Seconds(), "rows/s")
			b.ReportMetric(float64(after.Objects-before.Objects)/k, "s3_objects/1k_rows")
			b.ReportMetric(float64(after.Calls-before.Calls)/k, "dataapi_calls/1k_rows")
		})
	}
}
