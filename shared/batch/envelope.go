package batch

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Version is the envelope version this build writes when a batch has no
// update segments (Segment.Update). Decode refuses versions it does not
// know rather than guessing at their meaning.
const Version = 1

// VersionUpdates is the version of a batch that holds update segments: a
// build that reads only Version would apply their partial rows as whole
// rows, so it must refuse them instead.
const VersionUpdates = 2

// VersionSchema is the version of a schema job (Batch.Schema): a message
// that carries no rows but asks the applier to bring its target's schema
// up to the source's. A build that reads only versions 1 and 2 refuses it
// rather than taking it for an empty batch and moving its watermark past
// a schema change it never made.
const VersionSchema = 3

// VersionParts is the version of a spilled batch (Batch.Parts): its
// rows are not in the message but in part objects, applied in order in
// one target transaction. A build that reads only versions 1 to 3 refuses
// it rather than taking it for an empty batch.
const VersionParts = 4

// SchemaJob is the body of a schema job. The job occupies a position
// range like any batch (From is the previous message's To), so the
// applier's replay and gap checks apply to it unchanged. What it asks is
// stateless: diff the source's current catalog against the target's and
// run the DDL, which makes a replayed or late job harmless.
type SchemaJob struct {
	// Fingerprint is the source catalog fingerprint that prompted the job.
	Fingerprint string `json:"fp,omitempty"`
	// Reason says what put it in the stream ("catalog changed", "forced").
	Reason string `json:"reason,omitempty"`
}

// Table names a replicated table on the source.
type Table struct {
	Schema string `json:"s"`
	Name   string `json:"n"`
}

func (t Table) String() string { return t.Schema + "." + t.Name }

// Value is one column value in PostgreSQL text I/O format; nil is SQL NULL.
// Keeping the type's own text form makes every value survive byte for byte
// (NaN, Infinity, arrays with bounds, json whitespace, enums, ranges …).
type Value = *string

// Row is a tuple of values aligned with a Segment's Columns (or Key).
type Row []Value

// Segment holds the net changes of one table in one column shape.
type Segment struct {
	Table   Table    `json:"t"`
	Columns []string `json:"c"`
	// Key lists the primary-key column names. Empty means the table has no
	// usable key: rows are matched on every column and a duplicate row stays
	// a duplicate.
	Key []string `json:"k,omitempty"`
	// Upserts are full rows over Columns. For keyed tables each key appears
	// at most once; for keyless tables each entry is one row to insert.
	Upserts []Row `json:"u,omitempty"`
	// Deletes are key tuples over Key for keyed tables, or full rows over
	// Columns for keyless tables (one entry deletes one matching row).
	Deletes []Row `json:"d,omitempty"`
	// Update marks a segment of partial rows (slot capture: an UPDATE that
	// left TOASTed columns unchanged, whose values the source did not
	// send). Each entry of Upserts sets only Columns on the existing row
	// whose key (over Key) is the entry of Match at the same index; the
	// other columns keep their target values, and a row the target does
	// not have is left alone. Match differs from the new key when the
	// update changed the key. An update segment has no Deletes.
	Update bool  `json:"upd,omitempty"`
	Match  []Row `json:"m,omitempty"`
}

// Epoch is a stretch of a batch in which every table has a single shape.
// Truncate runs first (one statement, so foreign keys between the truncated
// tables are satisfied), then all deletes in reverse segment order, then all
// upserts in segment order.
type Epoch struct {
	Truncate []Table   `json:"tr,omitempty"`
	Segments []Segment `json:"seg,omitempty"`
}

// Batch is the versioned envelope shipped to one target.
type Batch struct {
	Version  int    `json:"v"`
	Pipeline string `json:"pipeline"`
	Target   string `json:"target"`
	// Lineage names the checkpoint history the batch belongs to; see
	// checkpoint.Checkpoint.Lineage.
	Lineage string `json:"lineage"`
	Seq     uint64 `json:"seq"`
	// From is exclusive and To inclusive: the batch holds every change
	// after From up to and including To.
	From Position `json:"from"`
	To   Position `json:"to"`
	// Txns and Events count source transactions and row events before
	// compaction; CapturedAt is the newest source statement time (Unix ms)
	// for lag.
	Txns       int     `json:"txns"`
	Events     int     `json:"events"`
	CapturedAt int64   `json:"captured_at,omitempty"`
	Epochs     []Epoch `json:"epochs,omitempty"`
	// Schema, when set, makes this message a schema job (VersionSchema)
	// with no Epochs.
	Schema *SchemaJob `json:"schema,omitempty"`
	// Parts, when set, makes this message a spilled batch (VersionParts)
	// with no Epochs: the claim-check keys of its parts, in order. Each
	// part holds the compacted epochs of a stretch of the batch's changes
	// (see Part); applying them one after the other in one transaction is
	// applying the batch. NetRows counts their row operations.
	Parts   []string `json:"parts,omitempty"`
	NetRows int      `json:"net_rows,omitempty"`
}

// Part is the body of one part object of a spilled batch.
type Part struct {
	Epochs []Epoch `json:"epochs,omitempty"`
}

// EncodePart renders epochs as a part object's body.
func EncodePart(epochs []Epoch) ([]byte, error) {
	return json.Marshal(Part{Epochs: epochs})
}

// DecodePart parses a part object's body and checks its segments.
func DecodePart(data []byte) ([]Epoch, error) {
	var p Part
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("batch: decode part: %w", err)
	}
	for _, e := range p.Epochs {
		for _, s := range e.Segments {
			if err := s.check(); err != nil {
				return nil, err
			}
		}
	}
	return p.Epochs, nil
}

// EpochRows returns the number of net row operations in epochs.
func EpochRows(epochs []Epoch) int {
	n := 0
	for _, e := range epochs {
		for _, s := range e.Segments {
			n += len(s.Upserts) + len(s.Deletes)
		}
	}
	return n
}

// Group returns the FIFO message group that carries a pipeline's batches
// for one target: one totally ordered stream per target.
func Group(pipeline, target string) string { return pipeline + "." + target }

// Rows returns the number of net row operations in the batch.
func (b *Batch) Rows() int {
	if len(b.Parts) > 0 {
		return b.NetRows
	}
	return EpochRows(b.Epochs)
}

// Encode renders the batch in its wire form.
func (b *Batch) Encode() ([]byte, error) {
	if v := b.minVersion(); b.Version < v {
		b.Version = v
	}
	return json.Marshal(b)
}

// ErrVersion reports an envelope written by an incompatible version.
var ErrVersion = errors.New("batch: unsupported envelope version")

// Decode parses a wire-form batch and checks its version and invariants.
func Decode(data []byte) (*Batch, error) {
	var b Batch
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("batch: decode: %w", err)
	}
	if b.Version < Version || b.Version > VersionParts {
		return nil, fmt.Errorf("%w %d (this build reads %d to %d)", ErrVersion, b.Version, Version, VersionParts)
	}
	if (b.Version == VersionParts) != (len(b.Parts) > 0) || (len(b.Parts) > 0 && len(b.Epochs) > 0) {
		return nil, fmt.Errorf("%w %d: a spilled batch must be version %d and carry its rows only in parts", ErrVersion, b.Version, VersionParts)
	}
	if (b.Version == VersionSchema) != (b.Schema != nil) || (b.Schema != nil && len(b.Epochs) > 0) {
		return nil, fmt.Errorf("%w %d: a schema job must be version %d and carry no rows", ErrVersion, b.Version, VersionSchema)
	}
	if b.Version < b.minVersion() {
		return nil, fmt.Errorf("%w %d for a batch with update segments (want %d)", ErrVersion, b.Version, VersionUpdates)
	}
	if !b.From.Less(b.To) {
		return nil, fmt.Errorf("batch: empty position range %s..%s", b.From, b.To)
	}
	for _, e := range b.Epochs {
		for _, s := range e.Segments {
			if err := s.check(); err != nil {
				return nil, err
			}
		}
	}
	return &b, nil
}

// minVersion is the oldest envelope version that can carry b.
func (b *Batch) minVersion() int {
	if b.Schema != nil {
		return VersionSchema
	}
	if len(b.Parts) > 0 {
		return VersionParts
	}
	for _, e := range b.Epochs {
		for _, s := range e.Segments {
			if s.Update {
				return VersionUpdates
			}
		}
	}
	return Version
}

func (s *Segment) check() error {
	if s.Update {
		if len(s.Key) == 0 || len(s.Deletes) > 0 || len(s.Match) != len(s.Upserts) {
			return fmt.Errorf("batch: %s: malformed update segment (key %d columns, %d deletes, %d matches for %d rows)",
				s.Table, len(s.Key), len(s.Deletes), len(s.Match), len(s.Upserts))
		}
		for _, m := range s.Match {
			if len(m) != len(s.Key) {
				return fmt.Errorf("batch: %s: update match has %d values, want %d", s.Table, len(m), len(s.Key))
			}
		}
	}
	for _, r := range s.Upserts {
		if len(r) != len(s.Columns) {
			return fmt.Errorf("batch: %s: upsert row has %d values for %d columns", s.Table, len(r), len(s.Columns))
		}
	}
	want := len(s.Key)
	if want == 0 {
		want = len(s.Columns)
	}
	for _, r := range s.Deletes {
		if len(r) != want {
			return fmt.Errorf("batch: %s: delete row has %d values, want %d", s.Table, len(r), want)
		}
	}
	return nil
}
