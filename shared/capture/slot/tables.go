package slot

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pgferry/pgferry/shared/capture"
	"github.com/pgferry/pgferry/shared/pgtext"
)

// sourceTable is a source relation the patterns select: an ordinary
// table, a partitioned root, or a partition of a selected root.
type sourceTable struct {
	oid       uint32
	schema    string
	name      string
	partition bool
	storage   bool // has rows of its own (relkind 'r'): needs a replica identity
	usable    bool // its replica identity lets UPDATE/DELETE be published
	published bool // a member of the publication itself
	unlogged  bool // writes no WAL, so a slot never sees its changes
}

func (t sourceTable) String() string { return t.schema + "." + t.name }

// SyncTables makes the publication hold every table the patterns select
// (a partitioned root stands for its partitions, present and future), and
// checks replica identities first: a table whose UPDATE and DELETE would
// fail once published gets REPLICA IDENTITY FULL when
// source.replica_identity_full allows, and otherwise the whole set-up is
// refused with ErrNoReplicaIdentity naming the tables, before anything is
// added. It runs on every drain, so new tables are picked up.
//
// A table joins the publication in a transaction that first blocks
// writers to it, then adds it, then (source.copy_existing) emits its rows
// as logical decoding messages. The slot decodes that transaction in
// commit order: rows committed before it arrive as the copy, changes
// after it as changes, and none in between is missed or doubled.
func (c *Capture) SyncTables(ctx context.Context) error {
	tables, err := c.listTables(ctx)
	if err != nil {
		return err
	}
	var refused, unlogged []string
	for _, t := range tables {
		if t.unlogged {
			unlogged = append(unlogged, t.String())
		}
	}
	if len(unlogged) > 0 {
		return fmt.Errorf("slot: unlogged tables cannot be captured from a slot (they write no WAL): %s; "+
			"make them logged (ALTER TABLE … SET LOGGED), exclude them (source.exclude), or use capture: trigger",
			strings.Join(unlogged, ", "))
	}
	for _, t := range tables {
		if !t.storage || t.usable {
			continue
		}
		if !c.cfg.Source.ReplicaIdentityFull {
			refused = append(refused, t.String())
			continue
		}
		if _, err := c.pool.Exec(ctx, "ALTER TABLE "+pgx.Identifier{t.schema, t.name}.Sanitize()+" REPLICA IDENTITY FULL"); err != nil {
			return explainPrivilege(fmt.Errorf("slot: set REPLICA IDENTITY FULL on %s: %w", t, err))
		}
		c.log.Info("replica identity set to FULL", "table", t.String())
	}
	if len(refused) > 0 {
		return fmt.Errorf("%w: %s. Publishing them would make their UPDATE and DELETE statements fail on the source. "+
			"Give them a primary key (or REPLICA IDENTITY USING INDEX), exclude them (source.exclude), "+
			"or set source.replica_identity_full: true to let pgferry set REPLICA IDENTITY FULL on them",
			ErrNoReplicaIdentity, strings.Join(refused, ", "))
	}
	for _, t := range tables {
		if t.partition || t.published {
			continue
		}
		if err := c.addTable(ctx, t); err != nil {
			return err
		}
	}
	return nil
}

func (c *Capture) listTables(ctx context.Context) ([]sourceTable, error) {
	rows, err := c.pool.Query(ctx, `
		SELECT c.oid, n.nspname, c.relname, c.relispartition, c.relkind = 'r', c.relpersistence = 'u',
		       CASE c.relreplident
		           WHEN 'f' THEN true
		           WHEN 'd' THEN EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
		           WHEN 'i' THEN EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident)
		           ELSE false END,
		       EXISTS (SELECT 1 FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
		               WHERE p.pubname = $2 AND pr.prrelid = c.oid),
		       rn.nspname, rc.relname
		FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_class rc ON rc.oid = coalesce(pg_partition_root(c.oid), c.oid)
		JOIN pg_namespace rn ON rn.oid = rc.relnamespace
		WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't'
		  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
		  AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'
		  AND n.nspname <> $1
		ORDER BY c.oid`, c.cfg.CaptureSchema(), c.pub)
	if err != nil {
		return nil, fmt.Errorf("slot: list source tables: %w", err)
	}
	defer rows.Close()
	var out []sourceTable
	for rows.Next() {
		var t sourceTable
		var rootSchema, rootName string
		if err := rows.Scan(&t.oid, &t.schema, &t.name, &t.partition, &t.storage, &t.unlogged, &t.usable, &t.published, &rootSchema, &rootName); err != nil {
			return nil, fmt.Errorf("slot: list source tables: %w", err)
		}
		if c.cfg.Replicated(rootSchema, rootName) {
			out = append(out, t)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("slot: list source tables: %w", err)
	}
	return out, nil
}

// copyChunk is the number of rows per copy message.
const copyChunk = 1000

func (c *Capture) addTable(ctx context.Context, t sourceTable) error {
	rel := pgx.Identifier{t.schema, t.name}.Sanitize()
	err := pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
		// Do not queue behind a long transaction for ever; the next drain
		// tries again.
		if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '5s'"); err != nil {
			return err
		}
		// Writers wait until the table is in the publication, so the copy
		// below and the published changes after it meet exactly. Without
		// ONLY, a partitioned root's partitions are locked too.
		if _, err := tx.Exec(ctx, "LOCK TABLE "+rel+" IN SHARE ROW EXCLUSIVE MODE"); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "ALTER PUBLICATION "+pgx.Identifier{c.pub}.Sanitize()+" ADD TABLE "+rel); err != nil {
			return err
		}
		if copies, err := capture.CopiesRows(ctx, tx, c.cfg.Source, t.oid, c.KeylessCopyOnly); err != nil || !copies {
			return err
		}
		// The rows' text form depends on these settings; trigger capture
		// pins the same ones.
		if _, err := tx.Exec(ctx, pgtext.SessionSettings); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, fmt.Sprintf(`
			SELECT pg_logical_emit_message(true, $1, json_build_object(
			           'copy', $2::oid::int8,
			           'cols', (SELECT array_agg(attname::text ORDER BY attnum) FROM pg_attribute
			                    WHERE attrelid = $2 AND attnum > 0 AND NOT attisdropped),
			           'rows', array_agg(r))::text)
			FROM (SELECT t.*::text AS r, (row_number() OVER () - 1) / %d AS chunk FROM %s t) s
			GROUP BY chunk`, copyChunk, rel), c.prefix, t.oid)
		return err
	})
	if err != nil {
		return explainPrivilege(fmt.Errorf("slot: add %s to publication %s: %w", t, c.pub, err))
	}
	c.log.Info("table added to the publication", "table", t.String(), "publication", c.pub)
	return nil
}
