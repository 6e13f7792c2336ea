// Package rsapply applies batches to a Redshift target: per batch, the
// rows go to S3 as gzip CSV files (one per table and set of columns), and
// one Redshift transaction COPYs them into staging tables, replaces and
// updates the target rows from them, and moves the batch watermark. The
// SQL runs through a redshift.Exec: the Data API or a direct connection.
package rsapply

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgferry/pgferry/shared/apply"
	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/fault"
	"github.com/pgferry/pgferry/shared/metrics"
	"github.com/pgferry/pgferry/shared/redshift"
)

// Schema holds pgferry's own tables on the target (config.TargetSchema).
const Schema = config.TargetSchema

// Objects is where staged COPY files go: the staging bucket.
type Objects interface {
	// Put stores data under key, replacing any object there.
	Put(ctx context.Context, key string, data []byte) error
	// Delete removes the objects; a missing one is not an error.
	Delete(ctx context.Context, keys []string) error
}

// Options configure an Applier.
type Options struct {
	Pipeline string // config name
	Target   string // target name
	// Bucket and Prefix locate the staged files (config.StagingBucket,
	// config.StagingPrefix); Bucket is what COPY reads from.
	Bucket, Prefix string
	// CopyRoleARN is the role Redshift assumes to read them.
	CopyRoleARN string
	Metrics     *metrics.EMF // nil discards
	Log         *slog.Logger
}

// Applier applies batches of one pipeline to one Redshift database.
type Applier struct {
	// pipe is the pipeline's name as a SQL literal, rendered once.
	pipe  string
	ex    redshift.Exec
	store Objects
	opt   Options
	log   *slog.Logger
	loss  *lossReporter
	now   func() time.Time

	mu     sync.Mutex
	tables map[batch.Table]*tableInfo
	// marks caches the watermark this process last committed or read per
	// group. It only saves a read: the transaction's guard checks it, and
	// any failure drops it.
	marks map[string]mark
	// loading caches the tables loading on the target (hold.go); nil:
	// read it. Every batch's guard checks it still holds.
	loading map[batch.Table]string

	objects atomic.Int64 // S3 objects written
}

type mark struct {
	pos     batch.Position
	lineage string
	exists  bool
}

var _ apply.Applier = (*Applier)(nil)

// New installs the watermark table (idempotent) and returns an applier
// that runs SQL through ex and stages files in store.
func New(ctx context.Context, ex redshift.Exec, store Objects, opt Options) (*Applier, error) {
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	pipe, err := redshift.Literal(opt.Pipeline)
	if err != nil {
		return nil, fmt.Errorf("rsapply: pipeline name: %w", err)
	}
	if err := ex.Tx(ctx, append(WatermarkDDL(), LoadDDL()...)); err != nil {
		return nil, fmt.Errorf("rsapply: install watermark and load tables: %w", err)
	}
	return &Applier{
		ex: ex, store: store, opt: opt, log: opt.Log, now: time.Now, pipe: pipe,
		loss:   &lossReporter{pipeline: opt.Pipeline, target: opt.Target, emf: opt.Metrics, log: opt.Log, logged: map[lossKey]bool{}},
		tables: map[batch.Table]*tableInfo{}, marks: map[string]mark{},
	}, nil
}

// WatermarkDDL creates pgferry's watermark table on a Redshift target.
// The columns are those of the PostgreSQL target's (sql/target), typed
// for Redshift (text would become varchar(256) there). Idempotent.
func WatermarkDDL() []string {
	s := quote(Schema)
	return []string{
		"CREATE SCHEMA IF NOT EXISTS " + s,
		"CREATE TABLE IF NOT EXISTS " + s + `.watermarks (
    pipeline   varchar(256) NOT NULL,
    msg_group  varchar(512) NOT NULL,
    tick       numeric(20,0) NOT NULL,
    tx         bigint NOT NULL,
    seq        numeric(20,0) NOT NULL,
    lineage    varchar(256) NOT NULL DEFAULT '',
    applied_at timestamptz,
    PRIMARY KEY (pipeline, msg_group)
)`,
	}
}

// Watermark returns the applied position of a message group (zero if none).
func (a *Applier) Watermark(ctx context.Context, group string) (batch.Position, error) {
	m, err := a.readMark(ctx, group)
	return m.pos, err
}

func (a *Applier) readMark(ctx context.Context, group string) (mark, error) {
	pipe := a.pipe
	g, err := redshift.Literal(group)
	if err != nil {
		return mark{}, err
	}
	rows, err := a.ex.Query(ctx, "SELECT tick, tx, lineage FROM "+quote(Schema)+".watermarks WHERE pipeline = "+pipe+" AND msg_group = "+g)
	if err != nil {
		return mark{}, fmt.Errorf("rsapply: read watermark: %w", err)
	}
	if len(rows) == 0 {
		return mark{}, nil
	}
	r := rows[0]
	if len(r) != 3 || r[0] == nil || r[1] == nil {
		return mark{}, errors.New("rsapply: read watermark: unexpected row")
	}
	var m mark
	m.exists = true
	if m.pos.Tick, err = strconv.ParseUint(*r[0], 10, 64); err != nil {
		return mark{}, fmt.Errorf("rsapply: read watermark tick %q: %w", *r[0], err)
	}
	if m.pos.Tx, err = strconv.ParseInt(*r[1], 10, 64); err != nil {
		return mark{}, fmt.Errorf("rsapply: read watermark tx %q: %w", *r[1], err)
	}
	if r[2] != nil {
		m.lineage = *r[2]
	}
	return m, nil
}

// Apply applies b atomically together with its watermark, as pgapply
// does: a batch ending at or below the watermark changes nothing
// (Result.Applied false); one starting after it returns apply.ErrGap; one
// of another lineage returns apply.ErrLineage. The staged files are
// deleted once the transaction has ended, committed or not.
func (a *Applier) Apply(ctx context.Context, b *batch.Batch) (apply.Result, error) {
	group := batch.Group(b.Pipeline, b.Target)
	a.mu.Lock()
	m, cached := a.marks[group]
	a.mu.Unlock()
	// The cache is trusted only when it says this batch follows on;
	// anything else is decided on a fresh read.
	if !cached || m.pos != b.From || (m.lineage != "" && m.lineage != b.Lineage) {
		var err error
		if m, err = a.readMark(ctx, group); err != nil {
			return apply.Result{}, err
		}
	}
	if res, err, done := decide(b, m); done {
		return res, err
	}
	ld, err := a.divert(ctx, b)
	if err != nil {
		a.forget(group)
		return apply.Result{}, fmt.Errorf("rsapply: batch %d (%s..%s): %w", b.Seq, b.From, b.To, err)
	}
	p, err := a.plan(ctx, ld.batch, m, ld)
	if err != nil {
		a.forget(group)
		return apply.Result{}, fmt.Errorf("rsapply: batch %d (%s..%s): %w", b.Seq, b.From, b.To, err)
	}
	defer a.cleanup(p)
	if err := a.put(ctx, p); err != nil {
		a.forget(group)
		return apply.Result{}, fmt.Errorf("rsapply: batch %d: stage files: %w", b.Seq, err)
	}
	fault.Point(fault.ApplyStaged)
	if err := a.run(ctx, p); err != nil {
		a.forget(group)
		return a.explain(ctx, b, p, err)
	}
	a.mu.Lock()
	a.marks[group] = mark{pos: b.To, lineage: b.Lineage, exists: true}
	a.mu.Unlock()
	a.loss.report(p.losses)
	a.committed(ld)
	return apply.Result{Applied: true, Rows: p.rows}, nil
}

// decide applies the watermark rules; done means Apply returns res, err.
func decide(b *batch.Batch, m mark) (apply.Result, error, bool) {
	if m.lineage != "" && m.lineage != b.Lineage {
		return apply.Result{}, fmt.Errorf("%w: batch %d has lineage %q, the target follows %q; "+
			"if the checkpoint store was lost, reset the pipeline (--reset) and load again", apply.ErrLineage, b.Seq, b.Lineage, m.lineage), true
	}
	if b.To.Compare(m.pos) <= 0 {
		return apply.Result{}, nil, true
	}
	if m.pos.Less(b.From) {
		return apply.Result{}, fmt.Errorf("%w: batch %d covers %s..%s but the target is at %s", apply.ErrGap, b.Seq, b.From, b.To, m.pos), true
	}
	return apply.Result{}, nil, false
}

// explain turns a failed transaction into Apply's answer. A failed guard
// means the watermark moved since it was read: read it again and decide
// (a replay that another applier committed meanwhile is a no-op).
func (a *Applier) explain(ctx context.Context, b *batch.Batch, p *plan, err error) (apply.Result, error) {
	var rerr *redshift.Error
	if errors.As(err, &rerr) {
		switch rerr.Index {
		case p.guardIdx:
			m, rdErr := a.readMark(ctx, batch.Group(b.Pipeline, b.Target))
			if rdErr != nil {
				return apply.Result{}, fmt.Errorf("rsapply: batch %d: the watermark moved while applying, and reading it failed: %w", b.Seq, rdErr)
			}
			if res, derr, done := decide(b, m); done {
				return res, derr
			}
			return apply.Result{}, fmt.Errorf("rsapply: batch %d: %w: the watermark moved while the batch was staged; retrying", b.Seq, apply.ErrTransient)
		case p.checkIdx:
			return apply.Result{}, fmt.Errorf("rsapply: batch %d: COPY loaded a different number of rows than were staged (%d files): %w",
				b.Seq, len(p.stages), err)
		}
	}
	a.mu.Lock()
	clear(a.tables)
	a.mu.Unlock()
	return apply.Result{}, fmt.Errorf("rsapply: batch %d (%s..%s): %w", b.Seq, b.From, b.To, err)
}

func (a *Applier) plan(ctx context.Context, b *batch.Batch, m mark, ld *loadPlan) (*plan, error) {
	pl := &planner{a: a, b: b, ld: ld, p: &plan{guardIdx: -1, checkIdx: -1, losses: losses{}},
		keyDir: a.opt.Prefix + batch.Group(b.Pipeline, b.Target) + "/" + b.To.String() + "/"}
	pl.info = func(t batch.Table) (*tableInfo, error) { return a.info(ctx, t) }
	if err := pl.build(m.pos, m.lineage, m.exists); err != nil {
		return nil, err
	}
	n := len(pl.p.stmts)
	if _, ok := a.ex.(redshift.Stager); !ok {
		n += len(pl.p.staging)
	}
	if max := a.ex.MaxStatements(); max > 0 && n > max {
		return nil, fmt.Errorf("the batch needs %d statements in one transaction and the executor takes %d "+
			"(%d tables and column sets staged; each needs one or two statements in the transaction besides 5 of "+
			"pgferry's own); lower batch.max_rows, or use a direct connection (targets.%s.dsn)", n, max, len(pl.p.stages), b.Target)
	}
	return pl.p, nil
}

// run sends a plan: staging then the transaction, in one session. An
// executor that cannot stage gets both as one transaction; the error's
// Index is then made relative to p.stmts as Stager does.
func (a *Applier) run(ctx context.Context, p *plan) error {
	if st, ok := a.ex.(redshift.Stager); ok {
		return st.Staged(ctx, p.staging, p.stmts)
	}
	err := a.ex.Tx(ctx, append(slices.Clip(p.staging), p.stmts...))
	var rerr *redshift.Error
	if errors.As(err, &rerr) && rerr.Index >= 0 {
		if rerr.Index < len(p.staging) {
			rerr.Index = -2 - rerr.Index
		} else {
			rerr.Index -= len(p.staging)
		}
	}
	return err
}

// ResetPipeline removes the pipeline's watermarks and load state from the
// target (see ResetLoads), leaving replicated rows alone. Idempotent.
func (a *Applier) ResetPipeline(ctx context.Context) error {
	pipe := a.pipe
	if err := a.ex.Tx(ctx, []string{"DELETE FROM " + quote(Schema) + ".watermarks WHERE pipeline = " + pipe}); err != nil {
		return fmt.Errorf("watermarks: %w", err)
	}
	if err := a.ResetLoads(ctx); err != nil {
		return fmt.Errorf("load state: %w", err)
	}
	a.Forget()
	return nil
}

// Stats are an applier's cost drivers so far.
type Stats struct {
	Objects int64 // S3 objects written (data files and manifests)
	Calls   int64 // Data API requests (0 on a direct connection)
}

// Stats returns the applier's counters.
func (a *Applier) Stats() Stats {
	s := Stats{Objects: a.objects.Load()}
	if c, ok := a.ex.(interface{ Calls() int64 }); ok {
		s.Calls = c.Calls()
	}
	return s
}

func (a *Applier) put(ctx context.Context, p *plan) error {
	for _, s := range append(p.stages[:len(p.stages):len(p.stages)], p.files...) {
		data := s.file.gzip()
		if err := a.store.Put(ctx, s.dataKey, data); err != nil {
			return err
		}
		if err := a.store.Put(ctx, s.mfKey, manifest(a.opt.Bucket, s.dataKey, len(data))); err != nil {
			return err
		}
		a.objects.Add(2)
	}
	return nil
}

// cleanup deletes a batch's staged files. A failure leaves them for the
// bucket's lifecycle rule and is only logged: the batch is already
// decided.
func (a *Applier) cleanup(p *plan) {
	all := append(p.stages[:len(p.stages):len(p.stages)], p.files...)
	if len(all) == 0 {
		return
	}
	keys := make([]string, 0, 2*len(all))
	for _, s := range all {
		keys = append(keys, s.dataKey, s.mfKey)
	}
	ctx, stop := context.WithTimeout(context.Background(), 30*time.Second)
	defer stop()
	if err := a.store.Delete(ctx, keys); err != nil {
		a.log.Warn("could not delete staged COPY files", "bucket", a.opt.Bucket, "files", len(keys), "err", err)
	}
}

func (a *Applier) info(ctx context.Context, t batch.Table) (*tableInfo, error) {
	a.mu.Lock()
	ti, ok := a.tables[t]
	a.mu.Unlock()
	if ok {
		return ti, nil
	}
	ti, err := lookup(ctx, a.ex, t)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	a.tables[t] = ti
	a.mu.Unlock()
	return ti, nil
}

// forget drops the cached watermark of group and the catalog cache: after
// any failure the target may have changed.
func (a *Applier) forget(group string) {
	a.mu.Lock()
	delete(a.marks, group)
	clear(a.tables)
	a.loading = nil
	a.mu.Unlock()
}

// Forget drops cached catalog data; schema sync calls it after DDL.
func (a *Applier) Forget() {
	a.mu.Lock()
	clear(a.tables)
	clear(a.marks)
	a.loading = nil
	a.mu.Unlock()
}
