package slot

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/pgferry/pgferry/shared/drain"
)

// Status is the slot as pg_replication_slots shows it (see
// drain.SlotStatus).
type Status = drain.SlotStatus

// Status reads the slot's state. A missing slot is Status{Exists: false}
// and no error; a slot of the same name that is not this pipeline's kind
// (another database or plugin) is an error.
func (c *Capture) Status(ctx context.Context) (Status, error) {
	var (
		st                 Status
		walStatus, reason  *string
		conflicting        bool
		confirmed, restart *string
		plugin             string
		sameDB             bool
	)
	// to_jsonb reads columns that only some server versions have
	// (invalidation_reason: 17+, conflicting: 16+).
	err := c.pool.QueryRow(ctx, `
		SELECT s.wal_status, to_jsonb(s) ->> 'invalidation_reason', coalesce((to_jsonb(s) ->> 'conflicting')::bool, false),
		       s.confirmed_flush_lsn::text, s.restart_lsn::text,
		       coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn), 0)::bigint,
		       coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn), 0)::bigint,
		       coalesce(s.plugin, ''), s.database IS NOT DISTINCT FROM current_database()
		FROM pg_replication_slots s WHERE s.slot_name = $1`, c.slot).
		Scan(&walStatus, &reason, &conflicting, &confirmed, &restart, &st.RetainedBytes, &st.LagBytes, &plugin, &sameDB)
	if errors.Is(err, pgx.ErrNoRows) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("slot: read state of slot %s: %w", c.slot, err)
	}
	st.Exists = true
	if plugin != "pgoutput" || !sameDB {
		return st, fmt.Errorf("slot: a replication slot named %s exists but is not this pipeline's (plugin %q, or another database); "+
			"drop it or rename the pipeline", c.slot, plugin)
	}
	switch {
	case reason != nil && *reason != "":
		st.Lost = "invalidation_reason " + *reason
	case conflicting:
		st.Lost = "conflicting with recovery"
	case walStatus != nil && *walStatus == "lost":
		st.Lost = "wal_status lost: the WAL it needs was removed (max_slot_wal_keep_size)"
	case confirmed == nil || restart == nil:
		st.Lost = "it has no restart position"
	}
	if confirmed != nil {
		if st.Confirmed, err = ParseLSN(*confirmed); err != nil {
			return st, err
		}
	}
	if restart != nil {
		if st.Restart, err = ParseLSN(*restart); err != nil {
			return st, err
		}
	}
	return st, nil
}

func parseLSN(s string) (LSN, error) {
	lsn, err := pglogrepl.ParseLSN(s)
	return LSN(lsn), err
}

func sleep(ctx context.Context, ms int) error {
	t := time.NewTimer(time.Duration(ms) * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Exists reports whether this pipeline's slot exists in the source
// database (a slot of the same name in another database is not its). It
// changes nothing.
func (c *Capture) Exists(ctx context.Context) (bool, error) {
	var ok bool
	err := c.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND database = current_database())`, c.slot).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("slot: look for slot %s: %w", c.slot, err)
	}
	return ok, nil
}
