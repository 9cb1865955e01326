package receipt

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/cocoledger/coco/merkle"
)

// ErrInvalid is wrapped by every error about a malformed or unverifiable
// receipt, so callers can tell "bad receipt" from I/O trouble.
var ErrInvalid = errors.New("invalid receipt")

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// LeafComponents are the parts a transaction's Merkle leaf is made of.
type LeafComponents struct {
	WriteSetDigest [32]byte
	CommitEvidence string
	ClaimsDigest   [32]byte
}

// Leaf returns SHA-256(WriteSetDigest || SHA-256(CommitEvidence) || ClaimsDigest).
// The ledger stores only the digest of the commit evidence, so the evidence
// itself can be revealed in a receipt once the transaction is committed.
func (lc LeafComponents) Leaf() merkle.Hash {
	ceDigest := sha256.Sum256([]byte(lc.CommitEvidence))
	var buf [96]byte
	copy(buf[0:32], lc.WriteSetDigest[:])
	copy(buf[32:64], ceDigest[:])
	copy(buf[64:96], lc.ClaimsDigest[:])
	return sha256.Sum256(buf[:])
}

// TxIDFromCommitEvidence returns "v.s" from commit evidence "ce:v.s:hex",
// checking that v and s are canonical decimals >= 1 and hex is a lowercase
// hex HMAC-SHA256 (64 characters).
func TxIDFromCommitEvidence(ce string) (string, error) {
	parts := strings.Split(ce, ":")
	if len(parts) != 3 || parts[0] != "ce" {
		return "", invalidf("commit evidence %q: want \"ce:<view>.<seqno>:<hex>\"", ce)
	}
	if _, _, err := ParseTxID(parts[1]); err != nil {
		return "", fmt.Errorf("commit evidence %q: %w", ce, err)
	}
	h := parts[2]
	if len(h) != 2*sha256.Size || !isLowerHex(h) {
		return "", invalidf("commit evidence %q: want %d lowercase hex digits after the txid", ce, 2*sha256.Size)
	}
	return parts[1], nil
}

// ParseTxID parses a transaction id "<view>.<seqno>" (both >= 1, canonical
// decimal, so that one transaction has exactly one spelling).
func ParseTxID(txid string) (view, seqno uint64, err error) {
	v, s, ok := strings.Cut(txid, ".")
	if !ok {
		return 0, 0, invalidf("transaction id %q: want \"<view>.<seqno>\"", txid)
	}
	if view, err = parsePositive(v); err != nil {
		return 0, 0, invalidf("transaction id %q: view: %v", txid, err)
	}
	if seqno, err = parsePositive(s); err != nil {
		return 0, 0, invalidf("transaction id %q: seqno: %v", txid, err)
	}
	return view, seqno, nil
}

func parsePositive(s string) (uint64, error) {
	if s == "" || s[0] < '1' || s[0] > '9' {
		return 0, errors.New("want a decimal number >= 1 without leading zeros")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errors.New("want a decimal number >= 1 without leading zeros")
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, err
	}
	return n, nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// decodeHash32 decodes a lowercase hex SHA-256 digest.
func decodeHash32(what, s string) ([32]byte, error) {
	var h [32]byte
	if len(s) != 64 || !isLowerHex(s) {
		return h, invalidf("%s: want 64 lowercase hex digits, got %q", what, truncate(s))
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, invalidf("%s: %v", what, err)
	}
	return h, nil
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// KeyID returns the lowercase hex SHA-256 of the certificate's DER
// SubjectPublicKeyInfo: a node id, and the COSE kid of the service key.
func KeyID(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}

// ParseCertPEM parses exactly one PEM "CERTIFICATE" block (surrounding
// whitespace allowed, nothing else).
func ParseCertPEM(pemBytes []byte) (*x509.Certificate, error) {
	block, rest := pem.Decode(pemBytes)
	if block == nil {
		return nil, invalidf("no PEM block found")
	}
	if block.Type != "CERTIFICATE" {
		return nil, invalidf("PEM block is %q, want CERTIFICATE", block.Type)
	}
	if len(strings.TrimSpace(string(rest))) != 0 {
		return nil, invalidf("unexpected data after the PEM certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: parse certificate: %w", ErrInvalid, err)
	}
	return cert, nil
}
