package schema

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Querier runs a query (a pool, a connection or a transaction).
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Fingerprint returns a digest of the source catalog objects schema sync
// looks at — relations, columns, defaults, constraints, indexes, user
// types, enum labels, functions, procedures, aggregates, views and
// materialized views (their queries and options), extensions — in every
// user schema except skip. It changes with any DDL that could change a plan and with
// nothing else (TRUNCATE, VACUUM and ANALYZE leave it alone). It is one
// query, cheap enough to run once a drain window; it may change for a
// table that is not replicated, which only costs an empty schema job.
func Fingerprint(ctx context.Context, q Querier, skip []string) (string, error) {
	if skip == nil {
		skip = []string{}
	}
	var fp string
	err := q.QueryRow(ctx, `
		SELECT md5(coalesce(string_agg(x, E'\n' ORDER BY x), '')) FROM (
		    SELECT concat_ws(' ', 'r', c.oid, n.nspname, c.relname, c.relkind, c.relpersistence, md5(coalesce(c.relpartbound::text, '')),
		                     CASE WHEN c.relkind = 'v' THEN c.reloptions END) AS x
		    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		    WHERE c.relkind IN ('r', 'p', 'i', 'I', 'S', 'c', 'v', 'm') AND `+userNS+`
		  UNION ALL
		    SELECT concat_ws(' ', 'a', a.attrelid, a.attnum, a.attname, a.atttypid, a.atttypmod, a.attnotnull,
		                     a.attidentity, a.attgenerated, a.attisdropped, a.attcollation)
		    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		    WHERE c.relkind IN ('r', 'p', 'c', 'v', 'm') AND a.attnum > 0 AND `+userNS+`
		  UNION ALL
		    SELECT concat_ws(' ', 'd', d.adrelid, d.adnum, md5(d.adbin::text))
		    FROM pg_attrdef d JOIN pg_class c ON c.oid = d.adrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		    WHERE `+userNS+`
		  UNION ALL
		    SELECT concat_ws(' ', 'k', k.oid, k.conname, k.contype, k.conrelid, k.contypid, k.confrelid, k.conkey, k.confkey,
		                     k.convalidated, k.confupdtype, k.confdeltype, md5(coalesce(k.conbin::text, '')))
		    FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace
		    WHERE `+userNS+`
		  UNION ALL
		    SELECT concat_ws(' ', 'i', i.indexrelid, i.indkey, i.indclass, i.indisunique, md5(coalesce(i.indexprs::text, '') || coalesce(i.indpred::text, '')))
		    FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		    WHERE `+userNS+`
		  UNION ALL
		    SELECT concat_ws(' ', 't', t.oid, n.nspname, t.typname, t.typtype, t.typbasetype, t.typtypmod, t.typnotnull, md5(coalesce(t.typdefaultbin::text, '')))
		    FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
		    WHERE t.typtype IN ('e', 'd', 'c') AND `+userNS+`
		  UNION ALL
		    SELECT concat_ws(' ', 'e', e.enumtypid, e.enumsortorder, e.enumlabel)
		    FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid JOIN pg_namespace n ON n.oid = t.typnamespace
		    WHERE `+userNS+`
		  UNION ALL
		    -- The whole pg_proc row: body (prosrc, or prosqlbody from
		    -- PostgreSQL 14), kind, parameters, defaults, settings, cost.
		    -- A grant changes it too, which only costs an empty job.
		    SELECT concat_ws(' ', 'f', p.oid, md5(p::text))
		    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		    WHERE `+userNS+`
		  UNION ALL
		    SELECT concat_ws(' ', 'g', g.aggfnoid, md5(g::text))
		    FROM pg_aggregate g JOIN pg_proc p ON p.oid = g.aggfnoid JOIN pg_namespace n ON n.oid = p.pronamespace
		    WHERE `+userNS+`
		  UNION ALL
		    SELECT concat_ws(' ', 'w', w.ev_class, md5(w.ev_action::text))
		    FROM pg_rewrite w JOIN pg_class c ON c.oid = w.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace
		    WHERE c.relkind IN ('v', 'm') AND `+userNS+`
		  UNION ALL
		    SELECT concat_ws(' ', 'x', extname, extversion, extnamespace) FROM pg_extension
		) s`, skip).Scan(&fp)
	if err != nil {
		return "", fmt.Errorf("schema: catalog fingerprint: %w", err)
	}
	return fp, nil
}
