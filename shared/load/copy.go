package load

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgferry/pgferry/shared/pgtext"
)

// CopyOut writes the COPY data of c's rows of t to w, in binary or text
// format, straight from the source's COPY TO STDOUT, so nothing is
// held in memory beyond the driver's read buffer. The query runs in a
// read-only transaction: the chunk is one consistent snapshot.
func CopyOut(ctx context.Context, src *pgxpool.Pool, t Table, c Chunk, binary bool, w io.Writer) error {
	cols := make([]string, len(t.Columns))
	for i, col := range t.Columns {
		cols[i] = pgx.Identifier{col}.Sanitize()
	}
	only := "ONLY "
	if t.Partitioned {
		only = ""
	}
	format := ""
	if binary {
		format = " (FORMAT binary)"
	}
	q := fmt.Sprintf("COPY (SELECT %s FROM %s%s WHERE %s) TO STDOUT%s", strings.Join(cols, ", "), only,
		pgx.Identifier{t.Table.Schema, t.Table.Name}.Sanitize(), Where(t.Key, c), format)
	return pgx.BeginTxFunc(ctx, src, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, pgtext.SessionSettings); err != nil {
			return err
		}
		_, err := tx.Conn().PgConn().CopyTo(ctx, w, q)
		return err
	})
}

// countingWriter counts bytes written through it into n.
type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}
