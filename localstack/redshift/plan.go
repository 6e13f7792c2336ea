package main

import (
	pg "github.com/pganalyze/pg_query_go/v6"
)

// step is one submitted statement, ready for the backend.
type step struct {
	actions   []action  // run in order; none (and no copy) is a no-op
	copy      *copySpec // or: a COPY from S3
	args      []string  // parameter values for the actions' $n
	txControl bool      // BEGIN/COMMIT/ROLLBACK: run as is
}

// plan turns one SQL string into a step, or refuses it. c says whether the
// statement will run inside a transaction block.
func plan(sql string, params map[string]string, c gateCtx) (*step, error) {
	lx, err := lex(sql, params)
	if err != nil {
		return nil, err
	}
	switch lx.kind {
	case kindCopy:
		spec, err := parseCopy(lx.tokens)
		if err != nil {
			return nil, err
		}
		return &step{copy: spec}, nil
	case kindNoop:
		return &step{}, nil
	case kindVacuum:
		if c.inTx {
			return nil, refuse("vacuum-in-transaction", "VACUUM cannot run inside a transaction block")
		}
		return &step{}, nil
	}
	tree, err := pg.Parse(lx.sql)
	if err != nil {
		return nil, &sqlError{msg: err.Error()}
	}
	if len(tree.Stmts) != 1 {
		return nil, unsupported("multiple-statements", "one SQL statement per ExecuteStatement (or per Sqls entry)")
	}
	stmt := tree.Stmts[0].Stmt
	if err := gate(stmt, c); err != nil {
		return nil, err
	}
	actions, err := translate(tree)
	if err != nil {
		return nil, err
	}
	return &step{actions: actions, args: lx.args, txControl: stmt.GetTransactionStmt() != nil}, nil
}
