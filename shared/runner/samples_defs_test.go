package runner_test

import (
	"context"
	"math/rand/v2"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pagila (testdata/samples/pagila): partitions (payment by month, with
// foreign keys on some partitions only), an enum (mpaa_rating), domains
// (year with a check; "bıgınt", a non-ASCII name), arrays
// (special_features text[]), tsvector (fulltext, kept by a trigger),
// bytea (staff.picture), composite keys, many foreign keys with ON
// UPDATE CASCADE, BEFORE UPDATE triggers, views, a materialized view with
// a unique index, functions and an aggregate.
var pagila = sample{
	name: "pagila",
	load: func(ctx context.Context, c *pgx.Conn) error {
		if err := runScript(ctx, c, "pagila/pagila-schema.sql", ownerStatement); err != nil {
			return err
		}
		return runScript(ctx, c, "pagila/pagila-data.sql.gz", ownerStatement)
	},
	write: func(ctx context.Context, p *pgxpool.Pool, rng *rand.Rand) error {
		switch rng.IntN(9) {
		case 0, 1: // a rental and its payment, in a month the table has
			return pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error {
				var rental int
				err := tx.QueryRow(ctx, `INSERT INTO rental (rental_date, inventory_id, customer_id, staff_id)
					SELECT now(), (SELECT inventory_id FROM inventory ORDER BY inventory_id OFFSET $1 LIMIT 1),
					       (SELECT customer_id FROM customer ORDER BY customer_id OFFSET $2 LIMIT 1),
					       (SELECT staff_id FROM staff ORDER BY staff_id OFFSET $3 LIMIT 1)
					RETURNING rental_id`, rng.IntN(4000), rng.IntN(550), rng.IntN(1000)).Scan(&rental)
				if err != nil {
					return err
				}
				_, err = tx.Exec(ctx, `INSERT INTO payment (customer_id, staff_id, rental_id, amount, payment_date)
					SELECT customer_id, staff_id, rental_id, $2::numeric, timestamptz '2022-01-03 10:00:00+00' + $3::int * interval '1 hour'
					FROM rental WHERE rental_id = $1`, rental, float64(rng.IntN(1000))/100, rng.IntN(24*28*7))
				return err
			})
		case 2: // a customer changes
			return exec1(ctx, p, `UPDATE customer SET email = lower(first_name) || $2::int || '@example.org', active = 1 - coalesce(active, 0)
				WHERE customer_id = (SELECT customer_id FROM customer ORDER BY customer_id OFFSET $1 LIMIT 1)`, rng.IntN(550), rng.IntN(1000))
		case 3: // a rental comes back
			return exec1(ctx, p, `UPDATE rental SET return_date = now() WHERE rental_id = (SELECT min(rental_id) FROM rental WHERE return_date IS NULL)`)
		case 4: // a film's price, features (array) and description (tsvector by trigger)
			return exec1(ctx, p, `UPDATE film SET rental_rate = rental_rate + 0.01,
				special_features = CASE WHEN 'Commentaries' = ANY (special_features) THEN array_remove(special_features, 'Commentaries')
				                        ELSE array_append(special_features, 'Commentaries') END,
				description = description || ' Again.'
				WHERE film_id = (SELECT film_id FROM film ORDER BY film_id OFFSET $1 LIMIT 1)`, rng.IntN(990))
		case 5: // a staff picture (bytea, with zero bytes)
			return exec1(ctx, p, `UPDATE staff SET picture = decode(md5($2::bigint::text) || '0000ff00' || repeat(md5($3::bigint::text), 8), 'hex')
				WHERE staff_id = (SELECT staff_id FROM staff ORDER BY staff_id OFFSET $1 LIMIT 1)`, rng.IntN(1400), rng.Int64(), rng.Int64())
		case 6: // a refund: a payment goes away
			return exec1(ctx, p, `DELETE FROM payment WHERE (payment_date, payment_id) =
				(SELECT payment_date, payment_id FROM payment ORDER BY payment_id OFFSET $1 LIMIT 1)`, rng.IntN(30000))
		case 7: // the cast of a film changes (composite key)
			return pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, `DELETE FROM film_actor WHERE (actor_id, film_id) =
					(SELECT actor_id, film_id FROM film_actor ORDER BY film_id, actor_id OFFSET $1 LIMIT 1)`, rng.IntN(5000)); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, `INSERT INTO film_actor (actor_id, film_id)
					SELECT (SELECT actor_id FROM actor ORDER BY actor_id OFFSET $1 LIMIT 1), (SELECT film_id FROM film ORDER BY film_id OFFSET $2 LIMIT 1)
					ON CONFLICT DO NOTHING`, rng.IntN(200), rng.IntN(990))
				return err
			})
		default: // a new customer
			return exec1(ctx, p, `INSERT INTO customer (store_id, first_name, last_name, email, address_id, active)
				SELECT (SELECT store_id FROM store ORDER BY store_id OFFSET $1 LIMIT 1), 'New', 'Customer ' || $2::int, NULL,
				       (SELECT address_id FROM address ORDER BY address_id OFFSET $3 LIMIT 1), 1`, rng.IntN(500), rng.IntN(100000), rng.IntN(600))
		}
	},
	ddl: []sampleDDL{
		{"new column with a default", `ALTER TABLE customer ADD COLUMN loyalty_points integer NOT NULL DEFAULT 0`,
			`UPDATE customer SET loyalty_points = customer_id % 7 WHERE customer_id % 5 = 0`},
		{"new month partition", `CREATE TABLE payment_p2022_08 PARTITION OF payment FOR VALUES FROM ('2022-08-01 00:00:00+00') TO ('2022-09-01 00:00:00+00')`,
			`INSERT INTO payment (customer_id, staff_id, rental_id, amount, payment_date)
			 SELECT customer_id, staff_id, rental_id, 3.99, timestamptz '2022-08-02 00:00:00+00' + rental_id * interval '1 minute'
			 FROM rental ORDER BY rental_id DESC LIMIT 50`},
		{"new table with foreign keys", `CREATE TABLE film_review (
			review_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
			film_id integer NOT NULL REFERENCES film ON UPDATE CASCADE ON DELETE CASCADE,
			customer_id integer NOT NULL REFERENCES customer,
			stars smallint NOT NULL CHECK (stars BETWEEN 1 AND 5),
			body text,
			created timestamptz NOT NULL DEFAULT now(),
			UNIQUE (film_id, customer_id))`,
			`INSERT INTO film_review (film_id, customer_id, stars, body)
			 SELECT f.film_id, c.customer_id, 1 + (f.film_id + c.customer_id) % 5, 'seen it'
			 FROM film f JOIN customer c ON c.customer_id % 97 = f.film_id % 97 WHERE f.film_id <= 100`},
		{"new enum label used at once", `ALTER TYPE mpaa_rating ADD VALUE 'NR' BEFORE 'G'`,
			`UPDATE film SET rating = 'NR' WHERE film_id % 40 = 0;
			 ALTER TABLE film ALTER COLUMN rating SET DEFAULT 'NR';
			 INSERT INTO film (title, language_id, fulltext) VALUES ('AN UNRATED PREMIERE', 1, '')`},
		{"indexes created and dropped", `CREATE INDEX idx_rental_open ON rental (inventory_id) WHERE return_date IS NULL;
			 DROP INDEX idx_title;
			 CREATE INDEX idx_payment_amount ON payment (amount)`,
			`UPDATE rental SET return_date = NULL WHERE rental_id IN (SELECT rental_id FROM rental ORDER BY rental_id LIMIT 5)`},
		{"domain check added", `ALTER DOMAIN year ADD CONSTRAINT year_not_future CHECK (VALUE <= 2100)`,
			`UPDATE film SET release_year = 2024 WHERE film_id % 50 = 1`},
	},
}

// chinook (testdata/samples/chinook): identity keys (GENERATED ALWAYS), a
// composite key (playlist_track), a self-referencing foreign key
// (employee.reports_to), numeric money, N'…' literals with non-ASCII
// text. It has no enums, domains or partitions of its own: its DDL adds
// them, as an application growing would.
var chinook = sample{
	name: "chinook",
	load: func(ctx context.Context, c *pgx.Conn) error {
		return runScript(ctx, c, "chinook/Chinook_PostgreSql_AutoIncrementPKs.sql.gz", func(l string) bool {
			// The script makes its own database and connects to it with
			// psql; here the database is made for it.
			return strings.HasPrefix(l, "DROP DATABASE") || strings.HasPrefix(l, "CREATE DATABASE") || strings.HasPrefix(l, `\c `)
		})
	},
	write: func(ctx context.Context, p *pgxpool.Pool, rng *rand.Rand) error {
		switch rng.IntN(7) {
		case 0, 1: // an invoice with its lines, then its total
			return pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error {
				var inv int
				err := tx.QueryRow(ctx, `INSERT INTO invoice (customer_id, invoice_date, billing_city, billing_country, total)
					SELECT customer_id, now(), city, country, 0 FROM customer ORDER BY customer_id OFFSET $1 LIMIT 1
					RETURNING invoice_id`, rng.IntN(59)).Scan(&inv)
				if err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, `INSERT INTO invoice_line (invoice_id, track_id, unit_price, quantity)
					SELECT $1, track_id, unit_price, 1 FROM track ORDER BY track_id OFFSET $2 LIMIT $3`, inv, rng.IntN(3400), 1+rng.IntN(5)); err != nil {
					return err
				}
				_, err = tx.Exec(ctx, `UPDATE invoice SET total = (SELECT sum(unit_price * quantity) FROM invoice_line WHERE invoice_id = $1) WHERE invoice_id = $1`, inv)
				return err
			})
		case 2: // a price change
			return exec1(ctx, p, `UPDATE track SET unit_price = CASE WHEN unit_price = 0.99 THEN 1.29 ELSE 0.99 END, milliseconds = milliseconds + 1
				WHERE track_id = (SELECT track_id FROM track ORDER BY track_id OFFSET $1 LIMIT 1)`, rng.IntN(3400))
		case 3: // a playlist gains a track (composite key)
			return exec1(ctx, p, `INSERT INTO playlist_track (playlist_id, track_id)
				SELECT (SELECT playlist_id FROM playlist ORDER BY playlist_id OFFSET $1 LIMIT 1), (SELECT track_id FROM track ORDER BY track_id OFFSET $2 LIMIT 1)
				ON CONFLICT DO NOTHING`, rng.IntN(18), rng.IntN(3400))
		case 4: // and loses one
			return exec1(ctx, p, `DELETE FROM playlist_track WHERE (playlist_id, track_id) =
				(SELECT playlist_id, track_id FROM playlist_track ORDER BY playlist_id, track_id OFFSET $1 LIMIT 1)`, rng.IntN(8000))
		case 5: // a customer moves to another support rep
			return exec1(ctx, p, `UPDATE customer SET phone = '+47 ' || $2::int,
				support_rep_id = (SELECT employee_id FROM employee ORDER BY employee_id OFFSET $3 LIMIT 1)
				WHERE customer_id = (SELECT customer_id FROM customer ORDER BY customer_id OFFSET $1 LIMIT 1)`, rng.IntN(59), rng.IntN(1e6), rng.IntN(8))
		default: // a line is taken off an invoice
			return exec1(ctx, p, `DELETE FROM invoice_line WHERE invoice_line_id = (SELECT invoice_line_id FROM invoice_line ORDER BY invoice_line_id OFFSET $1 LIMIT 1)`, rng.IntN(2000))
		}
	},
	ddl: []sampleDDL{
		{"new column with a default", `ALTER TABLE invoice ADD COLUMN currency char(3) NOT NULL DEFAULT 'USD'`,
			`UPDATE invoice SET currency = 'EUR' WHERE billing_country IN ('Germany', 'France', 'Norway')`},
		{"new enum, domain and table with foreign keys", `CREATE TYPE rating_source AS ENUM ('web', 'app');
			CREATE DOMAIN stars AS smallint NOT NULL CHECK (VALUE BETWEEN 1 AND 5);
			CREATE TABLE track_rating (
				customer_id int NOT NULL REFERENCES customer (customer_id),
				track_id int NOT NULL REFERENCES track (track_id) ON DELETE CASCADE,
				stars stars,
				source rating_source NOT NULL DEFAULT 'web',
				rated_at timestamptz NOT NULL DEFAULT now(),
				PRIMARY KEY (customer_id, track_id))`,
			`INSERT INTO track_rating (customer_id, track_id, stars) SELECT c.customer_id, t.track_id, 1 + t.track_id % 5
			 FROM customer c JOIN track t ON t.track_id % 59 = c.customer_id % 59 WHERE t.track_id <= 600`},
		{"new enum label used at once", `ALTER TYPE rating_source ADD VALUE 'kiosk' BEFORE 'app'`,
			`ALTER TABLE track_rating ALTER COLUMN source SET DEFAULT 'kiosk';
			 UPDATE track_rating SET source = 'kiosk' WHERE track_id % 3 = 0;
			 INSERT INTO track_rating (customer_id, track_id, stars) VALUES (1, 3000, 4)`},
		{"new partitioned table", `CREATE TABLE invoice_archive (
				invoice_id int NOT NULL, invoice_date timestamp NOT NULL, customer_id int NOT NULL, total numeric(10,2) NOT NULL,
				PRIMARY KEY (invoice_id, invoice_date)) PARTITION BY RANGE (invoice_date);
			CREATE TABLE invoice_archive_2021 PARTITION OF invoice_archive FOR VALUES FROM ('2021-01-01') TO ('2022-01-01');
			CREATE TABLE invoice_archive_2022 PARTITION OF invoice_archive FOR VALUES FROM ('2022-01-01') TO ('2023-01-01')`,
			`INSERT INTO invoice_archive SELECT invoice_id, invoice_date, customer_id, total FROM invoice WHERE invoice_date < '2023-01-01'`},
		{"new partition", `CREATE TABLE invoice_archive_2023 PARTITION OF invoice_archive FOR VALUES FROM ('2023-01-01') TO ('2024-01-01')`,
			`INSERT INTO invoice_archive SELECT invoice_id, invoice_date, customer_id, total FROM invoice WHERE invoice_date >= '2023-01-01' AND invoice_date < '2024-01-01'`},
		{"indexes created and dropped", `CREATE INDEX track_name_lower ON track (lower(name));
			DROP INDEX invoice_line_track_id_idx;
			CREATE UNIQUE INDEX artist_name_unique ON artist (name) WHERE name IS NOT NULL`,
			`UPDATE track SET name = name || ' (remastered)' WHERE track_id % 100 = 0`},
	},
}
