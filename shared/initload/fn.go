package initload

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/load"
	"github.com/pgferry/pgferry/shared/load/loadstore"
	"github.com/pgferry/pgferry/shared/metrics"
)

// ChunkQueue is the standard queue chunk jobs go to (sqsstd.Queue); the
// load function consumes it.
type ChunkQueue interface {
	// SendAll sends every body; duplicates are harmless.
	SendAll(ctx context.Context, bodies [][]byte) error
}

// Request is the payload of the initial-load function, invoked by
// hand (aws lambda invoke), for example
//
//	{"target": "replica", "tables": ["public.orders"], "chunk_rows": 200000, "parallelism": 4}
//
// Every field is optional. Action "status" reports progress (and emits
// the LoadSecondsSinceProgress metric) instead of starting a load.
type Request struct {
	Action      string   `json:"action,omitempty"` // "start" (default) or "status"
	Target      string   `json:"target,omitempty"` // one configured target; empty: every target
	Tables      []string `json:"tables,omitempty"` // patterns narrowing source.tables
	ChunkRows   int      `json:"chunk_rows,omitempty"`
	Parallelism int      `json:"parallelism,omitempty"` // chunks copied at once per load invocation
	Reload      bool     `json:"reload,omitempty"`      // copy again even if loaded before
}

// TableReport is one table's load in a Response.
type TableReport struct {
	Target     string `json:"target"`
	Table      string `json:"table"`
	LoadID     string `json:"load_id,omitempty"`
	Chunks     int64  `json:"chunks"`
	Queued     int    `json:"queued,omitempty"` // chunk messages sent by this call
	ChunksDone int64  `json:"chunks_done"`
	EstRows    int64  `json:"est_rows"`
	RowsCopied int64  `json:"rows_copied"`
	Finished   bool   `json:"finished"` // handed over to the change stream
	// SecondsSinceProgress is the time since a chunk was last copied.
	SecondsSinceProgress float64 `json:"seconds_since_progress,omitempty"`
}

// Response is what the initial-load function returns.
type Response struct {
	Tables []TableReport `json:"tables"`
}

func (r Request) targets(cfg *config.Config) ([]string, error) {
	if r.Target == "" {
		return cfg.TargetNames(), nil
	}
	if _, ok := cfg.Targets[r.Target]; !ok {
		return nil, fmt.Errorf("initial-load: target %q is not configured", r.Target)
	}
	return []string{r.Target}, nil
}

// Start is the initial-load function: it installs capture (so every
// later change is in the stream; the pipeline's load capture refuses a
// switched source.capture before it installs anything), plans or resumes each table's load,
// marks the tables loading on the targets and sends every chunk not yet
// copied to the chunk queue, largest tables first. Calling it again
// resumes: it re-sends the chunks still missing (duplicates are harmless),
// which is also how a load whose messages were lost is restarted.
func Start(ctx context.Context, cfg *config.Config, src *pgxpool.Pool, targets map[string]load.Target,
	store load.Store, capture load.Capture, q ChunkQueue, req Request, log *slog.Logger) (Response, error) {
	var resp Response
	names, err := req.targets(cfg)
	if err != nil {
		return resp, err
	}
	if err := capture.Install(ctx); err != nil {
		return resp, err
	}
	loader := NewLoader(cfg, src, targets, capture, store, nil, log)
	tables, err := Tables(ctx, cfg, src, req.Tables)
	if err != nil {
		return resp, err
	}
	chunkRows := cfg.Load.ChunkRows
	if req.ChunkRows > 0 {
		chunkRows = req.ChunkRows
	}
	for _, target := range names {
		plans, err := loader.Prepare(ctx, target, tables, load.Options{ChunkRows: chunkRows, DropIndexes: cfg.Load.DropsIndexes(), Reload: req.Reload})
		if err != nil {
			return resp, err
		}
		for _, p := range plans {
			done, err := store.Done(ctx, p)
			if err != nil {
				return resp, err
			}
			jobs := p.Jobs(done)
			bodies := make([][]byte, len(jobs))
			for i, j := range jobs {
				j.Parallelism = req.Parallelism
				if bodies[i], err = json.Marshal(j); err != nil {
					return resp, err
				}
			}
			if err := q.SendAll(ctx, bodies); err != nil {
				return resp, err
			}
			if len(jobs) == 0 {
				// Every chunk copied (a crash before the hand-over): the mark.
				if _, err := loader.Complete(ctx, target, p.Table.Table, p.LoadID); err != nil {
					return resp, err
				}
			}
			resp.Tables = append(resp.Tables, TableReport{Target: target, Table: p.Table.Table.String(), LoadID: p.LoadID,
				Chunks: int64(len(p.Chunks)), Queued: len(jobs), ChunksDone: int64(len(done)), EstRows: p.Table.EstRows})
			log.Info("chunks queued", "target", target, "table", p.Table.Table, "load", p.LoadID, "queued", len(jobs), "chunks", len(p.Chunks))
		}
	}
	return resp, nil
}

// Status reports every configured table's load (narrowed like a
// start request) and emits LoadSecondsSinceProgress per target: the
// longest time an unfinished load has gone without copying a chunk, 0
// when none is unfinished. Schedule it (every few minutes) so that the
// "load stalled" alarm sees the metric.
//
// The hand-over happens in the apply function when the change stream
// reaches a table's load mark; Status reads it from the target and
// records the plan finished.
func Status(ctx context.Context, cfg *config.Config, src *pgxpool.Pool, targets map[string]load.Target, store *loadstore.Store,
	req Request, emf *metrics.EMF) (Response, error) {
	var resp Response
	names, err := req.targets(cfg)
	if err != nil {
		return resp, err
	}
	tables, err := Tables(ctx, cfg, src, req.Tables)
	if err != nil {
		return resp, err
	}
	now := time.Now()
	for _, target := range names {
		stalled := 0.0
		for _, t := range tables {
			p, ok, err := store.Progress(ctx, cfg.Name, target, t)
			if err != nil {
				return resp, err
			}
			if !ok {
				continue
			}
			if !p.Finished {
				if p.Finished, err = finishIfHandedOver(ctx, cfg, targets[target], store, target, t); err != nil {
					return resp, err
				}
			}
			r := TableReport{Target: target, Table: t.String(), Chunks: p.Chunks, ChunksDone: p.ChunksDone, EstRows: p.EstRows,
				RowsCopied: p.Rows, Finished: p.Finished}
			if !p.Finished {
				r.SecondsSinceProgress = now.Sub(p.LastProgressAt).Seconds()
				stalled = max(stalled, r.SecondsSinceProgress)
			}
			resp.Tables = append(resp.Tables, r)
		}
		emf.Emit(metrics.Dims{metrics.DimPipeline: cfg.Name, metrics.DimTarget: target},
			metrics.Metric{Name: metrics.LoadSecondsSinceProgress, Value: stalled, Unit: metrics.Seconds})
	}
	return resp, nil
}

// CopyChunks is the load function's body: it copies the chunk of each
// message body, up to parallelism at once (a job's own Parallelism wins),
// and returns the indexes of the bodies that failed, to be retried by the
// queue. A chunk started too close to the deadline is not started.
func CopyChunks(ctx context.Context, loader *load.Loader, bodies [][]byte, parallelism int, log *slog.Logger) []int {
	jobs := make([]load.Job, len(bodies))
	var failed []int
	var mu sync.Mutex
	fail := func(i int) { mu.Lock(); failed = append(failed, i); mu.Unlock() }
	for i, b := range bodies {
		if err := json.Unmarshal(b, &jobs[i]); err != nil {
			log.Error("malformed chunk message", "err", err)
			fail(i)
			continue
		}
		if jobs[i].Parallelism > 0 {
			parallelism = jobs[i].Parallelism
		}
	}
	sem := make(chan struct{}, max(1, parallelism))
	var wg sync.WaitGroup
	for i := range jobs {
		if jobs[i].LoadID == "" {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if dl, ok := ctx.Deadline(); ok && time.Until(dl) < 30*time.Second {
				fail(i)
				return
			}
			if err := loader.Copy(ctx, jobs[i]); err != nil {
				log.Error("chunk failed", "target", jobs[i].Target, "table", jobs[i].Table.Table, "chunk", jobs[i].Chunk.N, "err", err)
				fail(i)
			}
		}()
	}
	wg.Wait()
	return failed
}

// finishIfHandedOver records t's plan finished if the target has handed
// the plan's load over.
func finishIfHandedOver(ctx context.Context, cfg *config.Config, lt load.Target, store *loadstore.Store, target string, t batch.Table) (bool, error) {
	if lt == nil {
		return false, nil
	}
	p, err := store.Plan(ctx, cfg.Name, target, t)
	if err != nil || p == nil {
		return false, err
	}
	st, found, err := lt.LoadStatus(ctx, t)
	if err != nil || !found || st.LoadID != p.LoadID || !st.Loaded {
		return false, err
	}
	return true, store.Finish(ctx, p)
}
