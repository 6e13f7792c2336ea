package config

import (
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// InitialLoad tunes the initial load (functions/initial-load and load, or
// functions/local --initial-load).
type InitialLoad struct {
	// Parallelism is how many chunks are copied at once (local workers;
	// in AWS the load function's concurrency bounds it). Default 4.
	Parallelism int `yaml:"parallelism"`
	// ChunkRows is the planned number of rows per chunk. Default 250000:
	// a chunk must finish well inside a Lambda's 15 minutes, and small
	// enough chunks spread a big table over the workers.
	ChunkRows int `yaml:"chunk_rows"`
	// DropIndexes (default true) drops a loading table's non-unique
	// secondary indexes on the target for the bulk copy and rebuilds them
	// before the table is handed over to the change stream. Unique
	// secondary indexes are always dropped during a load (chunks copied
	// at different moments may collide on them) and rebuilt at hand-over.
	DropIndexes *bool `yaml:"drop_indexes"`
	// Queue names the standard SQS queue of chunk messages for the load
	// function; default pgferry-<name>-load (see Config.LoadQueueName).
	Queue string `yaml:"queue"`
}

// DropsIndexes reports whether non-unique secondary indexes are dropped
// for the copy.
func (l InitialLoad) DropsIndexes() bool { return l.DropIndexes == nil || *l.DropIndexes }

func (l *InitialLoad) defaults() {
	if l.Parallelism == 0 {
		l.Parallelism = 4
	}
	if l.ChunkRows == 0 {
		l.ChunkRows = 250000
	}
}

func (l *InitialLoad) validate() []error {
	var errs []error
	if l.Parallelism < 1 || l.Parallelism > 256 {
		errs = append(errs, fmt.Errorf("config: load.parallelism: must be between 1 and 256, got %d", l.Parallelism))
	}
	if l.ChunkRows < 1000 {
		errs = append(errs, fmt.Errorf("config: load.chunk_rows: must be at least 1000, got %d", l.ChunkRows))
	}
	if strings.HasSuffix(l.Queue, ".fifo") {
		errs = append(errs, fmt.Errorf("config: load.queue: %q must be a standard queue (no .fifo): chunks are independent and fan out", l.Queue))
	}
	return errs
}

// CopyMode says which existing rows capture copies into the stream when
// it is installed on a table (source.copy_existing).
type CopyMode string

const (
	// CopyAll (true, the default): every table's existing rows.
	CopyAll CopyMode = "true"
	// CopyNone (false): none; the target must already hold them.
	CopyNone CopyMode = "false"
	// CopyKeyless: only tables without a primary key. Use it when the
	// initial load (which copies keyed tables) is run by hand, as in AWS.
	CopyKeyless CopyMode = "keyless"
)

// UnmarshalYAML accepts true, false or keyless.
func (m *CopyMode) UnmarshalYAML(n *yaml.Node) error {
	switch v := strings.ToLower(n.Value); v {
	case "true", "false", "keyless":
		*m = CopyMode(v)
		return nil
	}
	return fmt.Errorf("line %d: %q is not one of true, false, keyless", n.Line, n.Value)
}
