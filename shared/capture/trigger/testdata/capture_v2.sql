-- pgferry trigger capture, version 2. Idempotent: safe to run again.
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

-- The functions below run SECURITY DEFINER (writers need no rights on the
-- capture schema, and cannot forge events) but without a SET search_path
-- clause: a function-level SET costs a GUC save and restore on every call,
-- which measured as the largest part of the trigger overhead. Instead every
-- name, operator and type is qualified with pg_catalog or the capture
-- schema, which is as safe (nothing is looked up through the caller's
-- search_path).
CREATE OR REPLACE FUNCTION @schema@.columns_of(rel pg_catalog.oid) RETURNS pg_catalog.text[]
LANGUAGE sql STABLE
AS $$
    SELECT pg_catalog.array_agg(attname::pg_catalog.text ORDER BY attnum)
    FROM pg_catalog.pg_attribute
    WHERE attrelid OPERATOR(pg_catalog.=) rel
      AND attnum OPERATOR(pg_catalog.>) 0 AND NOT attisdropped
$$;

-- Rows are captured in their text form, which depends on a few session
-- settings. pin_output() checks them; when one differs from the canonical
-- value (rare) it sets the canonical values for the rest of the statement
-- and returns the old ones, which unpin_output() puts back. Only that rare
-- path pays for GUC changes.
CREATE OR REPLACE FUNCTION @schema@.pin_output() RETURNS pg_catalog.text[]
LANGUAGE plpgsql
AS $$
DECLARE
    names CONSTANT pg_catalog.text[] := '{DateStyle,IntervalStyle,extra_float_digits,bytea_output,TimeZone}';
    canon CONSTANT pg_catalog.text[] := '{"ISO, YMD",postgres,1,hex,UTC}';
    old pg_catalog.text[];
BEGIN
    IF pg_catalog.starts_with(pg_catalog.current_setting('DateStyle'), 'ISO')
       AND pg_catalog.current_setting('IntervalStyle') OPERATOR(pg_catalog.=) 'postgres'
       AND pg_catalog.current_setting('extra_float_digits')::pg_catalog.int4 OPERATOR(pg_catalog.>) 0
       AND pg_catalog.current_setting('bytea_output') OPERATOR(pg_catalog.=) 'hex'
       AND pg_catalog.current_setting('TimeZone') OPERATOR(pg_catalog.=) 'UTC' THEN
        RETURN NULL;
    END IF;
    FOR i IN 1..5 LOOP
        old := old OPERATOR(pg_catalog.||) pg_catalog.current_setting(names[i]);
        PERFORM pg_catalog.set_config(names[i], canon[i], true);
    END LOOP;
    RETURN old;
END
$$;

CREATE OR REPLACE FUNCTION @schema@.unpin_output(old pg_catalog.text[]) RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    names CONSTANT pg_catalog.text[] := '{DateStyle,IntervalStyle,extra_float_digits,bytea_output,TimeZone}';
BEGIN
    FOR i IN 1..5 LOOP
        PERFORM pg_catalog.set_config(names[i], old[i], true);
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION @schema@.capture_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
AS $$
DECLARE
    pinned pg_catalog.text[] := @schema@.pin_output();
BEGIN
    INSERT INTO @schema@.events (ev_relid, ev_op, ev_cols, ev_new)
    SELECT TG_RELID, 'I', @schema@.columns_of(TG_RELID), pg_catalog.array_agg(n.*::pg_catalog.text)
    FROM pgferry_new n HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 0;
    IF pinned IS NOT NULL THEN
        PERFORM @schema@.unpin_output(pinned);
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION @schema@.capture_update() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
AS $$
DECLARE
    pinned pg_catalog.text[] := @schema@.pin_output();
BEGIN
    INSERT INTO @schema@.events (ev_relid, ev_op, ev_cols, ev_old, ev_new)
    SELECT TG_RELID, 'U', @schema@.columns_of(TG_RELID), o.rows, n.rows
    FROM (SELECT pg_catalog.array_agg(x.*::pg_catalog.text) AS rows FROM pgferry_old x) o,
         (SELECT pg_catalog.array_agg(y.*::pg_catalog.text) AS rows FROM pgferry_new y) n
    WHERE n.rows IS NOT NULL;
    IF pinned IS NOT NULL THEN
        PERFORM @schema@.unpin_output(pinned);
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION @schema@.capture_delete() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
AS $$
DECLARE
    pinned pg_catalog.text[] := @schema@.pin_output();
BEGIN
    INSERT INTO @schema@.events (ev_relid, ev_op, ev_cols, ev_old)
    SELECT TG_RELID, 'D', @schema@.columns_of(TG_RELID), pg_catalog.array_agg(o.*::pg_catalog.text)
    FROM pgferry_old o HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 0;
    IF pinned IS NOT NULL THEN
        PERFORM @schema@.unpin_output(pinned);
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION @schema@.capture_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
AS $$
BEGIN
    INSERT INTO @schema@.events (ev_relid, ev_op) VALUES (TG_RELID, 'T');
    RETURN NULL;
END
$$;

REVOKE ALL ON ALL TABLES IN SCHEMA @schema@ FROM PUBLIC;
