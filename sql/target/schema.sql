-- pgferry schema sync registry on a target (idempotent).
-- One row per object schema sync manages for a pipeline, tied to the
-- source object it stands for: a table to its source oid, a column to its
-- source (oid, attnum), a view to its source oid. Renames on the source
-- become renames here, and only objects listed here are ever dropped.
CREATE SCHEMA IF NOT EXISTS @schema@;

CREATE TABLE IF NOT EXISTS @schema@.schema_objects (
    pipeline   text NOT NULL,
    kind       text NOT NULL CONSTRAINT schema_objects_kind_check
                   CHECK (kind IN ('table', 'column', 'constraint', 'index', 'function', 'view')),
    src_id     text NOT NULL,           -- table, view: oid; column: oid.attnum; constraint, index: oid/name; function: its target signature
    obj_schema text NOT NULL DEFAULT '', -- table, view, function: its target schema
    obj_name   text NOT NULL,           -- the target name
    former     text[] NOT NULL DEFAULT '{}', -- column: earlier names, oldest first
    detail     text NOT NULL DEFAULT '', -- function: its identity arguments
    PRIMARY KEY (pipeline, kind, src_id)
);

-- A registry made before functions and views were synced.
ALTER TABLE @schema@.schema_objects ADD COLUMN IF NOT EXISTS detail text NOT NULL DEFAULT '';
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conrelid = '@schema@.schema_objects'::regclass AND conname = 'schema_objects_kind_check'
                     AND pg_get_constraintdef(oid) LIKE '%''view''%') THEN
        ALTER TABLE @schema@.schema_objects DROP CONSTRAINT IF EXISTS schema_objects_kind_check;
        ALTER TABLE @schema@.schema_objects ADD CONSTRAINT schema_objects_kind_check
            CHECK (kind IN ('table', 'column', 'constraint', 'index', 'function', 'view'));
    END IF;
END $$;
