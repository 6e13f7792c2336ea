package drain

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pgferry/pgferry/shared/checkpoint"
	"github.com/pgferry/pgferry/shared/config"
)

// Objects names the capture objects of each mode found on the source.
type Objects struct {
	// Slot is the pipeline's replication slot when it exists ("" if not).
	Slot string
	// Triggers is the capture schema when trigger capture is installed in
	// it ("" if not).
	Triggers string
}

// of returns the name of mode's objects in o ("" when absent).
func (o Objects) of(mode string) string {
	if mode == config.CaptureSlot {
		return o.Slot
	}
	return o.Triggers
}

// Probe reports which capture objects exist on the source. It changes
// nothing there.
type Probe func(ctx context.Context) (Objects, error)

// ErrCaptureSwitch means source.capture asks for another capture mode than
// the one the pipeline runs with. Nothing was installed or sent.
var ErrCaptureSwitch = errors.New("source.capture: the pipeline runs with another capture mode")

// SwitchError is ErrCaptureSwitch with what was found and how to switch.
type SwitchError struct {
	// Current is the mode the pipeline runs with, Requested the one the
	// configuration asks for. They are equal when the checkpoint matches
	// the configuration but the other mode's objects are still on the
	// source (a switch made without --reset by an older version).
	Current, Requested string
	// FromSource: there is no checkpoint; the mode was read from the
	// objects on the source.
	FromSource bool
	// Saved is the checkpoint's time (zero if unknown).
	Saved time.Time
	// Inferred: the checkpoint predates the recorded mode, which was read
	// from the shape of its positions.
	Inferred bool
	// Objects are the capture objects on the source (when probed).
	Objects Objects
	// Config is the configuration file the remedy names ("" names it
	// generically); the local runner fills it in.
	Config string
}

func (e *SwitchError) Unwrap() error { return ErrCaptureSwitch }

func (e *SwitchError) Error() string {
	var b strings.Builder
	cfg := e.Config
	if cfg == "" {
		cfg = "<config file>"
	}
	other := e.Current
	if e.Current == e.Requested {
		other = config.CaptureSlot
		if e.Requested == config.CaptureSlot {
			other = config.CaptureTrigger
		}
	}
	switch {
	case e.Current == e.Requested:
		fmt.Fprintf(&b, "source.capture: the config asks for %q and the checkpoint is %q capture's, but %s of %q capture is still on the source: "+
			"the mode was switched without --reset, so changes made around the switch are probably missing on the targets", e.Requested, e.Current, describe(other, e.Objects), other)
	default:
		fmt.Fprintf(&b, "source.capture: this pipeline captures with %q (", e.Current)
		if e.FromSource {
			fmt.Fprintf(&b, "no checkpoint, but %s is on the source", describe(e.Current, e.Objects))
		} else {
			b.WriteString("checkpoint")
			if !e.Saved.IsZero() {
				b.WriteString(" of " + e.Saved.UTC().Format("2006-01-02 15:04:05 UTC"))
			}
			if e.Inferred {
				b.WriteString(", mode read from its positions")
			}
		}
		fmt.Fprintf(&b, "); the config asks for %q. Switching modes on a live pipeline would lose changes: positions of one mode mean nothing to the other", e.Requested)
	}
	if o := e.Objects.Slot; o != "" {
		fmt.Fprintf(&b, ". The replication slot %s keeps holding WAL on the source until it is dropped", o)
	}
	if o := e.Objects.Triggers; o != "" && other == config.CaptureTrigger {
		fmt.Fprintf(&b, ". The triggers keep writing every change into %s.events until they are removed", o)
	}
	fmt.Fprintf(&b, ". Nothing was installed or sent. To switch: keep source.capture: %s in %s; "+
		"run `go run ./functions/local --config %s --reset` (drops the slot, publication and capture schema with its triggers on the source, "+
		"purges the queues, deletes the checkpoint and the targets' watermarks; target rows stay); "+
		"TRUNCATE on every target the replicated tables without a primary key (capture copies them whole, they would end up twice); "+
		"then run `go run ./functions/local --config %s --initial-load --until-idle` to reload the targets (writes may go on meanwhile). "+
		"To keep the current mode instead, set source.capture: %s",
		e.Requested, cfg, cfg, cfg, other)
	return b.String()
}

// describe names mode's objects in o.
func describe(mode string, o Objects) string {
	if mode == config.CaptureSlot {
		return "the replication slot " + o.Slot
	}
	return "trigger capture in schema " + o.Triggers
}

// CheckCapture refuses (with a *SwitchError) to run capture mode want on
// a pipeline that runs with the other one: one whose checkpoint holds the
// other mode's positions (recorded, or read from their shape for older
// checkpoints, see checkpoint.Mode), or, with no checkpoint yet, whose
// source holds the other mode's objects (a slot or installed triggers,
// which keep capturing for a pipeline that is not reading them). It also
// refuses when the checkpoint matches but the other mode's objects are
// still there, left by a switch an older version let through. probe may be
// nil (then only the checkpoint is looked at). It changes nothing.
func CheckCapture(ctx context.Context, cp checkpoint.Checkpoint, want string, probe Probe) error {
	cur, inferred := cp.Mode()
	var objs Objects
	if probe != nil {
		var err error
		if objs, err = probe(ctx); err != nil {
			return err
		}
	}
	other := config.CaptureSlot
	if want == config.CaptureSlot {
		other = config.CaptureTrigger
	}
	switch {
	case cur != "" && cur != want, cur != "" && objs.of(other) != "":
		return &SwitchError{Current: cur, Requested: want, Saved: cp.Saved, Inferred: inferred, Objects: objs}
	case cur == "" && objs.of(other) != "":
		return &SwitchError{Current: other, Requested: want, FromSource: true, Objects: objs}
	}
	return nil
}
