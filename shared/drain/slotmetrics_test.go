package drain_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/url"
	"testing"
	"time"

	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/metrics"
	"github.com/pgferry/pgferry/shared/testenv"
)

// TestUnreadableSlotStateIsReportedNotSilent: when the drain cannot reach
// the source (its credentials were rotated, a network rule changed, the
// source fails over) the slot keeps retaining WAL while the source's
// applications write on. The retained-WAL figure is then missing, which
// the retained-WAL alarm treats as all clear; RetainedWALReadFailures = 1
// must say that WAL retention is not being watched, and go back to 0 once
// the state can be read again.
func TestUnreadableSlotStateIsReportedNotSilent(t *testing.T) {
	dsn := testenv.NewDB(t, "src")
	direct := testenv.Pool(t, dsn)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.NewProxy(t, u.Host)
	u.Host = proxy.Addr()
	r := newRigOn(t, tDDL, u.String())
	r.cfg.Source.Capture = config.CaptureSlot
	t.Cleanup(func() {
		r.src.Close()
		_, _ = direct.Exec(context.Background(), `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, r.cfg.SlotName())
	})

	var out bytes.Buffer
	emf := metrics.New(&out)
	r.run(r.slotDrainer("first", 100, r.store, r.q, emf))
	last := func() map[string]any {
		t.Helper()
		lines := bytes.Split(bytes.TrimSpace(out.Bytes()), []byte("\n"))
		var doc map[string]any
		if err := json.Unmarshal(lines[len(lines)-1], &doc); err != nil {
			t.Fatalf("metrics output %q: %v", out.String(), err)
		}
		return doc
	}
	if doc := last(); doc[metrics.RetainedWALReadFailures] != 0.0 || doc[metrics.RetainedWALBytes] == nil {
		t.Fatalf("after a healthy drain the metrics are %v, want RetainedWALBytes and RetainedWALReadFailures = 0", doc)
	}

	proxy.Cut()
	out.Reset()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	_, err = r.slotDrainer("cut off", 100, r.store, r.q, emf).Run(ctx)
	cancel()
	if err == nil {
		t.Fatal("the drain succeeded without reaching the source")
	}
	if out.Len() == 0 {
		t.Fatalf("a drain that cannot reach the source emitted no metric at all (err %v)", err)
	}
	if doc := last(); doc[metrics.RetainedWALReadFailures] != 1.0 || doc[metrics.DimPipeline] != r.cfg.Name {
		t.Fatalf("with the source unreachable the metrics are %v, want RetainedWALReadFailures = 1", doc)
	}

	proxy.Restore()
	r.run(r.slotDrainer("back", 100, r.store, r.q, emf))
	if doc := last(); doc[metrics.RetainedWALReadFailures] != 0.0 {
		t.Fatalf("after the source is back the metrics are %v, want RetainedWALReadFailures = 0", doc)
	}
}
