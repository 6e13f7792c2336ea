-- pgferry demo source: a small shop with awkward types on purpose.
CREATE TYPE order_status AS ENUM ('new', 'paid', 'shipped', 'cancelled');
CREATE DOMAIN positive_qty AS integer CHECK (VALUE > 0);
CREATE TYPE money_pair AS (amount numeric, currency text);

CREATE TABLE customers (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text NOT NULL,
    email      text,
    tags       text[],
    profile    jsonb,
    raw_json   json,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE products (
    sku       text PRIMARY KEY,
    title     text NOT NULL,
    price     numeric(12, 2),
    weight_kg float8,
    dims      int[],
    photo     bytea,
    search    tsvector
);

CREATE TABLE orders (
    id             bigserial PRIMARY KEY,
    customer_id    bigint NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    status         order_status NOT NULL DEFAULT 'new',
    total          numeric,
    total_with_tax numeric GENERATED ALWAYS AS (round(total * 1.2, 2)) STORED,
    placed_at      timestamptz NOT NULL DEFAULT now(),
    note           text,
    client_ip      inet,
    refund         money_pair
);

CREATE TABLE order_items (
    order_id bigint NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    line     int NOT NULL,
    sku      text NOT NULL REFERENCES products (sku),
    qty      positive_qty NOT NULL,
    PRIMARY KEY (order_id, line)
);

CREATE TABLE readings (
    sensor text NOT NULL,
    at     timestamptz NOT NULL,
    value  float8,
    PRIMARY KEY (sensor, at)
) PARTITION BY RANGE (at);
CREATE TABLE readings_old PARTITION OF readings FOR VALUES FROM (MINVALUE) TO ('2025-01-01');
CREATE TABLE readings_recent PARTITION OF readings DEFAULT;

-- No primary key: rows are matched on every column, duplicates stay.
CREATE TABLE audit_log (at timestamptz, who text, what text);

CREATE TABLE "Odd ""Names""" ("Key" int PRIMARY KEY, "value;--" text, "select" numeric[]);
