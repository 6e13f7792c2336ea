package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/apply"
	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/capture/slot"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/drain"
	"github.com/pgferry/pgferry/shared/load"
	"github.com/pgferry/pgferry/shared/metrics"
	"github.com/pgferry/pgferry/shared/queue"
	"github.com/pgferry/pgferry/shared/reset"
	"github.com/pgferry/pgferry/shared/schema"
	"github.com/pgferry/pgferry/shared/schema/pgsync"
	"github.com/pgferry/pgferry/shared/schemadiff"
	"github.com/pgferry/pgferry/shared/verify"
)

// Pipeline is one pipeline as a process wires it: the configuration, the
// AWS SDK configuration and the resolved DSNs (its Env), and what it
// opened from them: the AWS resources, the source, and every target with
// the roles its kind implements. Build it with New, open what the process
// needs (OpenAWS, OpenSource, OpenTargets), and Close it.
type Pipeline struct {
	*Env
	Log *slog.Logger
	// Metrics receives the metrics the targets emit themselves (a
	// Redshift target's LossyConversions); nil discards them. Set it
	// before OpenTargets.
	Metrics *metrics.EMF
	// Res holds the queues, bucket and state table (OpenAWS); nil until
	// then.
	Res *Resources
	// Source is the source pool (OpenSource); nil until then.
	Source *pgxpool.Pool
	// Targets are the configured targets in config.TargetNames order
	// (OpenTargets).
	Targets []Target
}

// Target is one target with the roles its kind implements, each an
// interface of the package that uses it. A nil role is one the kind does
// not implement, or that was not opened (see OpenTargets).
type Target struct {
	Name   string
	Config config.Target
	// Applier applies batches; on a target that follows the source's
	// schema it runs schema jobs and retries a batch after DDL.
	Applier apply.Applier
	// Syncer plans and runs the target's DDL and advances its sequences.
	Syncer schemadiff.Syncer
	// Loader copies initial-load chunks and holds and hands over tables.
	Loader load.Target
	// Verifier reads row counts and checksums.
	Verifier verify.Target
	// Resetter forgets the pipeline's watermarks and load state.
	Resetter reset.Target
	// Close releases what the target holds (its pool).
	Close func()
}

// SyncsSchema reports whether the target follows the source's schema:
// its kind has a Syncer and targets.<name>.schema_sync is not false.
func (t Target) SyncsSchema() bool { return t.Syncer != nil && t.Config.SyncsSchema() }

// New returns the pipeline of env with nothing opened yet.
func New(env *Env, log *slog.Logger) *Pipeline { return &Pipeline{Env: env, Log: log} }

// OpenAWS builds the clients of the pipeline's AWS resources (see
// ConnectAWS); with ensure it creates what is missing.
func (p *Pipeline) OpenAWS(ctx context.Context, ensure bool) error {
	res, err := ConnectAWS(ctx, p.Config, p.AWS, ensure)
	if err != nil {
		return err
	}
	p.Res = res
	return nil
}

// OpenSource connects the source.
func (p *Pipeline) OpenSource(ctx context.Context) error {
	src, err := Connect(ctx, "source", p.DSNs.Source)
	if err != nil {
		return err
	}
	p.Source = src
	return nil
}

// OpenTargets connects every target and builds its roles from its kind.
// It reaches every target before changing any, so that a typo in the
// last target's DSN leaves nothing behind on the first. With planOnly it
// changes nothing on any target: only the Syncer (to plan, when the
// source is open) and the Verifier are set. Otherwise each kind installs
// what it needs (pgferry's own tables) and sets every role it has.
func (p *Pipeline) OpenTargets(ctx context.Context, planOnly bool) error {
	var installs []func(context.Context, *Target) error
	for _, name := range p.Config.TargetNames() {
		t, install, err := p.openTarget(ctx, name)
		if err != nil {
			return err
		}
		p.Targets = append(p.Targets, t)
		installs = append(installs, install)
	}
	if planOnly {
		return nil
	}
	for i := range p.Targets {
		if err := installs[i](ctx, &p.Targets[i]); err != nil {
			return fmt.Errorf("targets.%s: %w", p.Targets[i].Name, err)
		}
	}
	return nil
}

// openTarget is the one place a target kind is chosen. A kind's
// constructor connects, changing nothing, and returns the target with
// the roles that need no installation, plus the step that installs what
// the kind needs and sets the other roles.
func (p *Pipeline) openTarget(ctx context.Context, name string) (Target, func(context.Context, *Target) error, error) {
	tc := p.Config.Targets[name]
	switch tc.Kind {
	case config.KindPostgres:
		return p.postgresTarget(ctx, name, tc)
	case config.KindRedshift:
		return p.redshiftTarget(ctx, name, tc)
	}
	return Target{}, nil, fmt.Errorf("targets.%s.kind: %q targets are not supported by this build", name, tc.Kind)
}

// Close closes everything the pipeline opened.
func (p *Pipeline) Close() {
	for _, t := range p.Targets {
		if t.Close != nil {
			t.Close()
		}
	}
	p.Targets = nil
	if p.Source != nil {
		p.Source.Close()
		p.Source = nil
	}
}

// Appliers returns every target's applier, by name.
func (p *Pipeline) Appliers() map[string]apply.Applier {
	out := map[string]apply.Applier{}
	for _, t := range p.Targets {
		out[t.Name] = t.Applier
	}
	return out
}

// Syncers returns the syncers of the targets that follow the source's
// schema, by name.
func (p *Pipeline) Syncers() map[string]schemadiff.Syncer {
	out := map[string]schemadiff.Syncer{}
	for _, t := range p.Targets {
		if t.SyncsSchema() {
			out[t.Name] = t.Syncer
		}
	}
	return out
}

// Planners returns every target's syncer, schema_sync or not, by name
// (--plan prints what each would run).
func (p *Pipeline) Planners() map[string]schemadiff.Syncer {
	out := map[string]schemadiff.Syncer{}
	for _, t := range p.Targets {
		if t.Syncer != nil {
			out[t.Name] = t.Syncer
		}
	}
	return out
}

// Loaders returns every target's loader, by name, or an error naming a
// target whose kind cannot be loaded.
func (p *Pipeline) Loaders() (map[string]load.Target, error) {
	out := map[string]load.Target{}
	for _, t := range p.Targets {
		if t.Loader == nil {
			return nil, fmt.Errorf("targets.%s: this kind of target cannot be loaded", t.Name)
		}
		out[t.Name] = t.Loader
	}
	return out, nil
}

// Verifiers returns every target's verifier, by name.
func (p *Pipeline) Verifiers() map[string]verify.Target {
	out := map[string]verify.Target{}
	for _, t := range p.Targets {
		out[t.Name] = t.Verifier
	}
	return out
}

// Handler returns the apply handler over every target (OpenAWS and
// OpenTargets first); emf nil discards apply metrics.
func (p *Pipeline) Handler(emf *metrics.EMF) *apply.Handler {
	return &apply.Handler{
		Pipeline: p.Config.Name, Targets: p.Appliers(), Payloads: p.Res.Payloads,
		MaxAttempts: p.Config.Apply.MaxAttempts, Metrics: emf,
	}
}

// LastSent returns the position of the last batch the drain shipped.
func (p *Pipeline) LastSent(ctx context.Context) (batch.Position, error) {
	cp, err := p.Res.State.Load(ctx)
	return cp.LastSent, err
}

// SchemaStream is where the schema-diff function ships schema jobs, with
// owner as the lease owner.
func (p *Pipeline) SchemaStream(owner string) schemadiff.Stream {
	cfg, src := p.Config, p.Source
	skip := pgsync.SourceSkip(cfg)
	return schemadiff.Stream{
		State:     p.Res.State,
		Publisher: p.publisher(),
		Options: drain.Options{
			Pipeline: cfg.Name,
			Targets:  cfg.TargetNames(),
			Owner:    owner,
			Lease:    cfg.Drain.Lease.Duration,
			Schema:   func(ctx context.Context) (string, error) { return schema.Fingerprint(ctx, src, skip) },
		},
		Slot: cfg.Source.Capture == config.CaptureSlot,
	}
}

func (p *Pipeline) publisher() queue.Publisher {
	return &queue.ClaimCheck{Next: p.Res.Queue, Store: p.Res.Payloads, Limit: p.Config.Batch.InlineLimit}
}

// Reset removes every trace of the pipeline (see reset.Run). OpenAWS,
// OpenSource and OpenTargets first.
func (p *Pipeline) Reset(ctx context.Context) error {
	targets := map[string]reset.Target{}
	for _, t := range p.Targets {
		if t.Resetter == nil {
			return fmt.Errorf("reset: targets.%s: this kind of target cannot be reset", t.Name)
		}
		targets[t.Name] = t.Resetter
	}
	return reset.Run(ctx, reset.Pipeline{
		Config:   p.Config,
		Source:   p.Source,
		DropSlot: slot.New(p.Source, p.Config, p.Log).Drop,
		PurgeQueues: func(ctx context.Context) error {
			var errs []error
			for _, url := range []string{p.Res.Queue.URL(), p.Res.DLQ.URL()} {
				if url != "" {
					_, err := p.Res.SQS.PurgeQueue(ctx, &sqs.PurgeQueueInput{QueueUrl: &url})
					errs = append(errs, err)
				}
			}
			return errors.Join(errs...)
		},
		State:   p.Res.State,
		Loads:   p.Res.Loads,
		Targets: targets,
	}, p.Log)
}
