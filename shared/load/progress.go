package load

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// Bar draws the load's progress: one line per table still copying and a
// total, with rows, MB/s and an ETA. On a terminal it redraws in place
// every second; otherwise it prints a block every five seconds.
type Bar struct {
	w     io.Writer
	tty   bool
	start time.Time

	mu     sync.Mutex
	tables []*tableBar
	byKey  map[string]*tableBar
	drawn  int // lines drawn last time (tty)
}

type tableBar struct {
	name               string
	estRows, estBytes  int64
	chunks, chunksDone int
	rows, bytes        int64 // finished chunks
	runRows, runBytes  int64 // finished in this run
	doneBefore         int   // chunks finished by an earlier run
	live               map[int]int64
}

// NewBar returns a bar for plans, with the chunks already done counted.
func NewBar(w io.Writer, plans []*Plan, done map[*Plan]map[int]bool) *Bar {
	b := &Bar{w: w, start: time.Now(), byKey: map[string]*tableBar{}}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			b.tty = true
		}
	}
	for _, p := range plans {
		t := &tableBar{name: p.Table.Table.String(), estRows: max(p.Table.EstRows, 1), estBytes: p.Table.EstBytes,
			chunks: len(p.Chunks), chunksDone: len(done[p]), doneBefore: len(done[p]), live: map[int]int64{}}
		if len(plans) > 0 && len(uniqueTargets(plans)) > 1 {
			t.name = p.Target + ":" + t.name
		}
		// Assume chunks done earlier held their share of the rows.
		t.rows = t.estRows * int64(t.chunksDone) / int64(max(t.chunks, 1))
		b.tables = append(b.tables, t)
		b.byKey[p.Target+"\x00"+p.Table.Table.String()] = t
	}
	return b
}

func uniqueTargets(plans []*Plan) map[string]bool {
	m := map[string]bool{}
	for _, p := range plans {
		m[p.Target] = true
	}
	return m
}

// Update is a Loader.OnProgress: bytes streamed so far by an unfinished
// chunk, or the totals of a finished one.
func (b *Bar) Update(j Job, bytes, rows int64, done bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := b.byKey[j.Target+"\x00"+j.Table.Table.String()]
	if t == nil {
		return
	}
	if !done {
		t.live[j.Chunk.N] = bytes
		return
	}
	delete(t.live, j.Chunk.N)
	t.chunksDone++
	t.rows += rows
	t.bytes += bytes
	t.runRows += rows
	t.runBytes += bytes
}

// Loop draws until ctx ends, then draws once more.
func (b *Bar) Loop(ctx context.Context) {
	every := 5 * time.Second
	if b.tty {
		every = time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			b.draw()
			return
		case <-t.C:
			b.draw()
		}
	}
}

func (b *Bar) draw() {
	b.mu.Lock()
	defer b.mu.Unlock()
	lines := b.lines()
	var s strings.Builder
	if b.tty && b.drawn > 0 {
		fmt.Fprintf(&s, "\033[%dA\033[J", b.drawn)
	}
	for _, l := range lines {
		s.WriteString(l)
		s.WriteByte('\n')
	}
	b.drawn = len(lines)
	_, _ = io.WriteString(b.w, s.String())
}

// lines renders the tables still copying and the total.
func (b *Bar) lines() []string {
	elapsed := time.Since(b.start).Seconds()
	var out []string
	var est, rows, runRows, runBytes int64
	active := 0
	for _, t := range b.tables {
		r, live := t.estimate()
		est += t.estRows
		rows += r
		runRows += t.runRows + (r - t.rows)
		runBytes += t.runBytes + live
		if t.chunksDone < t.chunks {
			active++
			out = append(out, line(t.name, r, t.estRows, t.runBytes+live, t.runRows+(r-t.rows), elapsed))
		}
	}
	total := fmt.Sprintf("total, %d of %d tables copying", active, len(b.tables))
	return append(out, line(total, rows, est, runBytes, runRows, elapsed))
}

// estimate returns the rows copied including the unfinished chunks' share
// (their streamed bytes at the table's bytes per row) and the live bytes.
func (t *tableBar) estimate() (rows, live int64) {
	for _, n := range t.live {
		live += n
	}
	perRow := float64(t.estBytes) / float64(t.estRows)
	if t.rows > 0 && t.bytes > 0 {
		perRow = float64(t.bytes) / float64(t.rows)
	}
	rows = t.rows
	if perRow > 0 {
		rows += int64(float64(live) / perRow)
	}
	if t.chunksDone < t.chunks {
		rows = min(rows, t.estRows)
	}
	return rows, live
}

func line(name string, rows, est, runBytes, runRows int64, elapsed float64) string {
	frac := min(1, float64(rows)/float64(max(est, 1)))
	const width = 20
	fill := int(frac * width)
	eta := "-"
	if rate := float64(runRows) / max(elapsed, 0.001); rate > 0 && frac < 1 {
		eta = (time.Duration(float64(max(est-rows, 0))/rate) * time.Second).Round(time.Second).String()
	}
	return fmt.Sprintf("load  %-36s [%s%s] %3.0f%%  %11d/%-11d rows  %6.1f MB/s  ETA %s",
		trim(name, 36), strings.Repeat("#", fill), strings.Repeat("-", width-fill), 100*frac, rows, est,
		float64(runBytes)/1e6/max(elapsed, 0.001), eta)
}

func trim(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n+1:]
}

// Summary is the closing line: rows and the average throughput of this run.
func (b *Bar) Summary() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var rows, bytes int64
	earlier := 0 // chunks copied by an earlier, interrupted run
	for _, t := range b.tables {
		rows += t.runRows
		bytes += t.runBytes
		earlier += t.doneBefore
	}
	el := time.Since(b.start)
	s := fmt.Sprintf("load: copied %d rows (%.1f MB) of %d tables in %s, %.1f MB/s",
		rows, float64(bytes)/1e6, len(b.tables), el.Round(100*time.Millisecond), float64(bytes)/1e6/max(el.Seconds(), 0.001))
	if earlier > 0 {
		s += fmt.Sprintf(" (resumed: %d chunks were copied by an earlier run)", earlier)
	}
	return s
}
