// Package batch is the unit of replication: a versioned envelope of net row
// changes covering a contiguous range of source positions.
package batch

import (
	"fmt"
	"math"
)

// Position orders source changes. For trigger capture, Tick counts snapshot
// windows and Tx is the largest event id of the last transaction shipped in
// that window; TxEnd marks a window as complete. Positions compare
// lexicographically, so a watermark can be a single Position.
type Position struct {
	Tick uint64 `json:"tick"`
	Tx   int64  `json:"tx"`
}

// TxEnd is the Tx of a position at the end of its window.
const TxEnd = math.MaxInt64

// Compare returns -1, 0 or +1 as p is before, equal to or after q.
func (p Position) Compare(q Position) int {
	switch {
	case p.Tick < q.Tick:
		return -1
	case p.Tick > q.Tick:
		return 1
	case p.Tx < q.Tx:
		return -1
	case p.Tx > q.Tx:
		return 1
	}
	return 0
}

// Less reports whether p is strictly before q.
func (p Position) Less(q Position) bool { return p.Compare(q) < 0 }

// IsZero reports whether p is the position before anything was captured.
func (p Position) IsZero() bool { return p == Position{} }

// String renders p as fixed-width decimal, so that string order equals
// position order (used in DynamoDB conditions and dedup ids).
func (p Position) String() string { return fmt.Sprintf("%020d.%019d", p.Tick, p.Tx) }
