package slot

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/drain"
	"github.com/pgferry/pgferry/shared/secrets"
)

// outputSettings are the settings that change how values print as text,
// pinned to the values trigger capture uses (pgtext.SessionSettings).
// pgoutput prints values in the walsender, so they are passed as startup
// parameters of the replication connection.
var outputSettings = map[string]string{
	"DateStyle":          "ISO, YMD",
	"IntervalStyle":      "postgres",
	"extra_float_digits": "1",
	"bytea_output":       "hex",
	"TimeZone":           "UTC",
}

// Stream reads decoded transactions from the slot over one replication
// connection. It is not safe for concurrent use.
type Stream struct {
	c    *Capture
	conn *pgconn.PgConn
	stop func() bool
	rels map[uint32]*relation
	ctx  context.Context

	// skipBefore: transactions whose commit record starts before it were
	// shipped already; they are read past (relation messages still count).
	skipBefore LSN
	// confirmed is the position last reported to the server as flushed.
	confirmed LSN

	inTxn, skipping bool
	heartbeat       string // heartbeat token seen in the open transaction
	commitTime      int64
}

// EventKind tells what Stream.Next returned (see drain.SlotEventKind).
type EventKind = drain.SlotEventKind

const (
	// EventChange carries one change of the open transaction.
	EventChange = drain.SlotChange
	// EventTruncate carries the relations one TRUNCATE emptied.
	EventTruncate = drain.SlotTruncate
	// EventCommit ends a transaction.
	EventCommit = drain.SlotCommit
)

// Event is one step of the stream (see drain.SlotEvent).
type Event = drain.SlotEvent

// Stream is what the drainer reads through.
var _ drain.SlotStream = (*Stream)(nil)

// Open starts streaming from the slot. Transactions that commit before
// from are skipped (they were shipped; the slot may not have been
// confirmed past them yet). The stream stops working when ctx ends.
func (c *Capture) Open(ctx context.Context, from LSN) (drain.SlotStream, error) {
	// The replication connection goes where the pool goes (server,
	// database, role, password, TLS), so the DSN, with its secret
	// resolved, is handed over once, to the pool, and nowhere else.
	pc := c.pool.Config().ConnConfig.Config.Copy()
	if pc.RuntimeParams == nil {
		pc.RuntimeParams = map[string]string{}
	}
	pc.RuntimeParams["replication"] = "database"
	pc.RuntimeParams["application_name"] = config.ApplicationName
	for k, v := range outputSettings {
		pc.RuntimeParams[k] = v
	}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	conn, err := pgconn.ConnectConfig(cctx, pc)
	cancel()
	if err != nil {
		return nil, explainPrivilege(fmt.Errorf("slot: open a replication connection to %s:%d as %s: %w", pc.Host, pc.Port, pc.User, secrets.Redact(err, pc.Password)))
	}
	for attempt := 0; ; attempt++ {
		err = pglogrepl.StartReplication(ctx, conn, c.slot, pglogrepl.LSN(from), pglogrepl.StartReplicationOptions{
			Mode: pglogrepl.LogicalReplication,
			PluginArgs: []string{
				"proto_version '1'",
				"publication_names '" + c.pub + "'",
				"messages 'true'",
			},
		})
		var pgErr *pgconn.PgError
		if err == nil || !errors.As(err, &pgErr) || pgErr.Code != "55006" || attempt == 20 {
			break
		}
		// "replication slot is active": the caller holds the drain lease,
		// so the reader is a drain that died or was frozen (a Lambda that
		// timed out) and whose walsender has not noticed yet.
		c.log.Warn("replication slot is held by a stale reader; stopping it", "slot", c.slot, "err", pgErr.Message)
		if _, err := c.pool.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
			WHERE slot_name = $1 AND active_pid IS NOT NULL`, c.slot); err != nil {
			conn.Close(context.Background())
			return nil, fmt.Errorf("slot: stop the stale reader of slot %s: %w", c.slot, err)
		}
		if err := sleep(ctx, 250); err != nil {
			conn.Close(context.Background())
			return nil, err
		}
	}
	if err != nil {
		conn.Close(context.Background())
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "55000" {
			// "can no longer get changes from replication slot"
			return nil, lostError(c.slot, "cannot be read: "+pgErr.Message)
		}
		return nil, explainPrivilege(fmt.Errorf("slot: start reading slot %s: %w", c.slot, err))
	}
	s := &Stream{c: c, conn: conn, rels: map[uint32]*relation{}, skipBefore: from, ctx: ctx}
	// Reads run without a context (a context per message costs more than
	// decoding it); ctx ending fails the blocked read instead.
	s.stop = context.AfterFunc(ctx, func() { _ = conn.Conn().SetDeadline(time.Unix(1, 0)) })
	return s, nil
}

// Next returns the next change or commit. Transactions come whole and in
// commit order; an error leaves the stream unusable.
func (s *Stream) Next() (Event, error) {
	for {
		msg, err := s.conn.ReceiveMessage(context.Background())
		if err != nil {
			if s.ctx.Err() != nil {
				return Event{}, s.ctx.Err()
			}
			return Event{}, fmt.Errorf("slot: read slot %s: %w", s.c.slot, err)
		}
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			switch m.Data[0] {
			case pglogrepl.PrimaryKeepaliveMessageByteID:
				ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(m.Data[1:])
				if err != nil {
					return Event{}, fmt.Errorf("slot: %w", err)
				}
				if ka.ReplyRequested {
					if err := s.status(false); err != nil {
						return Event{}, err
					}
				}
			case pglogrepl.XLogDataByteID:
				if len(m.Data) < 1+24+1 {
					return Event{}, fmt.Errorf("slot: short XLogData message (%d bytes)", len(m.Data))
				}
				ev, ok, err := s.decode(m.Data[25:])
				if err != nil || ok {
					return ev, err
				}
			}
		case *pgproto3.ErrorResponse:
			return Event{}, fmt.Errorf("slot: read slot %s: %w", s.c.slot, pgconn.ErrorResponseToPgError(m))
		case *pgproto3.CopyDone:
			return Event{}, fmt.Errorf("slot: the server ended the replication stream of slot %s", s.c.slot)
		}
	}
}

// Confirm tells the server that everything up to lsn is durably shipped
// and checkpointed: the slot may release the WAL before it, and a later
// Open resumes after it. It never moves the slot backwards. Call it only
// after the checkpoint covering lsn is saved.
func (s *Stream) Confirm(lsn LSN) error {
	if lsn <= s.confirmed {
		return nil
	}
	s.confirmed = lsn
	return s.status(false)
}

func (s *Stream) status(reply bool) error {
	pos := pglogrepl.LSN(s.confirmed)
	if pos == 0 {
		pos = pglogrepl.LSN(s.skipBefore) // never 0: that would read as "nothing received"
	}
	err := pglogrepl.SendStandbyStatusUpdate(context.Background(), s.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: pos, WALFlushPosition: pos, WALApplyPosition: pos, ReplyRequested: reply,
	})
	if err != nil {
		return fmt.Errorf("slot: report position to slot %s: %w", s.c.slot, err)
	}
	return nil
}

// Close confirms lsn (see Confirm), waits briefly for the server to have
// taken the confirmation in, and closes the connection. Changes read but
// not confirmed are read again by the next Open.
func (s *Stream) Close(ctx context.Context, lsn LSN) error {
	defer func() {
		s.stop()
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		pid := s.conn.PID()
		_ = s.conn.Close(cctx)
		// Wait (briefly) for the walsender to let go of the slot, so the
		// next drain can start reading at once.
		for i := 0; i < 50; i++ {
			var busy bool
			err := s.c.pool.QueryRow(cctx, `SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active_pid = $2)`,
				s.c.slot, pid).Scan(&busy)
			if err != nil || !busy || sleep(cctx, 20) != nil {
				return
			}
		}
	}()
	if lsn > s.confirmed {
		s.confirmed = lsn
	}
	if s.ctx.Err() != nil || s.confirmed == 0 {
		return nil
	}
	if err := s.status(true); err != nil {
		return err
	}
	// The server answers a reply request with a keepalive once it has
	// processed the status update; data may come first.
	_ = s.conn.Conn().SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		msg, err := s.conn.ReceiveMessage(context.Background())
		if err != nil {
			return fmt.Errorf("slot: confirm %s on slot %s: %w", s.confirmed, s.c.slot, err)
		}
		if cd, ok := msg.(*pgproto3.CopyData); ok && cd.Data[0] == pglogrepl.PrimaryKeepaliveMessageByteID {
			return nil
		}
	}
}

// Heartbeat commits a pgferry message into the WAL and returns its token.
// A stream has delivered every transaction committed before the call once
// it returns a commit whose Heartbeat is that token. It also gives the
// slot a position in this database to move to when the replicated tables
// are idle.
func (c *Capture) Heartbeat(ctx context.Context) (string, error) {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	token := hex.EncodeToString(b)
	err := pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
		// The commit must reach disk before the walsender can send it.
		if _, err := tx.Exec(ctx, "SET LOCAL synchronous_commit = on"); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "SELECT pg_logical_emit_message(true, $1, json_build_object('heartbeat', $2::text)::text)", c.prefix, token)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("slot: write heartbeat: %w", err)
	}
	return token, nil
}
