package rsapply

import (
	"log/slog"
	"sort"
	"sync"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/metrics"
	"github.com/pgferry/pgferry/shared/redshift/rstype"
)

// lossKey names one kind of loss in one column.
type lossKey struct {
	table  batch.Table
	column string
	kind   rstype.Loss
}

// losses counts the lossy conversions of one batch; they are reported
// only once the batch commits, so a retried batch is not counted twice.
type losses map[lossKey]int

func (l losses) add(t batch.Table, col string, kind rstype.Loss) {
	if kind != rstype.Exact {
		l[lossKey{t, col, kind}]++
	}
}

// lossReporter emits the metric for every committed loss and logs the
// first loss of each kind in each table and column once per process.
type lossReporter struct {
	pipeline, target string
	emf              *metrics.EMF
	log              *slog.Logger
	mu               sync.Mutex
	logged           map[lossKey]bool
}

func (r *lossReporter) report(l losses) {
	keys := make([]lossKey, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.table != b.table {
			return a.table.String() < b.table.String()
		}
		if a.column != b.column {
			return a.column < b.column
		}
		return a.kind < b.kind
	})
	for _, k := range keys {
		r.emf.Emit(metrics.Dims{
			metrics.DimPipeline: r.pipeline, metrics.DimTarget: r.target,
			metrics.DimTable: k.table.String(), metrics.DimColumn: k.column, metrics.DimConversion: k.kind.String(),
		}, metrics.Metric{Name: metrics.LossyConversions, Value: float64(l[k]), Unit: metrics.Count})
		r.mu.Lock()
		first := !r.logged[k]
		r.logged[k] = true
		r.mu.Unlock()
		if first {
			r.log.Warn("value changed to fit the Redshift column (logged once per table, column and kind; the metric counts every one)",
				"table", k.table.String(), "column", k.column, "conversion", k.kind.String(), "values", l[k],
				"metric", metrics.LossyConversions)
		}
	}
}
