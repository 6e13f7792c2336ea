// Package slot captures changes from a logical replication slot read with
// the pgoutput plugin over the streaming replication protocol. It manages
// the pipeline's slot and publication (both named pgferry_<name>), keeps
// the publication's table list in step with the configured patterns, and
// decodes committed transactions, in commit order, into batch changes
// whose values are byte-identical to trigger capture's.
//
// The slot is the source of truth for what is left to read: it is
// confirmed only up to positions the caller has durably shipped and
// checkpointed (Stream.Confirm), so a crash anywhere re-reads.
package slot

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/drain"
)

// The slot drainer reads the slot through its SlotSource port, whose
// types (defined by the drain) this package speaks under its own names.
var _ drain.SlotSource = (*Capture)(nil)

// LSN is a WAL position (a pg_lsn).
type LSN = drain.LSN

// Capture is slot capture on one source database.
type Capture struct {
	pool *pgxpool.Pool
	cfg  *config.Config
	slot string
	pub  string
	// prefix tags pgferry's own logical decoding messages (heartbeats and
	// rows copied when a table joins the publication).
	prefix string
	log    *slog.Logger

	// KeylessCopyOnly limits the copy of existing rows when a table joins
	// the publication to tables without a primary key: the initial load
	// copies the keyed ones (chunked, in parallel). Set by the initial
	// load's installer, as for trigger capture.
	KeylessCopyOnly bool
}

// New returns slot capture for cfg's source. It does not touch the
// database until Install or Open. pool is an ordinary (non-replication)
// connection pool on the source; the replication connection is opened
// with the pool's connection settings.
func New(pool *pgxpool.Pool, cfg *config.Config, log *slog.Logger) *Capture {
	return &Capture{pool: pool, cfg: cfg, slot: cfg.SlotName(), pub: cfg.PublicationName(), prefix: cfg.SlotName(), log: log}
}

// ErrSlotLost means the slot cannot give the changes the pipeline still
// needs: it was invalidated (its WAL was removed, see
// max_slot_wal_keep_size) or dropped after capture had made progress.
// Changes may be missing on the targets; the only recovery is to start
// again from a fresh copy.
var ErrSlotLost = errors.New("slot: the replication slot is lost")

func lostError(slot, why string) error {
	return fmt.Errorf("%w: slot %s %s; changes committed since the last confirmed position may be gone. "+
		"Recover by re-running the initial load: run pgferry with --reset, then with --initial-load", ErrSlotLost, slot, why)
}

// ErrNoReplicaIdentity means replicated tables have no usable replica
// identity and source.replica_identity_full is off: publishing them would
// make their UPDATE and DELETE statements fail on the source.
var ErrNoReplicaIdentity = errors.New("slot: tables without a usable replica identity")
