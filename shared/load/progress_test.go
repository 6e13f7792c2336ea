package load

import (
	"bytes"
	"strings"
	"testing"

	"github.com/pgferry/pgferry/shared/batch"
)

// TestSummarySaysWhatAnEarlierRunCopied: a resumed load that finds every
// chunk copied must not read as a load that copied nothing.
func TestSummarySaysWhatAnEarlierRunCopied(t *testing.T) {
	p := &Plan{Target: "replica", Table: Table{Table: batch.Table{Schema: "public", Name: "t"}, EstRows: 100},
		Chunks: []Chunk{{N: 0}, {N: 1}, {N: 2}}}
	var out bytes.Buffer
	b := NewBar(&out, []*Plan{p}, map[*Plan]map[int]bool{p: {0: true, 1: true}})
	b.Update(Job{Target: "replica", Table: p.Table, Chunk: Chunk{N: 2}}, 1000, 33, true)
	s := b.Summary()
	if !strings.Contains(s, "copied 33 rows") || !strings.Contains(s, "resumed: 2 chunks were copied by an earlier run") {
		t.Fatalf("summary %q: want this run's 33 rows and the 2 chunks copied before", s)
	}
	if s := NewBar(&out, []*Plan{p}, nil).Summary(); strings.Contains(s, "resumed") {
		t.Fatalf("summary of a fresh load %q mentions a resume", s)
	}
}
