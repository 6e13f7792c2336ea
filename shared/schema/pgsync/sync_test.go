package pgsync_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/schema/pgsync"
	"github.com/pgferry/pgferry/shared/schema/schematest"
	"github.com/pgferry/pgferry/shared/testenv"
)

func logger() *slog.Logger {
	if os.Getenv("PGFERRY_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type env struct {
	t        *testing.T
	src, dst *pgxpool.Pool
	srcDSN   string
	cfg      *config.Config
	sync     *pgsync.Syncer
}

func newEnv(t *testing.T, applySchema string) *env {
	t.Helper()
	srcDSN, dstDSN := testenv.NewDB(t, "src"), testenv.NewDB(t, "dst")
	e := &env{t: t, src: testenv.Pool(t, srcDSN), dst: testenv.Pool(t, dstDSN), srcDSN: srcDSN}
	yaml := `
name: sync
source: {dsn: "` + srcDSN + `", tables: ["public.*", "shop.*"]}
targets:
  replica: {kind: postgres, dsn: "` + dstDSN + `", apply_schema: "` + applySchema + `"}
`
	cfg, err := config.Parse([]byte(yaml), os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	e.cfg = cfg
	e.sync = pgsync.New(e.src, e.dst, cfg, "replica", logger())
	return e
}

func (e *env) syncOnce() string {
	e.t.Helper()
	plan, err := e.sync.Sync(context.Background())
	if err != nil {
		e.t.Fatalf("sync: %v", err)
	}
	return plan.SQL()
}

func (e *env) assertNothingToDo() {
	e.t.Helper()
	plan, err := e.sync.Plan(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	if !plan.Empty() {
		e.t.Fatalf("a second sync would still run:\n%s", plan.SQL())
	}
}

func TestEmptyTargetGetsTheWholeSchema(t *testing.T) {
	e := newEnv(t, "")
	testenv.Exec(t, e.src, schematest.RichDDL)
	ddl := e.syncOnce()
	if !strings.Contains(ddl, "CREATE TABLE") {
		t.Fatalf("no tables created:\n%s", ddl)
	}
	t.Logf("DDL:\n%s", ddl)
	e.assertNothingToDo()
	schematest.AssertSameCatalog(t, e.src, e.dst)
}
