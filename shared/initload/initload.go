// Package initload is the initial load's orchestration: which tables,
// how they are planned, queued, copied and reported, for the
// initial-load and load functions and for the local runner. What a load
// does to one table and chunk is package load's.
package initload

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/load"
	"github.com/pgferry/pgferry/shared/metrics"
	"github.com/pgferry/pgferry/shared/rules"
	"github.com/pgferry/pgferry/shared/verify"
)

// Options select what an initial load copies.
type Options struct {
	// Tables are schema-qualified patterns narrowing the configured tables
	// (empty: all of them).
	Tables []string
	// Reload copies tables again even if an earlier load finished.
	Reload bool
	// ChunkRows and Parallelism override the configuration when non-zero.
	ChunkRows, Parallelism int
	// Progress receives the progress bar (nil: none).
	Progress io.Writer
}

// Tables lists the configured tables that match patterns (all of them
// when patterns is empty), plain tables and partitioned roots.
func Tables(ctx context.Context, cfg *config.Config, src *pgxpool.Pool, patterns []string) ([]batch.Table, error) {
	all, err := verify.Tables(ctx, src, cfg)
	if err != nil {
		return nil, err
	}
	if len(patterns) == 0 {
		return all, nil
	}
	var pats []config.Pattern
	for _, p := range patterns {
		pat, err := config.ParsePattern(strings.TrimSpace(p))
		if err != nil {
			return nil, fmt.Errorf("load tables %q: %w", p, err)
		}
		pats = append(pats, pat)
	}
	var out []batch.Table
	for _, t := range all {
		for _, p := range pats {
			if p.Match(t.Schema, t.Name) {
				out = append(out, t)
				break
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("load tables %s: no configured table matches", strings.Join(patterns, ", "))
	}
	return out, nil
}

// NewLoader wires a loader of the pipeline's tables into targets (by
// name), through capture (load marks) and store (plans and progress);
// emf nil discards its metrics.
func NewLoader(cfg *config.Config, src *pgxpool.Pool, targets map[string]load.Target, capture load.Capture, store load.Store, emf *metrics.EMF, log *slog.Logger) *load.Loader {
	return &load.Loader{Pipeline: cfg.Name, Src: src, Targets: targets, Capture: capture, Store: store, Metrics: emf, Log: log.With("fn", "load"), Rules: rules.ForSource(cfg, src)}
}

// Run (capture installed: see load.Capture) plans or resumes each table, copies the
// chunks with cfg.Load.Parallelism workers (drain and apply must be
// running, so other tables keep flowing and the loading tables' changes
// are held), and returns once every table is handed over to the change
// stream. A killed run resumes where it stopped: copied chunks are not
// copied again.
func Run(ctx context.Context, cfg *config.Config, store load.Store, src *pgxpool.Pool, targets map[string]load.Target, capture load.Capture,
	opts Options, log *slog.Logger) error {
	loader := NewLoader(cfg, src, targets, capture, store, nil, log)
	tables, err := Tables(ctx, cfg, src, opts.Tables)
	if err != nil {
		return err
	}
	chunkRows, par := cfg.Load.ChunkRows, cfg.Load.Parallelism
	if opts.ChunkRows > 0 {
		chunkRows = opts.ChunkRows
	}
	if opts.Parallelism > 0 {
		par = opts.Parallelism
	}
	var plans []*load.Plan
	for _, target := range cfg.TargetNames() {
		ps, err := loader.Prepare(ctx, target, tables, load.Options{ChunkRows: chunkRows, DropIndexes: cfg.Load.DropsIndexes(), Reload: opts.Reload})
		if err != nil {
			return err
		}
		plans = append(plans, ps...)
	}
	if len(plans) == 0 {
		log.Info("initial load: nothing to copy")
		return nil
	}
	done := map[*load.Plan]map[int]bool{}
	for _, p := range plans {
		if done[p], err = store.Done(ctx, p); err != nil {
			return err
		}
	}
	var bar *load.Bar
	barCtx, stopBar := context.WithCancel(ctx)
	var barDone sync.WaitGroup
	if opts.Progress != nil {
		bar = load.NewBar(opts.Progress, plans, done)
		loader.OnProgress = bar.Update
		barDone.Add(1)
		go func() { defer barDone.Done(); bar.Loop(barCtx) }()
	}
	started := time.Now()
	err = loader.RunLocal(ctx, plans, par)
	stopBar()
	barDone.Wait()
	if bar != nil {
		fmt.Fprintln(opts.Progress, "pgferry:", bar.Summary())
	}
	if err != nil {
		return err
	}
	log.Info("initial load done: every table is handed over to the change stream", "tables", len(plans), "took", time.Since(started).Round(time.Millisecond))
	return nil
}
