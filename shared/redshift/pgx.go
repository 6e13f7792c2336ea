package redshift

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PGX runs SQL over a direct connection (Redshift on port 5439, in a VPC;
// or PostgreSQL in tests). Statements go through the simple protocol:
// Redshift's extended-protocol support is partial, and without bind
// parameters nothing is lost.
type PGX struct {
	pool *pgxpool.Pool
}

var _ Exec = (*PGX)(nil)

// NewPGX returns an executor on pool. The caller owns the pool.
func NewPGX(pool *pgxpool.Pool) *PGX { return &PGX{pool: pool} }

// Tx runs stmts in one transaction (BEGIN … COMMIT on one connection).
func (p *PGX) Tx(ctx context.Context, stmts []string) error {
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("redshift: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	for i, s := range stmts {
		if _, err := tx.Exec(ctx, s, pgx.QueryExecModeSimpleProtocol); err != nil {
			return fromPg(i, s, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fromPg(-1, "COMMIT", err)
	}
	return nil
}

var _ Stager = (*PGX)(nil)

// Staged runs staging and final in one transaction on one connection:
// without a statement limit nothing needs splitting, and the temporary
// tables are the transaction's.
func (p *PGX) Staged(ctx context.Context, staging, final []string) error {
	err := p.Tx(ctx, append(slices.Clip(staging), final...))
	var rerr *Error
	if errors.As(err, &rerr) && rerr.Index >= 0 {
		if rerr.Index < len(staging) {
			rerr.Index = -2 - rerr.Index
		} else {
			rerr.Index -= len(staging)
		}
	}
	return err
}

// Query runs one statement and returns its rows in text form.
func (p *PGX) Query(ctx context.Context, sql string) ([][]*string, error) {
	rows, err := p.pool.Query(ctx, sql, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return nil, fromPg(-1, sql, err)
	}
	defer rows.Close()
	var out [][]*string
	for rows.Next() {
		raw := rows.RawValues()
		row := make([]*string, len(raw))
		for i, v := range raw {
			if v != nil {
				s := string(v)
				row[i] = &s
			}
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		return nil, fromPg(-1, sql, err)
	}
	return out, nil
}

// MaxStatements is 0: a connection's transaction takes any number.
func (p *PGX) MaxStatements() int { return 0 }
