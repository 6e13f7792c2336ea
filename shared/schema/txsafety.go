package schema

// A plan runs on a target inside a transaction: the schema job's
// watermark commits with it, so a job takes effect exactly once, between
// the batches it was queued between. PostgreSQL refuses some statements
// inside a transaction block, and refuses to use the effect of one until
// it commits. Each is handled on purpose:
//
//   - ALTER TYPE … ADD VALUE is accepted in a transaction block, but the
//     new label cannot be used by a later statement of the same
//     transaction (a default, a check, an index predicate, a row: SQLSTATE
//     55P04 "unsafe use of new value"). Its steps are CommitFirst: they run
//     and commit in a transaction of their own before the rest of the plan,
//     which stays atomic. They say IF NOT EXISTS, and the diff is stateless,
//     so a crash between the two transactions is healed by the retry.
//   - Never rendered (TestRenderedPlansStayInsideATransaction scans the
//     plans of a rich schema for them): CREATE INDEX CONCURRENTLY, DROP
//     INDEX CONCURRENTLY, REINDEX (CONCURRENTLY, SCHEMA, DATABASE, SYSTEM
//     refuse a block), ALTER TABLE … DETACH PARTITION … CONCURRENTLY,
//     VACUUM, CLUSTER without a table, CREATE/DROP/ALTER DATABASE,
//     CREATE/DROP TABLESPACE, ALTER SYSTEM, CREATE/ALTER/DROP SUBSCRIPTION,
//     DISCARD ALL, transaction control (BEGIN, COMMIT, ROLLBACK, SAVEPOINT,
//     SET TRANSACTION) and CALL (a procedure may commit). Indexes are
//     therefore built without CONCURRENTLY: the build blocks writes to that
//     table on the target (the applier's) while it runs, and is undone with
//     the rest if a later step fails.
//
// Everything else the diff renders (CREATE/ALTER/DROP of schemas, types,
// domains, functions, sequences, tables, columns, constraints, indexes,
// CREATE EXTENSION) runs in a transaction block and may use what an
// earlier statement of the same transaction made.

// addCommitFirst appends a step that must commit before later steps use it.
func addCommitFirst(list *[]Step, sql string) {
	*list = append(*list, Step{SQL: sql, CommitFirst: true})
}

// Split divides a plan's steps into those that must commit first
// (CommitFirst, in plan order) and the rest (in plan order).
func (p *Plan) Split() (first, rest []Step) {
	for _, s := range p.Steps {
		if s.CommitFirst {
			first = append(first, s)
		} else {
			rest = append(rest, s)
		}
	}
	return first, rest
}
