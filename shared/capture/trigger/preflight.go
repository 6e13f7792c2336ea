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
	all, err := c.tables(ctx)
	if err != nil {
		return err
	}
	var tables []string
	for _, t := range all {
		if !t.allowed {
			tables = append(tables, t.schema+"."+t.name)
		}
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
