package localrun

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/pgferry/pgferry/shared/apply"
	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/queue/sqsfifo"
)

// Progress counts what the runner did and prints a line a second.
type Progress struct {
	W io.Writer

	mu                          sync.Mutex
	capBatches, capTxns, capEvs int
	appBatches, appRows, replay int
	lags                        []time.Duration // capture-to-apply, per applied batch
}

// Shipped records a batch the drain queued.
func (p *Progress) Shipped(b *batch.Batch) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.capBatches++
	p.capTxns += b.Txns
	p.capEvs += b.Events
}

// Applied records an applied (or replayed) batch.
func (p *Progress) Applied(b *batch.Batch, r apply.Result) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !r.Applied {
		p.replay++
		return
	}
	p.appBatches++
	p.appRows += r.Rows
	if b.CapturedAt > 0 {
		p.lags = append(p.lags, time.Since(time.UnixMilli(b.CapturedAt)))
	}
}

// Lag returns the median and 99th percentile capture-to-apply lag.
func (p *Progress) Lag() (p50, p99 time.Duration, n int) {
	p.mu.Lock()
	l := slices.Clone(p.lags)
	p.mu.Unlock()
	if len(l) == 0 {
		return 0, 0, 0
	}
	slices.Sort(l)
	return l[len(l)/2], l[min(len(l)-1, len(l)*99/100)], len(l)
}

func (p *Progress) line(q *sqsfifo.Queue, ctx context.Context) string {
	visible, inflight, err := q.Depth(ctx)
	p.mu.Lock()
	defer p.mu.Unlock()
	lag := "-"
	if n := len(p.lags); n > 0 {
		lag = p.lags[n-1].Round(time.Millisecond).String()
	}
	qs := fmt.Sprintf("%d queued, %d in flight", visible, inflight)
	if err != nil {
		qs = "queue depth unknown"
	}
	return fmt.Sprintf("captured %d rows in %d txns (%d batches) | applied %d batches, %d rows (%d replays skipped) | %s | lag %s",
		p.capEvs, p.capTxns, p.capBatches, p.appBatches, p.appRows, p.replay, qs, lag)
}

// Loop prints a progress line every second until ctx ends.
func (p *Progress) Loop(ctx context.Context, q *sqsfifo.Queue) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fmt.Fprintln(p.W, "pgferry:", p.line(q, ctx))
		}
	}
}

// Summary is the final line.
func (p *Progress) Summary() string {
	p50, p99, n := p.Lag()
	p.mu.Lock()
	defer p.mu.Unlock()
	s := fmt.Sprintf("captured %d rows in %d transactions, applied %d batches (%d net rows)", p.capEvs, p.capTxns, p.appBatches, p.appRows)
	if n > 0 {
		s += fmt.Sprintf("; capture-to-apply lag p50 %s, p99 %s over %d batches", p50.Round(time.Millisecond), p99.Round(time.Millisecond), n)
	}
	return s
}
