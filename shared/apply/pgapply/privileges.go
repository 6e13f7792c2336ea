package pgapply

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// explainDenied turns a refusal (SQLSTATE 42501) to install pgferry's own
// schema into an error that names the privilege, the database and the
// role, as README "Target privileges" lists them; other errors are
// returned as they are. PostgreSQL's own message ("permission denied for
// database d") names neither the privilege nor the role.
func explainDenied(ctx context.Context, pool *pgxpool.Pool, err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
		return err
	}
	var role, db string
	if qerr := pool.QueryRow(ctx, "SELECT current_user::text, current_database()::text").Scan(&role, &db); qerr != nil {
		return err
	}
	// (A pgferry schema made for the role beforehand does not help: CREATE
	// SCHEMA IF NOT EXISTS checks the privilege first.)
	return fmt.Errorf("role %q needs CREATE on the database %q (for the %s schema): %w", role, db, Schema, err)
}
