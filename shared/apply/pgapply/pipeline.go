package pgapply

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pgferry/pgferry/shared/apply"
	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/fault"
	"github.com/pgferry/pgferry/shared/pgtext"
)

// Pipeline lets Apply send a batch of small segments as one pipeline
// (applyPipelined). A variable so benchmarks can compare both ways.
var Pipeline = true

// errFullPath: the batch needs what only a transaction driven statement
// by statement does (catalog reads, staging tables, savepoints, tables
// being loaded); the pipelined attempt gives way to it.
var errFullPath = errors.New("pgapply: the batch needs the full apply path")

// applyPipelined applies b in one round trip when it can: BEGIN, the
// session settings, the watermark row's lock and a guard, every merge,
// the watermark update and COMMIT go out as one pipeline. The guard lets
// the transaction go on only where the full path would apply the batch
// (lineage matches, the batch is past the watermark and does not leave a
// gap, no table of the pipeline is being loaded); otherwise it fails the
// statement, the server skips the rest and the transaction rolls back.
// Any failure, the guard's included, leaves the target as it was and
// returns false: the caller then applies the batch the full way, which
// decides (duplicate, gap, lineage, load hold-back) and classifies errors
// exactly as it always has. Only batches whose segments are all small and
// whose tables' catalog data is cached qualify (see errFullPath).
func (a *Applier) applyPipelined(ctx context.Context, b *batch.Batch) (apply.Result, bool) {
	if !Pipeline {
		return apply.Result{}, false
	}
	marks := batch.LoadMarks(a.pipeline)
	for _, ep := range b.Epochs {
		for _, s := range ep.Segments {
			if s.Table == marks {
				return apply.Result{}, false
			}
		}
	}
	sch := pgx.Identifier{Schema}.Sanitize()
	group := batch.Group(b.Pipeline, b.Target)
	w := &writer{a: a}
	w.queue("begin", "BEGIN")
	w.queue("settings", a.settings)
	w.queue("watermark", fmt.Sprintf(`INSERT INTO %s.watermarks (pipeline, msg_group, tick, tx, seq)
		VALUES ($1, $2, 0, 0, 0) ON CONFLICT DO NOTHING`, sch), b.Pipeline, group)
	w.queue("watermark", fmt.Sprintf(`SELECT 1 FROM %s.watermarks WHERE pipeline = $1 AND msg_group = $2 FOR UPDATE`, sch),
		b.Pipeline, group)
	// The row is locked: this statement reads its latest version. The
	// cast of a text that is no number is what fails it.
	w.queue("guard", fmt.Sprintf(`SELECT CASE WHEN (w.lineage = '' OR w.lineage = $3)
			AND (w.tick, w.tx) < ($4::numeric, $5::bigint) AND (w.tick, w.tx) >= ($6::numeric, $7::bigint)
			AND NOT EXISTS (SELECT FROM %[1]s.loads l WHERE l.pipeline = $8 AND l.state = 'loading')
		THEN 0 ELSE CAST('pgferry: batch not applicable in one round trip at ' || w.tick || '.' || w.tx AS integer) END
		FROM %[1]s.watermarks w WHERE w.pipeline = $1 AND w.msg_group = $2`, sch),
		b.Pipeline, group, b.Lineage, b.To.Tick, b.To.Tx, b.From.Tick, b.From.Tx, a.pipeline)
	for _, ep := range b.Epochs {
		if err := w.epoch(ctx, ep); err != nil {
			return apply.Result{}, false
		}
	}
	w.queue("watermark", fmt.Sprintf(`UPDATE %s.watermarks SET tick = $3, tx = $4, seq = $5, lineage = $6, applied_at = now()
		WHERE pipeline = $1 AND msg_group = $2`, sch), b.Pipeline, group, b.To.Tick, b.To.Tx, b.Seq, b.Lineage)
	w.queue("commit", "COMMIT")
	// Nothing is written before the pipeline's COMMIT: a crash here or
	// one statement later leaves the target the same.
	fault.Point(fault.ApplyStaged)

	a.pipeSent.Add(1)
	c, err := a.pool.Acquire(ctx)
	if err != nil {
		return apply.Result{}, false
	}
	defer c.Release()
	br := c.Conn().SendBatch(ctx, &w.pending)
	var failed error
	for range w.what {
		if _, err := br.Exec(); err != nil {
			failed = err
			break
		}
	}
	if err := br.Close(); failed == nil {
		failed = err
	}
	if failed != nil {
		if c.Conn().PgConn().TxStatus() != 'I' {
			// If this fails too, the pool drops the connection on release
			// (it is still in a transaction).
			_, _ = c.Conn().Exec(ctx, "ROLLBACK")
		}
		a.log.Debug("pipelined apply gave way to the full path", "batch", b.Seq, "error", failed)
		return apply.Result{}, false
	}
	a.pipelined.Add(1)
	return apply.Result{Applied: true, Rows: w.rows}, true
}

// applySettings is the apply transaction's settings as one statement,
// set_config with is_local, which a pipeline can carry (a string of
// several statements it cannot): pgtext.Settings; generic plans (the
// merge statements of small segments are prepared once per table shape,
// and on a pipeline of many tables each runs too rarely for the server
// to stop planning it anew every time); and, where the target allows it,
// session_replication_role = replica.
func applySettings(replicaRole bool) string {
	settings := append(slices.Clone(pgtext.Settings), [2]string{"plan_cache_mode", "force_generic_plan"})
	if replicaRole {
		settings = append(settings, [2]string{"session_replication_role", "replica"})
	}
	calls := make([]string, len(settings))
	for i, s := range settings {
		calls[i] = fmt.Sprintf("set_config('%s', '%s', true)", s[0], s[1])
	}
	return "SELECT " + strings.Join(calls, ", ")
}
