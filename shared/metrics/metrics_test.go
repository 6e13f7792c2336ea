package metrics

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

func TestEmitWritesOneEMFLinePerCall(t *testing.T) {
	var buf bytes.Buffer
	e := New(&buf)
	e.now = func() time.Time { return time.UnixMilli(1700000000000) }
	e.Emit(Dims{DimPipeline: "p", DimTarget: "t"}, Metric{RowsApplied, 42, Count}, Metric{ReplicationLag, 7.5, Milliseconds})
	var doc map[string]any
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatalf("not one JSON line: %v: %q", err, buf.String())
	}
	if got, want := doc[RowsApplied], 42.0; got != want {
		t.Fatalf("%s = %v, want %v", RowsApplied, got, want)
	}
	if got, want := doc[DimTarget], "t"; got != want {
		t.Fatalf("Target = %v, want %v", got, want)
	}
	aws := doc["_aws"].(map[string]any)
	if got, want := aws["Timestamp"], 1700000000000.0; got != want {
		t.Fatalf("Timestamp = %v, want %v", got, want)
	}
	d := aws["CloudWatchMetrics"].([]any)[0].(map[string]any)
	if got, want := d["Namespace"], Namespace; got != want {
		t.Fatalf("Namespace = %v, want %v", got, want)
	}
	dims := d["Dimensions"].([]any)[0].([]any)
	if len(dims) != 2 || dims[0] != DimPipeline || dims[1] != DimTarget {
		t.Fatalf("Dimensions = %v, want [Pipeline Target]", dims)
	}
	if ms := d["Metrics"].([]any); len(ms) != 2 {
		t.Fatalf("Metrics = %v, want 2 entries", ms)
	}
}

func TestNilEmitterDiscards(t *testing.T) {
	var e *EMF
	e.Emit(Dims{DimPipeline: "p"}, Metric{RowsApplied, 1, Count}) // must not panic
}
