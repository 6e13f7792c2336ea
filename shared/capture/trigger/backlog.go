package trigger

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// backlogCap bounds the count: past it the exact figure no longer matters
// (the alarm has long fired) and counting would cost more than it tells.
const backlogCap = 1_000_000

// Backlog returns the number of captured events still in the event table,
// up to one million. Shipped events are purged after their window closes,
// so this is the work the drain has not caught up with (plus at most one
// window).
func (c *Capture) Backlog(ctx context.Context) (int64, error) {
	var n int64
	err := c.pool.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM (SELECT FROM %s.events LIMIT %d) e",
		pgx.Identifier{c.schema}.Sanitize(), backlogCap)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("trigger: count event backlog: %w", err)
	}
	return n, nil
}
