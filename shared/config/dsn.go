package config

import (
	"errors"

	"github.com/jackc/pgx/v5"
)

// checkDSN parses a connection string without connecting. Its errors never
// echo the DSN, which may hold a password.
func checkDSN(dsn string) error {
	if _, err := pgx.ParseConfig(dsn); err != nil {
		return errors.New("not a valid PostgreSQL connection string (URL or key=value form)")
	}
	return nil
}
