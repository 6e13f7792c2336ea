package runner

import (
	"context"

	"github.com/pgferry/pgferry/shared/apply/pgapply"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/schema/pgsync"
	"github.com/pgferry/pgferry/shared/verify"
)

// postgresTarget is the constructor of kind postgres: pgapply applies and
// loads, pgsync follows the source's schema (when the source is open),
// verify.Postgres reads.
func (p *Pipeline) postgresTarget(ctx context.Context, name string, tc config.Target) (Target, func(context.Context, *Target) error, error) {
	pool, err := Connect(ctx, "targets."+name, p.DSNs.Targets[name])
	if err != nil {
		return Target{}, nil, err
	}
	log := p.Log.With("target", name)
	t := Target{Name: name, Config: tc, Verifier: verify.Postgres{Pool: pool}, Close: pool.Close}
	var syncer *pgsync.Syncer
	if p.Source != nil {
		syncer = pgsync.New(p.Source, pool, p.Config, name, log.With("fn", "schema"))
		t.Syncer = syncer
	}
	install := func(ctx context.Context, t *Target) error {
		ap, err := pgapply.New(ctx, pool, p.Config.Name, log)
		if err != nil {
			return err
		}
		t.Applier, t.Loader, t.Resetter = ap, ap, ap
		if t.SyncsSchema() {
			t.Applier = pgsync.NewApplier(ap, syncer, pool, p.Config, log)
		}
		return nil
	}
	return t, install, nil
}
