package rsapply

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/redshift"
)

// memObjects is an in-memory staging bucket.
type memObjects struct {
	mu      sync.Mutex
	objs    map[string][]byte
	puts    int
	deletes int
	// mangle, when set, rewrites a data file as it is stored.
	mangle func(key string, data []byte) []byte
}

func newMemObjects() *memObjects { return &memObjects{objs: map[string][]byte{}} }

func (m *memObjects) Put(_ context.Context, key string, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mangle != nil {
		data = m.mangle(key, data)
	}
	m.objs[key] = append([]byte(nil), data...)
	m.puts++
	return nil
}

func (m *memObjects) Delete(_ context.Context, keys []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range keys {
		delete(m.objs, k)
		m.deletes++
	}
	return nil
}

func (m *memObjects) get(key string) ([]byte, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.objs[key]
	return d, ok
}

// copyRE matches the COPY statement the applier generates.
var copyRE = regexp.MustCompile(`^COPY (\S+) \((.*)\) FROM 's3://([^/']+)/([^']+)' IAM_ROLE '[^']*' CSV GZIP MANIFEST`)

// pgShim runs the applier's statements on plain PostgreSQL, one
// transaction per Tx, loading COPY … FROM 's3://…' MANIFEST from a
// memObjects bucket with COPY FROM STDIN: a test double for the part of
// Redshift PostgreSQL lacks, so the rest of the SQL (DELETE USING,
// INSERT SELECT, UPDATE FROM, the guards) runs for real.
type pgShim struct {
	pool  *pgxpool.Pool
	store *memObjects
	// log records every statement sent.
	log [][]string
	// max, if set, is the most statements a Tx takes (the Data API's 40).
	max int
}

func (s *pgShim) MaxStatements() int { return s.max }

func (s *pgShim) Query(ctx context.Context, sql string) ([][]*string, error) {
	return redshift.NewPGX(s.pool).Query(ctx, sql)
}

func (s *pgShim) Tx(ctx context.Context, stmts []string) error {
	s.log = append(s.log, stmts)
	if s.max > 0 && len(stmts) > s.max {
		return fmt.Errorf("%d statements in one transaction, the executor takes %d", len(stmts), s.max)
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	for i, st := range stmts {
		if m := copyRE.FindStringSubmatch(st); m != nil {
			data, err := s.load(m[4])
			if err == nil {
				_, err = tx.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(data),
					fmt.Sprintf(`COPY %s (%s) FROM STDIN WITH (FORMAT csv, NULL '\N')`, m[1], m[2]))
			}
			if err != nil {
				return redshift.FromPg(i, st, err)
			}
			continue
		}
		if _, err := tx.Exec(ctx, st); err != nil {
			return redshift.FromPg(i, st, err)
		}
	}
	return redshift.FromPg(-1, "COMMIT", tx.Commit(ctx))
}

// load reads a manifest and returns its files, gunzipped and joined.
func (s *pgShim) load(mfKey string) ([]byte, error) {
	raw, ok := s.store.get(mfKey)
	if !ok {
		return nil, fmt.Errorf("manifest %s not found", mfKey)
	}
	var mf struct {
		Entries []struct {
			URL string `json:"url"`
		} `json:"entries"`
	}
	if err := json.Unmarshal(raw, &mf); err != nil {
		return nil, err
	}
	var out []byte
	for _, e := range mf.Entries {
		_, key, _ := strings.Cut(strings.TrimPrefix(e.URL, "s3://"), "/")
		gz, ok := s.store.get(key)
		if !ok {
			return nil, fmt.Errorf("file %s not found", key)
		}
		zr, err := gzip.NewReader(bytes.NewReader(gz))
		if err != nil {
			return nil, err
		}
		data, err := io.ReadAll(zr)
		if err != nil {
			return nil, err
		}
		out = append(out, data...)
	}
	return out, nil
}
