package load

import (
	"bytes"
	"fmt"
	"io"

	"github.com/pgferry/pgferry/shared/batch"
	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/pgtext"
	"github.com/pgferry/pgferry/shared/rules"
)

// Shaping a chunk by its target's rules (targets.<name>.rules): the
// source's COPY text is read row by row, rows failing the filters are
// left out, and the others are written as the drain would ship them, so
// a loaded row and a streamed row agree. The soft-delete column is left
// to its default, NULL.

// shapedColumns returns the columns the target's COPY gets for p.
func shapedColumns(p *rules.Plan) []string {
	var out []string
	for _, c := range p.Columns {
		if c != config.DeletedAtColumn {
			out = append(out, c)
		}
	}
	return out
}

// shapeWriter turns COPY text rows over p.In into COPY text rows over
// shapedColumns(p), written to w. Close flushes nothing: a row is only
// complete at its newline, which COPY always writes.
type shapeWriter struct {
	p    *rules.Plan
	w    io.Writer
	n    int // values per output row
	part []byte
	out  []byte
}

func newShapeWriter(p *rules.Plan, w io.Writer) *shapeWriter {
	return &shapeWriter{p: p, w: w, n: len(shapedColumns(p))}
}

func (s *shapeWriter) Write(b []byte) (int, error) {
	total := len(b)
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			s.part = append(s.part, b...)
			break
		}
		line := b[:i]
		if len(s.part) > 0 {
			line = append(s.part, line...)
		}
		if err := s.row(line); err != nil {
			return 0, err
		}
		s.part = s.part[:0]
		b = b[i+1:]
	}
	if len(s.out) >= 64<<10 {
		if err := s.flush(); err != nil {
			return 0, err
		}
	}
	return total, nil
}

func (s *shapeWriter) row(line []byte) error {
	r, err := pgtext.ParseCopyRow(line)
	if err != nil {
		return err
	}
	if len(r) != len(s.p.In) {
		return fmt.Errorf("load: %s: a COPY row has %d values for %d columns", s.p.Table, len(r), len(s.p.In))
	}
	ok, err := s.p.Pass(r)
	if err != nil || !ok {
		return err
	}
	out := s.p.Row(r)
	s.out = pgtext.AppendCopyRow(s.out, batch.Row(out[:s.n]))
	return nil
}

func (s *shapeWriter) flush() error {
	if len(s.out) == 0 {
		return nil
	}
	_, err := s.w.Write(s.out)
	s.out = s.out[:0]
	return err
}
