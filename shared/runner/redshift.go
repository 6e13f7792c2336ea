package runner

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/service/redshiftdata"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/apply/rsapply"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/redshift"
	"github.com/pgferry/pgferry/shared/schema/rssync"
	"github.com/pgferry/pgferry/shared/verify"
)

// redshiftTarget is the constructor of kind redshift. SQL goes through
// the Redshift Data API when targets.<name>.data_api is set (the SDK
// configuration of the pipeline; AWS_ENDPOINT_URL_REDSHIFT_DATA reaches
// the stand-in), otherwise through pgx on the target's DSN (port 5439).
// rsapply applies, loads and resets; rssync follows the source's schema
// (when the source is open), with retry after DDL around the applier;
// verify.Redshift reads through the type map.
func (p *Pipeline) redshiftTarget(ctx context.Context, name string, tc config.Target) (Target, func(context.Context, *Target) error, error) {
	var (
		pool *pgxpool.Pool
		ex   redshift.Exec
	)
	t := Target{Name: name, Config: tc, Close: func() {}}
	if tc.DataAPI != nil {
		ex = redshift.NewDataAPI(redshiftdata.NewFromConfig(p.AWS), *tc.DataAPI)
	} else {
		var err error
		if pool, err = Connect(ctx, "targets."+name, p.DSNs.Targets[name]); err != nil {
			return Target{}, nil, err
		}
		ex, t.Close = redshift.NewPGX(pool), pool.Close
	}
	t.Verifier = verify.Redshift{Ex: ex}
	log := p.Log.With("target", name)
	var syncer *rssync.Syncer
	if p.Source != nil {
		syncer = rssync.New(p.Source, ex, p.Config, name, log.With("fn", "schema"))
		t.Syncer = syncer
	}
	install := func(ctx context.Context, t *Target) error {
		ap, err := rsapply.NewTarget(ctx, p.Config, name, p.AWS, pool, p.Metrics, log)
		if err != nil {
			return err
		}
		t.Applier, t.Loader, t.Resetter = ap, ap, ap
		if t.SyncsSchema() {
			t.Applier = rssync.NewApplier(ap, syncer, p.Config.CaptureSchema(), log)
		}
		return nil
	}
	return t, install, nil
}
