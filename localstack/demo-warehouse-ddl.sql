-- The warehouse tables of `make demo`, in Redshift DDL, typed as
-- rstype.Map types the shop's columns (customers without raw_json, which
-- the warehouse's rules exclude). Temporary: once schema sync for Redshift
-- is wired into the runner, the warehouse pipeline creates these itself
-- and this file goes. One statement per line (sent as one Data API batch).
CREATE TABLE customers (id bigint, name varchar(65535), email varchar(65535), tags varchar(65535), profile super, created_at timestamptz, PRIMARY KEY (id))
CREATE TABLE products (sku varchar(65535), title varchar(65535), price numeric(12,2), weight_kg double precision, dims varchar(65535), photo varbyte(1024000), search varchar(65535), PRIMARY KEY (sku))
CREATE TABLE orders (id bigint, customer_id bigint, status varchar(65535), total numeric(19,8), total_with_tax numeric(19,8), placed_at timestamptz, note varchar(65535), client_ip varchar(65535), refund varchar(65535), PRIMARY KEY (id))
CREATE TABLE order_items (order_id bigint, line integer, sku varchar(65535), qty varchar(65535), PRIMARY KEY (order_id, line))
