// Package redshift runs SQL on an Amazon Redshift database behind one small
// port, Exec, with two adapters: the Redshift Data API (DataAPI, no VPC
// needed) and a direct connection on port 5439 through pgx (PGX). Both take
// the same SQL text. Failures are classified here, once, into the classes
// shared/apply acts on (see Error).
package redshift

import "context"

// Exec runs SQL on one Redshift database.
//
// Statements carry no bind parameters: BatchExecuteStatement shares one
// parameter set across a batch and the pgx adapter would need another
// placeholder syntax, so values are rendered as literals (see Literal),
// which callers only do for values they control or have checked. Row data
// never travels in SQL text; it is loaded from S3 by COPY.
type Exec interface {
	// Tx runs stmts in order as one transaction. When it returns nil,
	// every statement committed; when it returns an error, none did (the
	// transaction rolled back or never started). A statement's failure is
	// an *Error whose Index says which one. Not idempotent: callers guard
	// a replay inside the statements themselves.
	Tx(ctx context.Context, stmts []string) error
	// Query runs one statement outside any transaction of Tx and returns
	// its rows, each value in PostgreSQL text form (t/f for booleans),
	// nil for NULL.
	Query(ctx context.Context, sql string) ([][]*string, error)
	// MaxStatements is the most statements one Tx takes (0: no limit).
	MaxStatements() int
}

// Stager is an Exec that can run a transaction in two parts: staging
// statements that make and fill temporary tables, then final as one
// transaction that reads them. Both parts run in one database session, so
// the temporary tables outlive the staging calls; staging may be split
// over several calls (each its own transaction), which lifts the Data
// API's 40-statement limit from everything but the final transaction.
type Stager interface {
	// Staged runs staging, then final as one transaction. A failure in
	// final is an *Error whose Index is the position in final; a failure
	// in staging is an *Error with Index -1 - i for staging statement i
	// (so it never names a statement of final). When it returns an error,
	// final did not commit.
	Staged(ctx context.Context, staging, final []string) error
}

// StagingIndex turns the Index of an *Error from Stager.Staged that
// failed in staging back into the staging statement's position; ok is
// false for an error of final.
func StagingIndex(e *Error) (i int, ok bool) {
	if e.Index <= -2 {
		return -e.Index - 2, true
	}
	return 0, false
}
