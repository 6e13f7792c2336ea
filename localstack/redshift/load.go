package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// loadCol is a target column as COPY sees it.
type loadCol struct {
	name    string
	char    bool // VARCHAR/CHAR: empty fields load as '' unless EMPTYASNULL
	varbyte bool // VARBYTE (bytea here): fields are hex
	limit   int  // byte limit, 0 for none
}

// loadError is a row Redshift would reject; it shows up like Redshift's
// "Load into table … failed" with the detail stl_load_errors would hold.
type loadError struct {
	table, object string
	line          int
	column        string
	reason        string
}

func (e *loadError) Error() string {
	where := e.object
	if e.line > 0 {
		where += " line " + strconv.Itoa(e.line)
	}
	if e.column != "" {
		where += ", column " + e.column
	}
	return fmt.Sprintf("Load into table '%s' failed. Check 'stl_load_errors' system table for details. [stand-in load error: %s: %s]", e.table, where, e.reason)
}

// runCopy loads the S3 objects a COPY names into its table, on pgc and so
// inside the caller's transaction. It returns the number of rows loaded.
func (b *backend) runCopy(ctx context.Context, pgc *pgconn.PgConn, spec *copySpec) (int64, error) {
	if b.s3 == nil {
		return 0, &sqlError{msg: "redshift stand-in: no S3 emulator configured (set AWS_ENDPOINT_URL_S3); COPY reads its files from there"}
	}
	rel := pgx.Identifier{spec.table}
	if spec.schema != "" {
		rel = pgx.Identifier{spec.schema, spec.table}
	}
	cols, err := targetColumns(ctx, pgc, rel.Sanitize())
	if err != nil {
		return 0, err
	}
	if len(spec.columns) > 0 {
		byName := map[string]loadCol{}
		for _, c := range cols {
			byName[c.name] = c
		}
		cols = cols[:0]
		for _, name := range spec.columns {
			c, ok := byName[name]
			if !ok {
				return 0, &sqlError{msg: fmt.Sprintf("column %q of relation %q does not exist", name, spec.table)}
			}
			cols = append(cols, c)
		}
	}
	objects, err := b.copyObjects(ctx, spec)
	if err != nil {
		return 0, err
	}
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = pgx.Identifier{c.name}.Sanitize()
	}
	copySQL := "COPY " + rel.Sanitize() + " (" + strings.Join(names, ", ") + ") FROM STDIN"

	pr, pw := io.Pipe()
	var produceErr error
	go func() {
		w := bufio.NewWriterSize(pw, 64<<10)
		for _, obj := range objects {
			if produceErr = b.writeObject(ctx, w, spec, obj, cols); produceErr != nil {
				break
			}
		}
		if produceErr == nil {
			produceErr = w.Flush()
		}
		pw.CloseWithError(produceErr)
	}()
	tag, err := pgc.CopyFrom(ctx, pr, copySQL)
	_ = pr.Close()
	if produceErr != nil && !errors.Is(produceErr, io.ErrClosedPipe) {
		return 0, produceErr
	}
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code[:2] == "22" {
			return 0, &loadError{table: spec.table, object: spec.from, reason: pe.Message + " (" + pe.Where + ")"}
		}
		return 0, err
	}
	n := tag.RowsAffected()
	if err := pgc.ExecParams(ctx, "SELECT set_config('rsstandin.last_copy_count', $1, false)",
		[][]byte{[]byte(strconv.FormatInt(n, 10))}, nil, nil, nil).Read().Err; err != nil {
		return 0, err
	}
	return n, nil
}

// targetColumns lists a table's columns with the byte limits the
// stand-in's checks enforce.
func targetColumns(ctx context.Context, pgc *pgconn.PgConn, rel string) ([]loadCol, error) {
	const q = `SELECT a.attname, t.typname, a.atttypmod,
       coalesce((SELECT substring(c.conname FROM '^rs(?:bytes|varbyte)_([0-9]+)_')::int
                   FROM pg_constraint c
                  WHERE c.conrelid = a.attrelid AND c.contype = 'c' AND a.attnum = ANY (c.conkey)
                    AND c.conname ~ '^rs(bytes|varbyte)_' LIMIT 1), 0)
  FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
 WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum`
	res := pgc.ExecParams(ctx, q, [][]byte{[]byte(rel)}, nil, nil, nil).Read()
	if res.Err != nil {
		return nil, res.Err
	}
	cols := make([]loadCol, 0, len(res.Rows))
	for _, r := range res.Rows {
		typ := string(r[1])
		typmod, _ := strconv.Atoi(string(r[2]))
		limit, _ := strconv.Atoi(string(r[3]))
		c := loadCol{name: string(r[0])}
		switch typ {
		case "varchar", "bpchar", "text":
			c.char = true
			if limit == 0 && typmod > 4 {
				limit = typmod - 4
			}
		case "bytea":
			c.varbyte = true
		}
		c.limit = limit
		cols = append(cols, c)
	}
	return cols, nil
}

// s3URL splits s3://bucket/key.
func s3URL(u string) (bucket, key string, err error) {
	rest, ok := strings.CutPrefix(u, "s3://")
	if !ok {
		return "", "", &sqlError{msg: fmt.Sprintf("invalid S3 URL %q", u)}
	}
	bucket, key, _ = strings.Cut(rest, "/")
	if bucket == "" {
		return "", "", &sqlError{msg: fmt.Sprintf("invalid S3 URL %q", u)}
	}
	return bucket, key, nil
}

type s3Object struct{ bucket, key string }

// copyObjects lists what a COPY loads: a manifest's entries, or every
// object under the FROM prefix.
func (b *backend) copyObjects(ctx context.Context, spec *copySpec) ([]s3Object, error) {
	bucket, key, err := s3URL(spec.from)
	if err != nil {
		return nil, err
	}
	if spec.manifest {
		out, err := b.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
		if err != nil {
			return nil, &sqlError{msg: fmt.Sprintf("Manifest file is not found or not readable: %s (%v)", spec.from, err)}
		}
		defer out.Body.Close()
		var m struct {
			Entries []struct {
				URL       string `json:"url"`
				Mandatory bool   `json:"mandatory"`
			} `json:"entries"`
		}
		if err := json.NewDecoder(out.Body).Decode(&m); err != nil {
			return nil, &sqlError{msg: fmt.Sprintf("Manifest file is not in correct json format: %s (%v)", spec.from, err)}
		}
		var objs []s3Object
		for _, e := range m.Entries {
			eb, ek, err := s3URL(e.URL)
			if err != nil {
				return nil, err
			}
			if _, err := b.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &eb, Key: &ek}); err != nil {
				if e.Mandatory {
					return nil, &sqlError{msg: fmt.Sprintf("Manifest file has a mandatory entry that does not exist: %s", e.URL)}
				}
				continue
			}
			objs = append(objs, s3Object{eb, ek})
		}
		return objs, nil
	}
	var objs []s3Object
	p := s3.NewListObjectsV2Paginator(b.s3, &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: &key})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, &sqlError{msg: fmt.Sprintf("S3ServiceException: listing %s: %v", spec.from, err)}
		}
		for _, o := range page.Contents {
			objs = append(objs, s3Object{bucket, aws.ToString(o.Key)})
		}
	}
	if len(objs) == 0 {
		return nil, &sqlError{msg: fmt.Sprintf("The specified S3 prefix '%s' does not exist", key)}
	}
	sort.Slice(objs, func(i, j int) bool { return objs[i].key < objs[j].key })
	return objs, nil
}

// writeObject reads one object's CSV rows and writes them to w in
// PostgreSQL's COPY text format.
func (b *backend) writeObject(ctx context.Context, w *bufio.Writer, spec *copySpec, obj s3Object, cols []loadCol) error {
	out, err := b.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: &obj.bucket, Key: &obj.key})
	if err != nil {
		return &sqlError{msg: fmt.Sprintf("S3ServiceException: reading s3://%s/%s: %v", obj.bucket, obj.key, err)}
	}
	defer out.Body.Close()
	name := "s3://" + obj.bucket + "/" + obj.key
	var r io.Reader = out.Body
	if spec.gzip {
		gz, err := gzip.NewReader(out.Body)
		if err != nil {
			return &loadError{table: spec.table, object: name, reason: "gzip: " + err.Error()}
		}
		defer gz.Close()
		r = gz
	}
	cr := &csvReader{r: bufio.NewReaderSize(r, 64<<10), delim: spec.delimiter, quote: spec.quote}
	for {
		fields, err := cr.record()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return &loadError{table: spec.table, object: name, line: cr.line, reason: err.Error()}
		}
		if cr.line <= spec.ignoreHeader {
			continue
		}
		if len(fields) > len(cols) {
			return &loadError{table: spec.table, object: name, line: cr.line, reason: "Extra column(s) found"}
		}
		if len(fields) < len(cols) && !spec.fillRecord {
			return &loadError{table: spec.table, object: name, line: cr.line, reason: "Delimiter not found"}
		}
		for i, c := range cols {
			if i > 0 {
				w.WriteByte('\t')
			}
			var f csvField
			null := i >= len(fields)
			if !null {
				f = fields[i]
				null, err = fieldValue(spec, c, &f)
				if err != nil {
					return &loadError{table: spec.table, object: name, line: cr.line, column: c.name, reason: err.Error()}
				}
			}
			if null {
				w.WriteString(`\N`)
				continue
			}
			writeCopyText(w, f.val)
		}
		if err := w.WriteByte('\n'); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// fieldValue applies Redshift's COPY rules to one field; it reports
// whether the field loads as NULL and may rewrite f.val.
func fieldValue(spec *copySpec, c loadCol, f *csvField) (null bool, err error) {
	s := f.val
	if !f.quoted && string(s) == spec.nullAs {
		return true, nil
	}
	if len(s) == 0 {
		// Empty fields are NULL except in CHAR/VARCHAR columns.
		return !c.char || spec.emptyAsNull, nil
	}
	if c.char && spec.blanksAsNull && len(bytes.TrimSpace(s)) == 0 {
		return true, nil
	}
	if !utf8.Valid(s) {
		if !spec.acceptInv {
			return false, errors.New("String contains invalid or unsupported UTF8 codepoints")
		}
		s = []byte(strings.ToValidUTF8(string(s), spec.invReplacement))
	}
	if c.varbyte {
		if _, err := hex.DecodeString(string(s)); err != nil {
			return false, errors.New("Invalid hexadecimal value for VARBYTE")
		}
		s = append([]byte(`\x`), s...)
	}
	if c.char && c.limit > 0 && len(s) > c.limit {
		if !spec.truncate {
			return false, fmt.Errorf("String length exceeds DDL length (%d bytes > %d)", len(s), c.limit)
		}
		s = truncateBytes(s, c.limit)
	}
	f.val = s
	return false, nil
}

// truncateBytes cuts s to at most n bytes without splitting a character.
func truncateBytes(s []byte, n int) []byte {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.Valid(s) {
		s = s[:len(s)-1]
	}
	return s
}

// writeCopyText writes a value in PostgreSQL's COPY text format.
func writeCopyText(w *bufio.Writer, v []byte) {
	for _, c := range v {
		switch c {
		case '\\':
			w.WriteString(`\\`)
		case '\t':
			w.WriteString(`\t`)
		case '\n':
			w.WriteString(`\n`)
		case '\r':
			w.WriteString(`\r`)
		default:
			w.WriteByte(c)
		}
	}
}

type csvField struct {
	val    []byte
	quoted bool
}

// csvReader reads CSV records the way Redshift's COPY … CSV does:
// quoted fields may hold delimiters, newlines and doubled quotes, and a
// quoted field is never NULL.
type csvReader struct {
	r            *bufio.Reader
	delim, quote byte
	line         int // line where the last record started (1-based)
	next         int // line the next record starts on, minus one
}

func (c *csvReader) record() ([]csvField, error) {
	_, err := c.r.ReadByte()
	if err == io.EOF {
		return nil, io.EOF
	}
	if err != nil {
		return nil, err
	}
	_ = c.r.UnreadByte()
	c.next++
	c.line = c.next
	var fields []csvField
	var cur csvField
	inQuotes := false
	for {
		b, err := c.r.ReadByte()
		if err == io.EOF {
			if inQuotes {
				return nil, errors.New("unterminated quoted field")
			}
			fields = append(fields, cur)
			return fields, nil
		}
		if err != nil {
			return nil, err
		}
		switch {
		case inQuotes && b == c.quote:
			if p, err := c.r.Peek(1); err == nil && p[0] == c.quote {
				_, _ = c.r.ReadByte()
				cur.val = append(cur.val, c.quote)
			} else {
				inQuotes = false
			}
		case inQuotes:
			if b == '\n' {
				c.next++
			}
			cur.val = append(cur.val, b)
		case b == c.quote && len(cur.val) == 0 && !cur.quoted:
			inQuotes, cur.quoted = true, true
		case b == c.delim:
			fields = append(fields, cur)
			cur = csvField{}
		case b == '\n':
			if !cur.quoted && len(cur.val) > 0 && cur.val[len(cur.val)-1] == '\r' {
				cur.val = cur.val[:len(cur.val)-1]
			}
			fields = append(fields, cur)
			return fields, nil
		case b == '\r' && cur.quoted:
			// after a closing quote: part of a CRLF line end
		default:
			cur.val = append(cur.val, b)
		}
	}
}
