-- pgferry target objects, version 1. Idempotent: safe to run again.
CREATE SCHEMA IF NOT EXISTS @schema@;

-- The applied position per pipeline and message group. It is written in
-- the same transaction as the batch's data, so a replayed batch whose end
-- is at or below it is a no-op.
CREATE TABLE IF NOT EXISTS @schema@.watermarks (
    pipeline   text NOT NULL,
    msg_group  text NOT NULL,
    tick       numeric(20) NOT NULL,
    tx         bigint NOT NULL,
    seq        numeric(20) NOT NULL,
    lineage    text NOT NULL DEFAULT '',
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pipeline, msg_group)
);
