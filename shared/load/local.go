package load

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// RunLocal copies every chunk of plans not yet recorded as done, with
// parallelism goroutines, largest tables first, then completes each table
// and waits until the change stream has handed every one over (the drain
// and apply must be running meanwhile). A failing chunk is retried a few
// times with backoff before the load gives up; whatever was copied stays
// recorded, so the next run resumes.
func (l *Loader) RunLocal(ctx context.Context, plans []*Plan, parallelism int) error {
	var jobs []Job
	for _, p := range plans {
		done, err := l.Store.Done(ctx, p)
		if err != nil {
			return err
		}
		if n := len(done); n > 0 {
			l.Log.Info("resuming: chunks already copied are not copied again", "target", p.Target, "table", p.Table.Table, "done", n, "chunks", len(p.Chunks))
		}
		jobs = append(jobs, p.Jobs(done)...)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	work := make(chan Job)
	var wg sync.WaitGroup
	for range max(1, parallelism) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range work {
				if err := l.copyRetrying(ctx, j); err != nil {
					cancel(err)
					return
				}
			}
		}()
	}
feed:
	for _, j := range jobs {
		select {
		case work <- j:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return l.handOver(ctx, plans)
}

func (l *Loader) copyRetrying(ctx context.Context, j Job) error {
	var err error
	for attempt := 1; attempt <= 4; attempt++ {
		if err = l.Copy(ctx, j); err == nil || ctx.Err() != nil {
			return err
		}
		l.Log.Warn("chunk failed; retrying", "target", j.Target, "table", j.Table.Table, "chunk", j.Chunk.N, "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt*attempt) * 500 * time.Millisecond):
		}
	}
	return fmt.Errorf("load: %s chunk %d failed 4 times: %w", j.Table.Table, j.Chunk.N, err)
}

// handOver completes every plan's table (writing marks that a crash may
// have left unwritten) and waits until the stream has handed it over.
func (l *Loader) handOver(ctx context.Context, plans []*Plan) error {
	pending := map[*Plan]bool{}
	for _, p := range plans {
		if _, err := l.Complete(ctx, p.Target, p.Table.Table, p.LoadID); err != nil {
			return err
		}
		pending[p] = true
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for len(pending) > 0 {
		for p := range pending {
			st, found, err := l.Targets[p.Target].LoadStatus(ctx, p.Table.Table)
			if err != nil {
				return err
			}
			if !found || st.LoadID != p.LoadID {
				return fmt.Errorf("load: %s on target %s was restarted by another load (now %q)", p.Table.Table, p.Target, st.LoadID)
			}
			if st.Loaded {
				if err := l.Store.Finish(ctx, p); err != nil {
					return err
				}
				delete(pending, p)
			}
		}
		select {
		case <-ctx.Done():
			return errors.Join(ErrNotHandedOver, context.Cause(ctx))
		case <-tick.C:
		}
	}
	return nil
}
