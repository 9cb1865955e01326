package consensus

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// TxID identifies a transaction: the view (raft term) in which the primary
// ordered it and its seqno (raft index, position in the ledger).
type TxID struct {
	View  uint64
	Seqno uint64
}

// ErrBadTxID reports a malformed transaction id.
var ErrBadTxID = errors.New(`transaction id must be "<view>.<seqno>" with both at least 1`)

func (id TxID) String() string {
	return strconv.FormatUint(id.View, 10) + "." + strconv.FormatUint(id.Seqno, 10)
}

// IsZero reports whether id is unset.
func (id TxID) IsZero() bool { return id.View == 0 && id.Seqno == 0 }

// ParseTxID parses "<view>.<seqno>".
func ParseTxID(s string) (TxID, error) {
	v, q, ok := strings.Cut(s, ".")
	if !ok {
		return TxID{}, fmt.Errorf("%q: %w", s, ErrBadTxID)
	}
	view, err1 := strconv.ParseUint(v, 10, 64)
	seq, err2 := strconv.ParseUint(q, 10, 64)
	if err1 != nil || err2 != nil || view == 0 || seq == 0 {
		return TxID{}, fmt.Errorf("%q: %w", s, ErrBadTxID)
	}
	return TxID{View: view, Seqno: seq}, nil
}
