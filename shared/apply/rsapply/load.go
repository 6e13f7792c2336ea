package rsapply

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/load"
	"github.com/pgferry/pgferry/shared/pgtext"
	"github.com/pgferry/pgferry/shared/redshift"
)

// The target side of the initial load on Redshift; hold.go says how a
// loading table's changes wait for its copy and are handed over.
//
// Differences from PostgreSQL (pgapply), each because Redshift lacks
// something:
//   - A chunk's key range is not cleared by ChunkCopy.Where: that
//     predicate is the source's SQL (E'' literals, row comparisons, the
//     source's collation), which Redshift would not evaluate alike. A new
//     load empties the table instead, in BeginLoad's transaction, and a
//     chunk is recorded in the transaction that copies it, so no key
//     range is ever copied twice within a load. Rows of an earlier load
//     never mix with this one's.
//   - No indexes: RebuildIndexes has nothing to do.
//   - Chunks arrive in COPY text (never binary), are converted to the
//     target's types like batch rows (lossy conversions counted and
//     logged), staged in S3 as one gzip CSV file, and COPYed straight into
//     the table.
//   - Concurrent copies of the same chunk serialise on LOCK
//     pgferry.load_chunks, not an advisory lock.

var _ load.Target = (*Applier)(nil)

// BeginLoad marks t as loading under loadID, so that every batch planned
// after it returns holds t's changes back. It takes the watermark lock, as
// batches do, so no batch is being applied meanwhile (one planned before
// fails its guard and is planned again). For the same loadID it changes
// nothing (a table loaded under loadID stays loaded); a different loadID
// restarts the load: the table is emptied and the older load's chunk
// records are dropped. The held changes stay: replayed over the new copy
// they give the same result. group is unused: every group of the pipeline
// on this target takes the same lock.
func (a *Applier) BeginLoad(ctx context.Context, group string, t batch.Table, loadID string, chunks int, dropIndexes bool) error {
	stmts, err := a.beginLoadSQL(t, loadID, chunks)
	if err != nil {
		return fmt.Errorf("rsapply: begin load of %s: %w", t, err)
	}
	if err := a.ex.Tx(ctx, stmts); err != nil {
		a.Forget()
		return fmt.Errorf("rsapply: begin load of %s: %w", t, err)
	}
	a.mu.Lock()
	a.loading = nil
	a.mu.Unlock()
	return nil
}

func (a *Applier) beginLoadSQL(t batch.Table, loadID string, chunks int) ([]string, error) {
	sch := quote(Schema)
	pipe := a.pipe
	tw, err := tableWhere(t)
	if err != nil {
		return nil, err
	}
	lid, err := redshift.Literal(loadID)
	if err != nil {
		return nil, err
	}
	s, _ := redshift.Literal(t.Schema)
	n, _ := redshift.Literal(t.Name)
	this := fmt.Sprintf("%s.loads WHERE pipeline = %s AND %s", sch, pipe, tw)
	return []string{
		"LOCK " + sch + ".watermarks",
		"LOCK " + sch + ".load_chunks",
		// A new load (no row of this loadID): start from an empty table.
		fmt.Sprintf("DELETE FROM %s WHERE NOT EXISTS (SELECT 1 FROM %s AND load_id = %s)", ident(t), this, lid),
		fmt.Sprintf("DELETE FROM %s.load_chunks WHERE load_id IN (SELECT load_id FROM %s AND load_id <> %s)", sch, this, lid),
		fmt.Sprintf("DELETE FROM %s AND load_id <> %s", this, lid),
		fmt.Sprintf("INSERT INTO %s.loads (pipeline, tbl_schema, tbl_name, load_id, state, chunks, started_at) "+
			"SELECT %s, %s, %s, %s, 'loading', %d, %s WHERE NOT EXISTS (SELECT 1 FROM %s)",
			sch, pipe, s, n, lid, chunks, a.nowLiteral(), this),
	}, nil
}

// RebuildIndexes does nothing: Redshift has no indexes to drop or rebuild.
func (a *Applier) RebuildIndexes(ctx context.Context, t batch.Table) error { return nil }

// LoadStatus returns t's load on this target; found is false if t was
// never loaded.
func (a *Applier) LoadStatus(ctx context.Context, t batch.Table) (st load.State, found bool, err error) {
	pipe := a.pipe
	tw, err := tableWhere(t)
	if err != nil {
		return st, false, err
	}
	sch := quote(Schema)
	rows, err := a.ex.Query(ctx, fmt.Sprintf(`SELECT l.load_id, l.state, l.chunks, count(c.chunk) FROM %[1]s.loads l
LEFT JOIN %[1]s.load_chunks c ON c.load_id = l.load_id
WHERE l.pipeline = %[2]s AND l.%[3]s GROUP BY l.load_id, l.state, l.chunks`, sch, pipe, strings.Replace(tw, " AND ", " AND l.", 1)))
	if err != nil {
		return st, false, fmt.Errorf("rsapply: load status of %s: %w", t, err)
	}
	if len(rows) == 0 {
		return st, false, nil
	}
	r := rows[0]
	if len(r) != 4 || r[0] == nil || r[1] == nil || r[2] == nil || r[3] == nil {
		return st, false, fmt.Errorf("rsapply: load status of %s: unexpected row", t)
	}
	st.LoadID, st.Loaded = *r[0], *r[1] == "loaded"
	if st.Chunks, err = strconv.Atoi(*r[2]); err != nil {
		return st, false, fmt.Errorf("rsapply: load status of %s: chunks %q: %w", t, *r[2], err)
	}
	if st.Copied, err = strconv.Atoi(*r[3]); err != nil {
		return st, false, fmt.Errorf("rsapply: load status of %s: copied %q: %w", t, *r[3], err)
	}
	return st, true, nil
}

// HeldParts returns how many held-change rows wait for t's hand-over.
func (a *Applier) HeldParts(ctx context.Context, t batch.Table) (int, error) {
	pipe := a.pipe
	tw, err := tableWhere(t)
	if err != nil {
		return 0, err
	}
	rows, err := a.ex.Query(ctx, fmt.Sprintf("SELECT count(*) FROM %s.load_held WHERE pipeline = %s AND %s", quote(Schema), pipe, tw))
	if err != nil || len(rows) != 1 || len(rows[0]) != 1 || rows[0][0] == nil {
		return 0, fmt.Errorf("rsapply: held changes of %s: %w", t, err)
	}
	return strconv.Atoi(*rows[0][0])
}

// chunkState reads whether c's load is t's current one and loading, and
// the rows of c if it is recorded as copied.
func (a *Applier) chunkState(ctx context.Context, c load.ChunkCopy) (current bool, rows int64, recorded bool, err error) {
	st, found, err := a.LoadStatus(ctx, c.Table)
	if err != nil || !found || st.LoadID != c.LoadID || st.Loaded {
		return false, 0, false, err
	}
	lid, err := redshift.Literal(c.LoadID)
	if err != nil {
		return false, 0, false, err
	}
	rs, err := a.ex.Query(ctx, fmt.Sprintf("SELECT row_count FROM %s.load_chunks WHERE load_id = %s AND chunk = %d", quote(Schema), lid, c.N))
	if err != nil {
		return false, 0, false, fmt.Errorf("rsapply: read chunk %d of %s: %w", c.N, c.Table, err)
	}
	if len(rs) == 0 {
		return true, 0, false, nil
	}
	if len(rs[0]) != 1 || rs[0][0] == nil {
		return false, 0, false, fmt.Errorf("rsapply: read chunk %d of %s: unexpected row", c.N, c.Table)
	}
	rows, err = strconv.ParseInt(*rs[0][0], 10, 64)
	return true, rows, true, err
}

// CopyChunk copies one chunk in one Redshift transaction: src writes the
// chunk in COPY text, each value is converted to its column's Redshift
// type (rstype, as batch rows are), the rows are staged in S3 as one gzip
// CSV file, and one transaction checks that the chunk is not recorded and
// the load is still t's current one, COPYs the file into the table and
// records the chunk. The file is deleted afterwards.
//
// It is idempotent: a chunk already recorded, or of a load that is not
// the table's current one, or of a table already handed over, is not
// copied again (copied false, and rows is what the first copy wrote).
// Concurrent calls serialise on LOCK pgferry.load_chunks; the loser finds
// the chunk recorded.
func (a *Applier) CopyChunk(ctx context.Context, c load.ChunkCopy, src func(ctx context.Context, w io.Writer, binary bool) error) (rows int64, copied bool, err error) {
	rows, copied, err = a.copyChunk(ctx, c, src)
	if err != nil {
		return 0, false, fmt.Errorf("rsapply: copy chunk %d of %s: %w", c.N, c.Table, err)
	}
	return rows, copied, nil
}

func (a *Applier) copyChunk(ctx context.Context, c load.ChunkCopy, src func(ctx context.Context, w io.Writer, binary bool) error) (int64, bool, error) {
	current, rows, recorded, err := a.chunkState(ctx, c)
	if err != nil || !current || recorded {
		return rows, false, err
	}
	ti, err := a.info(ctx, c.Table)
	if err != nil {
		return 0, false, err
	}
	tcols, err := resolve(c.Table, ti, c.Columns)
	if err != nil {
		return 0, false, err
	}
	lost := losses{}
	data, n, err := convertChunk(ctx, c, ti, tcols, lost, src)
	if err != nil {
		return 0, false, err
	}
	dir := a.opt.Prefix + "load/" + c.LoadID + "/" + strconv.Itoa(c.N)
	s := &stage{dataKey: dir + ".csv.gz", mfKey: dir + ".manifest"}
	defer a.cleanup(&plan{files: []*stage{s}})
	if err := a.store.Put(ctx, s.dataKey, data); err != nil {
		return 0, false, fmt.Errorf("stage chunk file: %w", err)
	}
	if err := a.store.Put(ctx, s.mfKey, manifest(a.opt.Bucket, s.dataKey, len(data))); err != nil {
		return 0, false, fmt.Errorf("stage chunk manifest: %w", err)
	}
	stmts, guardIdx, err := a.chunkSQL(c, tcols, s.mfKey, n)
	if err != nil {
		return 0, false, err
	}
	if err := a.ex.Tx(ctx, stmts); err != nil {
		var rerr *redshift.Error
		if errors.As(err, &rerr) && rerr.Index == guardIdx {
			// Recorded meanwhile, or the load moved on.
			_, rows, _, serr := a.chunkState(ctx, c)
			return rows, false, serr
		}
		a.mu.Lock()
		clear(a.tables)
		a.mu.Unlock()
		return 0, false, err
	}
	a.loss.report(lost)
	return n, true, nil
}

func (a *Applier) chunkSQL(c load.ChunkCopy, tcols []string, mfKey string, n int64) ([]string, int, error) {
	sch := quote(Schema)
	pipe := a.pipe
	tw, err := tableWhere(c.Table)
	if err != nil {
		return nil, 0, err
	}
	lid, err := redshift.Literal(c.LoadID)
	if err != nil {
		return nil, 0, err
	}
	role, err := redshift.Literal(a.opt.CopyRoleARN)
	if err != nil {
		return nil, 0, err
	}
	mf, err := redshift.Literal("s3://" + a.opt.Bucket + "/" + mfKey)
	if err != nil {
		return nil, 0, err
	}
	cols := make([]string, len(tcols))
	for i, col := range tcols {
		cols[i] = quote(col)
	}
	return []string{
		"LOCK " + sch + ".load_chunks",
		fmt.Sprintf("SELECT 1 / CASE WHEN (SELECT count(*) FROM %[1]s.loads WHERE pipeline = %[2]s AND %[3]s AND load_id = %[4]s AND state = 'loading') = 1 "+
			"AND (SELECT count(*) FROM %[1]s.load_chunks WHERE load_id = %[4]s AND chunk = %[5]d) = 0 THEN 1 ELSE 0 END", sch, pipe, tw, lid, c.N),
		fmt.Sprintf("COPY %s (%s) FROM %s IAM_ROLE %s CSV GZIP MANIFEST TIMEFORMAT 'auto' DATEFORMAT 'auto' COMPUPDATE OFF STATUPDATE OFF",
			ident(c.Table), strings.Join(cols, ", "), mf, role),
		fmt.Sprintf("INSERT INTO %s.load_chunks (load_id, chunk, row_count, copied_at) VALUES (%s, %d, %d, %s)", sch, lid, c.N, n, a.nowLiteral()),
	}, 1, nil
}

// convertChunk runs src and turns its COPY text rows into one gzip CSV
// file of target values; it returns the file and its row count.
func convertChunk(ctx context.Context, c load.ChunkCopy, ti *tableInfo, tcols []string, lost losses,
	src func(context.Context, io.Writer, bool) error) ([]byte, int64, error) {
	pr, pw := io.Pipe()
	srcErr := make(chan error, 1)
	go func() {
		err := src(ctx, pw, false)
		pw.CloseWithError(err) // nil: EOF
		srcErr <- err
	}()
	var out bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&out, gzip.BestSpeed)
	var f csvFile
	r := bufio.NewReaderSize(pr, 64<<10)
	var rows int64
	cerr := func() error {
		row := make(batch.Row, len(tcols))
		for {
			line, err := r.ReadBytes('\n')
			if len(line) == 0 && err == io.EOF {
				return nil
			}
			if err != nil && err != io.EOF {
				return err
			}
			line = bytes.TrimSuffix(line, []byte{'\n'})
			vals, perr := pgtext.ParseCopyRow(line)
			if perr != nil {
				return perr
			}
			if len(vals) != len(tcols) {
				return fmt.Errorf("a COPY row has %d values for %d columns", len(vals), len(tcols))
			}
			for i, v := range vals {
				_, col, _ := ti.column(c.Columns[i])
				cv, l := col.Convert(v)
				lost.add(c.Table, tcols[i], l)
				row[i] = cv
			}
			f.add(row)
			rows++
			if f.raw.Len() >= 1<<20 {
				if _, err := zw.Write(f.raw.Bytes()); err != nil {
					return err
				}
				f.raw.Reset()
			}
			if err == io.EOF {
				return nil
			}
		}
	}()
	pr.CloseWithError(errChunkRead) // unblock the source if we stopped early
	serr := <-srcErr
	switch {
	case serr != nil && !errors.Is(serr, errChunkRead):
		return nil, 0, fmt.Errorf("source: %w", serr)
	case cerr != nil:
		return nil, 0, cerr
	}
	if _, err := zw.Write(f.raw.Bytes()); err != nil {
		return nil, 0, err
	}
	if err := zw.Close(); err != nil {
		return nil, 0, err
	}
	return out.Bytes(), rows, nil
}

var errChunkRead = errors.New("chunk read ended")

// ResetLoads forgets every load of the pipeline on the target: its load
// state, chunk records and held changes, in one transaction. Tables keep
// their rows. For a pipeline reset (reset.Target), beside the watermarks.
func (a *Applier) ResetLoads(ctx context.Context) error {
	pipe := a.pipe
	sch := quote(Schema)
	err := a.ex.Tx(ctx, []string{
		"LOCK " + sch + ".watermarks",
		"LOCK " + sch + ".load_chunks",
		fmt.Sprintf("DELETE FROM %s.load_chunks WHERE load_id IN (SELECT load_id FROM %s.loads WHERE pipeline = %s)", sch, sch, pipe),
		fmt.Sprintf("DELETE FROM %s.load_held WHERE pipeline = %s", sch, pipe),
		fmt.Sprintf("DELETE FROM %s.loads WHERE pipeline = %s", sch, pipe),
	})
	a.Forget()
	if err != nil {
		return fmt.Errorf("rsapply: reset loads: %w", err)
	}
	return nil
}
