package trigger

import (
	"context"
	"fmt"
	"strings"
)

// preflight checks, before anything is created, that the connected role
// can install trigger capture: CREATE on the database (for the capture
// schema, unless it exists) and TRIGGER and SELECT on every replicated
// table (to add the triggers and copy the rows already there). It names
// every table that falls short, so one run tells the operator every GRANT
// to make.
func (c *Capture) preflight(ctx context.Context, schemaExists bool) error {
	var role string
	var canCreate bool
	if err := c.pool.QueryRow(ctx, `SELECT current_user, has_database_privilege(current_database(), 'CREATE')`).Scan(&role, &canCreate); err != nil {
		return fmt.Errorf("trigger: check privileges: %w", err)
	}
	var problems []string
	if !schemaExists && !canCreate {
		problems = append(problems, "CREATE on the database (for the capture schema "+c.schema+")")
	}
	rows, err := c.pool.Query(ctx, `
		SELECT n.nspname, c.relname, rn.nspname, rc.relname,
		       has_table_privilege(c.oid, 'TRIGGER') AND has_table_privilege(c.oid, 'SELECT')
		FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_class rc ON rc.oid = coalesce(pg_partition_root(c.oid), c.oid)
		JOIN pg_namespace rn ON rn.oid = rc.relnamespace
		WHERE c.relkind IN ('r', 'p')
		  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
		  AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'
		  AND n.nspname <> $1
		ORDER BY 1, 2`, c.schema)
	if err != nil {
		return fmt.Errorf("trigger: check privileges: %w", err)
	}
	var tables []string
	for rows.Next() {
		var schema, name, rootSchema, rootName string
		var ok bool
		if err := rows.Scan(&schema, &name, &rootSchema, &rootName, &ok); err != nil {
			return fmt.Errorf("trigger: check privileges: %w", err)
		}
		if !ok && c.cfg.Replicated(rootSchema, rootName) {
			tables = append(tables, schema+"."+name)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("trigger: check privileges: %w", err)
	}
	if len(tables) > 0 {
		problems = append(problems, "TRIGGER and SELECT on "+strings.Join(tables, ", "))
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("trigger: source role %q cannot install trigger capture; it needs %s "+
		"(run as the tables' owner, or GRANT them; nothing was changed)", role, strings.Join(problems, ", and "))
}
