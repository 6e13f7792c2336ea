package rsapply

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/redshiftdata"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/metrics"
	"github.com/pgferry/pgferry/shared/payload/s3store"
	"github.com/pgferry/pgferry/shared/redshift"
)

// NewTarget builds the applier of cfg's kind: redshift target named
// target: the Data API executor when targets.<name>.data_api is set,
// otherwise pgx on pool (a direct connection on port 5439, which the
// caller opened from the target's resolved DSN; nil with data_api). The
// staged files go to config.StagingBucket under config.StagingPrefix,
// through the S3 client of awsCfg.
func NewTarget(ctx context.Context, cfg *config.Config, target string, awsCfg aws.Config, pool *pgxpool.Pool,
	emf *metrics.EMF, log *slog.Logger) (*Applier, error) {
	t, ok := cfg.Targets[target]
	if !ok || t.Kind != config.KindRedshift {
		return nil, fmt.Errorf("rsapply: target %q is not a redshift target", target)
	}
	var ex redshift.Exec
	switch {
	case t.DataAPI != nil:
		ex = redshift.NewDataAPI(redshiftdata.NewFromConfig(awsCfg), *t.DataAPI)
	case pool != nil:
		ex = redshift.NewPGX(pool)
	default:
		return nil, fmt.Errorf("rsapply: target %q has no data_api and no connection pool was given", target)
	}
	bucket := cfg.StagingBucket(t)
	return New(ctx, ex, NewS3Objects(s3store.NewClient(awsCfg), bucket), Options{
		Pipeline: cfg.Name, Target: target, Bucket: bucket, Prefix: cfg.StagingPrefix(target),
		CopyRoleARN: t.CopyRoleARN, Metrics: emf, Log: log.With("target", target),
	})
}
