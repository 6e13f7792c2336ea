package drain_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/pgferry/pgferry/shared/drain"
	"github.com/pgferry/pgferry/shared/metrics"
)

// backlogDrain is a drain whose backlog count returns n or err.
type backlogDrain struct {
	n   int64
	err error
}

func (d backlogDrain) Backlog(context.Context) (int64, bool, error) {
	return d.n, d.err == nil, d.err
}

// TestBacklogThatCannotBeCountedIsAMetricNotOnlyALogLine: the
// event-backlog alarm has no data while the drain cannot count events, so
// the failure itself must be a metric (1), and a later count clears it (0).
func TestBacklogThatCannotBeCountedIsAMetricNotOnlyALogLine(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, c := range []struct {
		name  string
		d     backlogDrain
		wants []string
	}{
		{"unreadable", backlogDrain{err: errors.New("connection refused")}, []string{`"EventBacklogReadFailures":1`}},
		{"counted", backlogDrain{n: 42}, []string{`"EventBacklog":42`, `"EventBacklogReadFailures":0`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			drain.EmitBacklog(context.Background(), metrics.New(&out), c.d, "p", log)
			for _, w := range c.wants {
				if !strings.Contains(out.String(), w) {
					t.Errorf("EMF output %q lacks %s", out.String(), w)
				}
			}
		})
	}
}
