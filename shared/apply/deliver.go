package apply

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/metrics"
	"github.com/pgferry/pgferry/shared/queue"
)

// Parker keeps messages that cannot be applied.
type Parker interface {
	// Park durably stores m in the dead-letter queue, in its group's order,
	// with attrs attached. It does not remove m from its own queue; the
	// caller does that after Park returns nil.
	Park(ctx context.Context, m queue.Message, attrs map[string]string) error
}

// Attributes a parked message carries.
const (
	AttrError    = "pgferry-error"
	AttrClass    = "pgferry-class"
	AttrAttempts = "pgferry-attempts"
	AttrBatch    = "pgferry-batch"
	AttrParkedAt = "pgferry-parked-at"
)

// maxAttrError bounds the error text attached to a parked message (the
// body plus attributes must stay under the SQS message size limit).
const maxAttrError = 4096

// Delivery is the outcome of one delivery attempt.
type Delivery struct {
	Batch  *batch.Batch // decoded batch, nil if decoding failed
	Result Result       // on success
	Err    error        // nil on success (applied or replay)
	Class  Class        // of Err
	Parked bool         // moved to the dead-letter queue: remove the original now
	Retry  time.Duration
}

// Describe names the delivered batch for logs and errors.
func (d Delivery) Describe(m queue.Message) string {
	if d.Batch == nil {
		return "message " + m.DedupID
	}
	b := d.Batch
	return fmt.Sprintf("batch %d (%s..%s) for target %s", b.Seq, b.From, b.To, b.Target)
}

// Deliver applies one message and decides what happens to it:
//   - applied (or a replay): Err is nil; the caller deletes the message;
//   - Transient or Blocked failure: the caller hides it for Retry and it
//     comes back; these never park, however long they last;
//   - Failed on its maxAttempts-th receive: it is parked with its error
//     (Parked true) and the caller deletes the original. Until it is
//     re-driven, later batches of its group fail with ErrGap (Blocked).
//
// A failure to park is returned as a Transient failure: the message stays
// in its queue and nothing is lost.
func (h *Handler) Deliver(ctx context.Context, m queue.Message, park Parker) Delivery {
	b, res, err := h.Handle(ctx, m.Body)
	d := Delivery{Batch: b, Result: res, Err: err}
	dims := metrics.Dims{metrics.DimPipeline: h.Pipeline}
	if b != nil {
		dims[metrics.DimTarget] = b.Target
	}
	if err == nil {
		ms := []metrics.Metric{{Name: metrics.GroupBlocked, Value: 0, Unit: metrics.None}}
		if res.Applied {
			ms = append(ms, metrics.Metric{Name: metrics.RowsApplied, Value: float64(res.Rows), Unit: metrics.Count})
			if b.CapturedAt > 0 {
				lag := time.Since(time.UnixMilli(b.CapturedAt))
				ms = append(ms, metrics.Metric{Name: metrics.ReplicationLag, Value: float64(lag.Milliseconds()), Unit: metrics.Milliseconds})
			}
		}
		h.Metrics.Emit(dims, ms...)
		return d
	}
	d.Class = Classify(err)
	ms := []metrics.Metric{{Name: metrics.ApplyFailures, Value: 1, Unit: metrics.Count}}
	switch d.Class {
	case Blocked:
		ms = append(ms, metrics.Metric{Name: metrics.GroupBlocked, Value: 1, Unit: metrics.None})
		d.Retry = backoff(m.Receives, 20*time.Second)
	case Transient:
		d.Retry = backoff(m.Receives, 30*time.Second)
	case Failed:
		if m.Receives < h.MaxAttempts || park == nil {
			d.Retry = backoff(m.Receives, 10*time.Second)
			break
		}
		if perr := park.Park(ctx, m, parkAttrs(d, m)); perr != nil {
			d.Err = fmt.Errorf("%w (and parking it failed: %w)", err, perr)
			d.Class = Transient
			d.Retry = backoff(m.Receives, 30*time.Second)
			break
		}
		d.Parked = true
		ms = append(ms, metrics.Metric{Name: metrics.PoisonBatches, Value: 1, Unit: metrics.Count},
			metrics.Metric{Name: metrics.GroupBlocked, Value: 1, Unit: metrics.None})
	}
	h.Metrics.Emit(dims, ms...)
	return d
}

// parkAttrs are the attributes attached to a parked message.
func parkAttrs(d Delivery, m queue.Message) map[string]string {
	msg := d.Err.Error()
	if len(msg) > maxAttrError {
		msg = msg[:maxAttrError] + "…"
	}
	return map[string]string{
		AttrError:    msg,
		AttrClass:    d.Class.String(),
		AttrAttempts: strconv.Itoa(m.Receives),
		AttrBatch:    d.Describe(m),
		AttrParkedAt: time.Now().UTC().Format(time.RFC3339),
	}
}

// backoff is exponential in the receive count, capped, with full jitter
// over its upper half so that retries of many groups spread out.
func backoff(receives int, limit time.Duration) time.Duration {
	d := min(time.Second<<min(max(receives-1, 0), 10), limit)
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}
