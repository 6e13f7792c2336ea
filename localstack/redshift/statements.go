package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Statement states, as the Data API names them.
const (
	stSubmitted = "SUBMITTED"
	stStarted   = "STARTED"
	stFinished  = "FINISHED"
	stFailed    = "FAILED"
	stAborted   = "ABORTED"
)

// subStatement is one SQL string of a statement (the only one for
// ExecuteStatement).
type subStatement struct {
	id, query  string
	status     string
	errText    string
	created    time.Time
	updated    time.Time
	started    time.Time
	duration   time.Duration
	res        *result
	resultRows int64
	queryID    int64
}

// statement is what ExecuteStatement or BatchExecuteStatement submitted.
// Its fields after the mutex change while it runs.
type statement struct {
	id, clientToken string
	batch           bool
	req             request
	created         time.Time
	cancel          context.CancelFunc

	mu      sync.Mutex
	status  string
	errText string
	updated time.Time
	pid     int64
	subs    []*subStatement
}

func (st *statement) terminal() bool {
	return st.status == stFinished || st.status == stFailed || st.status == stAborted
}

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// session is a Data API session: one backend connection kept between
// calls (temporary tables and transactions survive), used by one call at
// a time in submission order, closed after keepAlive of idleness.
type session struct {
	id  string
	db  string
	srv *server

	jobs chan func()

	mu        sync.Mutex
	conn      *pgxpool.Conn
	keepAlive time.Duration
	lastUsed  time.Time
	closed    bool
}

func (s *server) newSession(db string, keepAlive time.Duration) *session {
	ss := &session{id: newID(), db: db, srv: s, jobs: make(chan func(), 64), keepAlive: keepAlive, lastUsed: time.Now()}
	s.mu.Lock()
	s.sessions[ss.id] = ss
	s.mu.Unlock()
	go ss.work()
	ss.scheduleExpiry()
	return ss
}

func (ss *session) work() {
	for job := range ss.jobs {
		job()
		if ss.isClosed() {
			return
		}
	}
}

func (ss *session) isClosed() bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.closed
}

// submit queues a job; false if the session has ended.
func (ss *session) submit(job func()) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.closed {
		return false
	}
	ss.lastUsed = time.Now()
	select {
	case ss.jobs <- job:
		return true
	default:
		return false
	}
}

func (ss *session) scheduleExpiry() {
	ss.mu.Lock()
	d := time.Until(ss.lastUsed.Add(ss.keepAlive))
	ss.mu.Unlock()
	time.AfterFunc(d+10*time.Millisecond, func() {
		ss.mu.Lock()
		if ss.closed {
			ss.mu.Unlock()
			return
		}
		idle := time.Since(ss.lastUsed) >= ss.keepAlive && len(ss.jobs) == 0
		ss.mu.Unlock()
		if !idle {
			ss.scheduleExpiry()
			return
		}
		// Close from the worker, after any job in flight.
		if !ss.submitClose() {
			ss.scheduleExpiry()
		}
	})
}

func (ss *session) submitClose() bool {
	select {
	case ss.jobs <- ss.close:
		return true
	default:
		return false
	}
}

func (ss *session) close() {
	ss.mu.Lock()
	if ss.closed {
		ss.mu.Unlock()
		return
	}
	ss.closed = true
	conn := ss.conn
	ss.conn = nil
	ss.mu.Unlock()
	ss.srv.mu.Lock()
	delete(ss.srv.sessions, ss.id)
	ss.srv.mu.Unlock()
	if conn != nil {
		ss.srv.be.release(conn)
	}
}

// connection returns the session's backend connection, opening it first.
func (ss *session) connection(ctx context.Context) (*pgxpool.Conn, error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.conn != nil {
		if ss.conn.Conn().PgConn().IsClosed() {
			return nil, &sqlError{msg: "redshift stand-in: the session's connection was closed (a cancelled statement ends its session)"}
		}
		return ss.conn, nil
	}
	c, err := ss.srv.be.acquire(ctx, ss.db)
	if err != nil {
		return nil, err
	}
	ss.conn = c
	return c, nil
}

// run executes a statement without a session: a fresh backend session
// for this call only.
func (s *server) run(st *statement) {
	ctx, cancel := context.WithCancel(context.Background())
	st.mu.Lock()
	st.cancel = cancel
	aborted := st.status == stAborted
	st.mu.Unlock()
	defer cancel()
	if aborted {
		return
	}
	conn, err := s.be.acquire(ctx, st.req.Database)
	if err != nil {
		s.fail(st, 0, err)
		return
	}
	defer s.be.release(conn)
	s.execute(ctx, conn.Conn().PgConn(), st)
}

// runInSession executes a statement on its session's connection.
func (s *server) runInSession(ss *session, st *statement) {
	ctx, cancel := context.WithCancel(context.Background())
	st.mu.Lock()
	st.cancel = cancel
	aborted := st.status == stAborted
	st.mu.Unlock()
	defer cancel()
	if aborted {
		return
	}
	conn, err := ss.connection(ctx)
	if err != nil {
		s.fail(st, 0, err)
		return
	}
	s.execute(ctx, conn.Conn().PgConn(), st)
	ss.mu.Lock()
	ss.lastUsed = time.Now()
	ss.mu.Unlock()
}

// execute runs a statement's SQL strings in order. Unless a session has
// a transaction open, they run in a transaction of their own, so a
// batch is atomic and a failed statement leaves nothing behind.
func (s *server) execute(ctx context.Context, pgc *pgconn.PgConn, st *statement) {
	st.mu.Lock()
	st.status = stStarted
	st.pid = int64(pgc.PID())
	st.updated = time.Now()
	st.mu.Unlock()

	ownTx := pgc.TxStatus() == 'I'
	began := false
	fail := func(i int, err error) {
		if began && !pgc.IsClosed() {
			_ = pgc.Exec(context.Background(), "ROLLBACK").Close()
		}
		if ctx.Err() != nil {
			err = errCancelled
		}
		s.fail(st, i, err)
	}
	for i, sub := range st.subs {
		now := time.Now()
		st.mu.Lock()
		sub.status, sub.started, sub.updated = stStarted, now, now
		sub.queryID = s.queryID.Add(1)
		st.mu.Unlock()

		stp, err := plan(sub.query, st.req.params(), gateCtx{inBatch: st.batch, inTx: st.batch || !ownTx})
		if err == nil && ownTx && !began && !stp.txControl {
			if err = pgc.Exec(ctx, "BEGIN").Close(); err == nil {
				began = true
			}
		}
		var res *result
		if err == nil {
			res, err = s.be.runStep(ctx, pgc, stp)
		}
		if err != nil {
			fail(i, err)
			return
		}
		st.mu.Lock()
		sub.res = res
		if res != nil {
			sub.resultRows = res.rowsAffected
		} else {
			sub.resultRows = -1
		}
		sub.duration = time.Since(sub.started)
		sub.updated = time.Now()
		if !st.batch {
			sub.status = stFinished
		}
		st.mu.Unlock()
	}
	if began {
		if err := pgc.Exec(ctx, "COMMIT").Close(); err != nil {
			fail(len(st.subs)-1, err)
			return
		}
	}
	st.mu.Lock()
	now := time.Now()
	for _, sub := range st.subs {
		sub.status = stFinished
		sub.updated = now
	}
	st.status, st.updated = stFinished, now
	st.mu.Unlock()
}

var errCancelled = errors.New("Query cancelled on user's request")

// fail marks a statement failed at SQL string i: earlier ones count as
// rolled back (ABORTED), later ones never ran.
func (s *server) fail(st *statement, i int, err error) {
	text := errorText(err)
	status := stFailed
	if errors.Is(err, errCancelled) {
		status, text = stAborted, "ERROR: "+errCancelled.Error()
	}
	if s.log != nil {
		s.log.Info("statement failed", "id", st.id, "sub", i+1, "error", text)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	now := time.Now()
	for j, sub := range st.subs {
		switch {
		case j == i:
			sub.status, sub.errText = status, text
			if !sub.started.IsZero() {
				sub.duration = now.Sub(sub.started)
			}
		case j < i && st.batch:
			sub.status = stAborted
		case j > i:
			sub.status = stAborted
		}
		sub.updated = now
	}
	st.status, st.errText, st.updated = status, text, now
}

// sweep forgets statements that ended long ago, keeping memory bounded.
func (s *server) sweep(maxAge time.Duration, maxCount int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cutoff, recent := time.Now().Add(-maxAge), time.Now().Add(-time.Minute)
	for id, st := range s.stmts {
		st.mu.Lock()
		old := st.terminal() && (st.updated.Before(cutoff) || (len(s.stmts) > maxCount && st.updated.Before(recent)))
		st.mu.Unlock()
		if old {
			delete(s.stmts, id)
			delete(s.tokens, st.clientToken)
		}
	}
}

func subID(id string, i int) string { return id + ":" + strconv.Itoa(i+1) }

// closeSessions ends every session (after its statement in flight) and
// waits up to timeout for them to release their connections.
func (s *server) closeSessions(timeout time.Duration) {
	s.mu.Lock()
	open := make([]*session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		open = append(open, ss)
	}
	s.mu.Unlock()
	for _, ss := range open {
		ss.submitClose()
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		n := len(s.sessions)
		s.mu.Unlock()
		if n == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
