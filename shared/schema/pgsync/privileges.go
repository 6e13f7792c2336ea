package pgsync

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/schema"
)

// explainDenied turns a refused schema sync step (SQLSTATE 42501) into an
// error that names the role and the privilege README "Target privileges"
// lists: CREATE on (or ownership of) each schema the replicated objects go
// to. PostgreSQL's own message names the schema but neither the privilege
// nor the role. It asks on a connection of its own, since the step's
// transaction is aborted; other errors are returned as they are.
func explainDenied(ctx context.Context, pool *pgxpool.Pool, plan *schema.Plan, err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
		return err
	}
	var schemas []string
	if plan.Registry != nil {
		for _, q := range plan.Registry.Tables {
			if !slices.Contains(schemas, q.Schema) {
				schemas = append(schemas, q.Schema)
			}
		}
	}
	var role string
	var lacking []string
	qerr := pool.QueryRow(ctx, `SELECT current_user::text,
		coalesce(array_agg(n.nspname::text ORDER BY n.nspname) FILTER (WHERE NOT has_schema_privilege(n.oid, 'CREATE')), '{}')
		FROM pg_namespace n WHERE n.nspname = ANY($1)`, schemas).Scan(&role, &lacking)
	if qerr != nil {
		return err
	}
	if len(lacking) == 0 {
		return fmt.Errorf("role %q was refused (it needs CREATE on each schema the replicated objects go to, and to own the objects schema sync changes): %w", role, err)
	}
	on := make([]string, len(lacking))
	for i, s := range lacking {
		on[i] = "CREATE on schema " + s
	}
	return fmt.Errorf("role %q needs %s (or to own it) for schema sync: %w", role, strings.Join(on, ", "), err)
}
