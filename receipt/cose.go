package receipt

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/cocoledger/coco/internal/coseutil"
	"github.com/cocoledger/coco/merkle"
	"github.com/fxamacker/cbor/v2"
	"github.com/veraison/go-cose"
)

// COSE header labels and values of the CCF receipt profile (RFC 9942).
//
// go-cose decodes every integer label as int64 and every text label as
// string, so lookups in a decoded header must use int64 keys: a plain
// untyped constant would become an int key and silently miss.
const (
	headerVDS   int64  = 395 // verifiable data structure
	headerVDP   int64  = 396 // verifiable data proofs
	headerCCFV1 string = "ccf.v1"

	vdsCCFLedgerSHA256 int64 = 2 // CCF_LEDGER_SHA256
	vdpInclusion       int64 = -1

	ccfV1TxID = "txid"
)

// SignOptions are the signed claims of a root signature.
type SignOptions struct {
	TxID     string    // "v.s" of the signature transaction
	IssuedAt time.Time // CWT iat, whole seconds
	Issuer   string    // CWT iss
	Subject  string    // CWT sub
}

// coseAlg returns the COSE algorithm for the service key.
func coseAlg(pub crypto.PublicKey) (cose.Algorithm, error) {
	alg, err := coseutil.Algorithm(pub)
	if err != nil {
		return 0, fmt.Errorf("%w: service %w", ErrInvalid, err)
	}
	return alg, nil
}

func spkiKeyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("marshal public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return []byte(hex.EncodeToString(sum[:])), nil
}

// SignRoot makes the service's COSE_Sign1 over a Merkle root, with the root
// as detached payload. It is stored in the signature transaction; receipts
// are made from it with AttachProof.
func SignRoot(signer crypto.Signer, root merkle.Hash, opts SignOptions) ([]byte, error) {
	if signer == nil {
		return nil, errors.New("receipt: sign root: nil signer")
	}
	if _, _, err := ParseTxID(opts.TxID); err != nil {
		return nil, fmt.Errorf("receipt: sign root: %w", err)
	}
	alg, err := coseAlg(signer.Public())
	if err != nil {
		return nil, fmt.Errorf("receipt: sign root: %w", err)
	}
	kid, err := spkiKeyID(signer.Public())
	if err != nil {
		return nil, fmt.Errorf("receipt: sign root: %w", err)
	}
	cs, err := cose.NewSigner(alg, signer)
	if err != nil {
		return nil, fmt.Errorf("receipt: sign root: %w", err)
	}
	msg := cose.NewSign1Message()
	msg.Headers.Protected.SetAlgorithm(alg)
	msg.Headers.Protected[cose.HeaderLabelKeyID] = kid
	msg.Headers.Protected[headerVDS] = vdsCCFLedgerSHA256
	if _, err := msg.Headers.Protected.SetCWTClaims(cose.CWTClaims{
		cose.CWTClaimIssuer:   opts.Issuer,
		cose.CWTClaimSubject:  opts.Subject,
		cose.CWTClaimIssuedAt: opts.IssuedAt.Unix(),
	}); err != nil {
		return nil, fmt.Errorf("receipt: sign root: %w", err)
	}
	msg.Headers.Protected[headerCCFV1] = map[string]any{ccfV1TxID: opts.TxID}
	// go-cose v1.3 has no detached-payload API: sign with the root as
	// payload, then drop it so it is encoded as nil and the verifier must
	// recompute it from the proof.
	msg.Payload = root[:]
	if err := msg.Sign(rand.Reader, nil, cs); err != nil {
		return nil, fmt.Errorf("receipt: sign root: %w", err)
	}
	msg.Payload = nil
	out, err := msg.MarshalCBOR()
	if err != nil {
		return nil, fmt.Errorf("receipt: sign root: encode: %w", err)
	}
	return out, nil
}

// cborLeaf is the leaf of a CCF inclusion proof: [wsd, ce, claims].
type cborLeaf struct {
	_              struct{} `cbor:",toarray"`
	WriteSetDigest []byte
	CommitEvidence string
	ClaimsDigest   []byte
}

// cborStep is one step of a CCF inclusion proof: [is_left, hash].
type cborStep struct {
	_      struct{} `cbor:",toarray"`
	IsLeft bool
	Hash   []byte
}

// cborInclusionProof is {1: leaf, 2: path}. Pointers tell a missing field
// from an empty one.
type cborInclusionProof struct {
	Leaf *cborLeaf   `cbor:"1,keyasint"`
	Path *[]cborStep `cbor:"2,keyasint"`
}

func encMode() (cbor.EncMode, error) {
	return cbor.EncOptions{Sort: cbor.SortCoreDeterministic, IndefLength: cbor.IndefLengthForbidden}.EncMode()
}

// decMode is strict: a receipt has one meaning, so duplicate keys, unknown
// fields, indefinite lengths and tags are refused.
func decMode() (cbor.DecMode, error) {
	return cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
		MaxNestedLevels:   16,
		MaxArrayElements:  1 << 16,
		MaxMapPairs:       1 << 16,
	}.DecMode()
}

// AttachProof adds the vdp header (one inclusion proof for the leaf made of
// lc) to a signed root made by SignRoot, making a COSE receipt. The
// protected header and signature are kept byte for byte.
func AttachProof(signedRoot []byte, lc LeafComponents, proof []merkle.ProofStep) ([]byte, error) {
	var msg cose.Sign1Message
	if err := msg.UnmarshalCBOR(signedRoot); err != nil {
		return nil, fmt.Errorf("receipt: attach proof: %w: %w", ErrInvalid, err)
	}
	if msg.Payload != nil {
		return nil, fmt.Errorf("receipt: attach proof: %w: signed root has an attached payload", ErrInvalid)
	}
	if _, ok := msg.Headers.Unprotected[headerVDP]; ok {
		return nil, fmt.Errorf("receipt: attach proof: %w: signed root already has a vdp header", ErrInvalid)
	}
	ip := cborInclusionProof{
		Leaf: &cborLeaf{
			WriteSetDigest: lc.WriteSetDigest[:],
			CommitEvidence: lc.CommitEvidence,
			ClaimsDigest:   lc.ClaimsDigest[:],
		},
	}
	path := make([]cborStep, len(proof))
	for i, s := range proof {
		path[i] = cborStep{IsLeft: s.Left, Hash: bytes.Clone(s.Hash[:])}
	}
	ip.Path = &path
	em, err := encMode()
	if err != nil {
		return nil, fmt.Errorf("receipt: attach proof: %w", err)
	}
	enc, err := em.Marshal(ip)
	if err != nil {
		return nil, fmt.Errorf("receipt: attach proof: encode proof: %w", err)
	}
	// Re-encode the unprotected header from the map (it is not signed);
	// RawProtected stays as decoded, so the signature still holds.
	msg.Headers.RawUnprotected = nil
	if msg.Headers.Unprotected == nil {
		msg.Headers.Unprotected = cose.UnprotectedHeader{}
	}
	msg.Headers.Unprotected[headerVDP] = map[any]any{vdpInclusion: []any{enc}}
	out, err := msg.MarshalCBOR()
	if err != nil {
		return nil, fmt.Errorf("receipt: attach proof: encode: %w", err)
	}
	return out, nil
}

// signedRoot is a decoded and checked COSE_Sign1 over a detached root.
type signedRoot struct {
	msg        cose.Sign1Message
	signedTxID string
	alg        cose.Algorithm
}

// parseSignedRoot decodes a COSE_Sign1 and checks its protected header
// against the service certificate, without verifying the signature.
func parseSignedRoot(data []byte, serviceCert *x509.Certificate) (*signedRoot, error) {
	if serviceCert == nil {
		return nil, fmt.Errorf("%w: no service certificate", ErrInvalid)
	}
	var sr signedRoot
	if err := sr.msg.UnmarshalCBOR(data); err != nil {
		return nil, fmt.Errorf("%w: COSE_Sign1: %w", ErrInvalid, err)
	}
	if sr.msg.Payload != nil {
		return nil, invalidf("COSE_Sign1 has an attached payload; the root must be detached")
	}
	ph := sr.msg.Headers.Protected
	alg, err := ph.Algorithm()
	if err != nil {
		return nil, fmt.Errorf("%w: protected header alg: %w", ErrInvalid, err)
	}
	want, err := coseAlg(serviceCert.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("service certificate: %w", err)
	}
	if alg != want {
		return nil, invalidf("alg %v does not match the service key (%v)", alg, want)
	}
	sr.alg = alg
	if err := checkCritical(ph); err != nil {
		return nil, err
	}
	kid, ok := ph[cose.HeaderLabelKeyID].([]byte)
	if !ok {
		return nil, invalidf("protected header kid: missing or not a byte string")
	}
	if wantKID := KeyID(serviceCert); string(kid) != wantKID {
		return nil, invalidf("kid %q does not match the service certificate key (%s)", truncate(string(kid)), wantKID)
	}
	vds, ok := ph[headerVDS].(int64)
	if !ok {
		return nil, invalidf("protected header vds (395): missing or not an integer")
	}
	if vds != vdsCCFLedgerSHA256 {
		return nil, invalidf("vds %d, want %d (CCF_LEDGER_SHA256)", vds, vdsCCFLedgerSHA256)
	}
	ccf, ok := ph[headerCCFV1].(map[any]any)
	if !ok {
		return nil, invalidf("protected header %q: missing or not a map", headerCCFV1)
	}
	txid, ok := ccf[ccfV1TxID].(string)
	if !ok {
		return nil, invalidf("protected header %q: txid missing or not a string", headerCCFV1)
	}
	if _, _, err := ParseTxID(txid); err != nil {
		return nil, fmt.Errorf("protected header %q: %w", headerCCFV1, err)
	}
	sr.signedTxID = txid
	if cwt, present := ph[cose.HeaderLabelCWTClaims]; present {
		if _, ok := cwt.(map[any]any); !ok {
			return nil, invalidf("protected header cwt claims (15): not a map")
		}
	}
	return &sr, nil
}

// checkCritical refuses headers marked critical that this verifier does not
// understand, as RFC 9052 requires.
func checkCritical(ph cose.ProtectedHeader) error {
	l, unknown, err := coseutil.UnknownCritical(ph, cose.HeaderLabelAlgorithm, cose.HeaderLabelKeyID, cose.HeaderLabelCWTClaims, headerVDS, headerCCFV1)
	if err != nil {
		return fmt.Errorf("%w: protected header crit: %w", ErrInvalid, err)
	}
	if unknown {
		return invalidf("protected header crit lists unsupported label %v", l)
	}
	return nil
}

// verifySignature checks the signature with root as the detached payload.
func (sr *signedRoot) verifySignature(root merkle.Hash, serviceCert *x509.Certificate) error {
	v, err := cose.NewVerifier(sr.alg, serviceCert.PublicKey)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	msg := sr.msg // shallow copy: do not leave the payload on the caller's message
	msg.Payload = root[:]
	if err := msg.Verify(nil, v); err != nil {
		return fmt.Errorf("%w: signature does not verify over root %x with the service key: %w", ErrInvalid, root, err)
	}
	return nil
}

// VerifySignedRoot checks a signed root made by SignRoot (as stored in a
// signature transaction) against root and the service certificate.
func VerifySignedRoot(signedRoot []byte, root merkle.Hash, serviceCert *x509.Certificate) error {
	sr, err := parseSignedRoot(signedRoot, serviceCert)
	if err != nil {
		return err
	}
	return sr.verifySignature(root, serviceCert)
}

// VerifyCOSE verifies a COSE receipt against the service certificate.
func VerifyCOSE(receipt []byte, serviceCert *x509.Certificate) (*Verified, error) {
	sr, err := parseSignedRoot(receipt, serviceCert)
	if err != nil {
		return nil, err
	}
	lc, proof, err := parseVDP(sr.msg.Headers.Unprotected)
	if err != nil {
		return nil, err
	}
	txid, err := TxIDFromCommitEvidence(lc.CommitEvidence)
	if err != nil {
		return nil, err
	}
	if err := checkPosition(txid, sr.signedTxID, proof); err != nil {
		return nil, err
	}
	leaf := lc.Leaf()
	root := merkle.RootFromProof(leaf, proof)
	if err := sr.verifySignature(root, serviceCert); err != nil {
		return nil, err
	}
	return &Verified{Kind: "cose", TxID: txid, Leaf: leaf, Root: root, SignedTxID: sr.signedTxID}, nil
}

// parseVDP extracts the single inclusion proof from the vdp header.
func parseVDP(uh cose.UnprotectedHeader) (LeafComponents, []merkle.ProofStep, error) {
	var lc LeafComponents
	vdp, ok := uh[headerVDP].(map[any]any)
	if !ok {
		return lc, nil, invalidf("unprotected header vdp (396): missing or not a map")
	}
	if len(vdp) != 1 {
		return lc, nil, invalidf("vdp: want only the inclusion proofs (-1)")
	}
	proofs, ok := vdp[vdpInclusion].([]any)
	if !ok {
		return lc, nil, invalidf("vdp: inclusion proofs (-1) missing or not an array")
	}
	// One signature covers one root, and Verified describes one leaf.
	if len(proofs) != 1 {
		return lc, nil, invalidf("vdp: want exactly one inclusion proof, got %d", len(proofs))
	}
	enc, ok := proofs[0].([]byte)
	if !ok {
		return lc, nil, invalidf("vdp: inclusion proof is not a byte string")
	}
	dm, err := decMode()
	if err != nil {
		return lc, nil, err
	}
	var ip cborInclusionProof
	if err := dm.Unmarshal(enc, &ip); err != nil {
		return lc, nil, fmt.Errorf("%w: vdp inclusion proof: %w", ErrInvalid, err)
	}
	if ip.Leaf == nil || ip.Path == nil {
		return lc, nil, invalidf("vdp inclusion proof: want both leaf (1) and path (2)")
	}
	if len(ip.Leaf.WriteSetDigest) != 32 || len(ip.Leaf.ClaimsDigest) != 32 {
		return lc, nil, invalidf("vdp inclusion proof: leaf digests must be 32 bytes")
	}
	copy(lc.WriteSetDigest[:], ip.Leaf.WriteSetDigest)
	copy(lc.ClaimsDigest[:], ip.Leaf.ClaimsDigest)
	lc.CommitEvidence = ip.Leaf.CommitEvidence
	proof := make([]merkle.ProofStep, len(*ip.Path))
	for i, s := range *ip.Path {
		if len(s.Hash) != 32 {
			return lc, nil, invalidf("vdp inclusion proof: path[%d] hash must be 32 bytes", i)
		}
		proof[i].Left = s.IsLeft
		copy(proof[i].Hash[:], s.Hash)
	}
	return lc, proof, nil
}

// checkPosition binds the transaction id to the leaf's place in the tree.
// Leaf i is seqno i+1, and the signature transaction at seqno s signs the
// tree of its s-1 predecessors, so both numbers fix the proof's length and
// the side of every step. Without this, a proof could show the leaf at any
// position whose steps happen to hash to the signed root.
func checkPosition(txid, signedTxID string, proof []merkle.ProofStep) error {
	_, seqno, err := ParseTxID(txid)
	if err != nil {
		return err
	}
	_, sigSeqno, err := ParseTxID(signedTxID)
	if err != nil {
		return err
	}
	if seqno >= sigSeqno {
		return invalidf("transaction %s is not before its signature transaction %s", txid, signedTxID)
	}
	index, size := seqno-1, sigSeqno-1
	want := proofShape(index, size)
	if len(want) != len(proof) {
		return invalidf("proof has %d steps, but transaction %s in a tree of %d leaves needs %d", len(proof), txid, size, len(want))
	}
	for i, left := range want {
		if proof[i].Left != left {
			return invalidf("proof step %d is on the wrong side for transaction %s in a tree of %d leaves", i, txid, size)
		}
	}
	return nil
}

// proofShape returns the sides (Left) of the steps of an inclusion proof of
// leaf index in a tree of size leaves, ordered leaf -> root.
func proofShape(index, size uint64) []bool {
	var sides []bool
	start, end := uint64(0), size
	for end-start > 1 {
		n := end - start
		k := uint64(1)
		for k*2 < n {
			k *= 2
		}
		if index < start+k {
			sides = append(sides, false)
			end = start + k
		} else {
			sides = append(sides, true)
			start += k
		}
	}
	for i, j := 0, len(sides)-1; i < j; i, j = i+1, j-1 {
		sides[i], sides[j] = sides[j], sides[i]
	}
	return sides
}
