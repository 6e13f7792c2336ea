package slot

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgferry/pgferry/shared/drain"
)

// Info describes the slot after Install (see drain.SlotInfo).
type Info = drain.SlotInfo

// Install makes the pipeline's publication and slot exist and brings the
// publication's table list up to date (SyncTables). It is idempotent.
//
// progress tells whether the pipeline has already checkpointed changes
// read from the slot: then a missing slot is ErrSlotLost, never silently
// re-created (that would skip every change made while it was gone). An
// invalidated slot is ErrSlotLost either way.
//
// The publication is created before the slot, so it exists at every
// position the slot decodes; tables join it after the slot exists, with
// their existing rows, so nothing committed before capture started is
// left behind.
func (c *Capture) Install(ctx context.Context, progress bool) (Info, error) {
	var info Info
	if err := c.checkServer(ctx); err != nil {
		return info, err
	}
	if err := c.ensurePublication(ctx); err != nil {
		return info, err
	}
	st, err := c.Status(ctx)
	if err != nil {
		return info, err
	}
	switch {
	case st.Lost != "":
		return info, lostError(c.slot, "was invalidated ("+st.Lost+")")
	case !st.Exists && progress:
		return info, lostError(c.slot, "no longer exists although the pipeline has read from it")
	case !st.Exists:
		// Waits for transactions running now to finish (the slot needs a
		// consistent starting point).
		var lsn string
		err := c.pool.QueryRow(ctx, "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')", c.slot).Scan(&lsn)
		if err != nil {
			return info, explainPrivilege(fmt.Errorf("slot: create replication slot %s: %w", c.slot, err))
		}
		if info.Start, err = ParseLSN(lsn); err != nil {
			return info, err
		}
		info.Created = true
		c.log.Info("replication slot created", "slot", c.slot, "lsn", lsn)
	default:
		info.Start = st.Confirmed
	}
	return info, c.SyncTables(ctx)
}

// ParseLSN parses the text form of pg_lsn.
func ParseLSN(s string) (LSN, error) {
	lsn, err := parseLSN(s)
	if err != nil {
		return 0, fmt.Errorf("slot: bad LSN %q: %w", s, err)
	}
	return lsn, nil
}

// checkServer refuses sources that cannot do slot capture, saying why.
func (c *Capture) checkServer(ctx context.Context) error {
	var version int
	var level string
	err := c.pool.QueryRow(ctx, "SELECT current_setting('server_version_num')::int, current_setting('wal_level')").Scan(&version, &level)
	if err != nil {
		return fmt.Errorf("slot: read source settings: %w", err)
	}
	if version < 140000 {
		return fmt.Errorf("slot: capture: slot needs PostgreSQL 14 or later (the source runs %d); use capture: trigger", version)
	}
	if level != "logical" {
		return fmt.Errorf("slot: the source has wal_level=%s; capture: slot needs wal_level=logical "+
			"(on RDS set rds.logical_replication=1 in the parameter group and reboot)", level)
	}
	return nil
}

func (c *Capture) ensurePublication(ctx context.Context) error {
	var exists bool
	if err := c.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)", c.pub).Scan(&exists); err != nil {
		return fmt.Errorf("slot: look for publication %s: %w", c.pub, err)
	}
	if exists {
		return nil
	}
	// publish_via_partition_root stays false: PostgreSQL does not publish
	// a TRUNCATE of a single partition through the root, so changes are
	// read per partition and mapped to the root here, as trigger capture
	// does.
	_, err := c.pool.Exec(ctx, "CREATE PUBLICATION "+pgx.Identifier{c.pub}.Sanitize()+
		" WITH (publish = 'insert, update, delete, truncate', publish_via_partition_root = false)")
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42710" {
		return nil // created concurrently
	}
	if err != nil {
		return explainPrivilege(fmt.Errorf("slot: create publication %s: %w", c.pub, err))
	}
	c.log.Info("publication created", "publication", c.pub)
	return nil
}

// explainPrivilege adds what to grant when the source refused for lack of
// privilege.
func explainPrivilege(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42501" {
		return fmt.Errorf("%w (slot capture needs the REPLICATION attribute, or the rds_replication role on RDS, "+
			"CREATE on the database for the publication, and ownership of each replicated table)", err)
	}
	return err
}

// Drop removes the slot and the publication; missing ones are not an
// error. A walsender still reading the slot is terminated first.
func (c *Capture) Drop(ctx context.Context) error {
	_, err := c.pool.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL`, c.slot)
	if err != nil {
		return fmt.Errorf("slot: stop the reader of slot %s: %w", c.slot, err)
	}
	for attempt := 0; ; attempt++ {
		_, err = c.pool.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, c.slot)
		var pgErr *pgconn.PgError
		// 55006: still active while the terminated walsender exits.
		if err == nil || !errors.As(err, &pgErr) || pgErr.Code != "55006" || attempt == 50 {
			break
		}
		if err := sleep(ctx, 100); err != nil {
			return err
		}
	}
	if err != nil {
		return fmt.Errorf("slot: drop replication slot %s: %w", c.slot, err)
	}
	if _, err := c.pool.Exec(ctx, "DROP PUBLICATION IF EXISTS "+pgx.Identifier{c.pub}.Sanitize()); err != nil {
		return fmt.Errorf("slot: drop publication %s: %w", c.pub, err)
	}
	return nil
}
