package load

import (
	"bufio"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/metrics"
	"github.com/pgferry/pgferry/shared/rules"
)

// Plan is one table's load into one target.
type Plan struct {
	Pipeline string  `json:"pipeline"`
	Target   string  `json:"target"`
	LoadID   string  `json:"load_id"`
	Table    Table   `json:"table"`
	Chunks   []Chunk `json:"chunks"`
	// Finished: the table was handed over to the change stream.
	Finished bool `json:"finished,omitempty"`
}

// Job is one chunk to copy: the body of a chunk message.
type Job struct {
	Pipeline string `json:"pipeline"`
	Target   string `json:"target"`
	LoadID   string `json:"load_id"`
	Table    Table  `json:"table"`
	Chunks   int    `json:"chunks"`
	Chunk    Chunk  `json:"chunk"`
	// Parallelism, if set, is how many chunks one load invocation copies
	// at once (from the initial-load request).
	Parallelism int `json:"parallelism,omitempty"`
}

// Jobs returns p's chunks that done does not list, as jobs.
func (p *Plan) Jobs(done map[int]bool) []Job {
	var out []Job
	for _, c := range p.Chunks {
		if !done[c.N] {
			out = append(out, Job{Pipeline: p.Pipeline, Target: p.Target, LoadID: p.LoadID, Table: p.Table, Chunks: len(p.Chunks), Chunk: c})
		}
	}
	return out
}

// Target is a target database as the load writes it (pgapply.Applier).
// Every method is idempotent: a load that crashed anywhere is resumed by
// calling them again.
type Target interface {
	// BeginLoad marks t as loading under loadID, so that from the moment
	// it returns the change stream holds t's changes back until the load
	// mark hands t over. group is the pipeline's FIFO group for the
	// target (batch.Group). A different loadID restarts t's load. It
	// drops the indexes that chunks copied at different moments could
	// collide on, and with dropIndexes the other secondary indexes too.
	BeginLoad(ctx context.Context, group string, t batch.Table, loadID string, chunks int, dropIndexes bool) error
	// CopyChunk copies one chunk in one transaction: it clears the
	// chunk's key range, copies what src writes (COPY data, binary or
	// text as src is told), and records the chunk as copied. A chunk
	// already recorded, or of a load that is no longer t's current one,
	// is not copied again: copied is false and rows is the first copy's.
	CopyChunk(ctx context.Context, c ChunkCopy, src func(ctx context.Context, w io.Writer, binary bool) error) (rows int64, copied bool, err error)
	// RebuildIndexes recreates the non-unique indexes BeginLoad dropped;
	// called once every chunk is copied, before the load mark.
	RebuildIndexes(ctx context.Context, t batch.Table) error
	// LoadStatus returns t's load on the target; found is false if t was
	// never loaded there.
	LoadStatus(ctx context.Context, t batch.Table) (st State, found bool, err error)
}

// ChunkCopy is one chunk's copy into a loading table, as Target.CopyChunk
// takes it.
type ChunkCopy struct {
	Table  batch.Table
	LoadID string
	N      int
	// Columns are the columns copied (generated ones left out), in the
	// order the source writes them.
	Columns []string
	// Where is an SQL predicate over the table's columns selecting exactly
	// the chunk's rows; the target evaluates it to clear the range.
	Where string
	// Binary: copy in COPY's binary format, else text. The target may
	// copy a binary chunk again in text when a side rejects a value.
	Binary bool
}

// State is a table's load on one target, as Target.LoadStatus reports it.
type State struct {
	LoadID string
	Loaded bool // handed over to the change stream
	Chunks int  // planned chunks
	Copied int  // chunks copied (0 once loaded: the marks are cleared)
}

// Capture is the pipeline's change capture, whichever mode.
type Capture interface {
	// Install makes sure every matching table is captured: once it
	// returns, every later committed change reaches the stream.
	Install(ctx context.Context) error
	// Mark commits a load mark (batch.LoadMarks) into the stream.
	Mark(ctx context.Context, target string, t batch.Table, loadID string) error
}

// Store keeps plans and per-chunk progress (DynamoDB in loadstore).
type Store interface {
	// SavePlan stores p as the table's plan for its target, unless a plan
	// whose load is not finished is stored and replace is false; it
	// returns the plan that is stored afterwards, so that planners racing
	// each other end up with the same one.
	SavePlan(ctx context.Context, p *Plan, replace bool) (*Plan, error)
	// Plan returns the stored plan of t for target, or nil if none.
	Plan(ctx context.Context, pipeline, target string, t batch.Table) (*Plan, error)
	// ChunkDone records a chunk as copied (idempotent; copied says whether
	// this call's worker did the copy, for the count of copies).
	ChunkDone(ctx context.Context, j Job, rows, bytes int64, copied bool) error
	// Done returns the chunks of p recorded as copied.
	Done(ctx context.Context, p *Plan) (map[int]bool, error)
	// Finish records p's table as handed over to the change stream.
	Finish(ctx context.Context, p *Plan) error
}

// Loader copies chunks and hands finished tables over.
type Loader struct {
	Pipeline string
	Src      *pgxpool.Pool
	Targets  map[string]Target
	Capture  Capture
	Store    Store
	Metrics  *metrics.EMF // nil: none
	Log      *slog.Logger
	// OnProgress, if set, is told about copied bytes as they stream and
	// about each finished chunk (for the progress bar).
	OnProgress func(j Job, bytes int64, rows int64, done bool)
	// Rules, if set, shape each target's copy as they shape its batches
	// (see shape.go); a table a target does not get is not loaded there.
	Rules *rules.Set
}

// NewLoadID returns a random load generation id.
func NewLoadID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Options shape a load.
type Options struct {
	ChunkRows   int
	DropIndexes bool
	// Reload plans tables again even if an earlier load of them finished
	// or is under way (the earlier one's chunks are then ignored).
	Reload bool
}

// Prepare plans (or resumes) the load of tables into target and marks
// each one loading on the target. Capture must be installed first.
// Tables without a primary key are skipped (capture copies them), and
// so are tables whose load finished, unless opts.Reload. The returned
// plans are ordered largest table first.
func (l *Loader) Prepare(ctx context.Context, target string, tables []batch.Table, opts Options) ([]*Plan, error) {
	tgt, ok := l.Targets[target]
	if !ok {
		return nil, fmt.Errorf("load: target %q is not configured", target)
	}
	var plans []*Plan
	for _, t := range tables {
		if r := l.Rules.Target(target); r != nil && !r.Gets(t) {
			continue
		}
		p, err := l.Store.Plan(ctx, l.Pipeline, target, t)
		if err != nil {
			return nil, err
		}
		if p != nil && !opts.Reload {
			if p.Finished {
				l.Log.Info("table already loaded; skipping (reload to copy it again)", "target", target, "table", t)
				continue
			}
			l.Log.Info("resuming table load", "target", target, "table", t, "load", p.LoadID, "chunks", len(p.Chunks))
		} else {
			desc, err := Describe(ctx, l.Src, t)
			if err != nil {
				return nil, err
			}
			if len(desc.Key) == 0 {
				l.Log.Info("table has no primary key: capture copies its rows, exactly, when it installs its triggers", "table", t)
				continue
			}
			chunks, err := PlanChunks(ctx, l.Src, desc, opts.ChunkRows)
			if err != nil {
				return nil, err
			}
			p = &Plan{Pipeline: l.Pipeline, Target: target, LoadID: NewLoadID(), Table: desc, Chunks: chunks}
			if p, err = l.Store.SavePlan(ctx, p, opts.Reload); err != nil {
				return nil, err
			}
			l.Log.Info("table load planned", "target", target, "table", t, "load", p.LoadID, "chunks", len(p.Chunks), "est_rows", p.Table.EstRows)
		}
		if !p.Table.Binary {
			l.Log.Info("table copied in COPY text format (slower than binary)", "target", target, "table", t, "columns", p.Table.TextBecause)
		}
		if err := tgt.BeginLoad(ctx, batch.Group(l.Pipeline, target), t, p.LoadID, len(p.Chunks), opts.DropIndexes); err != nil {
			return nil, err
		}
		plans = append(plans, p)
	}
	slices.SortStableFunc(plans, func(a, b *Plan) int { return cmp.Compare(b.Table.EstBytes, a.Table.EstBytes) })
	return plans, nil
}

// Copy copies one chunk (or finds it copied), records it in the store,
// and when it was the table's last chunk, completes the table: rebuilds
// its non-unique indexes and writes the load mark. Safe to call again
// for the same job at any time.
func (l *Loader) Copy(ctx context.Context, j Job) error {
	tgt, ok := l.Targets[j.Target]
	if !ok {
		return fmt.Errorf("load: chunk for target %q, which is not configured", j.Target)
	}
	cc := ChunkCopy{
		Table: j.Table.Table, LoadID: j.LoadID, N: j.Chunk.N, Columns: j.Table.Columns,
		Where: Where(j.Table.Key, j.Chunk), Binary: j.Table.Binary,
	}
	var shape *rules.Plan
	if r := l.Rules.Target(j.Target); r != nil {
		p, err := r.Plan(ctx, j.Table.Table, j.Table.Columns, j.Table.Key)
		if err != nil {
			return err
		}
		shape, cc.Columns, cc.Binary = p, shapedColumns(p), false
	}
	var bytes atomic.Int64
	stop := l.watch(j, &bytes)
	rows, copied, err := tgt.CopyChunk(ctx, cc, func(ctx context.Context, w io.Writer, binary bool) error {
		// A chunk copied again in text starts its count again.
		bytes.Store(0)
		// The source sends one COPY message per row; batch them into 64 KiB
		// writes, so the target receives large COPY messages and the pipe
		// hands over a buffer at a time, not a row at a time.
		bw := bufio.NewWriterSize(countingWriter{w: w, n: &bytes}, 64<<10)
		if shape != nil {
			sw := newShapeWriter(shape, bw)
			if err := CopyOut(ctx, l.Src, j.Table, j.Chunk, false, sw); err != nil {
				return err
			}
			if err := sw.flush(); err != nil {
				return err
			}
			return bw.Flush()
		}
		if err := CopyOut(ctx, l.Src, j.Table, j.Chunk, binary, bw); err != nil {
			return err
		}
		return bw.Flush()
	})
	stop()
	if err != nil {
		return err
	}
	if err := l.Store.ChunkDone(ctx, j, rows, bytes.Load(), copied); err != nil {
		return err
	}
	if l.OnProgress != nil {
		l.OnProgress(j, bytes.Load(), rows, true)
	}
	if copied {
		l.Metrics.Emit(metrics.Dims{metrics.DimPipeline: j.Pipeline, metrics.DimTarget: j.Target},
			metrics.Metric{Name: metrics.LoadRowsCopied, Value: float64(rows), Unit: metrics.Count},
			metrics.Metric{Name: metrics.LoadSecondsSinceProgress, Value: 0, Unit: metrics.Seconds})
		l.Log.Debug("chunk copied", "target", j.Target, "table", j.Table.Table, "chunk", j.Chunk.N, "rows", rows, "bytes", bytes.Load())
	}
	_, err = l.Complete(ctx, j.Target, j.Table.Table, j.LoadID)
	return err
}

// watch reports streamed bytes of j every half second while it copies.
func (l *Loader) watch(j Job, bytes *atomic.Int64) (stop func()) {
	if l.OnProgress == nil {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				l.OnProgress(j, bytes.Load(), 0, false)
			}
		}
	}()
	return func() { close(done); <-finished }
}

// Complete checks whether every chunk of loadID is copied to target and,
// if so, rebuilds t's non-unique indexes and writes the load mark that
// hands t over (again, if an earlier call crashed before the hand-over;
// extra marks are ignored). It reports whether the table is complete.
func (l *Loader) Complete(ctx context.Context, target string, t batch.Table, loadID string) (bool, error) {
	tgt := l.Targets[target]
	st, found, err := tgt.LoadStatus(ctx, t)
	if err != nil {
		return false, err
	}
	if !found || st.LoadID != loadID {
		return false, nil
	}
	if st.Loaded {
		return true, nil
	}
	if st.Copied < st.Chunks {
		return false, nil
	}
	if err := tgt.RebuildIndexes(ctx, t); err != nil {
		return false, err
	}
	if err := l.Capture.Mark(ctx, target, t, loadID); err != nil {
		return false, err
	}
	l.Log.Info("table copied; load mark written, the change stream hands it over", "target", target, "table", t, "load", loadID)
	return true, nil
}

// ErrNotHandedOver means Wait gave up before every table was handed over.
var ErrNotHandedOver = errors.New("load: tables not yet handed over to the change stream")
