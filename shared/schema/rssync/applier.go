package rssync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/pgferry/pgferry/shared/apply"
	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/schema"
)

// Applier decorates a Redshift target's applier (rsapply.Applier) with
// schema sync:
//   - a schema job (batch.Batch.Schema) runs Sync, then goes to the
//     wrapped applier, which moves the watermark past it; a job at or
//     below the watermark (a replay) runs nothing. The DDL and the
//     watermark are two transactions (VARCHAR widenings cannot share one
//     anyway); Sync is idempotent, so a crash between them is repaired by
//     the redelivered job;
//   - with apply_schema, batches are written into that schema;
//   - a batch that fails with apply.ErrSchemaBehind (a table or column
//     the target lacks) triggers a Sync and is retried once, after its
//     tables and columns are adapted to the target: names a sync renamed
//     become the current names (the registry keeps the former ones), and
//     columns the target no longer has (dropped on the source after the
//     batch was captured) are left out. If the retry fails too, the error
//     goes on to the normal retry and dead-letter path.
type Applier struct {
	next    apply.Applier
	sync    *Syncer
	capture string
	log     *slog.Logger
}

var _ apply.Applier = (*Applier)(nil)

// NewApplier wraps next, the Redshift applier of the target s syncs.
// capture is the pipeline's capture schema (config.Config.CaptureSchema):
// its load marks keep their schema under apply_schema.
func NewApplier(next apply.Applier, s *Syncer, capture string, log *slog.Logger) *Applier {
	if log == nil {
		log = slog.Default()
	}
	return &Applier{next: next, sync: s, capture: capture, log: log}
}

// Syncer returns the syncer the applier uses.
func (a *Applier) Syncer() *Syncer { return a.sync }

// Watermark is the wrapped applier's.
func (a *Applier) Watermark(ctx context.Context, group string) (batch.Position, error) {
	return a.next.Watermark(ctx, group)
}

// Apply applies a batch or runs a schema job; see Applier.
func (a *Applier) Apply(ctx context.Context, b *batch.Batch) (apply.Result, error) {
	if b.Schema != nil {
		return a.job(ctx, b)
	}
	mb := a.mapBatch(b)
	res, err := a.next.Apply(ctx, mb)
	if err == nil || !errors.Is(err, apply.ErrSchemaBehind) {
		return res, err
	}
	plan, serr := a.sync.Sync(ctx)
	if serr != nil {
		return res, fmt.Errorf("%w (schema sync before a retry failed: %w)", err, serr)
	}
	a.forget()
	adapted, changes, aerr := a.adapt(ctx, mb)
	if aerr != nil {
		return res, fmt.Errorf("%w (adapting the batch to the target failed: %w)", err, aerr)
	}
	a.log.Info("target schema was behind the batch; synced, retrying", "seq", b.Seq, "statements", len(plan.Steps),
		"adapted", changes, "err", err)
	res, rerr := a.next.Apply(ctx, adapted)
	if rerr != nil {
		return res, fmt.Errorf("%w (after schema sync: %d statements, batch adapted: %v)", rerr, len(plan.Steps), changes)
	}
	return res, nil
}

// job runs a schema job.
func (a *Applier) job(ctx context.Context, b *batch.Batch) (apply.Result, error) {
	wm, err := a.next.Watermark(ctx, batch.Group(b.Pipeline, b.Target))
	if err != nil {
		return apply.Result{}, fmt.Errorf("rssync: schema job %d: %w", b.Seq, err)
	}
	if b.To.Compare(wm) > 0 && !wm.Less(b.From) {
		plan, err := a.sync.Sync(ctx)
		if err != nil {
			return apply.Result{}, fmt.Errorf("rssync: schema job %d (%s..%s): %w", b.Seq, b.From, b.To, err)
		}
		a.forget()
		if !plan.Empty() {
			a.log.Info("schema job applied", "seq", b.Seq, "statements", len(plan.Steps), "reason", b.Schema.Reason)
		}
	}
	// The wrapped applier applies the replay, gap and lineage rules and
	// moves the watermark.
	return a.next.Apply(ctx, b)
}

// forget tells the wrapped applier that the target's catalog changed.
func (a *Applier) forget() {
	if f, ok := a.next.(interface{ Forget() }); ok {
		f.Forget()
	}
}

// mapBatch moves a batch's tables into apply_schema (the pipeline's own
// load marks stay where they are) and folds their names to lower case,
// as Redshift folds identifiers (and as sync created the tables).
func (a *Applier) mapBatch(b *batch.Batch) *batch.Batch {
	to := a.sync.applySchema
	return rewrite(b, func(t batch.Table) batch.Table {
		if to != "" && t.Schema != a.capture {
			t.Schema = to
		}
		return batch.Table{Schema: strings.ToLower(t.Schema), Name: strings.ToLower(t.Name)}
	}, nil)
}

// rewrite copies b with its tables renamed by tf and each segment's
// columns passed through cf (nil: unchanged).
func rewrite(b *batch.Batch, tf func(batch.Table) batch.Table, cf func(*batch.Segment)) *batch.Batch {
	out := *b
	out.Epochs = make([]batch.Epoch, len(b.Epochs))
	for i, ep := range b.Epochs {
		ne := batch.Epoch{Segments: make([]batch.Segment, len(ep.Segments))}
		for _, t := range ep.Truncate {
			ne.Truncate = append(ne.Truncate, tf(t))
		}
		for j, s := range ep.Segments {
			s.Table = tf(s.Table)
			if cf != nil {
				cf(&s)
			}
			ne.Segments[j] = s
		}
		out.Epochs[i] = ne
	}
	return &out
}

// adapt renames a batch's tables and columns that a sync renamed since it
// was captured, and leaves out the columns the target no longer has. It
// returns the adapted batch and what changed.
func (a *Applier) adapt(ctx context.Context, b *batch.Batch) (*batch.Batch, []string, error) {
	reg, err := loadRegistry(ctx, a.sync.ex, a.sync.pipeline)
	if err != nil {
		return nil, nil, err
	}
	cur, err := readCurrent(ctx, a.sync.ex)
	if err != nil {
		return nil, nil, err
	}
	var changes []string
	tf := func(t batch.Table) batch.Table {
		q := fold(schema.QName{Schema: t.Schema, Name: t.Name})
		if cur.tables[q] != nil {
			return t
		}
		if now, ok := reg.RenamedTo(q); ok {
			changes = append(changes, fmt.Sprintf("table %s is now %s", t, now))
			return batch.Table{Schema: now.Schema, Name: now.Name}
		}
		return t
	}
	cf := func(s *batch.Segment) {
		q := fold(schema.QName{Schema: s.Table.Schema, Name: s.Table.Name})
		ct := cur.tables[q]
		if ct == nil {
			return
		}
		former := reg.FormerNames(q)
		var keep []int
		cols := make([]string, 0, len(s.Columns))
		for i, c := range s.Columns {
			n := strings.ToLower(c)
			if ct.col(n) == nil {
				if now, ok := former[n]; ok && ct.col(now) != nil {
					changes = append(changes, fmt.Sprintf("column %s.%s is now %s", q, c, now))
					cols, keep = append(cols, now), append(keep, i)
					s.Key = renameKey(s.Key, c, now)
					continue
				}
				if !slices.Contains(s.Key, c) {
					changes = append(changes, fmt.Sprintf("column %s.%s is gone; left out", q, c))
					continue
				}
			}
			cols, keep = append(cols, c), append(keep, i)
		}
		if len(keep) == len(s.Columns) {
			s.Columns = cols
			return
		}
		s.Columns = cols
		pick := func(rows []batch.Row) []batch.Row {
			out := make([]batch.Row, len(rows))
			for i, r := range rows {
				nr := make(batch.Row, len(keep))
				for j, k := range keep {
					nr[j] = r[k]
				}
				out[i] = nr
			}
			return out
		}
		s.Upserts = pick(s.Upserts)
		if len(s.Key) == 0 {
			s.Deletes = pick(s.Deletes) // keyless: deletes are full rows
		}
	}
	return rewrite(b, tf, cf), changes, nil
}

func renameKey(key []string, from, to string) []string {
	if !slices.Contains(key, from) {
		return key
	}
	out := slices.Clone(key)
	for i, k := range out {
		if k == from {
			out[i] = to
		}
	}
	return out
}
