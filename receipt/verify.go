package receipt

import (
	"bytes"
	"crypto/x509"
	"fmt"

	"github.com/cocoledger/coco/merkle"
)

// Verified is what a verified receipt proves.
type Verified struct {
	Kind       string      // "json" or "cose"
	TxID       string      // the transaction, from its commit evidence
	Leaf, Root merkle.Hash // the transaction's leaf and the signed root
	SignedTxID string      // cose only: the signature transaction's txid
}

// Verify verifies a receipt of either form: JSON if its first non-space byte
// is '{', COSE otherwise.
func Verify(data []byte, serviceCert *x509.Certificate) (*Verified, error) {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) > 0 && trimmed[0] == '{' {
		r, err := ParseJSON(data)
		if err != nil {
			return nil, fmt.Errorf("json receipt: %w", err)
		}
		v, err := r.Verify(serviceCert)
		if err != nil {
			return nil, fmt.Errorf("json receipt: %w", err)
		}
		return v, nil
	}
	v, err := VerifyCOSE(data, serviceCert)
	if err != nil {
		return nil, fmt.Errorf("cose receipt: %w", err)
	}
	return v, nil
}
