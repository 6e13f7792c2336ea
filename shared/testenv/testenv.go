// Package testenv gives integration tests real parts: a throw-away
// PostgreSQL cluster (wal_level=logical) and the local AWS emulators. When
// `make test` has started them, their addresses come from the environment;
// otherwise the first test to ask starts them with the project's own
// scripts, so `go test ./...` works on its own too.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/runner/awsenv"
)

const clusterVar = "PGFERRY_PG_TEST"

var (
	pgOnce, awsOnce sync.Once
	pgErr, awsErr   error
)

// Root returns the repository root.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// source runs a script that prints `export NAME=value` lines and sets them
// in this process.
func source(script string, args ...string) error {
	cmd := exec.Command(filepath.Join(Root(), script), args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("%s: %w", script, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimPrefix(strings.TrimSpace(line), "export ")
		if k, v, ok := strings.Cut(line, "="); ok {
			os.Setenv(k, strings.Trim(v, `"'`))
		}
	}
	return nil
}

// ClusterDSN returns the DSN of the test cluster's postgres database,
// starting the cluster if needed.
func ClusterDSN(t testing.TB) string {
	t.Helper()
	pgOnce.Do(func() {
		if os.Getenv(clusterVar) == "" {
			pgErr = source("localstack/pg-up", "test", "55432")
		}
	})
	if pgErr != nil {
		t.Fatalf("test PostgreSQL: %v", pgErr)
	}
	return os.Getenv(clusterVar)
}

// AWS makes sure the emulators run and the SDK environment points at them.
func AWS(t testing.TB) {
	t.Helper()
	awsOnce.Do(func() {
		// Every emulator's variable: an environment exported by an older
		// localstack/up (before the Redshift stand-in) lacks the last one,
		// and up reuses what already runs.
		for _, v := range []string{"AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_REDSHIFT_DATA"} {
			if os.Getenv(v) == "" {
				awsErr = source("localstack/up")
				break
			}
		}
	})
	if awsErr != nil {
		t.Fatalf("AWS emulators: %v", awsErr)
	}
}

// Name returns a short random lower-case name with the given prefix,
// unique per test, for databases, pipelines and queues.
func Name(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// NewDB creates an empty database for the test and drops it afterwards.
// It returns the database's DSN.
func NewDB(t testing.TB, prefix string) string {
	t.Helper()
	base := ClusterDSN(t)
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to test cluster: %v", err)
	}
	defer admin.Close(ctx)
	name := Name(prefix)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), base)
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// Pool opens a pool on dsn, closed when the test ends.
func Pool(t testing.TB, dsn string) *pgxpool.Pool {
	t.Helper()
	p, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// Exec runs SQL statements, failing the test on error.
func Exec(t testing.TB, p *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := p.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("exec %.60q: %v", sql, err)
	}
}

// AWSConfig makes sure the emulators run and returns an SDK configuration
// that reaches them.
func AWSConfig(t testing.TB) aws.Config {
	t.Helper()
	AWS(t)
	ac, err := awsenv.Load(context.Background())
	if err != nil {
		t.Fatalf("AWS configuration: %v", err)
	}
	return ac
}

// OwnCluster starts a throw-away cluster of the test's own (localstack/pg-up
// name port), for tests that must change server settings, and stops it
// when the test ends. It returns the DSN of its postgres database.
func OwnCluster(t testing.TB, name string, port int) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(Root(), "localstack/pg-up"), name, strconv.Itoa(port))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("localstack/pg-up %s %d: %v", name, port, err)
	}
	t.Cleanup(func() {
		down := exec.Command(filepath.Join(Root(), "localstack/pg-down"), name)
		down.Stderr = os.Stderr
		if err := down.Run(); err != nil {
			t.Logf("localstack/pg-down %s: %v", name, err)
		}
	})
	_, dsn, ok := strings.Cut(strings.TrimSpace(string(out)), "=")
	if !ok {
		t.Fatalf("localstack/pg-up printed %q, want an export line", out)
	}
	return strings.Trim(dsn, `"'`)
}
