-- pgferry schema sync registry on a target (idempotent).
-- One row per object schema sync manages for a pipeline, tied to the
-- source object it stands for: a table to its source oid, a column to its
-- source (oid, attnum). Renames on the source become renames here, and
-- only objects listed here are ever dropped.
CREATE SCHEMA IF NOT EXISTS @schema@;

CREATE TABLE IF NOT EXISTS @schema@.schema_objects (
    pipeline   text NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('table', 'column', 'constraint', 'index')),
    src_id     text NOT NULL,           -- table: oid; column: oid.attnum; constraint, index: oid/name
    obj_schema text NOT NULL DEFAULT '', -- table: its target schema
    obj_name   text NOT NULL,           -- the target name
    former     text[] NOT NULL DEFAULT '{}', -- column: earlier names, oldest first
    PRIMARY KEY (pipeline, kind, src_id)
);
