package checkpoint

import (
	"testing"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/config"
)

// Checkpoints saved before the mode was recorded are told apart by shape:
// trigger capture always stores a snapshot, slot capture never does.
func TestModeIsRecordedOrReadFromTheCheckpointsShape(t *testing.T) {
	lsn := batch.Position{Tick: 0x1A2B3C40}
	for _, c := range []struct {
		name         string
		cp           Checkpoint
		want         string
		wantInferred bool
	}{
		{"never saved", Checkpoint{}, "", false},
		{"recorded trigger", Checkpoint{Pos: lsn, Lineage: "l", Capture: config.CaptureTrigger}, config.CaptureTrigger, false},
		{"recorded slot", Checkpoint{Pos: batch.Position{Tick: 3}, Prev: "1:1:", Lineage: "l", Capture: config.CaptureSlot}, config.CaptureSlot, false},
		{"trigger, window closed", Checkpoint{Pos: batch.Position{Tick: 3, Tx: batch.TxEnd}, Prev: "10:12:", Lineage: "l"}, config.CaptureTrigger, true},
		{"trigger, window open", Checkpoint{Pos: batch.Position{Tick: 4, Tx: 11}, Prev: "10:12:", Window: "12:14:", Lineage: "l"}, config.CaptureTrigger, true},
		{"slot, started, nothing shipped", Checkpoint{Pos: lsn, Lineage: "l"}, config.CaptureSlot, true},
		{"slot, shipped", Checkpoint{Pos: lsn, LastSent: lsn, Seq: 9, Lineage: "l"}, config.CaptureSlot, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, inferred := c.cp.Mode()
			if got != c.want || inferred != c.wantInferred {
				t.Fatalf("Mode() = %q, %v; want %q, %v", got, inferred, c.want, c.wantInferred)
			}
		})
	}
}
