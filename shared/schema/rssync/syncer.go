// Package rssync keeps a Redshift target's schema in step with the
// source: it reads the source catalog as PostgreSQL schema sync does
// (rules shaping, table subsets, apply_schema), reads the target's tables
// from information_schema through a redshift.Exec, and plans and runs
// Redshift DDL: CREATE TABLE … DISTSTYLE AUTO SORTKEY AUTO, one ADD
// COLUMN per ALTER, DROP COLUMN, renames of tables and columns that keep
// their data (a registry on the target ties them to source identities),
// type changes by a new column, a copy and a rename inside the
// transaction, and VARCHAR widenings, which Redshift runs only outside a
// transaction, each on its own after it. Indexes, views, functions,
// types and sequences are left alone, each with a warning.
package rssync

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/redshift"
	"github.com/pgferry/pgferry/shared/redshift/rstype"
	"github.com/pgferry/pgferry/shared/schema"
	"github.com/pgferry/pgferry/shared/schema/pgsync"
)

// Schema holds pgferry's own tables on the target.
const Schema = config.TargetSchema

// registryName is the registry table in Schema.
const registryName = "rs_schema_objects"

func registryTable() string { return ci(Schema) + "." + ci(registryName) }

// registryDDL installs the registry (idempotent).
func registryDDL() []string {
	return []string{
		"CREATE SCHEMA IF NOT EXISTS " + ci(Schema),
		"CREATE TABLE IF NOT EXISTS " + registryTable() + ` (
    pipeline   varchar(256) NOT NULL,
    kind       varchar(16) NOT NULL,
    src_id     varchar(64) NOT NULL,
    obj_schema varchar(512) NOT NULL,
    obj_name   varchar(512) NOT NULL,
    former     varchar(65535) NOT NULL
)`,
	}
}

// Syncer syncs one Redshift target's schema from the source. It is safe
// for concurrent use (syncs of one process are serialised; syncs of
// several processes take the registry table's lock, and one that lost a
// race fails and is retried by its caller).
type Syncer struct {
	src         *pgxpool.Pool
	ex          redshift.Exec
	source      *pgsync.Syncer // reads the desired catalog only
	pipeline    string
	target      string
	applySchema string
	types       rstype.Options
	log         *slog.Logger
	mu          sync.Mutex
}

// New returns a syncer for cfg's Redshift target named target, reading
// the source through src and running SQL on the target through ex.
func New(src *pgxpool.Pool, ex redshift.Exec, cfg *config.Config, target string, log *slog.Logger) *Syncer {
	if log == nil {
		log = slog.Default()
	}
	t := cfg.Targets[target]
	p, s := t.NumericDefault()
	return &Syncer{
		src: src, ex: ex, source: pgsync.New(src, nil, cfg, target, log),
		pipeline: cfg.Name, target: target, applySchema: t.ApplySchema, log: log,
		types: rstype.Options{NumericPrecision: p, NumericScale: s, JSONSuper: t.JSONAsSuper()},
	}
}

// ApplySchema is the schema batches are written into ("" keeps the
// source's).
func (s *Syncer) ApplySchema() string { return s.applySchema }

// plan reads both sides and diffs them.
func (s *Syncer) plan(ctx context.Context) (*rsPlan, error) {
	des, err := s.source.Desired(ctx)
	if err != nil {
		return nil, err
	}
	tables, warnings, err := shape(des, s.types)
	if err != nil {
		return nil, fmt.Errorf("targets.%s: %w", s.target, err)
	}
	cur, err := readCurrent(ctx, s.ex)
	if err != nil {
		return nil, fmt.Errorf("targets.%s: %w", s.target, err)
	}
	reg, err := loadRegistry(ctx, s.ex, s.pipeline)
	if err != nil {
		return nil, fmt.Errorf("targets.%s: %w", s.target, err)
	}
	p := diff(tables, cur, reg)
	p.warnings = append(warnings, p.warnings...)
	// A registry that changed alone (a table adopted as it is) is saved
	// too, so the next plan recognises renames.
	p.regOnly = len(p.units) == 0 && !p.reg.Equal(reg)
	return p, nil
}

// Plan returns the Redshift DDL the target needs and changes nothing.
// Its SQL() is that DDL, in the order Sync runs it (the VARCHAR
// widenings, which run outside the transaction, last).
func (s *Syncer) Plan(ctx context.Context) (*schema.Plan, error) {
	p, err := s.plan(ctx)
	if err != nil {
		return nil, err
	}
	return p.plan(), nil
}

// Sync brings the target's schema up to the source's and returns the
// plan it ran (empty when the target already matched). Everything but
// the VARCHAR widenings runs in one Redshift transaction together with
// the registry; each widening then runs alone (Redshift refuses ALTER
// COLUMN TYPE in a transaction). A failed widening fails the sync and
// the next sync plans it again. Idempotent.
func (s *Syncer) Sync(ctx context.Context) (*schema.Plan, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.plan(ctx)
	if err != nil {
		return nil, err
	}
	if len(p.units) == 0 && !p.regOnly {
		return p.plan(), nil
	}
	if err := s.run(ctx, p); err != nil {
		// Another process (a schema job and a retry-after-DDL elsewhere)
		// may have run the same DDL first: then nothing is left to do.
		if again, perr := s.plan(ctx); perr == nil && len(again.units) == 0 && !again.regOnly {
			s.log.Info("schema sync: the target was brought up to date meanwhile", "target", s.target, "err", err)
			return again.plan(), nil
		}
		return nil, fmt.Errorf("targets.%s: schema sync: %w", s.target, err)
	}
	for _, w := range p.warnings {
		s.log.Warn("schema sync: left alone", "target", s.target, "what", w)
	}
	out := p.plan()
	if !out.Empty() {
		s.log.Info("schema sync applied DDL", "target", s.target, "statements", len(out.Steps))
	}
	return out, nil
}

// SyncSequences does nothing: Redshift has no sequences.
func (s *Syncer) SyncSequences(context.Context) (int, error) { return 0, nil }

// run executes p: the transactional units, then the registry, in as few
// transactions as the executor allows (one unless the plan outgrows
// Exec.MaxStatements; a unit is never split, and the registry goes with
// the last), then each widening alone.
func (s *Syncer) run(ctx context.Context, p *rsPlan) error {
	save, err := saveRegistry(s.pipeline, p.reg)
	if err != nil {
		return err
	}
	head := append([]string{}, registryDDL()...)
	head = append(head, "LOCK "+registryTable())
	var txs [][]string
	cur := append([]string{}, head...)
	max := s.ex.MaxStatements()
	for _, u := range p.units {
		if u.outTx {
			continue
		}
		if max > 0 && len(cur) > len(head) && len(cur)+len(u.stmts) > max {
			txs = append(txs, cur)
			cur = append([]string{}, head...)
		}
		cur = append(cur, u.stmts...)
	}
	if max > 0 && len(cur) > len(head) && len(cur)+len(save) > max {
		txs = append(txs, cur)
		cur = append([]string{}, head...)
	}
	txs = append(txs, append(cur, save...))
	for i, stmts := range txs {
		if err := s.ex.Tx(ctx, stmts); err != nil {
			return fmt.Errorf("transaction %d of %d: %w", i+1, len(txs), err)
		}
	}
	for _, u := range p.units {
		if !u.outTx {
			continue
		}
		for _, st := range u.stmts {
			if _, err := s.ex.Query(ctx, st); err != nil {
				return fmt.Errorf("%s (outside a transaction): %w", st, err)
			}
		}
	}
	return nil
}

// readCurrent reads the target's tables and columns (pgferry's schema,
// system schemas and temporary tables left out).
func readCurrent(ctx context.Context, ex redshift.Exec) (*current, error) {
	cur := &current{schemas: map[string]bool{}, tables: map[schema.QName]*curTable{}}
	rows, err := ex.Query(ctx, `SELECT schema_name FROM information_schema.schemata`)
	if err != nil {
		return nil, fmt.Errorf("read target schemas: %w", err)
	}
	for _, r := range rows {
		if len(r) == 1 && r[0] != nil {
			cur.schemas[*r[0]] = true
		}
	}
	own, err := redshift.Literal(Schema)
	if err != nil {
		return nil, err
	}
	rows, err = ex.Query(ctx, `SELECT c.table_schema, c.table_name, c.column_name, c.data_type,
c.character_maximum_length, c.numeric_precision, c.numeric_scale
FROM information_schema.columns c JOIN information_schema.tables t
ON t.table_schema = c.table_schema AND t.table_name = c.table_name
WHERE t.table_type = 'BASE TABLE' AND c.table_schema <> `+own+`
AND c.table_schema <> 'information_schema' AND left(c.table_schema, 3) <> 'pg_'
ORDER BY c.table_schema, c.table_name, c.ordinal_position`)
	if err != nil {
		return nil, fmt.Errorf("read target columns: %w", err)
	}
	for _, r := range rows {
		if len(r) != 7 || r[0] == nil || r[1] == nil || r[2] == nil || r[3] == nil {
			return nil, fmt.Errorf("read target columns: unexpected row shape")
		}
		q := schema.QName{Schema: *r[0], Name: *r[1]}
		t := cur.tables[q]
		if t == nil {
			t = &curTable{q: q}
			cur.tables[q] = t
		}
		t.cols = append(t.cols, curCol{name: *r[2], typ: canonical(*r[3], redshift.Int(r[4]), redshift.Int(r[5]), redshift.Int(r[6]))})
	}
	return cur, nil
}

// loadRegistry reads a pipeline's registry (empty when the target has
// none yet).
func loadRegistry(ctx context.Context, ex redshift.Exec, pipeline string) (*schema.Registry, error) {
	reg := schema.NewRegistry()
	own, _ := redshift.Literal(Schema)
	name, _ := redshift.Literal(registryName)
	rows, err := ex.Query(ctx, `SELECT count(*) FROM information_schema.tables WHERE table_schema = `+own+` AND table_name = `+name)
	if err != nil {
		return nil, fmt.Errorf("read schema registry: %w", err)
	}
	if len(rows) != 1 || len(rows[0]) != 1 || rows[0][0] == nil || *rows[0][0] == "0" {
		return reg, nil
	}
	pipe, err := redshift.Literal(pipeline)
	if err != nil {
		return nil, err
	}
	rows, err = ex.Query(ctx, `SELECT kind, src_id, obj_schema, obj_name, former FROM `+registryTable()+` WHERE pipeline = `+pipe)
	if err != nil {
		return nil, fmt.Errorf("read schema registry: %w", err)
	}
	for _, r := range rows {
		if len(r) != 5 || r[0] == nil || r[1] == nil || r[2] == nil || r[3] == nil || r[4] == nil {
			return nil, fmt.Errorf("read schema registry: unexpected row shape")
		}
		if err := registryAdd(reg, *r[0], *r[1], *r[2], *r[3], *r[4]); err != nil {
			return nil, fmt.Errorf("schema registry row %s %s: %w", *r[0], *r[1], err)
		}
	}
	return reg, nil
}

func registryAdd(reg *schema.Registry, kind, id, sch, name, former string) error {
	switch kind {
	case "table":
		oid, err := strconv.ParseUint(id, 10, 32)
		if err != nil {
			return err
		}
		reg.Tables[uint32(oid)] = schema.QName{Schema: sch, Name: name}
		var f []schema.QName
		if err := json.Unmarshal([]byte(former), &f); err != nil {
			return err
		}
		if len(f) > 0 {
			reg.FormerTables[uint32(oid)] = f
		}
	case "column":
		t, n, ok := strings.Cut(id, ".")
		oid, err1 := strconv.ParseUint(t, 10, 32)
		num, err2 := strconv.ParseInt(n, 10, 16)
		if !ok || err1 != nil || err2 != nil {
			return fmt.Errorf("bad column id")
		}
		var f []string
		if err := json.Unmarshal([]byte(former), &f); err != nil {
			return err
		}
		reg.Columns[schema.ColumnID{Table: uint32(oid), Num: int16(num)}] = schema.RegColumn{Name: name, Former: f}
	}
	return nil
}

// saveRegistry returns the statements that replace a pipeline's registry
// with reg (run in the DDL's transaction).
func saveRegistry(pipeline string, reg *schema.Registry) ([]string, error) {
	pipe, err := redshift.Literal(pipeline)
	if err != nil {
		return nil, err
	}
	var values []string
	row := func(kind, id, sch, name string, former any) error {
		f, err := json.Marshal(former)
		if err != nil {
			return err
		}
		lits := make([]string, 0, 5)
		for _, v := range []string{kind, id, sch, name, string(f)} {
			l, err := redshift.Literal(v)
			if err != nil {
				return err
			}
			lits = append(lits, l)
		}
		values = append(values, "("+pipe+", "+strings.Join(lits, ", ")+")")
		return nil
	}
	for id, q := range reg.Tables {
		former := reg.FormerTables[id]
		if former == nil {
			former = []schema.QName{}
		}
		if err := row("table", strconv.FormatUint(uint64(id), 10), q.Schema, q.Name, former); err != nil {
			return nil, fmt.Errorf("write schema registry: %w", err)
		}
	}
	for k, c := range reg.Columns {
		former := c.Former
		if former == nil {
			former = []string{}
		}
		if err := row("column", fmt.Sprintf("%d.%d", k.Table, k.Num), "", c.Name, former); err != nil {
			return nil, fmt.Errorf("write schema registry: %w", err)
		}
	}
	out := []string{"DELETE FROM " + registryTable() + " WHERE pipeline = " + pipe}
	const perInsert = 200
	for i := 0; i < len(values); i += perInsert {
		end := min(i+perInsert, len(values))
		out = append(out, "INSERT INTO "+registryTable()+" (pipeline, kind, src_id, obj_schema, obj_name, former) VALUES "+
			strings.Join(values[i:end], ", "))
	}
	return out, nil
}
