-- pgferry trigger capture, version 4. Idempotent: safe to run again, and it
-- upgrades an install of version 2 or 3 in place (events already written
-- in the version 2 format stay readable: they carry their column names;
-- version 3 events name shapes, as version 4 events do).
-- Everything lives in the pipeline's own schema, never in public.
CREATE SCHEMA IF NOT EXISTS @schema@;

-- One row per captured statement, not per row: statement-level triggers
-- with transition tables aggregate every affected row into one insert.
-- Since version 3 an event names its table's shape (ev_shape, see shapes
-- below) instead of carrying its column names (ev_cols, still read for
-- events of version 2), and an UPDATE keeps old rows (ev_old) only when
-- they are needed (see capture_update).
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
ALTER TABLE @schema@.events ADD COLUMN IF NOT EXISTS ev_shape bigint;
-- No index: a window holds every transaction committed since the last one
-- and shipped events are purged, so a window read (and the purge) reads
-- nearly the whole table anyway; the index of version 2 (on ev_txid) cost
-- every captured statement an index insert and its WAL. This script runs
-- only when the installed version differs (see Install), under a lock
-- timeout: the ALTER and DROP above and here wait for open writers.
DROP INDEX IF EXISTS @schema@.events_txid;

-- A table's shape: its column names in order and the columns of its
-- replica identity key, as a statement saw them. An event names its shape
-- by (ev_relid, ev_shape); the id is a hash of what the trigger reads
-- (column names, replica identity index), so it changes whenever the
-- columns change, in the same statement that first writes with the new
-- columns: rows written before an ALTER decode with the old shape, rows
-- after it with the new one, whatever window they share. Rows are never
-- deleted (a few per schema change); they go with the schema.
CREATE TABLE IF NOT EXISTS @schema@.shapes (
    sh_relid oid NOT NULL,
    sh_id    bigint NOT NULL,
    sh_cols  text[] NOT NULL,
    -- the replica identity's columns: the primary key (REPLICA IDENTITY
    -- DEFAULT) or the index of REPLICA IDENTITY USING INDEX; empty when
    -- there is none (no primary key, FULL, NOTHING): every old row is kept
    sh_key   text[] NOT NULL,
    sh_at    timestamptz NOT NULL DEFAULT now()
);
-- Not unique: a writer must never wait for another one's uncommitted
-- shape (a unique index would make the first writers of a new shape wait
-- for each other's commits). Two sessions that meet a new shape at the
-- same time may both record it; the copies are equal and the drain reads
-- either.
CREATE INDEX IF NOT EXISTS shapes_id ON @schema@.shapes (sh_relid, sh_id);

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

-- settings_free says whether the text output of values of type t is the
-- same whatever the session's output settings (DateStyle, IntervalStyle,
-- extra_float_digits, bytea_output, TimeZone): domains are followed to
-- their base type and arrays to their element type; enums and the listed
-- built-in types are; anything else (dates and times, intervals, floats,
-- bytea, ranges, composites, extension types) is not, and statements on a
-- table with such a column check the settings.
CREATE OR REPLACE FUNCTION @schema@.settings_free(t pg_catalog.oid) RETURNS boolean
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    r record;
BEGIN
    LOOP
        SELECT ty.typtype, ty.typbasetype, ty.typelem, ty.typcategory, ty.typname, ty.typnamespace INTO r
        FROM pg_catalog.pg_type ty WHERE ty.oid OPERATOR(pg_catalog.=) t;
        IF NOT FOUND THEN
            RETURN false;
        ELSIF r.typtype OPERATOR(pg_catalog.=) 'd' THEN
            t := r.typbasetype;
        ELSIF r.typcategory OPERATOR(pg_catalog.=) 'A' AND r.typelem OPERATOR(pg_catalog.<>) 0 THEN
            t := r.typelem;
        ELSE
            EXIT;
        END IF;
    END LOOP;
    RETURN r.typtype OPERATOR(pg_catalog.=) 'e'
        OR (r.typnamespace OPERATOR(pg_catalog.=) 'pg_catalog'::pg_catalog.regnamespace
            AND r.typname OPERATOR(pg_catalog.=) ANY ('{int2,int4,int8,numeric,text,varchar,bpchar,bool,uuid,json,jsonb,oid,name,char,inet,cidr,macaddr,macaddr8,bit,varbit}'::pg_catalog.name[]));
END
$$;

-- shape_of registers a shape the first time a session meets it: the
-- shapes row (unless one is visible) and a session setting that says so, so
-- later statements of the session skip both. The setting's name carries
-- the shapes table's OID, so a capture schema dropped and installed again
-- (reset) is not mistaken for the old one. Its value (returned too) is what
-- the capture functions need to know of the shape, so they never read the
-- catalog for it again:
--   1st character: the replica identity key: 'n' none (every old row is
--     kept), 'l' one column that is the table's first (read off the row's
--     text), 'k' any other key, followed from the 3rd character on by the
--     columns that are not in the key (a text[] literal);
--   2nd character: 'p' when a column's text output depends on the output
--     settings (they are checked, see pin_output), else '-'.
-- The shape id hashes the column types too, so a type change (which can
-- change that) makes a new shape.
-- A session can set that setting itself; it then only keeps its own shape
-- from being registered, and the drain stops with an error naming the
-- missing shape: it cannot make rows decode differently. A wrong value it
-- sets only makes it keep more old rows, or fewer (which the drain would
-- drop anyway unless the key changed), or skip the settings check: it
-- changes that session's own rows only, as setting the output settings
-- wrongly between statements would not.
CREATE OR REPLACE FUNCTION @schema@.shape_of(rel pg_catalog.oid, id pg_catalog.int8, ri pg_catalog.oid)
RETURNS pg_catalog.text
LANGUAGE plpgsql
AS $$
DECLARE
    cols pg_catalog.text[] := ARRAY(SELECT a.attname::pg_catalog.text FROM pg_catalog.pg_attribute a
        WHERE a.attrelid OPERATOR(pg_catalog.=) rel AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped ORDER BY a.attnum);
    key pg_catalog.text[] := ARRAY(
        SELECT a.attname::pg_catalog.text
        FROM pg_catalog.pg_index i
        CROSS JOIN LATERAL pg_catalog.unnest(i.indkey::pg_catalog.int2[]) WITH ORDINALITY k(attnum, ord)
        JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) i.indrelid AND a.attnum OPERATOR(pg_catalog.=) k.attnum
        WHERE i.indexrelid OPERATOR(pg_catalog.=) ri
        ORDER BY k.ord);
    flags pg_catalog.text;
BEGIN
    IF NOT EXISTS (SELECT FROM @schema@.shapes s
                   WHERE s.sh_relid OPERATOR(pg_catalog.=) rel AND s.sh_id OPERATOR(pg_catalog.=) id) THEN
        INSERT INTO @schema@.shapes (sh_relid, sh_id, sh_cols, sh_key) VALUES (rel, id, cols, key);
    END IF;
    flags := CASE WHEN ri IS NULL THEN 'n'
                  WHEN key OPERATOR(pg_catalog.=) cols[1:1] THEN 'l'
                  ELSE 'k' END
        OPERATOR(pg_catalog.||) CASE WHEN EXISTS (
            SELECT FROM pg_catalog.pg_attribute a
            WHERE a.attrelid OPERATOR(pg_catalog.=) rel AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
              AND NOT @schema@.settings_free(a.atttypid)) THEN 'p' ELSE '-' END;
    IF ri IS NOT NULL AND NOT key OPERATOR(pg_catalog.=) cols[1:1] THEN
        flags := flags OPERATOR(pg_catalog.||) ARRAY(SELECT c FROM pg_catalog.unnest(cols) c WHERE c OPERATOR(pg_catalog.<>) ALL (key))::pg_catalog.text;
    END IF;
    PERFORM pg_catalog.set_config('pgferry.t' OPERATOR(pg_catalog.||) '@schema@.shapes'::pg_catalog.regclass::pg_catalog.oid
        OPERATOR(pg_catalog.||) 'x' OPERATOR(pg_catalog.||) pg_catalog.to_hex(id), flags, false);
    RETURN flags;
END
$$;
-- The version 3 signature.
DROP FUNCTION IF EXISTS @schema@.shape_of(pg_catalog.oid, pg_catalog.int8, pg_catalog.text[], pg_catalog.oid);

-- The names under which a session's TimeZone prints timestamps exactly as
-- UTC does ("+00"). Many servers default to Etc/UTC: before version 3 every
-- statement of those sessions paid for pinning and unpinning the settings.
CREATE OR REPLACE FUNCTION @schema@.utc_names() RETURNS pg_catalog.text[]
LANGUAGE sql IMMUTABLE
AS $$ SELECT '{UTC,Etc/UTC,Etc/UCT,UCT,Etc/Universal,Universal,Etc/Zulu,Zulu}'::pg_catalog.text[] $$;

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
       AND pg_catalog.current_setting('TimeZone') OPERATOR(pg_catalog.=) ANY (@schema@.utc_names()) THEN
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

-- lead_key returns the first field of a row's text, with its delimiters,
-- when it is unquoted (then it cannot hold a comma), else NULL: the key
-- text of a table keyed by its first column. Inlined by the planner.
CREATE OR REPLACE FUNCTION @schema@.lead_key(r pg_catalog.text) RETURNS pg_catalog.text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE WHEN pg_catalog.substr(r, 2, 1) OPERATOR(pg_catalog.=) '"' THEN NULL
                WHEN pg_catalog.strpos(r, ',') OPERATOR(pg_catalog.=) 0 THEN r
                ELSE pg_catalog.left(r, pg_catalog.strpos(r, ',')) END
$$;

-- Every capture function below starts the same way (plpgsql has no
-- macros): it reads the table's column names and types (one index scan of
-- pg_attribute; the version 2 helper columns_of cost a plan per call and
-- a sort) and its replica identity index (from the relation cache),
-- hashes them into the shape id, and reads what the session knows of that
-- shape (registering it the first time, see shape_of). Only when a column's
-- text depends on the output settings does it check them (inline;
-- pin_output is only called when one differs). Since version 4 nothing
-- else of the catalog is read per statement: version 3 also deparsed the
-- key's index definition on every UPDATE and checked the settings on
-- every statement.

CREATE OR REPLACE FUNCTION @schema@.capture_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
AS $$
DECLARE
    pinned pg_catalog.text[];
    ri pg_catalog.oid := pg_catalog.pg_get_replica_identity_index(TG_RELID);
    sh pg_catalog.int8 := pg_catalog.hashtextextended(ARRAY(
        SELECT a.attname::pg_catalog.text OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) a.atttypid FROM pg_catalog.pg_attribute a
        WHERE a.attrelid OPERATOR(pg_catalog.=) TG_RELID AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped ORDER BY a.attnum)::pg_catalog.text
        OPERATOR(pg_catalog.||) '/' OPERATOR(pg_catalog.||) COALESCE(ri, 0), TG_RELID::pg_catalog.int8);
    f pg_catalog.text := pg_catalog.current_setting('pgferry.t' OPERATOR(pg_catalog.||) '@schema@.shapes'::pg_catalog.regclass::pg_catalog.oid
        OPERATOR(pg_catalog.||) 'x' OPERATOR(pg_catalog.||) pg_catalog.to_hex(sh), true);
BEGIN
    IF f IS NULL THEN
        f := @schema@.shape_of(TG_RELID, sh, ri);
    END IF;
    IF pg_catalog.substr(f, 2, 1) OPERATOR(pg_catalog.=) 'p'
       AND NOT (pg_catalog.current_setting('TimeZone') OPERATOR(pg_catalog.=) ANY (@schema@.utc_names())
            AND pg_catalog.starts_with(pg_catalog.current_setting('DateStyle'), 'ISO')
            AND pg_catalog.current_setting('IntervalStyle') OPERATOR(pg_catalog.=) 'postgres'
            AND pg_catalog.current_setting('bytea_output') OPERATOR(pg_catalog.=) 'hex'
            AND pg_catalog.current_setting('extra_float_digits') OPERATOR(pg_catalog.>) '0') THEN
        pinned := @schema@.pin_output();
    END IF;
    INSERT INTO @schema@.events (ev_relid, ev_op, ev_shape, ev_new)
    SELECT TG_RELID, 'I', sh, n.rows
    FROM (SELECT ARRAY(SELECT y.*::pg_catalog.text FROM pgferry_new y) AS rows) n
    WHERE n.rows OPERATOR(pg_catalog.<>) '{}';
    IF pinned IS NOT NULL THEN
        PERFORM @schema@.unpin_output(pinned);
    END IF;
    RETURN NULL;
END
$$;

-- An UPDATE keeps an old row only when the replicas need it to find the
-- row it replaces:
--   * the table has no replica identity key (no primary key, REPLICA
--     IDENTITY FULL or NOTHING): every old row, matched by its whole
--     content (REPLICA IDENTITY FULL semantics);
--   * otherwise, an old row whose key is not the key of any new row of the
--     statement (its key changed, or another row took it): the drain
--     removes exactly those (batch.Compactor: "remove Old, then add New"),
--     so the others would be dropped there anyway.
-- Keys are compared as text, as the drain compares them. A key that is one
-- leading column is read off the row's text (an unquoted first field ends
-- at the first comma; a quoted one keeps its old row); other keys are
-- compared as jsonb text of their columns. The old rows of DELETE are
-- always kept. For a leading-column key the rows are read once into
-- arrays and a one-row statement (the common case) is decided without
-- another query: the insert is then a plain VALUES, whose plan is much
-- cheaper to start than a statement with subplans over the transition
-- tables.
CREATE OR REPLACE FUNCTION @schema@.capture_update() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
AS $$
DECLARE
    pinned pg_catalog.text[];
    ri pg_catalog.oid := pg_catalog.pg_get_replica_identity_index(TG_RELID);
    sh pg_catalog.int8 := pg_catalog.hashtextextended(ARRAY(
        SELECT a.attname::pg_catalog.text OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) a.atttypid FROM pg_catalog.pg_attribute a
        WHERE a.attrelid OPERATOR(pg_catalog.=) TG_RELID AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped ORDER BY a.attnum)::pg_catalog.text
        OPERATOR(pg_catalog.||) '/' OPERATOR(pg_catalog.||) COALESCE(ri, 0), TG_RELID::pg_catalog.int8);
    f pg_catalog.text := pg_catalog.current_setting('pgferry.t' OPERATOR(pg_catalog.||) '@schema@.shapes'::pg_catalog.regclass::pg_catalog.oid
        OPERATOR(pg_catalog.||) 'x' OPERATOR(pg_catalog.||) pg_catalog.to_hex(sh), true);
    nonkey pg_catalog.text[];
    o pg_catalog.text[];
    n pg_catalog.text[];
BEGIN
    IF f IS NULL THEN
        f := @schema@.shape_of(TG_RELID, sh, ri);
    END IF;
    IF pg_catalog.substr(f, 2, 1) OPERATOR(pg_catalog.=) 'p'
       AND NOT (pg_catalog.current_setting('TimeZone') OPERATOR(pg_catalog.=) ANY (@schema@.utc_names())
            AND pg_catalog.starts_with(pg_catalog.current_setting('DateStyle'), 'ISO')
            AND pg_catalog.current_setting('IntervalStyle') OPERATOR(pg_catalog.=) 'postgres'
            AND pg_catalog.current_setting('bytea_output') OPERATOR(pg_catalog.=) 'hex'
            AND pg_catalog.current_setting('extra_float_digits') OPERATOR(pg_catalog.>) '0') THEN
        pinned := @schema@.pin_output();
    END IF;
    IF pg_catalog.left(f, 1) OPERATOR(pg_catalog.=) 'n' THEN
        INSERT INTO @schema@.events (ev_relid, ev_op, ev_shape, ev_old, ev_new)
        SELECT TG_RELID, 'U', sh, ARRAY(SELECT x.*::pg_catalog.text FROM pgferry_old x), n.rows
        FROM (SELECT ARRAY(SELECT y.*::pg_catalog.text FROM pgferry_new y) AS rows) n
        WHERE n.rows OPERATOR(pg_catalog.<>) '{}';
    ELSIF pg_catalog.left(f, 1) OPERATOR(pg_catalog.=) 'l' THEN
        SELECT ARRAY(SELECT x.*::pg_catalog.text FROM pgferry_old x), ARRAY(SELECT y.*::pg_catalog.text FROM pgferry_new y)
        INTO o, n;
        IF pg_catalog.cardinality(n) OPERATOR(pg_catalog.=) 1 THEN
            IF @schema@.lead_key(o[1]) OPERATOR(pg_catalog.=) @schema@.lead_key(n[1]) THEN
                o := NULL;
            END IF;
        ELSE
            o := NULLIF(ARRAY(SELECT r FROM pg_catalog.unnest(o) r
                              WHERE @schema@.lead_key(r) IS NULL
                                 OR NOT EXISTS (SELECT FROM pg_catalog.unnest(n) s
                                                WHERE @schema@.lead_key(s) OPERATOR(pg_catalog.=) @schema@.lead_key(r))), '{}');
        END IF;
        IF n OPERATOR(pg_catalog.<>) '{}' THEN
            INSERT INTO @schema@.events (ev_relid, ev_op, ev_shape, ev_old, ev_new) VALUES (TG_RELID, 'U', sh, o, n);
        END IF;
    ELSE
        nonkey := pg_catalog.substr(f, 3)::pg_catalog.text[];
        INSERT INTO @schema@.events (ev_relid, ev_op, ev_shape, ev_old, ev_new)
        SELECT TG_RELID, 'U', sh, NULLIF(ARRAY(
                   SELECT x.*::pg_catalog.text FROM pgferry_old x
                   WHERE nonkey IS NULL
                      OR NOT EXISTS (SELECT FROM pgferry_new y
                                     WHERE (pg_catalog.to_jsonb(y.*) OPERATOR(pg_catalog.-) nonkey)::pg_catalog.text
                                           OPERATOR(pg_catalog.=) (pg_catalog.to_jsonb(x.*) OPERATOR(pg_catalog.-) nonkey)::pg_catalog.text)),
                 '{}'), n.rows
        FROM (SELECT ARRAY(SELECT y.*::pg_catalog.text FROM pgferry_new y) AS rows) n
        WHERE n.rows OPERATOR(pg_catalog.<>) '{}';
    END IF;
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
    pinned pg_catalog.text[];
    ri pg_catalog.oid := pg_catalog.pg_get_replica_identity_index(TG_RELID);
    sh pg_catalog.int8 := pg_catalog.hashtextextended(ARRAY(
        SELECT a.attname::pg_catalog.text OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) a.atttypid FROM pg_catalog.pg_attribute a
        WHERE a.attrelid OPERATOR(pg_catalog.=) TG_RELID AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped ORDER BY a.attnum)::pg_catalog.text
        OPERATOR(pg_catalog.||) '/' OPERATOR(pg_catalog.||) COALESCE(ri, 0), TG_RELID::pg_catalog.int8);
    f pg_catalog.text := pg_catalog.current_setting('pgferry.t' OPERATOR(pg_catalog.||) '@schema@.shapes'::pg_catalog.regclass::pg_catalog.oid
        OPERATOR(pg_catalog.||) 'x' OPERATOR(pg_catalog.||) pg_catalog.to_hex(sh), true);
BEGIN
    IF f IS NULL THEN
        f := @schema@.shape_of(TG_RELID, sh, ri);
    END IF;
    IF pg_catalog.substr(f, 2, 1) OPERATOR(pg_catalog.=) 'p'
       AND NOT (pg_catalog.current_setting('TimeZone') OPERATOR(pg_catalog.=) ANY (@schema@.utc_names())
            AND pg_catalog.starts_with(pg_catalog.current_setting('DateStyle'), 'ISO')
            AND pg_catalog.current_setting('IntervalStyle') OPERATOR(pg_catalog.=) 'postgres'
            AND pg_catalog.current_setting('bytea_output') OPERATOR(pg_catalog.=) 'hex'
            AND pg_catalog.current_setting('extra_float_digits') OPERATOR(pg_catalog.>) '0') THEN
        pinned := @schema@.pin_output();
    END IF;
    INSERT INTO @schema@.events (ev_relid, ev_op, ev_shape, ev_old)
    SELECT TG_RELID, 'D', sh, o.rows
    FROM (SELECT ARRAY(SELECT x.*::pg_catalog.text FROM pgferry_old x) AS rows) o
    WHERE o.rows OPERATOR(pg_catalog.<>) '{}';
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
