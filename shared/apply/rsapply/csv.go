package rsapply

import (
	"bytes"
	"compress/gzip"
	"strings"

	"github.com/pgferry/pgferry/shared/batch"
)

// csvFile builds one gzip CSV file for COPY … CSV GZIP. Every value is
// quoted, so an empty string is "" and stays empty; NULL is an unquoted
// \N, COPY's default NULL AS string. Embedded quotes are doubled and
// newlines stay inside the quotes, as CSV allows.
type csvFile struct {
	raw  bytes.Buffer
	rows int
}

func (f *csvFile) add(r batch.Row) {
	for i, v := range r {
		if i > 0 {
			f.raw.WriteByte(',')
		}
		if v == nil {
			f.raw.WriteString(`\N`)
			continue
		}
		f.raw.WriteByte('"')
		f.raw.WriteString(strings.ReplaceAll(*v, `"`, `""`))
		f.raw.WriteByte('"')
	}
	f.raw.WriteByte('\n')
	f.rows++
}

// gzip returns the file compressed. The gzip header carries no name and
// no time, so the same rows give the same bytes.
func (f *csvFile) gzip() []byte {
	var out bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&out, gzip.BestSpeed)
	_, _ = zw.Write(f.raw.Bytes())
	_ = zw.Close()
	return out.Bytes()
}
