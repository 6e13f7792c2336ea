package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Data API limits the stand-in applies.
const (
	maxSQLBytes     = 100 << 10 // the Data API takes at most 100 KB of SQL per statement
	maxBatchSQLs    = 40
	maxKeepAliveSec = 24 * 60 * 60
)

// server answers the Redshift Data API (AWS JSON 1.1) over HTTP.
type server struct {
	be       *backend
	log      *slog.Logger
	pageRows int // records per GetStatementResult page
	queryID  atomic.Int64

	mu       sync.Mutex
	stmts    map[string]*statement
	tokens   map[string]string // ClientToken → statement id
	sessions map[string]*session
}

func newServer(be *backend, log *slog.Logger, pageRows int) *server {
	return &server{be: be, log: log, pageRows: pageRows,
		stmts: map[string]*statement{}, tokens: map[string]string{}, sessions: map[string]*session{}}
}

type sqlParameter struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// request holds the fields ExecuteStatement and BatchExecuteStatement share.
type request struct {
	ClientToken             string         `json:"ClientToken"`
	ClusterIdentifier       string         `json:"ClusterIdentifier"`
	Database                string         `json:"Database"`
	DbUser                  string         `json:"DbUser"`
	Parameters              []sqlParameter `json:"Parameters"`
	ResultFormat            string         `json:"ResultFormat"`
	SecretArn               string         `json:"SecretArn"`
	SessionId               string         `json:"SessionId"`
	SessionKeepAliveSeconds *int32         `json:"SessionKeepAliveSeconds"`
	Sql                     *string        `json:"Sql"`
	Sqls                    []string       `json:"Sqls"`
	StatementName           string         `json:"StatementName"`
	WorkgroupName           string         `json:"WorkgroupName"`
}

func (r *request) params() map[string]string {
	m := make(map[string]string, len(r.Parameters))
	for _, p := range r.Parameters {
		m[p.Name] = p.Value
	}
	return m
}

// apiError is an error answered with HTTP 400 (or Status) and the AWS
// JSON error body.
type apiError struct {
	Status int
	Type   string
	Msg    string
	Extra  map[string]string
}

func (e *apiError) Error() string { return e.Type + ": " + e.Msg }

func validation(format string, args ...any) *apiError {
	return &apiError{Status: 400, Type: "ValidationException", Msg: fmt.Sprintf(format, args...)}
}

func notFound(id string) *apiError {
	return &apiError{Status: 400, Type: "ResourceNotFoundException", Msg: "Query does not exist.", Extra: map[string]string{"ResourceId": id}}
}

func epoch(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && r.URL.Path == "/health" {
		writeJSON(w, 200, map[string]string{"status": "ok", "service": "redshift-standin", "backend": redact(s.be.dsn)})
		return
	}
	target := r.Header.Get("X-Amz-Target")
	op, ok := strings.CutPrefix(target, "RedshiftData.")
	if r.Method != http.MethodPost || !ok {
		writeError(w, &apiError{Status: 400, Type: "UnknownOperationException", Msg: "expected a POST with X-Amz-Target: RedshiftData.<operation>"})
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err != nil {
		writeError(w, validation("reading the request: %v", err))
		return
	}
	var out any
	switch op {
	case "ExecuteStatement", "BatchExecuteStatement":
		var req request
		if err = json.Unmarshal(body, &req); err == nil {
			out, err = s.submit(&req, op == "BatchExecuteStatement")
		}
	case "DescribeStatement":
		var req struct{ Id string }
		if err = json.Unmarshal(body, &req); err == nil {
			out, err = s.describe(req.Id)
		}
	case "GetStatementResult":
		var req struct{ Id, NextToken string }
		if err = json.Unmarshal(body, &req); err == nil {
			out, err = s.result(req.Id, req.NextToken)
		}
	case "CancelStatement":
		var req struct{ Id string }
		if err = json.Unmarshal(body, &req); err == nil {
			out, err = s.cancelStatement(req.Id)
		}
	default:
		err = &apiError{Status: 400, Type: "UnknownOperationException",
			Msg: "redshift stand-in: " + op + " is not emulated (ExecuteStatement, BatchExecuteStatement, DescribeStatement, GetStatementResult and CancelStatement are)"}
	}
	if err != nil {
		if ae, ok := err.(*apiError); ok {
			writeError(w, ae)
		} else {
			writeError(w, validation("%v", err))
		}
		return
	}
	writeJSON(w, 200, out)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, e *apiError) {
	body := map[string]string{"__type": e.Type, "message": e.Msg}
	for k, v := range e.Extra {
		body[k] = v
	}
	w.Header().Set("X-Amzn-ErrorType", e.Type)
	writeJSON(w, e.Status, body)
}

// redact hides a DSN's password.
func redact(dsn string) string {
	if i := strings.Index(dsn, "://"); i >= 0 {
		if at := strings.LastIndex(dsn, "@"); at > i {
			if colon := strings.Index(dsn[i+3:at], ":"); colon >= 0 {
				return dsn[:i+3+colon] + ":***" + dsn[at:]
			}
		}
	}
	return dsn
}

// submit accepts ExecuteStatement or BatchExecuteStatement and starts it.
func (s *server) submit(req *request, batch bool) (any, error) {
	sqls := req.Sqls
	if !batch {
		if req.Sql == nil {
			return nil, validation("1 validation error detected: Value null at 'sql' failed to satisfy constraint: Member must not be null")
		}
		sqls = []string{*req.Sql}
	} else if len(sqls) == 0 || len(sqls) > maxBatchSQLs {
		return nil, validation("Sqls must hold between 1 and %d SQL statements", maxBatchSQLs)
	}
	for _, q := range sqls {
		if len(q) > maxSQLBytes {
			return nil, validation("Query statement exceeds the maximum size of 100 KB (%d bytes)", len(q))
		}
		// Parameters are checked on submission; everything else about
		// the SQL shows up in DescribeStatement, as on Redshift.
		var ve *validationError
		if _, err := lex(q, req.params()); errors.As(err, &ve) {
			return nil, validation("%s", ve.msg)
		}
	}
	if req.ResultFormat != "" && req.ResultFormat != "JSON" {
		return nil, validation("redshift stand-in: ResultFormat %s (GetStatementResultV2) is not emulated; use JSON", req.ResultFormat)
	}
	var ss *session
	if req.SessionId != "" {
		s.mu.Lock()
		ss = s.sessions[req.SessionId]
		s.mu.Unlock()
		if ss == nil {
			return nil, &apiError{Status: 400, Type: "ResourceNotFoundException", Msg: "Session " + req.SessionId + " does not exist or has expired.", Extra: map[string]string{"ResourceId": req.SessionId}}
		}
		if req.Database != "" || req.ClusterIdentifier != "" || req.WorkgroupName != "" {
			return nil, validation("Database, ClusterIdentifier and WorkgroupName must not be given with SessionId")
		}
		req.Database = ss.db
	} else {
		switch {
		case req.Database == "":
			return nil, validation("Database is required when SessionId is not given")
		case (req.ClusterIdentifier == "") == (req.WorkgroupName == ""):
			return nil, validation("Exactly one of ClusterIdentifier and WorkgroupName must be given")
		case req.ClusterIdentifier != "" && req.SecretArn == "" && req.DbUser == "":
			return nil, validation("A provisioned cluster needs SecretArn or DbUser")
		}
	}
	var keepAlive time.Duration
	if k := req.SessionKeepAliveSeconds; k != nil {
		if *k < 0 || *k > maxKeepAliveSec {
			return nil, validation("SessionKeepAliveSeconds must be between 0 and %d", maxKeepAliveSec)
		}
		keepAlive = time.Duration(*k) * time.Second
	}

	s.mu.Lock()
	if id, ok := s.tokens[req.ClientToken]; ok && req.ClientToken != "" {
		// A retried call (same ClientToken) gets the statement it started.
		st := s.stmts[id]
		s.mu.Unlock()
		if st != nil {
			return s.submitOutput(st, batch), nil
		}
	} else {
		s.mu.Unlock()
	}
	switch {
	case ss != nil && keepAlive > 0:
		ss.mu.Lock()
		ss.keepAlive = keepAlive
		ss.mu.Unlock()
	case ss == nil && keepAlive > 0:
		ss = s.newSession(req.Database, keepAlive)
	}
	if ss != nil {
		req.SessionId = ss.id
	}
	now := time.Now()
	st := &statement{id: newID(), clientToken: req.ClientToken, batch: batch, req: *req, created: now, status: stSubmitted, updated: now}
	for i, q := range sqls {
		id := st.id
		if batch {
			id = subID(st.id, i)
		}
		st.subs = append(st.subs, &subStatement{id: id, query: q, status: stSubmitted, created: now, updated: now, resultRows: -1})
	}
	s.mu.Lock()
	s.stmts[st.id] = st
	if req.ClientToken != "" {
		s.tokens[req.ClientToken] = st.id
	}
	s.mu.Unlock()
	if ss == nil {
		go s.run(st)
	} else if !ss.submit(func() { s.runInSession(ss, st) }) {
		s.fail(st, 0, &sqlError{msg: "redshift stand-in: session " + ss.id + " has ended or has too many queued statements"})
	}
	return s.submitOutput(st, batch), nil
}

func (s *server) submitOutput(st *statement, batch bool) map[string]any {
	out := map[string]any{"Id": st.id, "CreatedAt": epoch(st.created), "Database": st.req.Database}
	for k, v := range map[string]string{"ClusterIdentifier": st.req.ClusterIdentifier, "WorkgroupName": st.req.WorkgroupName,
		"DbUser": st.req.DbUser, "SecretArn": st.req.SecretArn, "SessionId": st.req.SessionId} {
		if v != "" {
			out[k] = v
		}
	}
	return out
}

func (s *server) lookup(id string) *statement {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stmts[id]
}

func (s *server) describe(id string) (any, error) {
	st := s.lookup(id)
	if st == nil {
		return nil, notFound(id)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	out := s.submitOutput(st, st.batch)
	out["Status"] = st.status
	out["UpdatedAt"] = epoch(st.updated)
	out["RedshiftPid"] = st.pid
	out["ResultFormat"] = "JSON"
	if st.errText != "" {
		out["Error"] = st.errText
	}
	if len(st.req.Parameters) > 0 {
		out["QueryParameters"] = st.req.Parameters
	}
	if st.terminal() {
		out["Duration"] = st.updated.Sub(st.created).Nanoseconds()
	} else {
		out["Duration"] = int64(-1)
	}
	if !st.batch {
		sub := st.subs[0]
		out["QueryString"] = sub.query
		out["HasResultSet"] = sub.res.hasResultSet()
		out["ResultRows"] = sub.resultRows
		out["ResultSize"] = resultSize(sub.res)
		out["RedshiftQueryId"] = sub.queryID
		return out, nil
	}
	has, rows := false, int64(-1)
	subs := make([]map[string]any, len(st.subs))
	for i, sub := range st.subs {
		m := map[string]any{"Id": sub.id, "QueryString": sub.query, "Status": sub.status,
			"CreatedAt": epoch(sub.created), "UpdatedAt": epoch(sub.updated), "Duration": sub.duration.Nanoseconds(),
			"HasResultSet": sub.res.hasResultSet(), "ResultRows": sub.resultRows, "ResultSize": resultSize(sub.res),
			"RedshiftQueryId": sub.queryID}
		if sub.errText != "" {
			m["Error"] = sub.errText
		}
		has = has || sub.res.hasResultSet()
		subs[i] = m
	}
	out["SubStatements"] = subs
	out["HasResultSet"] = has
	out["ResultRows"] = rows
	return out, nil
}

// result answers GetStatementResult for a finished statement or
// sub-statement ("<id>:<n>") that returned rows.
func (s *server) result(id, token string) (any, error) {
	base, n, isSub := strings.Cut(id, ":")
	st := s.lookup(base)
	if st == nil {
		return nil, notFound(id)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	var sub *subStatement
	switch {
	case isSub:
		i, err := strconv.Atoi(n)
		if err != nil || !st.batch || i < 1 || i > len(st.subs) {
			return nil, notFound(id)
		}
		sub = st.subs[i-1]
	case st.batch:
		return nil, validation("Id %s is a batch; GetStatementResult takes a sub-statement Id (%s:1, …)", id, id)
	default:
		sub = st.subs[0]
	}
	if sub.status != stFinished {
		return nil, validation("Query %s is %s; results are available once it is FINISHED", id, sub.status)
	}
	if !sub.res.hasResultSet() {
		return nil, validation("Query does not have result. Please check query status with DescribeStatement.")
	}
	from := 0
	if token != "" {
		v, err := strconv.Atoi(token)
		if err != nil || v < 0 || v > len(sub.res.rows) {
			return nil, validation("invalid NextToken")
		}
		from = v
	}
	to := min(from+s.pageRows, len(sub.res.rows))
	out := map[string]any{
		"ColumnMetadata": metadata(sub.res.fields),
		"Records":        records(sub.res, from, to),
		"TotalNumRows":   len(sub.res.rows),
	}
	if to < len(sub.res.rows) {
		out["NextToken"] = strconv.Itoa(to)
	}
	return out, nil
}

func (s *server) cancelStatement(id string) (any, error) {
	st := s.lookup(id)
	if st == nil {
		return nil, notFound(id)
	}
	st.mu.Lock()
	if st.terminal() {
		status := st.status
		st.mu.Unlock()
		return nil, validation("Could not cancel a query that is already in %s state with ID: %s", status, id)
	}
	cancel := st.cancel
	if cancel == nil {
		// Not started yet: it will not start.
		now := time.Now()
		st.status, st.errText, st.updated = stAborted, "ERROR: "+errCancelled.Error(), now
		for _, sub := range st.subs {
			sub.status, sub.updated = stAborted, now
		}
	}
	st.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	return map[string]bool{"Status": true}, nil
}
