-- pgferry trigger capture, version 1. Idempotent: safe to run again.
-- Everything lives in the pipeline's own schema, never in public.
CREATE SCHEMA IF NOT EXISTS @schema@;

-- One row per captured statement, not per row: statement-level triggers
-- with transition tables aggregate every affected row into one insert.
-- Rows are kept as record literals (the row's text output, taken with
-- alias.*::text: a bare alias would resolve to a column of that name), which is
-- exact for every type and needs no per-type code.
CREATE TABLE IF NOT EXISTS @schema@.events (
    ev_id    bigint GENERATED ALWAYS AS IDENTITY,
    ev_txid  xid8 NOT NULL DEFAULT pg_current_xact_id(),
    ev_time  timestamptz NOT NULL DEFAULT statement_timestamp(),
    ev_relid oid NOT NULL,
    ev_op    "char" NOT NULL,
    ev_cols  text[],
    ev_old   text[],
    ev_new   text[]
);
-- Windows are selected by transaction id range, then filtered by snapshot.
-- Created only when missing: CREATE INDEX IF NOT EXISTS takes a SHARE lock
-- on events before it finds the index, so every re-install (each drain)
-- would wait for any open writing transaction and stall new writers
-- queued behind it.
DO $do$
BEGIN
    IF to_regclass('@schema@.events_txid') IS NULL THEN
        CREATE INDEX events_txid ON @schema@.events (ev_txid);
    END IF;
END
$do$;

-- The snapshot taken when capture was first installed: the first window
-- starts there, so no transaction that wrote events can be skipped.
CREATE TABLE IF NOT EXISTS @schema@.state (
    singleton        boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version          integer NOT NULL,
    initial_snapshot text NOT NULL,
    installed_at     timestamptz NOT NULL DEFAULT now()
);

CREATE OR REPLACE FUNCTION @schema@.columns_of(rel oid) RETURNS text[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT array_agg(attname::text ORDER BY attnum)
    FROM pg_catalog.pg_attribute
    WHERE attrelid = rel AND attnum > 0 AND NOT attisdropped
$$;

-- The trigger functions pin every setting that changes a type's text
-- output, so a value reads back identically whatever the writing session
-- had set (DateStyle, extra_float_digits, bytea_output, IntervalStyle,
-- TimeZone).
-- SECURITY DEFINER: writers need no rights on the capture schema.
CREATE OR REPLACE FUNCTION @schema@.capture_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET datestyle = 'ISO, YMD' SET intervalstyle = 'postgres'
SET extra_float_digits = 1 SET bytea_output = 'hex' SET timezone = 'UTC'
AS $$
BEGIN
    INSERT INTO @schema@.events (ev_relid, ev_op, ev_cols, ev_new)
    SELECT TG_RELID, 'I', @schema@.columns_of(TG_RELID), array_agg(n.*::text)
    FROM pgferry_new n HAVING count(*) > 0;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION @schema@.capture_update() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET datestyle = 'ISO, YMD' SET intervalstyle = 'postgres'
SET extra_float_digits = 1 SET bytea_output = 'hex' SET timezone = 'UTC'
AS $$
BEGIN
    INSERT INTO @schema@.events (ev_relid, ev_op, ev_cols, ev_old, ev_new)
    SELECT TG_RELID, 'U', @schema@.columns_of(TG_RELID), o.rows, n.rows
    FROM (SELECT array_agg(x.*::text) AS rows FROM pgferry_old x) o,
         (SELECT array_agg(y.*::text) AS rows FROM pgferry_new y) n
    WHERE n.rows IS NOT NULL;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION @schema@.capture_delete() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET datestyle = 'ISO, YMD' SET intervalstyle = 'postgres'
SET extra_float_digits = 1 SET bytea_output = 'hex' SET timezone = 'UTC'
AS $$
BEGIN
    INSERT INTO @schema@.events (ev_relid, ev_op, ev_cols, ev_old)
    SELECT TG_RELID, 'D', @schema@.columns_of(TG_RELID), array_agg(o.*::text)
    FROM pgferry_old o HAVING count(*) > 0;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION @schema@.capture_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO @schema@.events (ev_relid, ev_op) VALUES (TG_RELID, 'T');
    RETURN NULL;
END
$$;

REVOKE ALL ON ALL TABLES IN SCHEMA @schema@ FROM PUBLIC;
