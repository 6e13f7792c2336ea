// Package apply turns queued batches into target writes.
package apply

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
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
)

// Class says what to do with a failed message.
type Class int

const (
	// Retry: a transient condition (network, restart, lock, serialization);
	// the message goes back to the queue and is tried again.
	Retry Class = iota
	// Terminal: retrying cannot help without a fix (a constraint only the
	// target has, a value the target cannot hold); after the bounded
	// attempts it goes to the dead-letter queue and an alarm fires.
	Terminal
)

// Classify decides, in one place, whether an error is worth retrying.
// The default for an unknown error is Retry: retries are bounded by the
// queue's receive count, so an unknown error ends in the dead-letter
// queue rather than being dropped.
func Classify(err error) Class {
	if err == nil {
		return Retry
	}
	if errors.Is(err, ErrLineage) {
		return Terminal
	}
	if errors.Is(err, ErrSchemaBehind) || errors.Is(err, ErrGap) {
		return Retry
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return Retry
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code[:2] {
		case "08", "40", "53", "55", "57", "58": // connection, rollback, resources, lock, operator, system
			return Retry
		case "22", "23", "42", "44": // data, integrity, syntax/access, check option
			return Terminal
		}
		return Retry
	}
	// Network errors, pgconn.SafeToRetry errors and anything unknown take
	// the default.
	return Retry
}
