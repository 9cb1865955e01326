package ledger

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"

	"github.com/cocoledger/coco/merkle"
)

// Kind says what an entry holds.
type Kind uint8

const (
	// KindTx is a kv transaction: Public is the write set of its public maps,
	// Private the sealed write set of its private maps.
	KindTx Kind = 1
	// KindSignature is a signature transaction: Public is a JSON Signature.
	KindSignature Kind = 2
	// KindInternal is one of raft's own entries (a new leader's empty entry,
	// a configuration change): Public is the raw raft data.
	KindInternal Kind = 3
)

func (k Kind) String() string {
	switch k {
	case KindTx:
		return "tx"
	case KindSignature:
		return "signature"
	case KindInternal:
		return "internal"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Entry is one ledger entry: one raft index, one Merkle leaf.
type Entry struct {
	Kind     Kind
	RaftType uint8 // raftpb.EntryType for KindInternal, 0 otherwise

	Term, Index uint64 // view and seqno (raft term and index)

	// CommitEvidenceDigest is SHA-256 of the commit evidence string; the
	// evidence itself is revealed only in receipts, once committed.
	CommitEvidenceDigest [32]byte
	ClaimsDigest         [32]byte

	Public, Private []byte
}

// Record and body layout (docs/design.md, "ledger"):
//
//	record: u32 BE body length | u32 BE CRC-32C(body) | body
//	body:   u8 format(1) | u8 kind | u8 raft type | u64 BE term | u64 BE index |
//	        [32] commit evidence digest | [32] claims digest |
//	        u32 BE len | public | u32 BE len | private
const (
	formatV1 byte = 1

	recordHeaderSize = 8

	offKind     = 1
	offRaftType = 2
	offTerm     = 3
	offIndex    = 11
	offDigests  = 19 // commit evidence digest, then claims digest
	offPublic   = 83 // u32 length of public
	minBodySize = offPublic + 4 + 4

	// maxBodySize bounds one entry so that a damaged length field can never
	// make a reader allocate gigabytes, and so lengths fit in u32.
	maxBodySize = 256 << 20

	// maxRaftType is the largest raftpb.EntryType (EntryConfChangeV2). The
	// ledger does not import raft; a new raft entry type needs a new format.
	maxRaftType = 2
)

// castagnoli is the CRC-32C table; it is never written after init.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrMalformed is wrapped by UnmarshalEntry's errors.
var ErrMalformed = errors.New("ledger: malformed entry")

// TxID returns the transaction id "term.index".
func (e *Entry) TxID() string {
	return strconv.FormatUint(e.Term, 10) + "." + strconv.FormatUint(e.Index, 10)
}

// validate checks the invariants that UnmarshalEntry enforces, so that
// Append never writes a record that a reader would refuse.
func (e *Entry) validate() error {
	switch e.Kind {
	case KindTx, KindSignature:
		if e.RaftType != 0 {
			return fmt.Errorf("%w: raft type %d on a %s entry", ErrMalformed, e.RaftType, e.Kind)
		}
	case KindInternal:
		if e.RaftType > maxRaftType {
			return fmt.Errorf("%w: unknown raft entry type %d", ErrMalformed, e.RaftType)
		}
		if e.CommitEvidenceDigest != ([32]byte{}) || e.ClaimsDigest != ([32]byte{}) {
			return fmt.Errorf("%w: internal entry with non-zero digests", ErrMalformed)
		}
	default:
		return fmt.Errorf("%w: unknown kind %d", ErrMalformed, e.Kind)
	}
	if e.Term == 0 || e.Index == 0 {
		return fmt.Errorf("%w: txid %s: term and index start at 1", ErrMalformed, e.TxID())
	}
	if n := minBodySize + len(e.Public) + len(e.Private); n > maxBodySize {
		return fmt.Errorf("%w: entry %d is %d bytes, more than %d", ErrMalformed, e.Index, n, maxBodySize)
	}
	return nil
}

func (e *Entry) bodySize() int { return minBodySize + len(e.Public) + len(e.Private) }

// Marshal returns the entry's body (without the record's length and CRC).
// The encoding is deterministic: one entry, one byte string.
func (e *Entry) Marshal() []byte {
	return e.appendBody(make([]byte, 0, e.bodySize()))
}

func (e *Entry) appendBody(b []byte) []byte {
	b = append(b, formatV1, byte(e.Kind), e.RaftType)
	b = binary.BigEndian.AppendUint64(b, e.Term)
	b = binary.BigEndian.AppendUint64(b, e.Index)
	b = append(b, e.CommitEvidenceDigest[:]...)
	b = append(b, e.ClaimsDigest[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(e.Public)))
	b = append(b, e.Public...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(e.Private)))
	b = append(b, e.Private...)
	return b
}

// appendRecord appends the framed record (length, CRC, body) to b.
func (e *Entry) appendRecord(b []byte) []byte {
	start := len(b)
	b = append(b, make([]byte, recordHeaderSize)...)
	b = e.appendBody(b)
	body := b[start+recordHeaderSize:]
	binary.BigEndian.PutUint32(b[start:], uint32(len(body)))
	binary.BigEndian.PutUint32(b[start+4:], crc32.Checksum(body, castagnoli))
	return b
}

// bodyInfo is what a body says about itself, read without copying.
type bodyInfo struct {
	kind                     Kind
	raftType                 uint8
	term, index              uint64
	pubStart, pubEnd, privAt int // privAt: start of private bytes
}

// parseBody checks body strictly: known format and kind, lengths that
// account for every byte, and the same invariants as validate.
func parseBody(body []byte) (bodyInfo, error) {
	var bi bodyInfo
	if len(body) < minBodySize {
		return bi, fmt.Errorf("%w: %d bytes, need at least %d", ErrMalformed, len(body), minBodySize)
	}
	if body[0] != formatV1 {
		return bi, fmt.Errorf("%w: unknown format %d", ErrMalformed, body[0])
	}
	pubLen := uint64(binary.BigEndian.Uint32(body[offPublic:]))
	bi.pubStart = offPublic + 4
	if pubLen > uint64(len(body)-bi.pubStart-4) {
		return bi, fmt.Errorf("%w: public length %d overruns the body", ErrMalformed, pubLen)
	}
	bi.pubEnd = bi.pubStart + int(pubLen)
	privLen := uint64(binary.BigEndian.Uint32(body[bi.pubEnd:]))
	bi.privAt = bi.pubEnd + 4
	if privLen != uint64(len(body)-bi.privAt) {
		return bi, fmt.Errorf("%w: private length %d, %d bytes left", ErrMalformed, privLen, len(body)-bi.privAt)
	}
	bi.kind = Kind(body[offKind])
	bi.raftType = body[offRaftType]
	bi.term = binary.BigEndian.Uint64(body[offTerm:])
	bi.index = binary.BigEndian.Uint64(body[offIndex:])
	// Reuse validate's rules on a header-only view (no payload copies).
	probe := Entry{Kind: bi.kind, RaftType: bi.raftType, Term: bi.term, Index: bi.index}
	copy(probe.CommitEvidenceDigest[:], body[offDigests:])
	copy(probe.ClaimsDigest[:], body[offDigests+32:])
	if err := probe.validate(); err != nil {
		return bi, err
	}
	if len(body) > maxBodySize {
		return bi, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformed, len(body), maxBodySize)
	}
	return bi, nil
}

// UnmarshalEntry decodes a body produced by Marshal. It is strict (exactly
// one encoding per entry is accepted) and copies: the result does not alias
// body. Errors wrap ErrMalformed.
func UnmarshalEntry(body []byte) (*Entry, error) {
	bi, err := parseBody(body)
	if err != nil {
		return nil, err
	}
	return entryFromBody(body, bi, true), nil
}

// UnmarshalEntryNoCopy is UnmarshalEntry without the copy: the result's
// Public and Private alias body, which the caller must never modify
// afterwards. Consensus uses it for raft entries, whose data nothing
// mutates; a backup decodes every replicated entry, and for the large
// entries of batched transactions the copy (and the zeroing of its
// allocation) cost more than the decoding.
func UnmarshalEntryNoCopy(body []byte) (*Entry, error) {
	bi, err := parseBody(body)
	if err != nil {
		return nil, err
	}
	return entryFromBody(body, bi, false), nil
}

// entryFromBody builds the Entry; with clone it copies the payload, otherwise
// Public and Private alias body (for bodies the ledger owns).
func entryFromBody(body []byte, bi bodyInfo, clone bool) *Entry {
	e := &Entry{Kind: bi.kind, RaftType: bi.raftType, Term: bi.term, Index: bi.index}
	copy(e.CommitEvidenceDigest[:], body[offDigests:])
	copy(e.ClaimsDigest[:], body[offDigests+32:])
	pub, priv := body[bi.pubStart:bi.pubEnd], body[bi.privAt:]
	if clone && len(pub)+len(priv) > 0 {
		buf := make([]byte, len(pub)+len(priv))
		copy(buf, pub)
		copy(buf[len(pub):], priv)
		pub, priv = buf[:len(pub)], buf[len(pub):]
	}
	if len(pub) > 0 {
		e.Public = pub[:len(pub):len(pub)]
	}
	if len(priv) > 0 {
		e.Private = priv[:len(priv):len(priv)]
	}
	return e
}

// WriteSetDigest is SHA-256 of the body without the two digests: format,
// kind, raft type, term, index, and the length-prefixed public and private
// bytes, exactly as encoded.
func (e *Entry) WriteSetDigest() [32]byte {
	h := sha256.New()
	var hdr [offDigests]byte
	hdr[0], hdr[offKind], hdr[offRaftType] = formatV1, byte(e.Kind), e.RaftType
	binary.BigEndian.PutUint64(hdr[offTerm:], e.Term)
	binary.BigEndian.PutUint64(hdr[offIndex:], e.Index)
	h.Write(hdr[:])
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(e.Public)))
	h.Write(n[:])
	h.Write(e.Public)
	binary.BigEndian.PutUint32(n[:], uint32(len(e.Private)))
	h.Write(n[:])
	h.Write(e.Private)
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// Leaf is the entry's Merkle leaf:
// SHA-256(write_set_digest || commit_evidence_digest || claims_digest).
func (e *Entry) Leaf() merkle.Hash {
	wsd := e.WriteSetDigest()
	var b [96]byte
	copy(b[:], wsd[:])
	copy(b[32:], e.CommitEvidenceDigest[:])
	copy(b[64:], e.ClaimsDigest[:])
	return merkle.Hash(sha256.Sum256(b[:]))
}
