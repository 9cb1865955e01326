package ledger

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
)

// Signature is the content of a signature transaction: the Merkle root of
// every entry before it, signed by the primary's node key and, for COSE
// receipts, by the service key.
type Signature struct {
	View     uint64 `json:"view"`       // the signature transaction's own txid
	Seqno    uint64 `json:"seqno"`      //
	TreeSize uint64 `json:"tree_size"`  // leaves covered: seqno-1
	Root     string `json:"root"`       // hex root of the first TreeSize leaves
	NodeID   string `json:"node_id"`    // hex SHA-256 of the node key's SPKI
	Cert     string `json:"cert"`       // node certificate, PEM
	Sig      []byte `json:"sig"`        // ECDSA ASN.1 DER over the 32-byte root, node key
	COSE     []byte `json:"cose_sign1"` // receipt.SignRoot output, service key
}

// NewSignatureEntry makes the KindSignature entry at term.index holding s.
// s must name the same txid, since receipts and Verify rely on it.
func NewSignatureEntry(term, index uint64, s *Signature) (*Entry, error) {
	if s == nil {
		return nil, fmt.Errorf("ledger: nil signature for entry %d.%d", term, index)
	}
	if s.View != term || s.Seqno != index {
		return nil, fmt.Errorf("ledger: signature names %d.%d, entry is %d.%d", s.View, s.Seqno, term, index)
	}
	pub, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("ledger: encode signature %d.%d: %w", term, index, err)
	}
	e := &Entry{Kind: KindSignature, Term: term, Index: index, Public: pub}
	if err := e.validate(); err != nil {
		return nil, err
	}
	return e, nil
}

// Signature decodes a KindSignature entry's Signature. Unknown fields and
// trailing data are refused: anything in a signature that Verify does not
// check would be unverified content in a verified ledger.
func (e *Entry) Signature() (*Signature, error) {
	if e.Kind != KindSignature {
		return nil, fmt.Errorf("ledger: entry %s is a %s entry, not a signature", e.TxID(), e.Kind)
	}
	dec := json.NewDecoder(bytes.NewReader(e.Public))
	dec.DisallowUnknownFields()
	var s Signature
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("ledger: signature entry %s: %w", e.TxID(), err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("ledger: signature entry %s: trailing data after JSON", e.TxID())
	}
	return &s, nil
}
