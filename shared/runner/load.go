package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/apply"
	"github.com/pgferry/pgferry/shared/apply/pgapply"
	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/capture/slot"
	"github.com/pgferry/pgferry/shared/capture/trigger"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/load"
	"github.com/pgferry/pgferry/shared/load/loadstore"
	"github.com/pgferry/pgferry/shared/metrics"
	"github.com/pgferry/pgferry/shared/rules"
	"github.com/pgferry/pgferry/shared/verify"
)

// LoadOptions select what an initial load copies.
type LoadOptions struct {
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

// LoadCapture returns the pipeline's capture as the initial load uses it.
// Installing it copies only keyless tables' existing rows into the stream:
// the load copies the keyed ones. Slot capture reads the checkpoint from
// state when it is installed (see slotLoadCapture).
func LoadCapture(cfg *config.Config, src *pgxpool.Pool, state CheckpointLoader, log *slog.Logger) (load.Capture, error) {
	switch cfg.Source.Capture {
	case config.CaptureTrigger:
		c := trigger.New(src, cfg, log)
		c.KeylessCopyOnly = true
		return c, nil
	case config.CaptureSlot:
		c := slot.New(src, cfg, log)
		c.KeylessCopyOnly = true
		return &slotLoadCapture{Capture: c, state: state}, nil
	}
	return nil, fmt.Errorf("source.capture: the initial load does not support %q capture in this build", cfg.Source.Capture)
}

// LoadTables lists the configured tables that match patterns (all of them
// when patterns is empty), plain tables and partitioned roots.
func LoadTables(ctx context.Context, cfg *config.Config, src *pgxpool.Pool, patterns []string) ([]batch.Table, error) {
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

// NewLoader wires a loader over the targets' appliers.
func NewLoader(cfg *config.Config, src *pgxpool.Pool, targets map[string]apply.Applier, capture load.Capture, store load.Store, emf *metrics.EMF, log *slog.Logger) (*load.Loader, error) {
	lt := map[string]load.Target{}
	for name, a := range targets {
		t, ok := a.(load.Target)
		if !ok {
			return nil, fmt.Errorf("targets.%s: this kind of target cannot be loaded", name)
		}
		lt[name] = t
	}
	return &load.Loader{Pipeline: cfg.Name, Src: src, Targets: lt, Capture: capture, Store: store, Metrics: emf, Log: log.With("fn", "load"), Rules: rules.ForSource(cfg, src)}, nil
}

// InitialLoad runs the initial load of the configured tables into every
// target, per DESIGN §6 (--initial-load), with l draining and applying
// on its timers meanwhile, and returns once every table is handed over to
// the change stream (l is stopped again). See RunWithLoad for the runner,
// which keeps one set of loops for the load and the catch-up after it.
func InitialLoad(ctx context.Context, cfg *config.Config, a *AWS, src *pgxpool.Pool, targets map[string]apply.Applier, l *Local,
	lastSent func(context.Context) (batch.Position, error), opts LoadOptions, log *slog.Logger) error {
	capture, err := installForLoad(ctx, cfg, a.State, src, log)
	if err != nil {
		return err
	}
	bg, stopBG := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = l.Run(bg, false, lastSent) }()
	defer func() { stopBG(); wg.Wait() }()
	return runLoad(ctx, cfg, a.Loads, src, targets, capture, opts, log)
}

// installForLoad installs capture before anything else runs: the drain
// would otherwise install it first, copying keyed tables' rows into the
// stream as well (source.copy_existing).
func installForLoad(ctx context.Context, cfg *config.Config, state CheckpointLoader, src *pgxpool.Pool, log *slog.Logger) (load.Capture, error) {
	capture, err := LoadCapture(cfg, src, state, log)
	if err != nil {
		return nil, err
	}
	if err := CheckCapture(ctx, cfg, state, src); err != nil {
		return nil, err
	}
	// Capture before any copy: every change after this reaches the stream.
	if err := capture.Install(ctx); err != nil {
		return nil, err
	}
	return capture, nil
}

// RunWithLoad is l.Run with the initial load running beside the drain and
// apply loops: with untilIdle it returns once the load has handed every
// table over and every change is applied; a failed load ends the run with
// the load's error. The runner's own progress line stays quiet while the
// load's bar draws.
func RunWithLoad(ctx context.Context, l *Local, untilIdle bool, lastSent func(context.Context) (batch.Position, error),
	cfg *config.Config, a *AWS, src *pgxpool.Pool, targets map[string]apply.Applier, opts LoadOptions, log *slog.Logger) error {
	capture, err := installForLoad(ctx, cfg, a.State, src, log)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var loading atomic.Bool
	loading.Store(true)
	l.Busy = loading.Load
	if l.Progress != nil && opts.Progress != nil {
		l.Progress.W = quietWhile{w: l.Progress.W, quiet: loading.Load}
	}
	go func() {
		if err := runLoad(ctx, cfg, a.Loads, src, targets, capture, opts, log); err != nil {
			cancel(err)
			return
		}
		loading.Store(false)
		if !untilIdle {
			log.Info("initial load done; replicating on")
		}
	}()
	err = l.Run(ctx, untilIdle, lastSent)
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return err
}

// quietWhile drops writes while quiet reports true.
type quietWhile struct {
	w     io.Writer
	quiet func() bool
}

func (q quietWhile) Write(p []byte) (int, error) {
	if q.quiet() {
		return len(p), nil
	}
	return q.w.Write(p)
}

// runLoad (capture installed) plans or resumes each table, copies the
// chunks with cfg.Load.Parallelism workers (drain and apply must be
// running, so other tables keep flowing and the loading tables' changes
// are held), and returns once every table is handed over to the change
// stream. A killed run resumes where it stopped: copied chunks are not
// copied again.
func runLoad(ctx context.Context, cfg *config.Config, store load.Store, src *pgxpool.Pool, targets map[string]apply.Applier, capture load.Capture,
	opts LoadOptions, log *slog.Logger) error {
	loader, err := NewLoader(cfg, src, targets, capture, store, nil, log)
	if err != nil {
		return err
	}
	tables, err := LoadTables(ctx, cfg, src, opts.Tables)
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

// PrintLoadCounts writes a row-count comparison of the configured tables
// (narrowed by patterns) between the source and every target to w, and
// returns an error naming how many differ.
func PrintLoadCounts(ctx context.Context, cfg *config.Config, src *pgxpool.Pool, pools []*pgxpool.Pool, patterns []string, w io.Writer) error {
	tables, err := LoadTables(ctx, cfg, src, patterns)
	if err != nil {
		return err
	}
	byName := map[string]*pgxpool.Pool{}
	for i, n := range cfg.TargetNames() {
		byName[n] = pools[i]
	}
	bad := 0
	fmt.Fprintf(w, "%-40s %-10s %12s %12s  %s\n", "table", "target", "source rows", "target rows", "count")
	counts := verify.Counts(ctx, src, byName, cfg.TargetNames(), tables)
	for _, c := range counts {
		status := "match"
		switch {
		case c.Err != nil:
			status = "ERROR: " + c.Err.Error()
		case !c.OK():
			status = "DIFFERENT"
		}
		if !c.OK() {
			bad++
		}
		fmt.Fprintf(w, "%-40s %-10s %12d %12d  %s\n", c.Table, c.Target, c.SourceRows, c.TargetRows, status)
	}
	if bad > 0 {
		return fmt.Errorf("load: %d of %d row counts differ", bad, len(counts))
	}
	fmt.Fprintf(w, "load: all %d row counts match\n", len(counts))
	return nil
}

// ResetLoads forgets the pipeline's initial loads, for Reset: the plans
// and chunk records of every configured table in DynamoDB, and the load
// state on every target (rebuilding any index a load had dropped).
func ResetLoads(ctx context.Context, cfg *config.Config, store *loadstore.Store, src *pgxpool.Pool, targets []*pgxpool.Pool) error {
	for i, t := range targets {
		if err := pgapply.ResetLoads(ctx, t, cfg.Name); err != nil {
			return fmt.Errorf("reset: targets.%s load state: %w", cfg.TargetNames()[i], err)
		}
	}
	tables, err := verify.Tables(ctx, src, cfg)
	if err != nil {
		return err
	}
	for _, target := range cfg.TargetNames() {
		for _, t := range tables {
			if err := store.Delete(ctx, cfg.Name, target, t); err != nil {
				return fmt.Errorf("reset: %w", err)
			}
		}
	}
	return nil
}

// slotLoadCapture installs slot capture for the initial load. Whether the
// pipeline has read from its slot before decides what a missing slot
// means (a fresh start, or a lost slot that must not be silently
// re-created), so it asks the checkpoint store, as the drain does.
type slotLoadCapture struct {
	*slot.Capture
	state CheckpointLoader
}

func (s *slotLoadCapture) Install(ctx context.Context) error {
	cp, err := s.state.Load(ctx)
	if err != nil {
		return err
	}
	_, err = s.Capture.Install(ctx, cp.Lineage != "")
	return err
}
