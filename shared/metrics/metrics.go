// Package metrics writes CloudWatch Embedded Metric Format (EMF) lines.
// In Lambda, a JSON line on stdout in this format becomes a metric with no
// API call; locally the same lines go to a file or nowhere.
//
// The metric names below are the contract between the functions and the
// alarms and dashboard in infra/: change both together.
package metrics

import (
	"encoding/json"
	"io"
	"sync"
	"time"
)

// Namespace is the CloudWatch namespace of every pgferry metric.
const Namespace = "pgferry"

// Dimension names. Every metric carries Pipeline; per-target metrics also
// carry Target.
const (
	DimPipeline = "Pipeline"
	DimTarget   = "Target"
	// DimTable, DimColumn and DimConversion qualify LossyConversions.
	DimTable      = "Table"
	DimColumn     = "Column"
	DimConversion = "Conversion"
)

// Metric names.
const (
	// ReplicationLag is the time from the newest source commit in a batch
	// to the moment its apply committed on a target (milliseconds).
	ReplicationLag = "ReplicationLag"
	// BatchesShipped and RowsShipped count what a drain put on the queue.
	BatchesShipped = "BatchesShipped"
	RowsShipped    = "RowsShipped"
	// BatchRows is the number of row changes in one shipped batch.
	BatchRows = "BatchRows"
	// RowsApplied counts row changes applied to a target.
	RowsApplied = "RowsApplied"
	// ApplyFailures counts failed apply attempts (each one is retried).
	ApplyFailures = "ApplyFailures"
	// PoisonBatches counts batches that exhausted their attempts and were
	// parked in the dead-letter queue; their target's group is blocked.
	PoisonBatches = "PoisonBatches"
	// GroupBlocked is 1 while a target's message group is blocked by a
	// parked batch, 0 otherwise.
	GroupBlocked = "GroupBlocked"
	// DrainFailures counts drain runs that ended in an error.
	DrainFailures = "DrainFailures"
	// EventBacklog is the number of captured events not yet shipped
	// (trigger capture).
	EventBacklog = "EventBacklog"
	// EventBacklogReadFailures is 1 when a drain run could not count the
	// event backlog (so EventBacklog is missing and its alarm blind), 0
	// when it could (trigger capture).
	EventBacklogReadFailures = "EventBacklogReadFailures"
	// RetainedWALBytes is the WAL the slot keeps on the source; SlotLagBytes
	// is how far the slot's confirmed position trails the current WAL
	// position (slot capture).
	RetainedWALBytes = "RetainedWALBytes"
	SlotLagBytes     = "SlotLagBytes"
	// RetainedWALReadFailures is 1 when a drain could not read its slot's
	// state (so RetainedWALBytes is missing), 0 when it could (slot
	// capture).
	RetainedWALReadFailures = "RetainedWALReadFailures"
	// SequenceSyncFailures is 1 when advancing a target's sequences to the
	// source's values failed, 0 when it succeeded (apply and schema-diff
	// emit it after each attempt, so an alarm on it clears by itself).
	SequenceSyncFailures = "SequenceSyncFailures"
	// LoadRowsCopied counts rows copied by the initial load;
	// LoadSecondsSinceProgress is how long the load has made no progress.
	LoadRowsCopied           = "LoadRowsCopied"
	LoadSecondsSinceProgress = "LoadSecondsSinceProgress"
	// LossyConversions counts values a Redshift target could not hold as
	// they were and that were changed to fit, per table, column and kind
	// of change (Conversion: truncated, saturated, rounded, replaced).
	LossyConversions = "LossyConversions"
)

// Unit is a CloudWatch unit.
type Unit string

// Units used here.
const (
	Count        Unit = "Count"
	Milliseconds Unit = "Milliseconds"
	Seconds      Unit = "Seconds"
	Bytes        Unit = "Bytes"
	None         Unit = "None"
)

// Metric is one value.
type Metric struct {
	Name  string
	Value float64
	Unit  Unit
}

// Dims are the dimensions of a set of metrics (name → value).
type Dims map[string]string

// EMF writes one EMF JSON line per Emit call. It is safe for concurrent
// use. A nil *EMF discards everything, so callers need no nil checks.
type EMF struct {
	mu  sync.Mutex
	w   io.Writer
	now func() time.Time
}

// New returns an emitter writing to w (os.Stdout in Lambda).
func New(w io.Writer) *EMF { return &EMF{w: w, now: time.Now} }

type emfMetric struct {
	Name string `json:"Name"`
	Unit Unit   `json:"Unit"`
}

type emfDirective struct {
	Namespace  string      `json:"Namespace"`
	Dimensions [][]string  `json:"Dimensions"`
	Metrics    []emfMetric `json:"Metrics"`
}

// Emit writes the metrics with the given dimensions. Write errors are
// ignored: metrics must never fail the work they describe.
func (e *EMF) Emit(dims Dims, ms ...Metric) {
	if e == nil || len(ms) == 0 {
		return
	}
	doc := map[string]any{}
	names := make([]string, 0, len(dims))
	for _, k := range []string{DimPipeline, DimTarget} {
		if v, ok := dims[k]; ok {
			names = append(names, k)
			doc[k] = v
		}
	}
	for k, v := range dims {
		if k != DimPipeline && k != DimTarget {
			names = append(names, k)
			doc[k] = v
		}
	}
	d := emfDirective{Namespace: Namespace, Dimensions: [][]string{names}}
	for _, m := range ms {
		d.Metrics = append(d.Metrics, emfMetric{Name: m.Name, Unit: m.Unit})
		doc[m.Name] = m.Value
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	doc["_aws"] = map[string]any{
		"Timestamp":         e.now().UnixMilli(),
		"CloudWatchMetrics": []emfDirective{d},
	}
	line, err := json.Marshal(doc)
	if err != nil {
		return
	}
	_, _ = e.w.Write(append(line, '\n'))
}
