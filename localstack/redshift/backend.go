package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// backend is the PostgreSQL server the stand-in executes on: one pool per
// database named by the Data API's Database.
type backend struct {
	dsn string     // PGFERRY_REDSHIFT_BACKEND
	s3  *s3.Client // the S3 emulator COPY reads from; nil if none
	log *slog.Logger

	mu    sync.Mutex
	pools map[string]*pgxpool.Pool
}

func newBackend(dsn string, s3c *s3.Client, log *slog.Logger) *backend {
	return &backend{dsn: dsn, s3: s3c, log: log, pools: map[string]*pgxpool.Pool{}}
}

var errNoBackend = &sqlError{msg: "redshift stand-in: PGFERRY_REDSHIFT_BACKEND is not set; restart the stand-in with it set to a PostgreSQL DSN (the Data API's Database names a database on that server)"}

// pool returns the pool for database db, creating it on first use.
func (b *backend) pool(db string) (*pgxpool.Pool, error) {
	if b.dsn == "" {
		return nil, errNoBackend
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if p, ok := b.pools[db]; ok {
		return p, nil
	}
	cfg, err := pgxpool.ParseConfig(b.dsn)
	if err != nil {
		return nil, &sqlError{msg: "redshift stand-in: PGFERRY_REDSHIFT_BACKEND is not a valid DSN: " + err.Error()}
	}
	cfg.ConnConfig.Database = db
	rp := cfg.ConnConfig.RuntimeParams
	rp["TimeZone"] = "UTC" // Redshift sessions default to UTC
	rp["DateStyle"] = "ISO, MDY"
	rp["application_name"] = "redshift-standin"
	cfg.MaxConns = 16
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error { return installCompat(ctx, c.PgConn()) }
	p, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, &sqlError{msg: "redshift stand-in: " + err.Error()}
	}
	b.pools[db] = p
	return p, nil
}

func (b *backend) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.pools {
		p.Close()
	}
}

// acquire takes a connection for database db.
func (b *backend) acquire(ctx context.Context, db string) (*pgxpool.Conn, error) {
	p, err := b.pool(db)
	if err != nil {
		return nil, err
	}
	c, err := p.Acquire(ctx)
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			return nil, pe
		}
		return nil, &sqlError{msg: "redshift stand-in: cannot reach the backend PostgreSQL (PGFERRY_REDSHIFT_BACKEND): " + err.Error()}
	}
	return c, nil
}

// release ends what a Data API session left behind (an open transaction,
// temporary tables, settings) so the next caller starts afresh, as every
// Data API call without a session does on Redshift.
func (b *backend) release(c *pgxpool.Conn) {
	ctx := context.Background()
	pgc := c.Conn().PgConn()
	if pgc.IsClosed() {
		c.Release()
		return
	}
	var err error
	if pgc.TxStatus() != 'I' {
		err = pgc.Exec(ctx, "ROLLBACK").Close()
	}
	if err == nil {
		err = pgc.Exec(ctx, "DISCARD ALL").Close()
	}
	if err != nil {
		b.log.Warn("discarding backend connection", "err", err)
		_ = c.Hijack().Close(ctx)
		return
	}
	c.Release()
}

const compatVersion = "rsstandin-compat-1"

// installCompat gives a database the Redshift functions the stand-in
// provides (in pg_catalog, so search_path cannot hide them), once.
func installCompat(ctx context.Context, pgc *pgconn.PgConn) error {
	const check = `SELECT 1 FROM pg_proc WHERE proname = 'rsstandin_version' AND pronamespace = 'pg_catalog'::regnamespace AND prosrc LIKE '%` + compatVersion + `%'`
	res := pgc.ExecParams(ctx, check, nil, nil, nil, nil).Read()
	if res.Err != nil {
		return fmt.Errorf("check compat functions: %w", res.Err)
	}
	if len(res.Rows) == 1 {
		return nil
	}
	script := `BEGIN;
SELECT pg_advisory_xact_lock(hashtext('redshift-standin-compat'));
CREATE OR REPLACE FUNCTION pg_catalog.pg_last_copy_count() RETURNS integer LANGUAGE sql STABLE
  AS $$SELECT coalesce(nullif(current_setting('rsstandin.last_copy_count', true), ''), '0')::integer$$;
CREATE OR REPLACE FUNCTION pg_catalog.getdate() RETURNS timestamp LANGUAGE sql STABLE
  AS $$SELECT date_trunc('second', statement_timestamp() AT TIME ZONE 'UTC')$$;
CREATE OR REPLACE FUNCTION pg_catalog.json_parse(text) RETURNS jsonb LANGUAGE sql IMMUTABLE STRICT
  AS $$SELECT $1::jsonb$$;
CREATE OR REPLACE FUNCTION pg_catalog.json_serialize(jsonb) RETURNS text LANGUAGE sql IMMUTABLE STRICT
  AS $$SELECT $1::text$$;
CREATE OR REPLACE FUNCTION pg_catalog.nvl(anycompatible, anycompatible) RETURNS anycompatible LANGUAGE sql IMMUTABLE
  AS $$SELECT coalesce($1, $2)$$;
CREATE OR REPLACE FUNCTION pg_catalog.rsstandin_version() RETURNS text LANGUAGE sql IMMUTABLE
  AS $$SELECT '` + compatVersion + `'::text$$;
COMMIT;`
	if _, err := pgc.Exec(ctx, script).ReadAll(); err != nil {
		_ = pgc.Exec(ctx, "ROLLBACK").Close()
		return fmt.Errorf("install compat functions (the backend role must be a superuser): %w", err)
	}
	return nil
}

// result is what one statement returned.
type result struct {
	fields       []pgconn.FieldDescription
	rows         [][][]byte // nil value: NULL
	rowsAffected int64      // -1: none (DDL)
}

func (r *result) hasResultSet() bool { return r != nil && len(r.fields) > 0 }

// runStep runs a planned statement on pgc (inside the caller's
// transaction, if any).
func (b *backend) runStep(ctx context.Context, pgc *pgconn.PgConn, st *step) (*result, error) {
	if st.copy != nil {
		n, err := b.runCopy(ctx, pgc, st.copy)
		if err != nil {
			return nil, err
		}
		return &result{rowsAffected: n}, nil
	}
	res := &result{rowsAffected: -1}
	for _, a := range st.actions {
		var err error
		if a.alter != nil {
			err = alterVarcharType(ctx, pgc, a.alter)
			res = &result{rowsAffected: -1}
		} else {
			res, err = execSQL(ctx, pgc, a.sql, st.args)
		}
		if err != nil {
			return nil, err
		}
	}
	return res, nil
}

// execSQL runs one statement with the Data API's string parameters. Like
// Redshift, it lets the server infer each parameter's type; a parameter
// whose type cannot be inferred (SELECT :x) is sent as text.
func execSQL(ctx context.Context, pgc *pgconn.PgConn, sql string, args []string) (*result, error) {
	vals := make([][]byte, len(args))
	for i, a := range args {
		vals[i] = []byte(a)
	}
	guard := len(args) > 0 && pgc.TxStatus() == 'T'
	if guard {
		if err := pgc.Exec(ctx, "SAVEPOINT rsstandin_params").Close(); err != nil {
			return nil, err
		}
	}
	res, err := readResult(pgc.ExecParams(ctx, sql, vals, nil, nil, nil))
	var pe *pgconn.PgError
	if guard && errors.As(err, &pe) && pe.Code == "42P18" {
		if err := pgc.Exec(ctx, "ROLLBACK TO SAVEPOINT rsstandin_params").Close(); err != nil {
			return nil, err
		}
		oids := make([]uint32, len(args))
		for i := range oids {
			oids[i] = 25 // text
		}
		res, err = readResult(pgc.ExecParams(ctx, sql, vals, oids, nil, nil))
	}
	if err != nil {
		return nil, err
	}
	if guard {
		if err := pgc.Exec(ctx, "RELEASE SAVEPOINT rsstandin_params").Close(); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func readResult(rr *pgconn.ResultReader) (*result, error) {
	res := &result{fields: append([]pgconn.FieldDescription(nil), rr.FieldDescriptions()...)}
	for rr.NextRow() {
		vals := rr.Values()
		row := make([][]byte, len(vals))
		for i, v := range vals {
			if v != nil {
				row[i] = append([]byte{}, v...)
			}
		}
		res.rows = append(res.rows, row)
	}
	tag, err := rr.Close()
	if err != nil {
		return nil, err
	}
	switch {
	case len(res.fields) > 0:
		res.rowsAffected = int64(len(res.rows))
	case tag.Insert(), tag.Update(), tag.Delete(), tag.Select(), strings.HasPrefix(tag.String(), "MERGE"):
		res.rowsAffected = tag.RowsAffected()
	default:
		res.rowsAffected = -1
	}
	return res, nil
}

// alterVarcharType changes a VARCHAR column's length and its byte check,
// as Redshift's ALTER COLUMN … TYPE VARCHAR(n) does. Existing values
// longer than n bytes make it fail.
func alterVarcharType(ctx context.Context, pgc *pgconn.PgConn, a *alterVarchar) error {
	rel := pgx.Identifier{a.table}
	if a.schema != "" {
		rel = pgx.Identifier{a.schema, a.table}
	}
	const q = `SELECT t.typname,
       coalesce((SELECT string_agg(c.conname, E'\n') FROM pg_constraint c
                  WHERE c.conrelid = a.attrelid AND c.contype = 'c' AND a.attnum = ANY (c.conkey)
                    AND c.conname ~ '^rsbytes_'), '')
  FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
 WHERE a.attrelid = $1::regclass AND a.attname = $2 AND NOT a.attisdropped`
	res := pgc.ExecParams(ctx, q, [][]byte{[]byte(rel.Sanitize()), []byte(a.column)}, nil, nil, nil).Read()
	if res.Err != nil {
		return res.Err
	}
	if len(res.Rows) == 0 {
		return &sqlError{msg: fmt.Sprintf("column %q of relation %q does not exist", a.column, a.table)}
	}
	if typ := string(res.Rows[0][0]); typ != "varchar" {
		return refuse("alter-type-not-varchar", "ALTER COLUMN TYPE only changes the length of a VARCHAR column; %q is %s", a.column, typ)
	}
	var stmts []string
	for _, name := range strings.Split(string(res.Rows[0][1]), "\n") {
		if name != "" {
			stmts = append(stmts, "ALTER TABLE "+rel.Sanitize()+" DROP CONSTRAINT "+pgx.Identifier{name}.Sanitize())
		}
	}
	col := pgx.Identifier{a.column}.Sanitize()
	check := pgx.Identifier{fmt.Sprintf("rsbytes_%d_%s", a.n, hash(a.column))}.Sanitize()
	stmts = append(stmts,
		fmt.Sprintf("ALTER TABLE %s ALTER COLUMN %s TYPE varchar(%d)", rel.Sanitize(), col, a.n),
		fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT %s CHECK (octet_length(%s) <= %d)", rel.Sanitize(), check, col, a.n))
	for _, s := range stmts {
		if err := pgc.ExecParams(ctx, s, nil, nil, nil, nil).Read().Err; err != nil {
			return err
		}
	}
	return nil
}
