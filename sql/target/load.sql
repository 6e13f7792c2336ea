-- pgferry target objects for the initial load, version 1. Idempotent.
CREATE SCHEMA IF NOT EXISTS @schema@;

-- One row per pipeline and table that was ever loaded. While state is
-- 'loading', the applier does not write the table: it appends the table's
-- changes from each batch to load_held instead (in the batch's
-- transaction, in batch order). When every chunk is copied, one
-- transaction replays the held changes in order and sets 'loaded'.
CREATE TABLE IF NOT EXISTS @schema@.loads (
    pipeline    text NOT NULL,
    tbl_schema  text NOT NULL,
    tbl_name    text NOT NULL,
    load_id     text NOT NULL,
    state       text NOT NULL CHECK (state IN ('loading', 'loaded')),
    chunks      integer NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    PRIMARY KEY (pipeline, tbl_schema, tbl_name)
);

-- A chunk's row is written in the same transaction as its COPY, so a
-- chunk is copied at most once per load.
CREATE TABLE IF NOT EXISTS @schema@.load_chunks (
    load_id   text NOT NULL,
    chunk     integer NOT NULL,
    rows      bigint NOT NULL,
    copied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (load_id, chunk)
);

-- Changes of a loading table, held back in batch order (id).
CREATE TABLE IF NOT EXISTS @schema@.load_held (
    id         bigserial PRIMARY KEY,
    pipeline   text NOT NULL,
    tbl_schema text NOT NULL,
    tbl_name   text NOT NULL,
    part       text NOT NULL  -- JSON of pgapply.heldPart
);
CREATE INDEX IF NOT EXISTS load_held_table ON @schema@.load_held (pipeline, tbl_schema, tbl_name, id);

-- Secondary indexes dropped for the bulk copy, rebuilt from ddl before the
-- table is marked loaded. Kept here so that a crash cannot lose them.
CREATE TABLE IF NOT EXISTS @schema@.load_indexes (
    pipeline   text NOT NULL,
    tbl_schema text NOT NULL,
    tbl_name   text NOT NULL,
    index_name text NOT NULL,
    ddl        text NOT NULL,
    -- true: a unique index or constraint, rebuilt in the hand-over
    -- transaction; false: rebuilt as soon as the last chunk is copied.
    at_handover boolean NOT NULL,
    PRIMARY KEY (pipeline, tbl_schema, index_name)
);
-- What the rebuild compares an object of the same name with, when one is
-- there already (schema sync or an earlier attempt made it): kind is
-- 'index' or 'constraint'; def is an index's definition after USING, a
-- constraint's pg_get_constraintdef. NULL in rows an older version saved.
-- Schema sync keeps ddl and def in step with the source while the load
-- holds the object (pgsync's loadheld.go).
ALTER TABLE @schema@.load_indexes ADD COLUMN IF NOT EXISTS kind text CHECK (kind IN ('index', 'constraint'));
ALTER TABLE @schema@.load_indexes ADD COLUMN IF NOT EXISTS def text;
