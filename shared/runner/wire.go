// Package runner wires the pipeline's parts from a configuration: the
// composition shared by the Lambda mains and the local runner.
package runner

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/capture/slot"
	"github.com/pgferry/pgferry/shared/capture/trigger"
	"github.com/pgferry/pgferry/shared/checkpoint/dynamo"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/drain"
	"github.com/pgferry/pgferry/shared/load/loadstore"
	"github.com/pgferry/pgferry/shared/metrics"
	"github.com/pgferry/pgferry/shared/payload/s3store"
	"github.com/pgferry/pgferry/shared/queue/sqsfifo"
	"github.com/pgferry/pgferry/shared/queue/sqsstd"
	"github.com/pgferry/pgferry/shared/rules"
	"github.com/pgferry/pgferry/shared/schema"
	"github.com/pgferry/pgferry/shared/schema/pgsync"
	"github.com/pgferry/pgferry/shared/secrets"
)

// Resources holds the clients for the pipeline's AWS resources.
type Resources struct {
	Queue    *sqsfifo.Queue
	DLQ      *sqsfifo.Queue // the FIFO dead-letter queue beside Queue
	Payloads *s3store.Store
	State    *dynamo.Store    // checkpoint and lease
	Loads    *loadstore.Store // initial-load plans and progress, in the same table
	SQS      *sqs.Client
}

// ConnectAWS builds clients from ac (see awsenv.Load). With ensure, it creates
// the queues, table and bucket when missing, as the local runner does;
// deployed functions get them from the stack, with the URLs in
// PGFERRY_QUEUE_URL and PGFERRY_DLQ_URL (looked up by name when unset).
func ConnectAWS(ctx context.Context, cfg *config.Config, ac aws.Config, ensure bool) (*Resources, error) {
	var err error
	sqsc := sqs.NewFromConfig(ac)
	ddb := dynamodb.NewFromConfig(ac)
	s3c := s3store.NewClient(ac)
	out := &Resources{
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

// Drainer wires the configured capture (trigger or slot), the claim-check
// publisher and the checkpoint store into a drain (OpenAWS and OpenSource
// first), with owner as the lease owner. onShip (nil: none) sees every
// shipped batch; emf (nil: none) receives the drain's source-side
// metrics (slot capture: RetainedWALBytes and SlotLagBytes after every
// run).
func (p *Pipeline) Drainer(owner string, onShip func(*batch.Batch), emf *metrics.EMF) drain.Runner {
	cfg, src := p.Config, p.Source
	log := p.Log.With("fn", "drain")
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

		RulesFP:       cfg.RulesFingerprints(),
		RulesAccepted: cfg.RulesAccepted(),
	}
	if cfg.SyncsSchema() {
		skip := pgsync.SourceSkip(cfg)
		dopts.Schema = func(ctx context.Context) (string, error) { return schema.Fingerprint(ctx, src, skip) }
	}
	if cfg.Source.Capture == config.CaptureSlot {
		return drain.NewSlot(slot.New(src, cfg, log), p.Res.State, p.publisher(), dopts, log, emf)
	}
	return drain.New(trigger.New(src, cfg, log), p.Res.State, p.publisher(), dopts, log)
}

// InstanceID names this process as a lease owner.
func InstanceID() string {
	h, _ := os.Hostname()
	return h + ":" + strconv.Itoa(os.Getpid()) + ":" + strconv.FormatInt(time.Now().UnixNano(), 36)
}

// LoadQueue returns the standard queue of initial-load chunks: its URL
// from PGFERRY_LOAD_QUEUE_URL, looked up by name when unset.
func (p *Pipeline) LoadQueue(ctx context.Context) (*sqsstd.Queue, error) {
	c := sqs.NewFromConfig(p.AWS)
	if url := os.Getenv(config.EnvLoadQueueURL); url != "" {
		return sqsstd.New(c, url), nil
	}
	return sqsstd.Lookup(ctx, c, p.Config.LoadQueueName())
}
