package trigger

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/pgferry/pgferry/shared/batch"
)

// Mark writes a load mark (batch.LoadMarks) for target, table t and
// loadID. The marks table and its capture trigger are created on first
// use. The mark commits in its own transaction, after every chunk copy of
// the load has read its snapshot, so each change a chunk missed comes
// before the mark in the stream. Writing a mark twice is harmless: the
// applier acts on the first one and ignores later ones.
func (c *Capture) Mark(ctx context.Context, target string, t batch.Table, loadID string) error {
	marks := batch.LoadMarks(c.cfg.Name)
	rel := pgx.Identifier{marks.Schema, marks.Name}.Sanitize()
	sch := pgx.Identifier{c.schema}.Sanitize()
	trig := pgx.Identifier{c.triggerName("ins")}.Sanitize()
	err := pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass($1) AND tgname = $2)`,
			rel, c.triggerName("ins")).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext($1))", "pgferry:"+c.cfg.Name); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
				id bigserial PRIMARY KEY, %s text NOT NULL, %s text NOT NULL, %s text NOT NULL, %s text NOT NULL,
				marked_at timestamptz NOT NULL DEFAULT now())`, rel,
				pgx.Identifier{batch.MarkTarget}.Sanitize(), pgx.Identifier{batch.MarkSchema}.Sanitize(),
				pgx.Identifier{batch.MarkTable}.Sanitize(), pgx.Identifier{batch.MarkLoadID}.Sanitize())); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, fmt.Sprintf(`DROP TRIGGER IF EXISTS %[1]s ON %[2]s;
				CREATE TRIGGER %[1]s AFTER INSERT ON %[2]s REFERENCING NEW TABLE AS pgferry_new
				FOR EACH STATEMENT EXECUTE FUNCTION %[3]s.capture_insert()`, trig, rel, sch)); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, fmt.Sprintf("INSERT INTO %s (%s, %s, %s, %s) VALUES ($1, $2, $3, $4)", rel,
			pgx.Identifier{batch.MarkTarget}.Sanitize(), pgx.Identifier{batch.MarkSchema}.Sanitize(),
			pgx.Identifier{batch.MarkTable}.Sanitize(), pgx.Identifier{batch.MarkLoadID}.Sanitize()),
			target, t.Schema, t.Name, loadID)
		return err
	})
	if err != nil {
		return explainPrivilege(fmt.Errorf("trigger: write load mark for %s on target %s: %w", t, target, err))
	}
	return nil
}
