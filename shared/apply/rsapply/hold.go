package rsapply

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/redshift"
)

// While a table is loading (pgferry.loads.state = 'loading'), chunks are
// copied into it at different source snapshots, so a batch must not write
// it: a chunk copied later from an older snapshot would undo the change.
// As on PostgreSQL (pgapply's hold.go), the batch instead appends the
// table's part of each epoch to pgferry.load_held, in the batch's own
// transaction. Redshift takes no row data in SQL text, so the held parts
// travel like any row data: each part is JSON, gzipped and base64-coded
// (ASCII, so a varchar's byte limit splits it anywhere), cut into pieces
// of at most heldPiece bytes, and the pieces are COPYed from one staged
// CSV file per batch. The load mark (batch.LoadMarks), which the source
// commits after every chunk's snapshot, arrives after every change a chunk
// missed; the batch that carries it reads the held parts back, replays
// them in order, then its own part of the table, deletes them and sets the
// table 'loaded', all in the batch's one transaction. Rows are full images
// (or partial updates by key) and replays replace by key, so the result is
// the source's state as of that batch.
//
// Which tables are loading is read once and cached; every batch's guard
// checks that the loading set is still what the batch was planned with,
// so a BeginLoad by another process (it takes the same watermark lock)
// fails a batch planned before it, which is then planned again.

// heldPiece is the most characters of a held part one load_held row
// carries (varchar(65535) holds bytes; the text is ASCII).
const heldPiece = 65000

// LoadDDL creates pgferry's load tables on a Redshift target: the same
// state as on PostgreSQL (sql/target/load.sql), typed for Redshift.
// Idempotent.
func LoadDDL() []string {
	s := quote(Schema)
	return []string{
		"CREATE TABLE IF NOT EXISTS " + s + `.loads (
    pipeline    varchar(256) NOT NULL,
    tbl_schema  varchar(512) NOT NULL,
    tbl_name    varchar(512) NOT NULL,
    load_id     varchar(64) NOT NULL,
    state       varchar(16) NOT NULL,
    chunks      integer NOT NULL,
    started_at  timestamptz,
    finished_at timestamptz,
    PRIMARY KEY (pipeline, tbl_schema, tbl_name)
)`,
		"CREATE TABLE IF NOT EXISTS " + s + `.load_chunks (
    load_id   varchar(64) NOT NULL,
    chunk     integer NOT NULL,
    row_count bigint NOT NULL,
    copied_at timestamptz,
    PRIMARY KEY (load_id, chunk)
)`,
		"CREATE TABLE IF NOT EXISTS " + s + `.load_held (
    pipeline   varchar(256) NOT NULL,
    tbl_schema varchar(512) NOT NULL,
    tbl_name   varchar(512) NOT NULL,
    tick       numeric(20,0) NOT NULL,
    tx         bigint NOT NULL,
    part       integer NOT NULL,
    piece      integer NOT NULL,
    data       varchar(65535) NOT NULL
)`,
	}
}

// heldPart is one epoch's changes of one loading table (as pgapply's).
type heldPart struct {
	Truncate []batch.Table  `json:"tr,omitempty"`
	Seg      *batch.Segment `json:"seg,omitempty"`
}

func (p heldPart) epoch() batch.Epoch {
	ep := batch.Epoch{Truncate: p.Truncate}
	if p.Seg != nil {
		ep.Segments = []batch.Segment{*p.Seg}
	}
	return ep
}

// loadPlan is a batch's part in loads.
type loadPlan struct {
	// batch is what the planner applies: the loading tables' parts and
	// the load marks taken out, the replays of tables handed over added.
	batch *batch.Batch
	guard string    // the loading set as read (a guard condition)
	held  batch.Row // load_held rows, flattened (heldCols values each)
	nHeld int
	check string   // the held rows' count check
	after []string // hand-over statements, after the batch's DML
	// handed are the tables this batch hands over; heldRows counts the
	// changes it holds.
	handed   []batch.Table
	heldRows int
}

var heldCols = []string{"pipeline", "tbl_schema", "tbl_name", "tick", "tx", "part", "piece", "data"}

// loadingTables returns the tables loading on the target (cached).
func (a *Applier) loadingTables(ctx context.Context) (map[batch.Table]string, error) {
	a.mu.Lock()
	l := a.loading
	a.mu.Unlock()
	if l != nil {
		return l, nil
	}
	pipe := a.pipe
	rows, err := a.ex.Query(ctx, "SELECT tbl_schema, tbl_name, load_id FROM "+quote(Schema)+".loads WHERE pipeline = "+pipe+" AND state = 'loading'")
	if err != nil {
		return nil, fmt.Errorf("read loading tables: %w", err)
	}
	l = map[batch.Table]string{}
	for _, r := range rows {
		if len(r) != 3 || r[0] == nil || r[1] == nil || r[2] == nil {
			return nil, fmt.Errorf("read loading tables: unexpected row")
		}
		l[batch.Table{Schema: *r[0], Name: *r[1]}] = *r[2]
	}
	a.mu.Lock()
	a.loading = l
	a.mu.Unlock()
	return l, nil
}

// loadGuard renders "the loading tables are exactly loading" for pipeline.
func loadGuard(pipeline string, loading map[batch.Table]string) (string, error) {
	pipe, err := redshift.Literal(pipeline)
	if err != nil {
		return "", err
	}
	base := fmt.Sprintf("FROM %s.loads WHERE pipeline = %s AND state = 'loading'", quote(Schema), pipe)
	cond := fmt.Sprintf("(SELECT count(*) %s) = %d", base, len(loading))
	if len(loading) == 0 {
		return cond, nil
	}
	var each []string
	for t, id := range loading {
		w, err := tableWhere(t)
		if err != nil {
			return "", err
		}
		lid, err := redshift.Literal(id)
		if err != nil {
			return "", err
		}
		each = append(each, "("+w+" AND load_id = "+lid+")")
	}
	sort.Strings(each)
	return cond + fmt.Sprintf(" AND (SELECT count(*) %s AND (%s)) = %d", base, strings.Join(each, " OR "), len(loading)), nil
}

// tableWhere renders tbl_schema = … AND tbl_name = … for t.
func tableWhere(t batch.Table) (string, error) {
	s, err := redshift.Literal(t.Schema)
	if err != nil {
		return "", fmt.Errorf("table %s: %w", t, err)
	}
	n, err := redshift.Literal(t.Name)
	if err != nil {
		return "", fmt.Errorf("table %s: %w", t, err)
	}
	return "tbl_schema = " + s + " AND tbl_name = " + n, nil
}

type loadMark struct {
	table  batch.Table
	loadID string
}

// divert takes the load marks and the loading tables' parts out of b,
// holds them or, for a table whose mark arrived with its chunks all
// copied, replays its held parts and hands it over.
func (a *Applier) divert(ctx context.Context, b *batch.Batch) (*loadPlan, error) {
	loading, err := a.loadingTables(ctx)
	if err != nil {
		return nil, err
	}
	ld := &loadPlan{batch: b}
	if ld.guard, err = loadGuard(a.opt.Pipeline, loading); err != nil {
		return nil, err
	}
	marksT := batch.LoadMarks(a.opt.Pipeline)
	hasMarks := false
	for _, ep := range b.Epochs {
		for _, s := range ep.Segments {
			hasMarks = hasMarks || s.Table == marksT
		}
	}
	if len(loading) == 0 && !hasMarks {
		return ld, nil
	}
	out := *b
	out.Epochs = nil
	pending := map[batch.Table][]heldPart{}
	var order []batch.Table
	hold := func(t batch.Table, p heldPart) {
		if !slices.Contains(order, t) {
			order = append(order, t)
		}
		pending[t] = append(pending[t], p)
	}
	var marks []loadMark
	for _, ep := range b.Epochs {
		var ne batch.Epoch
		for _, t := range ep.Truncate {
			if _, ok := loading[t]; ok {
				hold(t, heldPart{Truncate: []batch.Table{t}})
				continue
			}
			ne.Truncate = append(ne.Truncate, t)
		}
		for i := range ep.Segments {
			s := &ep.Segments[i]
			_, isLoading := loading[s.Table]
			switch {
			case s.Table == marksT:
				m, err := readMarks(s, b.Target)
				if err != nil {
					return nil, err
				}
				for _, mk := range m {
					if !slices.Contains(order, mk.table) {
						order = append(order, mk.table)
					}
				}
				marks = append(marks, m...)
			case isLoading:
				hold(s.Table, heldPart{Seg: s})
			default:
				ne.Segments = append(ne.Segments, *s)
			}
		}
		if len(ne.Truncate) > 0 || len(ne.Segments) > 0 {
			out.Epochs = append(out.Epochs, ne)
		}
	}
	part := 0
	for _, t := range order {
		id, isLoading := loading[t]
		if !isLoading {
			continue // a mark of a table not loading: an extra mark
		}
		if slices.Contains(marks, loadMark{t, id}) {
			done, err := a.handOver(ctx, &out, ld, t, id, pending[t])
			if err != nil {
				return nil, fmt.Errorf("hand over loaded table %s: %w", t, err)
			}
			if done {
				continue
			}
		}
		for _, p := range pending[t] {
			if err := ld.holdPart(a.opt.Pipeline, b.To, t, part, p); err != nil {
				return nil, fmt.Errorf("hold changes of loading table %s: %w", t, err)
			}
			part++
		}
	}
	if ld.nHeld > 0 {
		pipe := a.pipe
		ld.check = fmt.Sprintf("(SELECT count(*) FROM %s.load_held WHERE pipeline = %s AND tick = %d AND tx = %d) = %d",
			quote(Schema), pipe, b.To.Tick, b.To.Tx, ld.nHeld)
	}
	ld.batch = &out
	return ld, nil
}

func readMarks(s *batch.Segment, target string) ([]loadMark, error) {
	col := func(name string) int { return slices.Index(s.Columns, name) }
	it, is, in, il := col(batch.MarkTarget), col(batch.MarkSchema), col(batch.MarkTable), col(batch.MarkLoadID)
	if it < 0 || is < 0 || in < 0 || il < 0 {
		return nil, fmt.Errorf("load mark has columns %q, want %s, %s, %s, %s", s.Columns, batch.MarkTarget, batch.MarkSchema, batch.MarkTable, batch.MarkLoadID)
	}
	var out []loadMark
	for _, r := range s.Upserts {
		if r[it] == nil || *r[it] != target || r[is] == nil || r[in] == nil || r[il] == nil {
			continue
		}
		out = append(out, loadMark{table: batch.Table{Schema: *r[is], Name: *r[in]}, loadID: *r[il]})
	}
	return out, nil
}

// holdPart adds p's rows for load_held.
func (ld *loadPlan) holdPart(pipeline string, at batch.Position, t batch.Table, part int, p heldPart) error {
	data, err := json.Marshal(p)
	if err != nil {
		return err
	}
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	if _, err := zw.Write(data); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	enc := base64.StdEncoding.EncodeToString(z.Bytes())
	tick, tx, pn := strconv.FormatUint(at.Tick, 10), strconv.FormatInt(at.Tx, 10), strconv.Itoa(part)
	for piece := 0; piece == 0 || len(enc) > 0; piece++ {
		n := min(len(enc), heldPiece)
		ld.held = append(ld.held, &pipeline, &t.Schema, &t.Name, &tick, &tx, &pn, ptr(strconv.Itoa(piece)), ptr(enc[:n]))
		enc = enc[n:]
		ld.nHeld++
	}
	if p.Seg != nil {
		ld.heldRows += len(p.Seg.Upserts) + len(p.Seg.Deletes)
	}
	return nil
}

func ptr(s string) *string { return &s }

// holdFile stages the batch's held rows and COPYs them into load_held.
func (pl *planner) holdFile() error {
	ld := pl.ld
	if ld.nHeld == 0 {
		return nil
	}
	s := &stage{name: quote(Schema) + ".load_held", dataKey: pl.keyDir + "held.csv.gz", mfKey: pl.keyDir + "held.manifest"}
	n := len(heldCols)
	for i := 0; i < len(ld.held); i += n {
		s.file.add(ld.held[i : i+n])
	}
	for _, c := range heldCols {
		s.cols = append(s.cols, quote(c))
	}
	role, err := redshift.Literal(pl.a.opt.CopyRoleARN)
	if err != nil {
		return err
	}
	mf, err := redshift.Literal("s3://" + pl.a.opt.Bucket + "/" + s.mfKey)
	if err != nil {
		return err
	}
	pl.p.files = append(pl.p.files, s)
	pl.p.stmts = append(pl.p.stmts, fmt.Sprintf("COPY %s (%s) FROM %s IAM_ROLE %s CSV GZIP MANIFEST COMPUPDATE OFF STATUPDATE OFF",
		s.name, strings.Join(s.cols, ", "), mf, role))
	return nil
}

// handOver adds to out the replay of t's held parts and then pending
// (this batch's parts of t), and to ld the statements that end the load.
// It reports false, adding nothing, if the load's chunks are not all
// copied (a mark of a load that was restarted meanwhile).
func (a *Applier) handOver(ctx context.Context, out *batch.Batch, ld *loadPlan, t batch.Table, loadID string, pending []heldPart) (bool, error) {
	st, found, err := a.LoadStatus(ctx, t)
	if err != nil {
		return false, err
	}
	if !found || st.LoadID != loadID || st.Loaded {
		return false, nil
	}
	if st.Copied < st.Chunks {
		a.log.Warn("load mark before every chunk was copied; holding on", "table", t, "load", loadID, "copied", st.Copied, "chunks", st.Chunks)
		return false, nil
	}
	held, err := a.readHeld(ctx, t)
	if err != nil {
		return false, err
	}
	replay, err := mergeParts(append(held, pending...))
	if err != nil {
		return false, err
	}
	for _, p := range replay {
		out.Epochs = append(out.Epochs, p.epoch())
	}
	pipe := a.pipe
	tw, err := tableWhere(t)
	if err != nil {
		return false, err
	}
	lid, err := redshift.Literal(loadID)
	if err != nil {
		return false, err
	}
	sch := quote(Schema)
	ld.after = append(ld.after,
		fmt.Sprintf("DELETE FROM %s.load_held WHERE pipeline = %s AND %s", sch, pipe, tw),
		fmt.Sprintf("DELETE FROM %s.load_chunks WHERE load_id = %s", sch, lid),
		fmt.Sprintf("UPDATE %s.loads SET state = 'loaded', finished_at = %s WHERE pipeline = %s AND %s AND load_id = %s",
			sch, a.nowLiteral(), pipe, tw, lid))
	ld.handed = append(ld.handed, t)
	a.log.Info("loaded table handed over to the change stream", "table", t, "load", loadID, "held_parts", len(held), "replayed_parts", len(replay))
	return true, nil
}

// readHeld reads t's held parts back, in order.
func (a *Applier) readHeld(ctx context.Context, t batch.Table) ([]heldPart, error) {
	pipe := a.pipe
	tw, err := tableWhere(t)
	if err != nil {
		return nil, err
	}
	rows, err := a.ex.Query(ctx, fmt.Sprintf("SELECT tick, tx, part, data FROM %s.load_held WHERE pipeline = %s AND %s ORDER BY tick, tx, part, piece",
		quote(Schema), pipe, tw))
	if err != nil {
		return nil, fmt.Errorf("read held changes: %w", err)
	}
	var out []heldPart
	var cur string
	var buf strings.Builder
	flush := func() error {
		if buf.Len() == 0 {
			return nil
		}
		raw, err := base64.StdEncoding.DecodeString(buf.String())
		if err != nil {
			return fmt.Errorf("held change %s: %w", cur, err)
		}
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return fmt.Errorf("held change %s: %w", cur, err)
		}
		data, err := io.ReadAll(zr)
		if err != nil {
			return fmt.Errorf("held change %s: %w", cur, err)
		}
		var p heldPart
		if err := json.Unmarshal(data, &p); err != nil {
			return fmt.Errorf("held change %s: %w", cur, err)
		}
		out = append(out, p)
		buf.Reset()
		return nil
	}
	for _, r := range rows {
		if len(r) != 4 || r[0] == nil || r[1] == nil || r[2] == nil || r[3] == nil {
			return nil, fmt.Errorf("read held changes: unexpected row")
		}
		id := *r[0] + "." + *r[1] + "." + *r[2]
		if id != cur {
			if err := flush(); err != nil {
				return nil, err
			}
			cur = id
		}
		buf.WriteString(*r[3])
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return out, nil
}

// committed updates the cache after a batch with ld committed.
func (a *Applier) committed(ld *loadPlan) {
	if len(ld.handed) == 0 {
		return
	}
	a.mu.Lock()
	a.loading = nil
	a.mu.Unlock()
}

// nowLiteral renders the applier's clock as a timestamptz literal.
func (a *Applier) nowLiteral() string {
	return "'" + a.now().UTC().Format("2006-01-02 15:04:05.000000") + "+00'"
}

// mergeParts folds a loading table's held parts, in order, into fewer
// parts with the same effect, so that the hand-over's one transaction
// stays within the Data API's statement limit: a truncate makes every
// earlier part moot, and consecutive parts of whole rows over the same
// columns and key become one part holding each key's last change. Parts
// of partial rows (and keyless ones) are kept as they are, in place.
func mergeParts(parts []heldPart) ([]heldPart, error) {
	var out []heldPart
	var cur *merging
	flush := func() {
		if cur != nil {
			out = append(out, heldPart{Seg: cur.segment()})
			cur = nil
		}
	}
	for _, p := range parts {
		switch {
		case len(p.Truncate) > 0 && p.Seg == nil:
			cur, out = nil, []heldPart{p}
		case p.Seg != nil && len(p.Truncate) == 0 && !p.Seg.Update && len(p.Seg.Key) > 0:
			if cur != nil && !(slices.Equal(cur.seg.Columns, p.Seg.Columns) && slices.Equal(cur.seg.Key, p.Seg.Key)) {
				flush()
			}
			if cur == nil {
				var err error
				if cur, err = newMerging(p.Seg); err != nil {
					return nil, err
				}
			}
			if err := cur.add(p.Seg); err != nil {
				return nil, err
			}
		default:
			flush()
			out = append(out, p)
		}
	}
	flush()
	return out, nil
}

// merging is whole-row segments folded by key.
type merging struct {
	seg    batch.Segment // Table, Columns, Key
	keyIdx []int
	order  []string
	last   map[string]mergedRow
}

type mergedRow struct {
	key batch.Row
	row batch.Row // nil: deleted
}

func newMerging(s *batch.Segment) (*merging, error) {
	m := &merging{seg: batch.Segment{Table: s.Table, Columns: s.Columns, Key: s.Key}, last: map[string]mergedRow{}}
	for _, k := range s.Key {
		i := slices.Index(s.Columns, k)
		if i < 0 {
			return nil, fmt.Errorf("held part of %s lacks key column %q", s.Table, k)
		}
		m.keyIdx = append(m.keyIdx, i)
	}
	return m, nil
}

func (m *merging) set(key, row batch.Row) error {
	k, err := json.Marshal(key)
	if err != nil {
		return err
	}
	ks := string(k)
	if _, ok := m.last[ks]; !ok {
		m.order = append(m.order, ks)
	}
	m.last[ks] = mergedRow{key: key, row: row}
	return nil
}

// add folds s in: deletes before upserts, as the planner applies them.
func (m *merging) add(s *batch.Segment) error {
	for _, d := range s.Deletes {
		if err := m.set(d, nil); err != nil {
			return err
		}
	}
	for _, u := range s.Upserts {
		key := make(batch.Row, len(m.keyIdx))
		for i, j := range m.keyIdx {
			key[i] = u[j]
		}
		if err := m.set(key, u); err != nil {
			return err
		}
	}
	return nil
}

func (m *merging) segment() *batch.Segment {
	s := m.seg
	for _, k := range m.order {
		e := m.last[k]
		if e.row == nil {
			s.Deletes = append(s.Deletes, e.key)
		} else {
			s.Upserts = append(s.Upserts, e.row)
		}
	}
	return &s
}
