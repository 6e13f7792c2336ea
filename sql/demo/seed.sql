-- Demo data: ~100k rows, with NaN, ±Infinity, NULLs in arrays, tabs,
-- newlines, backslashes, json kept as written, and a TOASTed value.
INSERT INTO customers (name, email, tags, profile, raw_json)
SELECT 'Customer ' || g,
       CASE WHEN g % 7 = 0 THEN NULL ELSE 'c' || g || '@example.com' END,
       CASE WHEN g % 5 = 0 THEN ARRAY['vip', NULL, 'quote"d', 'comma,tag'] ELSE ARRAY['regular'] END,
       jsonb_build_object('visits', g % 13, 'score', g * 1.5),
       ('{ "kept" :  "as written", "n": ' || g || ' }')::json
FROM generate_series(1, 5000) g;

INSERT INTO products (sku, title, price, weight_kg, dims, photo, search)
SELECT 'SKU-' || lpad(g::text, 5, '0'),
       E'Product\t' || g || CASE WHEN g % 9 = 0 THEN E'\nsecond line \\ backslash' ELSE '' END,
       (g % 500) + 0.99,
       CASE g % 50 WHEN 0 THEN 'NaN'::float8 WHEN 1 THEN 'Infinity' WHEN 2 THEN '-Infinity' ELSE g / 7.0 END,
       CASE WHEN g % 3 = 0 THEN '{{1,2},{3,4}}'::int[] ELSE ARRAY[g, NULL, g + 1] END,
       decode(md5(g::text), 'hex'),
       to_tsvector('english', 'product number ' || g)
FROM generate_series(1, 500) g;

UPDATE products SET title = (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 6000) i) WHERE sku = 'SKU-00001';

INSERT INTO orders (customer_id, status, total, placed_at, note, client_ip, refund)
SELECT (g % 5000) + 1,
       (ARRAY['new', 'paid', 'shipped', 'cancelled']::order_status[])[g % 4 + 1],
       CASE WHEN g % 1000 = 0 THEN 'NaN'::numeric ELSE (g % 997) * 1.01 END,
       timestamptz '2024-06-01 00:00:00+00' + g * interval '7 minutes',
       CASE WHEN g % 11 = 0 THEN E'gift\r\nwrap \\N please' END,
       ('10.' || (g % 250) || '.0.' || (g % 200))::inet,
       CASE WHEN g % 17 = 0 THEN ROW(g % 50, 'EUR')::money_pair END
FROM generate_series(1, 20000) g;

INSERT INTO order_items (order_id, line, sku, qty)
SELECT o, l, 'SKU-' || lpad((((o * 7 + l) % 500) + 1)::text, 5, '0'), (o + l) % 5 + 1
FROM generate_series(1, 20000) o, generate_series(1, 3) l;

INSERT INTO readings (sensor, at, value)
SELECT 's' || (g % 20), timestamptz '2024-11-01 00:00:00+00' + g * interval '1 minute',
       CASE WHEN g % 777 = 0 THEN '-Infinity'::float8 ELSE sin(g) END
FROM generate_series(1, 20000) g;

INSERT INTO audit_log SELECT now(), 'seed', 'duplicate' FROM generate_series(1, 3);
INSERT INTO audit_log SELECT now(), 'seed', 'row ' || g FROM generate_series(1, 2000) g;

INSERT INTO "Odd ""Names""" VALUES (1, 'semi;colon', '{1.5,NaN,NULL}'), (2, NULL, NULL);
