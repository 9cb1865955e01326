package ledger

import (
	"errors"
	"fmt"
)

var (
	// ErrNotFound is returned for an index outside [FirstIndex, LastIndex].
	ErrNotFound = errors.New("ledger: entry not found")
	// ErrTruncateCommitted is returned by Truncate below the commit point:
	// committed entries are durable on a majority and must never be dropped.
	ErrTruncateCommitted = errors.New("ledger: cannot truncate committed entries")
	// ErrClosed is returned by any call after Close.
	ErrClosed = errors.New("ledger: closed")
)

// CorruptError is a ledger directory that cannot be trusted as is: a bad
// record, a gap, a reordering, or a file whose name disagrees with its
// contents. Index is the entry expected at Offset.
type CorruptError struct {
	File   string
	Offset int64
	Index  uint64
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("ledger: %s offset %d (entry %d): %s", e.File, e.Offset, e.Index, e.Reason)
}

// VerifyError is the first bad entry Verify found. Index is the entry
// expected at Offset in File.
type VerifyError struct {
	File   string
	Offset int64
	Index  uint64
	Reason string
}

func (e *VerifyError) Error() string {
	return fmt.Sprintf("ledger verify: %s offset %d (entry %d): %s", e.File, e.Offset, e.Index, e.Reason)
}
