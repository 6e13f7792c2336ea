package redshift

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgferry/pgferry/shared/apply"
)

// Error is a statement Redshift refused, classified. It unwraps to its
// cause and, by class, to apply.ErrTransient (retry with backoff, never
// park) or apply.ErrSchemaBehind (the target lacks a table or column:
// schema sync, then retry); anything else is a failure of the batch itself
// (apply.Failed: retried a few times, then parked with this error).
type Error struct {
	// Index is the failed statement's position in a Tx (0-based); -1 when
	// the failure is not tied to one statement (Query, or a Data API batch
	// that failed before any statement ran).
	Index int
	// SQL is the failed statement, when known.
	SQL string
	// Code is the SQLSTATE (pgx adapter) or "" (the Data API reports text).
	Code string
	// Message is what the server said.
	Message string
	class   error // apply.ErrTransient, apply.ErrSchemaBehind or nil
	cause   error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("redshift: ")
	if e.Index >= 0 {
		fmt.Fprintf(&b, "statement %d: ", e.Index+1)
	} else if i, ok := StagingIndex(e); ok {
		fmt.Fprintf(&b, "staging statement %d: ", i+1)
	}
	b.WriteString(e.Message)
	if e.Code != "" {
		fmt.Fprintf(&b, " (SQLSTATE %s)", e.Code)
	}
	if e.SQL != "" {
		s := e.SQL
		if len(s) > 300 {
			s = s[:300] + "…"
		}
		fmt.Fprintf(&b, " in: %s", s)
	}
	return b.String()
}

// Unwrap returns the cause and the class sentinel.
func (e *Error) Unwrap() []error {
	var out []error
	if e.cause != nil {
		out = append(out, e.cause)
	}
	if e.class != nil {
		out = append(out, e.class)
	}
	return out
}

// Transient reports whether e is worth retrying as it stands.
func (e *Error) Transient() bool { return e.class == apply.ErrTransient }

// SchemaBehind reports whether the target lacks an object e needed.
func (e *Error) SchemaBehind() bool { return e.class == apply.ErrSchemaBehind }

// newError classifies a server failure from its SQLSTATE (when the
// adapter has one) and its text. The Data API hands back only text
// (DescribeStatement.Error), so matching on it is unavoidable there; the
// patterns are Redshift's documented messages and match the pgx adapter's
// errors the same way, so both adapters classify identically.
func newError(index int, sql, code, msg string, cause error) *Error {
	return &Error{Index: index, SQL: sql, Code: code, Message: msg, class: classify(code, msg), cause: cause}
}

var (
	// Races and outages: serializable isolation violation (Redshift error
	// 1023, "ERROR: 1023 DETAIL: Serializable isolation violation on
	// table …"), a conflict with a concurrent transaction under snapshot
	// isolation, deadlocks, lock and commit-queue timeouts, a cluster
	// that is resizing, restarting or out of connections.
	transientRE = regexp.MustCompile(`(?i)(?:^|error:\s*)1023\b|serializable isolation violation|conflict with concurrent transaction|` +
		`deadlock detected|lock timeout|could not obtain lock|commit queue|query cancelled on user's request|` +
		`cluster is (?:currently )?(?:unavailable|resizing|being resized|paused|restarting)|` +
		`too many connections|connection (?:limit|refused|reset)|server closed the connection|terminating connection`)
	// The target lacks something: relation "s.t" does not exist, column
	// "c" of relation "t" does not exist, column "c" does not exist,
	// schema "s" does not exist.
	behindRE = regexp.MustCompile(`(?i)(?:relation|column|schema) "[^"]*"(?: of relation "[^"]*")? does not exist`)
)

func classify(code, msg string) error {
	switch code {
	case "40001", "40P01", "55P03", "57P01", "57P02", "57P03", "53300":
		return apply.ErrTransient
	case "42P01", "42703", "3F000":
		return apply.ErrSchemaBehind
	}
	if strings.HasPrefix(code, "08") {
		return apply.ErrTransient
	}
	switch {
	case transientRE.MatchString(msg):
		return apply.ErrTransient
	case behindRE.MatchString(msg):
		return apply.ErrSchemaBehind
	}
	return nil
}

// FromPg turns a pgx failure of statement index (-1: none) into an *Error
// when the server sent one; other errors (connection loss, context) pass
// through, and apply.Classify judges them as it does for PostgreSQL
// targets. For executors built on pgx, like PGX.
func FromPg(index int, sql string, err error) error { return fromPg(index, sql, err) }

func fromPg(index int, sql string, err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err
	}
	msg := pgErr.Message
	if pgErr.Detail != "" {
		msg += " (detail: " + pgErr.Detail + ")"
	}
	return newError(index, sql, pgErr.Code, msg, err)
}
