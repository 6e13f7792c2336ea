package drain_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/checkpoint"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/drain"
)

// CheckCapture lets a mode run only on its own checkpoint and when the
// other mode's objects are not on the source; every refusal names
// source.capture, both modes and what to run.
func TestCheckCaptureRefusesTheOtherModesPipeline(t *testing.T) {
	saved := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	trig := checkpoint.Checkpoint{Pos: batch.Position{Tick: 3, Tx: batch.TxEnd}, Prev: "10:12:", Lineage: "l", Saved: saved}
	slotCP := checkpoint.Checkpoint{Pos: batch.Position{Tick: 0x1A2B3C40}, Lineage: "l", Capture: config.CaptureSlot, Saved: saved}
	none := drain.Objects{}
	slotObj := drain.Objects{Slot: "pgferry_p"}
	trigObj := drain.Objects{Triggers: "pgferry_p"}
	for _, c := range []struct {
		name string
		cp   checkpoint.Checkpoint
		want string
		objs drain.Objects
		// refused: the words the error must hold; nil: allowed.
		refused []string
	}{
		{"fresh pipeline", checkpoint.Checkpoint{}, config.CaptureSlot, none, nil},
		{"own recorded mode", slotCP, config.CaptureSlot, slotObj, nil},
		{"own inferred mode", trig, config.CaptureTrigger, trigObj, nil},
		{"slot checkpoint, trigger asked", slotCP, config.CaptureTrigger, slotObj,
			[]string{"source.capture", `captures with "slot"`, "checkpoint of 2025-03-04 05:06:07 UTC", `asks for "trigger"`, "slot pgferry_p keeps holding WAL", "--reset", "--initial-load"}},
		{"old trigger checkpoint, slot asked", trig, config.CaptureSlot, trigObj,
			[]string{"source.capture", `captures with "trigger"`, "mode read from its positions", `asks for "slot"`, "pgferry_p.events", "--reset"}},
		{"no checkpoint, slot on the source, trigger asked", checkpoint.Checkpoint{}, config.CaptureTrigger, slotObj,
			[]string{"source.capture", `captures with "slot"`, "no checkpoint, but the replication slot pgferry_p is on the source", "holding WAL"}},
		{"no checkpoint, triggers on the source, slot asked", checkpoint.Checkpoint{}, config.CaptureSlot, trigObj,
			[]string{`captures with "trigger"`, "trigger capture in schema pgferry_p is on the source"}},
		{"trigger checkpoint, a slot left behind", trig, config.CaptureTrigger, drain.Objects{Slot: "pgferry_p", Triggers: "pgferry_p"},
			[]string{"source.capture", "switched without --reset", "slot pgferry_p keeps holding WAL", "--reset"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			probe := func(context.Context) (drain.Objects, error) { return c.objs, nil }
			err := drain.CheckCapture(context.Background(), c.cp, c.want, probe)
			if c.refused == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, drain.ErrCaptureSwitch) {
				t.Fatalf("err = %v, want ErrCaptureSwitch", err)
			}
			for _, w := range c.refused {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q:\n%s", w, err)
				}
			}
		})
	}
}
