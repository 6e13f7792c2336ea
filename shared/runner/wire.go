// Package runner wires the pipeline's parts from a configuration: the
// composition shared by the Lambda mains and the local runner.
package runner

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/apply"
	"github.com/pgferry/pgferry/shared/apply/pgapply"
	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/capture/slot"
	"github.com/pgferry/pgferry/shared/capture/trigger"
	"github.com/pgferry/pgferry/shared/checkpoint/dynamo"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/drain"
	"github.com/pgferry/pgferry/shared/load/loadstore"
	"github.com/pgferry/pgferry/shared/metrics"
	"github.com/pgferry/pgferry/shared/payload/s3store"
	"github.com/pgferry/pgferry/shared/queue"
	"github.com/pgferry/pgferry/shared/queue/sqsfifo"
	"github.com/pgferry/pgferry/shared/rules"
	"github.com/pgferry/pgferry/shared/schema"
	"github.com/pgferry/pgferry/shared/schema/pgsync"
	"github.com/pgferry/pgferry/shared/secrets"
)

// AWS holds the clients for the pipeline's AWS resources.
type AWS struct {
	Queue    *sqsfifo.Queue
	DLQ      *sqsfifo.Queue // the FIFO dead-letter queue beside Queue
	Payloads *s3store.Store
	State    *dynamo.Store    // checkpoint and lease
	Loads    *loadstore.Store // initial-load plans and progress, in the same table
	SQS      *sqs.Client
}

// ConnectAWS builds clients from ac (see LoadAWS). With ensure, it creates
// the queues, table and bucket when missing, as the local runner does;
// deployed functions get them from the stack, with the URLs in
// PGFERRY_QUEUE_URL and PGFERRY_DLQ_URL (looked up by name when unset).
func ConnectAWS(ctx context.Context, cfg *config.Config, ac aws.Config, ensure bool) (*AWS, error) {
	var err error
	sqsc := sqs.NewFromConfig(ac)
	ddb := dynamodb.NewFromConfig(ac)
	s3c := s3store.NewClient(ac)
	out := &AWS{
		SQS:      sqsc,
		Payloads: s3store.New(s3c, cfg.PayloadBucketName()),
		State:    dynamo.New(ddb, cfg.StateTableName(), cfg.Name),
		Loads:    loadstore.New(ddb, cfg.StateTableName()),
	}
	if !ensure {
		url := os.Getenv(config.EnvQueueURL)
		if url == "" {
			got, err := sqsc.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(cfg.QueueName())})
			if err != nil {
				return nil, fmt.Errorf("aws: queue %s: %w", cfg.QueueName(), err)
			}
			url = aws.ToString(got.QueueUrl)
		}
		out.Queue = sqsfifo.New(sqsc, url)
		dlq := os.Getenv(config.EnvDLQURL)
		if dlq == "" {
			name := sqsfifo.DLQName(cfg.QueueName())
			got, err := sqsc.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
			if err != nil {
				return nil, fmt.Errorf("aws: dead-letter queue %s: %w", name, err)
			}
			dlq = aws.ToString(got.QueueUrl)
		}
		out.DLQ = sqsfifo.New(sqsc, dlq)
		return out, nil
	}
	var dlqURL string
	if out.Queue, dlqURL, err = sqsfifo.Ensure(ctx, sqsc, cfg.QueueName(), sqsfifo.BackstopReceives(cfg.Apply.MaxAttempts), cfg.Apply.Visibility.Duration); err != nil {
		return nil, err
	}
	out.DLQ = sqsfifo.New(sqsc, dlqURL)
	if err := dynamo.EnsureTable(ctx, ddb, cfg.StateTableName()); err != nil {
		return nil, err
	}
	if err := s3store.EnsureBucket(ctx, s3c, cfg.PayloadBucketName()); err != nil {
		return nil, err
	}
	return out, nil
}

// Connect opens a pool, naming the database role in errors but never the
// DSN, which may hold a password.
func Connect(ctx context.Context, what, dsn string) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("%s: invalid connection string", what)
	}
	pc.ConnConfig.RuntimeParams["application_name"] = config.ApplicationName
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("%s: cannot connect to %s:%d as %s: %w", what, pc.ConnConfig.Host, pc.ConnConfig.Port, pc.ConnConfig.User, secrets.Redact(err, pc.ConnConfig.Password))
	}
	return pool, nil
}

// NewDrainer wires the configured capture (trigger or slot), the
// claim-check publisher and the checkpoint store. Options add what only
// some callers have (WithMetrics).
func NewDrainer(cfg *config.Config, src *pgxpool.Pool, a *AWS, owner string, log *slog.Logger, onShip func(*batch.Batch), opts ...DrainOption) Drain {
	var o drainOpts
	for _, f := range opts {
		f(&o)
	}
	pub := &queue.ClaimCheck{Next: a.Queue, Store: a.Payloads, Limit: cfg.Batch.InlineLimit}
	dopts := drain.Options{
		Pipeline:  cfg.Name,
		Targets:   cfg.TargetNames(),
		Owner:     owner,
		Lease:     cfg.Drain.Lease.Duration,
		MaxRows:   cfg.Batch.MaxRows,
		MaxBytes:  cfg.Batch.MaxBytes,
		Margin:    30 * time.Second,
		MinWindow: cfg.Drain.MinWindow.Duration,
		OnShip:    onShip,
		Probe:     CaptureProbe(cfg, src),
		Rules:     rules.ForSource(cfg, src),
	}
	if cfg.SyncsSchema() {
		skip := pgsync.SourceSkip(cfg)
		dopts.Schema = func(ctx context.Context) (string, error) { return schema.Fingerprint(ctx, src, skip) }
	}
	if cfg.Source.Capture == config.CaptureSlot {
		return drain.NewSlot(slot.New(src, cfg, log), a.State, pub, dopts, log, o.emf)
	}
	return drain.New(trigger.New(src, cfg, log), a.State, pub, dopts, log)
}

// DrainOption configures NewDrainer.
type DrainOption func(*drainOpts)

type drainOpts struct{ emf *metrics.EMF }

// WithMetrics makes the drain emit its source-side metrics (slot capture:
// RetainedWALBytes and SlotLagBytes after every run) to emf.
func WithMetrics(emf *metrics.EMF) DrainOption { return func(o *drainOpts) { o.emf = emf } }

// Targets connects to every target and prepares its applier. The caller
// closes the returned pools.
func Targets(ctx context.Context, cfg *config.Config, dsns DSNs, log *slog.Logger) (map[string]apply.Applier, []*pgxpool.Pool, error) {
	out := map[string]apply.Applier{}
	// Reach every target before changing any: a typo in the last target's
	// DSN must not leave pgferry's tables behind on the first.
	pools, err := ConnectTargets(ctx, cfg, dsns)
	if err != nil {
		return nil, nil, err
	}
	for i, name := range cfg.TargetNames() {
		pool := pools[i]
		ap, err := pgapply.New(ctx, pool, cfg.Name, log.With("target", name))
		if err != nil {
			CloseAll(pools)
			return nil, nil, fmt.Errorf("targets.%s: %w", name, err)
		}
		out[name] = ap
	}
	return out, pools, nil
}

// ConnectTargets opens a pool on every target (its DSN from dsns), in
// cfg.TargetNames order, changing nothing on them. On error none stays
// open. The caller closes the pools.
func ConnectTargets(ctx context.Context, cfg *config.Config, dsns DSNs) ([]*pgxpool.Pool, error) {
	var pools []*pgxpool.Pool
	for _, name := range cfg.TargetNames() {
		pool, err := Connect(ctx, "targets."+name, dsns.Targets[name])
		if err != nil {
			CloseAll(pools)
			return nil, err
		}
		pools = append(pools, pool)
	}
	return pools, nil
}

// CloseAll closes every pool.
func CloseAll(pools []*pgxpool.Pool) {
	for _, p := range pools {
		p.Close()
	}
}

// InstanceID names this process as a lease owner.
func InstanceID() string {
	h, _ := os.Hostname()
	return h + ":" + strconv.Itoa(os.Getpid()) + ":" + strconv.FormatInt(time.Now().UnixNano(), 36)
}

// EmitShipped reports a shipped batch (a drain's OnShip hook).
func EmitShipped(emf *metrics.EMF, b *batch.Batch) {
	emf.Emit(metrics.Dims{metrics.DimPipeline: b.Pipeline},
		metrics.Metric{Name: metrics.BatchesShipped, Value: 1, Unit: metrics.Count},
		metrics.Metric{Name: metrics.RowsShipped, Value: float64(b.Rows()), Unit: metrics.Count},
		metrics.Metric{Name: metrics.BatchRows, Value: float64(b.Rows()), Unit: metrics.Count})
}

// EmitBacklog reports the source's event backlog when the drain's capture
// can count it (trigger capture), and EventBacklogReadFailures = 1 when it
// could not be counted, so a blind event-backlog alarm is itself alarmed
// on. Errors are logged, never returned: a metric must not fail a drain.
func EmitBacklog(ctx context.Context, emf *metrics.EMF, d Drain, pipeline string, log *slog.Logger) {
	b, ok := d.(interface {
		Backlog(context.Context) (int64, bool, error)
	})
	if !ok || emf == nil {
		return
	}
	dims := metrics.Dims{metrics.DimPipeline: pipeline}
	n, can, err := b.Backlog(ctx)
	if err != nil {
		log.Warn("count event backlog", "err", err)
		emf.Emit(dims, metrics.Metric{Name: metrics.EventBacklogReadFailures, Value: 1, Unit: metrics.Count})
		return
	}
	if can {
		emf.Emit(dims, metrics.Metric{Name: metrics.EventBacklog, Value: float64(n), Unit: metrics.Count},
			metrics.Metric{Name: metrics.EventBacklogReadFailures, Value: 0, Unit: metrics.Count})
	}
}
