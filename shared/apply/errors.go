// Package apply turns queued batches into target writes.
package apply

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/aws/smithy-go"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgferry/pgferry/shared/checkpoint"
)

var (
	// ErrSchemaBehind means the target lacks a table, column or type the
	// batch needs. Schema sync resolves it; the batch is retried, never
	// skipped.
	ErrSchemaBehind = errors.New("apply: target schema is behind the source")
	// ErrGap means the batch starts after the target's watermark: an
	// earlier batch has not been applied (for example it is dead-lettered).
	// Applying this one would lose that batch's changes, so it waits.
	ErrGap = errors.New("apply: an earlier batch is missing")
	// ErrLineage means the batch comes from a different checkpoint
	// history than the one the target follows: the checkpoint store was
	// lost or reset while the target kept its watermark. Applying or
	// skipping could both be wrong, so it stops until an operator acts.
	ErrLineage = errors.New("apply: batch is from a different checkpoint lineage than the target")
	// ErrTransient marks a failure an adapter classified as transient
	// because its target reports races and outages as text, not SQLSTATE
	// (the Redshift Data API: serializable isolation violation 1023).
	ErrTransient = errors.New("apply: transient target failure")
)

// Class says what to do with a failed message.
type Class int

const (
	// Failed: the batch itself cannot be applied as it stands (a
	// constraint only the target has, a value the target cannot hold, an
	// undecodable message, or an error nobody classified). It is retried
	// apply.max_attempts times, then parked in the dead-letter queue with
	// its error attached, and an alarm fires. This is the default.
	Failed Class = iota
	// Transient: a dependency is unavailable or the transaction lost a
	// race (connection refused or reset, server shutting down, deadlock,
	// serialization failure, lock timeout, out of connections, throttled).
	// It is retried with backoff for as long as it lasts and never parks
	// the batch: an outage must not empty the queue into the DLQ.
	Transient
	// Blocked: the batch is fine but must wait — for an earlier batch of
	// its group that is parked (ErrGap), or for an operator (ErrLineage).
	// It is retried with backoff and never parked itself; the group's
	// blocked state is reported as a metric and by --until-idle.
	Blocked
)

func (c Class) String() string {
	switch c {
	case Transient:
		return "transient"
	case Blocked:
		return "blocked"
	}
	return "failed"
}

// Classify decides, in one place, what a failure means — of an apply, and
// of a drain run (whose Failed errors stop an --until-idle run at once). It looks at
// error identity, SQLSTATE codes and pgconn's own retry verdict, never at
// message text. Unknown errors are Failed: bounded retries end in the
// dead-letter queue, so an unknown error is parked, not dropped and not
// retried forever.
func Classify(err error) Class {
	if err == nil {
		return Failed
	}
	if errors.Is(err, ErrGap) || errors.Is(err, ErrLineage) {
		return Blocked
	}
	if errors.Is(err, ErrTransient) {
		return Transient
	}
	if errors.Is(err, checkpoint.ErrLeaseHeld) || errors.Is(err, checkpoint.ErrLeaseLost) || errors.Is(err, checkpoint.ErrStale) {
		// Another drain holds or took over the work; try again later.
		return Transient
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "40001", "40P01", // serialization failure, deadlock
			"55P03",                   // lock not available (lock_timeout)
			"57P01", "57P02", "57P03", // admin/crash shutdown, cannot connect now
			"53300": // too many connections
			return Transient
		}
		switch pgErr.Code[:2] {
		case "08": // connection exception
			return Transient
		}
		// Everything else the server said is about this batch: data
		// exceptions (22), integrity (23), undefined objects (42), …
		return Failed
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return Transient
	}
	if pgconn.SafeToRetry(err) || pgconn.Timeout(err) {
		return Transient
	}
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) {
		return Transient
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return Transient
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return Transient
	}
	// AWS errors (claim-check fetch): throttling and server faults are
	// transient; a client fault such as a missing payload object is not.
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		if apiErr.ErrorFault() == smithy.FaultServer {
			return Transient
		}
		switch apiErr.ErrorCode() {
		case "Throttling", "ThrottlingException", "SlowDown", "RequestTimeout", "ProvisionedThroughputExceededException":
			return Transient
		}
		return Failed
	}
	return Failed
}
