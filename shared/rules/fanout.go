package rules

import (
	"context"
	"time"

	"github.com/pgferry/pgferry/shared/batch"
)

// Fanout folds captured changes into one compacted batch per target,
// each shaped by its target's rules before compaction. Targets without
// rules share one compactor, so a pipeline without rules costs what it
// did before. It is not safe for concurrent use.
type Fanout struct {
	set     *Set
	targets []string
	shaped  map[string]*batch.Compactor // targets with rules
	plain   *batch.Compactor            // every other target
	events  int
	// at is the commit time of the open transaction, shared by the rows
	// of its soft deletes and filled in by Commit.
	at batch.Value
}

// NewFanout returns a fanout for targets (set may be nil: no rules).
func NewFanout(set *Set, targets []string) *Fanout {
	f := &Fanout{set: set, targets: targets, shaped: map[string]*batch.Compactor{}}
	for _, name := range targets {
		if set != nil && set.Target(name) != nil {
			f.shaped[name] = &batch.Compactor{}
		} else if f.plain == nil {
			f.plain = &batch.Compactor{}
		}
	}
	return f
}

// Add folds one change, in source order, into every target's batch. An
// error (a rule that cannot be honoured) leaves the fanout unusable until
// Reset: the caller must not ship what it holds.
func (f *Fanout) Add(ctx context.Context, ch batch.Change) error {
	f.events += len(ch.Old) + len(ch.New)
	if f.plain != nil {
		if err := f.plain.Add(ch); err != nil {
			return err
		}
	}
	for name, comp := range f.shaped {
		t := f.set.targets[name]
		p, err := t.Plan(ctx, ch.Table, ch.Columns, ch.Key)
		if err != nil {
			return err
		}
		if f.at == nil && p.soft {
			s := ""
			f.at = &s
		}
		out, err := p.Apply(ch, f.at)
		if err != nil {
			return err
		}
		for _, c := range out {
			if err := comp.Add(c); err != nil {
				return err
			}
		}
	}
	return nil
}

// Commit ends the open transaction: its soft deletes are stamped with
// its commit time (Unix milliseconds).
func (f *Fanout) Commit(unixMs int64) {
	if f.at != nil {
		*f.at = time.UnixMilli(unixMs).UTC().Format("2006-01-02 15:04:05.000-07")
		f.at = nil
	}
}

// Splittable reports whether what the fanout holds can leave before the
// open transaction commits: not while it holds soft deletes of that
// transaction, whose commit time Commit has yet to stamp.
func (f *Fanout) Splittable() bool { return f.at == nil }

// Events returns the source row events added since Reset (before rules).
func (f *Fanout) Events() int { return f.events }

// Epochs returns target's compacted batch.
func (f *Fanout) Epochs(target string) []batch.Epoch {
	if c, ok := f.shaped[target]; ok {
		return c.Epochs()
	}
	if f.plain == nil {
		return nil
	}
	return f.plain.Epochs()
}

// Reset empties the fanout for the next batch.
func (f *Fanout) Reset() {
	if f.plain != nil {
		f.plain.Reset()
	}
	for _, c := range f.shaped {
		c.Reset()
	}
	f.events, f.at = 0, nil
}
