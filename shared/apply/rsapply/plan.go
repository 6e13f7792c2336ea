package rsapply

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pgferry/pgferry/shared/apply"
	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/redshift"
)

// A batch becomes these statements, in this order (shapes.go lists each
// shape). The staging part runs first, in the same database session;
// through the Data API it may be split over calls of at most 40
// statements (redshift.Stager), as it only fills temporary tables:
//
//	per stage: CREATE TEMP TABLE s AS SELECT <cols> FROM t WHERE 1 = 0
//	           COPY s (<cols>) FROM '<manifest>' IAM_ROLE … CSV GZIP MANIFEST …
//
// Then one transaction, one call, which decides everything:
//
//	LOCK pgferry.watermarks                       serialise appliers of one database
//	SELECT 1 / CASE WHEN <watermark as read> …    the guard: fails if another applier moved it
//	SELECT 1 / CASE WHEN (SELECT count(*) FROM s1) = n1 AND … the row-count check
//	per epoch: DELETE FROM t (a truncate: TRUNCATE would commit)
//	           DELETE FROM t USING s WHERE <key match>      (deletes, children first)
//	           DELETE FROM t USING s …; INSERT INTO t SELECT … FROM s   (upserts)
//	           UPDATE t SET … FROM s WHERE t.<key> = s.<match>          (partial rows)
//	DELETE FROM pgferry.watermarks WHERE …; INSERT INTO pgferry.watermarks VALUES (…)
//	DROP TABLE s1, s2, …
//
// Checks fail the transaction by dividing by zero, the one way to raise
// an error from plain SQL that Redshift and PostgreSQL share (Redshift
// has no RAISE outside procedures, and pg_last_copy_count() could only be
// read by a second round trip, which a Data API batch does not have).
//
// A stage is made by CREATE TABLE AS over the columns it loads, not
// (LIKE t): LIKE copies NOT NULL, and a stage of deletes or of partial
// rows loads only some columns.

// stage is one staged file: one table, one set of columns.
type stage struct {
	name    string // quoted temp table name
	table   batch.Table
	cols    []string // quoted stage column names, in file order
	sel     []string // the CTAS select list producing them
	file    csvFile
	dataKey string
	mfKey   string
}

// plan is what Apply sends: the files to put and the statements to run.
type plan struct {
	// staging makes and fills the stage tables (CREATE TEMP TABLE, COPY);
	// it runs first, in the same session as stmts (redshift.Stager), and
	// through the Data API may take several calls.
	staging []string
	// stmts is the transaction that decides: guard, checks, DML,
	// watermark. It is one call and bound by the executor's limit.
	stmts    []string
	stages   []*stage
	guardIdx int // index of the watermark guard (-1: none)
	checkIdx int // index of the row-count check (-1: none)
	rows     int
	losses   losses
	// files are staged files COPYed straight into a table (held
	// changes), not through a stage; put and cleanup handle them too.
	files []*stage
}

// planner builds the plan of one batch.
type planner struct {
	a      *Applier
	b      *batch.Batch
	info   func(batch.Table) (*tableInfo, error)
	p      *plan
	dml    []string
	keyDir string // S3 key prefix of this batch's files
	// ld is the batch's part in loads (hold.go): a guard condition, a
	// held-changes file and the hand-over statements. nil: none.
	ld *loadPlan
}

const matchPrefix = "pgferry_match_"

func ident(t batch.Table) string { return pgx.Identifier{t.Schema, t.Name}.Sanitize() }
func quote(n string) string      { return pgx.Identifier{n}.Sanitize() }

func (pl *planner) newStage(t batch.Table) *stage {
	n := len(pl.p.stages) + 1
	s := &stage{
		name:    quote("pgferry_stage_" + strconv.Itoa(n)),
		table:   t,
		dataKey: pl.keyDir + strconv.Itoa(n) + ".csv.gz",
		mfKey:   pl.keyDir + strconv.Itoa(n) + ".manifest",
	}
	pl.p.stages = append(pl.p.stages, s)
	return s
}

// addCol adds a stage column: target column tcol, named as (quoted) in the stage.
func (s *stage) addCol(tcol, as string) {
	s.cols = append(s.cols, as)
	if as == quote(tcol) {
		s.sel = append(s.sel, as)
	} else {
		s.sel = append(s.sel, quote(tcol)+" AS "+as)
	}
}

// resolve maps batch column names to target columns, or fails with
// ErrSchemaBehind naming the missing ones.
func resolve(t batch.Table, ti *tableInfo, names []string) ([]string, error) {
	out := make([]string, len(names))
	var missing []string
	for i, n := range names {
		tn, _, ok := ti.column(n)
		if !ok {
			missing = append(missing, strconv.Quote(n))
		}
		out[i] = tn
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: %s lacks column %s", apply.ErrSchemaBehind, t, strings.Join(missing, ", "))
	}
	return out, nil
}

// load writes rows (over names, target columns tcols) into s's file,
// converting each value to its target column's type.
func (pl *planner) load(s *stage, ti *tableInfo, names, tcols []string, rows []batch.Row, prefix []batch.Row) {
	row := make(batch.Row, 0, len(s.cols))
	for i, r := range rows {
		row = row[:0]
		if prefix != nil {
			row = append(row, prefix[i]...)
		}
		for j, v := range r {
			_, col, _ := ti.column(names[j])
			out, loss := col.Convert(v)
			pl.p.losses.add(s.table, tcols[j], loss)
			row = append(row, out)
		}
		s.file.add(row)
	}
}

func (pl *planner) createAndCopy(s *stage) error {
	role, err := redshift.Literal(pl.a.opt.CopyRoleARN)
	if err != nil {
		return err
	}
	mf, err := redshift.Literal("s3://" + pl.a.opt.Bucket + "/" + s.mfKey)
	if err != nil {
		return err
	}
	pl.p.staging = append(pl.p.staging,
		fmt.Sprintf("CREATE TEMP TABLE %s AS SELECT %s FROM %s WHERE 1 = 0", s.name, strings.Join(s.sel, ", "), ident(s.table)),
		fmt.Sprintf("COPY %s (%s) FROM %s IAM_ROLE %s CSV GZIP MANIFEST TIMEFORMAT 'auto' DATEFORMAT 'auto' COMPUPDATE OFF STATUPDATE OFF",
			s.name, strings.Join(s.cols, ", "), mf, role))
	return nil
}

// keyMatch renders t.k = s.m for each key column k and stage column m.
func keyMatch(t batch.Table, s *stage, key, stageCols []string) string {
	conds := make([]string, len(key))
	for i, k := range key {
		conds[i] = ident(t) + "." + quote(k) + " = " + s.name + "." + stageCols[i]
	}
	return strings.Join(conds, " AND ")
}

func (pl *planner) segment(s *batch.Segment, deletes bool) error {
	ti, err := pl.info(s.Table)
	if err != nil {
		return err
	}
	switch {
	case deletes && len(s.Deletes) > 0:
		if len(s.Key) == 0 {
			return fmt.Errorf("rsapply: %s has no primary key, and a Redshift target applies deletes and updates by key only "+
				"(matching every column could remove a duplicate's twin); give the source table a primary key, "+
				"or leave it out of targets.%s.tables", s.Table, pl.b.Target)
		}
		key, err := resolve(s.Table, ti, s.Key)
		if err != nil {
			return err
		}
		st := pl.newStage(s.Table)
		for _, k := range key {
			st.addCol(k, quote(k))
		}
		pl.load(st, ti, s.Key, key, s.Deletes, nil)
		if err := pl.createAndCopy(st); err != nil {
			return err
		}
		pl.dml = append(pl.dml, fmt.Sprintf("DELETE FROM %s USING %s WHERE %s", ident(s.Table), st.name, keyMatch(s.Table, st, key, st.cols)))
		pl.p.rows += len(s.Deletes)
	case !deletes && len(s.Upserts) > 0 && s.Update:
		key, err := resolve(s.Table, ti, s.Key)
		if err != nil {
			return err
		}
		cols, err := resolve(s.Table, ti, s.Columns)
		if err != nil {
			return err
		}
		st := pl.newStage(s.Table)
		match := make([]string, len(key))
		for i, k := range key {
			match[i] = quote(matchPrefix + strconv.Itoa(i))
			st.addCol(k, match[i])
		}
		set := make([]string, len(cols))
		for i, c := range cols {
			st.addCol(c, quote(c))
			set[i] = quote(c) + " = " + st.name + "." + quote(c)
		}
		// The match values are key values: convert them as the key columns.
		mrows := make([]batch.Row, len(s.Match))
		for i, m := range s.Match {
			mrows[i] = make(batch.Row, len(m))
			for j, v := range m {
				_, col, _ := ti.column(s.Key[j])
				mrows[i][j], _ = col.Convert(v)
			}
		}
		pl.load(st, ti, s.Columns, cols, s.Upserts, mrows)
		if err := pl.createAndCopy(st); err != nil {
			return err
		}
		pl.dml = append(pl.dml, fmt.Sprintf("UPDATE %s SET %s FROM %s WHERE %s", ident(s.Table), strings.Join(set, ", "), st.name,
			keyMatch(s.Table, st, key, match)))
		pl.p.rows += len(s.Upserts)
	case !deletes && len(s.Upserts) > 0:
		cols, err := resolve(s.Table, ti, s.Columns)
		if err != nil {
			return err
		}
		st := pl.newStage(s.Table)
		for _, c := range cols {
			st.addCol(c, quote(c))
		}
		pl.load(st, ti, s.Columns, cols, s.Upserts, nil)
		if err := pl.createAndCopy(st); err != nil {
			return err
		}
		if len(s.Key) > 0 {
			// Replace the rows: Redshift does not enforce keys, so an
			// insert alone would duplicate them.
			key, err := resolve(s.Table, ti, s.Key)
			if err != nil {
				return err
			}
			kcols := make([]string, len(key))
			for i, k := range key {
				kcols[i] = quote(k)
			}
			pl.dml = append(pl.dml, fmt.Sprintf("DELETE FROM %s USING %s WHERE %s", ident(s.Table), st.name, keyMatch(s.Table, st, key, kcols)))
		}
		// Keyless: every entry is one new row; duplicates stay duplicates.
		pl.dml = append(pl.dml, fmt.Sprintf("INSERT INTO %s (%s) SELECT %s FROM %s", ident(s.Table),
			strings.Join(st.cols, ", "), strings.Join(st.cols, ", "), st.name))
		pl.p.rows += len(s.Upserts)
	}
	return nil
}

// position renders "(tick, tx) compared to p" for the watermark row.
func posCmp(op string, p batch.Position) string {
	t, x := strconv.FormatUint(p.Tick, 10), strconv.FormatInt(p.Tx, 10)
	switch op {
	case ">=":
		return "(tick > " + t + " OR (tick = " + t + " AND tx >= " + x + "))"
	default: // "<"
		return "(tick < " + t + " OR (tick = " + t + " AND tx < " + x + "))"
	}
}

// build renders the whole plan. wm is the watermark Apply read (or
// trusted from its cache); the guard makes the transaction fail unless
// the target still holds exactly that, so a plan built on a stale read
// changes nothing.
func (pl *planner) build(wm batch.Position, wmLineage string, wmExists bool) error {
	p := pl.p
	sch := quote(Schema)
	pipe, err := redshift.Literal(pl.b.Pipeline)
	if err != nil {
		return err
	}
	group, err := redshift.Literal(batch.Group(pl.b.Pipeline, pl.b.Target))
	if err != nil {
		return err
	}
	lineage, err := redshift.Literal(pl.b.Lineage)
	if err != nil {
		return err
	}
	oldLineage, err := redshift.Literal(wmLineage)
	if err != nil {
		return err
	}
	where := "pipeline = " + pipe + " AND msg_group = " + group
	var expect string
	if wmExists {
		expect = fmt.Sprintf("(SELECT count(*) FROM %s.watermarks WHERE %s AND tick = %d AND tx = %d AND lineage = %s) = 1",
			sch, where, wm.Tick, wm.Tx, oldLineage)
	} else {
		expect = fmt.Sprintf("(SELECT count(*) FROM %s.watermarks WHERE %s) = 0", sch, where)
	}
	if pl.ld != nil && pl.ld.guard != "" {
		expect += " AND " + pl.ld.guard
	}
	p.stmts = append(p.stmts, "LOCK "+sch+".watermarks")
	p.guardIdx = len(p.stmts)
	p.stmts = append(p.stmts, "SELECT 1 / CASE WHEN "+expect+" THEN 1 ELSE 0 END")

	for _, ep := range pl.b.Epochs {
		for _, t := range ep.Truncate {
			if _, err := pl.info(t); err != nil {
				return err
			}
			// TRUNCATE commits the transaction on Redshift.
			pl.dml = append(pl.dml, "DELETE FROM "+ident(t))
		}
		for i := len(ep.Segments) - 1; i >= 0; i-- {
			if err := pl.segment(&ep.Segments[i], true); err != nil {
				return err
			}
		}
		for i := range ep.Segments {
			if err := pl.segment(&ep.Segments[i], false); err != nil {
				return err
			}
		}
	}
	if pl.ld != nil {
		if err := pl.holdFile(); err != nil {
			return err
		}
	}
	if len(p.stages) > 0 || (pl.ld != nil && pl.ld.check != "") {
		var conds []string
		for _, s := range p.stages {
			conds = append(conds, fmt.Sprintf("(SELECT count(*) FROM %s) = %d", s.name, s.file.rows))
		}
		if pl.ld != nil && pl.ld.check != "" {
			conds = append(conds, pl.ld.check)
		}
		p.checkIdx = len(p.stmts)
		p.stmts = append(p.stmts, "SELECT 1 / CASE WHEN "+strings.Join(conds, " AND ")+" THEN 1 ELSE 0 END")
	}
	p.stmts = append(p.stmts, pl.dml...)
	if pl.ld != nil {
		p.stmts = append(p.stmts, pl.ld.after...)
	}
	now, _ := redshift.Literal(pl.a.now().UTC().Format("2006-01-02 15:04:05.000000") + "+00")
	p.stmts = append(p.stmts,
		fmt.Sprintf("DELETE FROM %s.watermarks WHERE %s", sch, where),
		fmt.Sprintf("INSERT INTO %s.watermarks (pipeline, msg_group, tick, tx, seq, lineage, applied_at) VALUES (%s, %s, %d, %d, %d, %s, %s)",
			sch, pipe, group, pl.b.To.Tick, pl.b.To.Tx, pl.b.Seq, lineage, now))
	if len(p.stages) > 0 {
		names := make([]string, len(p.stages))
		for i, s := range p.stages {
			names[i] = s.name
		}
		p.stmts = append(p.stmts, "DROP TABLE "+strings.Join(names, ", "))
	}
	return nil
}

// manifest renders a COPY manifest naming one mandatory file.
func manifest(bucket, key string, size int) []byte {
	type meta struct {
		ContentLength int `json:"content_length"`
	}
	type entry struct {
		URL       string `json:"url"`
		Mandatory bool   `json:"mandatory"`
		Meta      meta   `json:"meta"`
	}
	data, _ := json.Marshal(struct {
		Entries []entry `json:"entries"`
	}{[]entry{{URL: "s3://" + bucket + "/" + key, Mandatory: true, Meta: meta{size}}}})
	return data
}
