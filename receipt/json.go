package receipt

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"

	"github.com/cocoledger/coco/merkle"
)

// JSON is a JSON receipt, field for field as in DESIGN.md ("Receipts").
type JSON struct {
	Cert           string             `json:"cert"`      // PEM node certificate
	NodeID         string             `json:"node_id"`   // hex SHA-256 of the node's DER SPKI
	Signature      string             `json:"signature"` // base64 DER ECDSA over the root
	LeafComponents JSONLeafComponents `json:"leaf_components"`
	Proof          []JSONProofStep    `json:"proof"`
}

// JSONLeafComponents are LeafComponents as they appear in a JSON receipt.
type JSONLeafComponents struct {
	WriteSetDigest string `json:"write_set_digest"` // hex
	CommitEvidence string `json:"commit_evidence"`
	ClaimsDigest   string `json:"claims_digest"` // hex
}

// JSONProofStep is one proof step: exactly one of Left and Right is set
// (hex), and says on which side the sibling hash sits.
type JSONProofStep struct {
	Left  string `json:"left,omitempty"`
	Right string `json:"right,omitempty"`
}

// NewJSON builds a JSON receipt from a node certificate, the node's DER ECDSA
// signature over the root, and the leaf's components and inclusion proof.
func NewJSON(nodeCertPEM []byte, nodeID string, sig []byte, lc LeafComponents, proof []merkle.ProofStep) *JSON {
	r := &JSON{
		Cert:      string(nodeCertPEM),
		NodeID:    nodeID,
		Signature: base64.StdEncoding.EncodeToString(sig),
		LeafComponents: JSONLeafComponents{
			WriteSetDigest: hex.EncodeToString(lc.WriteSetDigest[:]),
			CommitEvidence: lc.CommitEvidence,
			ClaimsDigest:   hex.EncodeToString(lc.ClaimsDigest[:]),
		},
		Proof: make([]JSONProofStep, len(proof)),
	}
	for i, s := range proof {
		if s.Left {
			r.Proof[i].Left = hex.EncodeToString(s.Hash[:])
		} else {
			r.Proof[i].Right = hex.EncodeToString(s.Hash[:])
		}
	}
	return r
}

// ParseJSON parses a JSON receipt strictly: unknown, missing, duplicate or
// differently-cased fields, malformed hex or base64, and trailing data are
// errors. (encoding/json alone matches field names case-insensitively and
// keeps the last duplicate, which would let two parties read one receipt
// differently.)
func ParseJSON(b []byte) (*JSON, error) {
	top, err := strictObject(b, "receipt", "cert", "node_id", "signature", "leaf_components", "proof")
	if err != nil {
		return nil, err
	}
	r := &JSON{}
	for _, f := range []struct {
		key string
		dst *string
	}{{"cert", &r.Cert}, {"node_id", &r.NodeID}, {"signature", &r.Signature}} {
		if err := json.Unmarshal(top[f.key], f.dst); err != nil || bytes.Equal(bytes.TrimSpace(top[f.key]), []byte("null")) {
			return nil, invalidf("%s: want a string", f.key)
		}
	}
	lcObj, err := strictObject(top["leaf_components"], "leaf_components", "write_set_digest", "commit_evidence", "claims_digest")
	if err != nil {
		return nil, err
	}
	for _, f := range []struct {
		key string
		dst *string
	}{{"write_set_digest", &r.LeafComponents.WriteSetDigest}, {"commit_evidence", &r.LeafComponents.CommitEvidence}, {"claims_digest", &r.LeafComponents.ClaimsDigest}} {
		if err := json.Unmarshal(lcObj[f.key], f.dst); err != nil || bytes.Equal(bytes.TrimSpace(lcObj[f.key]), []byte("null")) {
			return nil, invalidf("leaf_components.%s: want a string", f.key)
		}
	}
	var steps []json.RawMessage
	if err := json.Unmarshal(top["proof"], &steps); err != nil || steps == nil {
		return nil, invalidf("proof: want an array")
	}
	r.Proof = make([]JSONProofStep, len(steps))
	for i, raw := range steps {
		obj, err := strictStep(raw)
		if err != nil {
			return nil, fmt.Errorf("proof[%d]: %w", i, err)
		}
		r.Proof[i] = obj
	}
	if _, _, _, err := r.decode(); err != nil {
		return nil, err
	}
	return r, nil
}

func strictStep(raw []byte) (JSONProofStep, error) {
	obj, err := strictObjectAny(raw, "proof step")
	if err != nil {
		return JSONProofStep{}, err
	}
	if len(obj) != 1 {
		return JSONProofStep{}, invalidf("want exactly one of \"left\" or \"right\"")
	}
	var s JSONProofStep
	for k, v := range obj {
		var h string
		if err := json.Unmarshal(v, &h); err != nil || bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
			return s, invalidf("%s: want a hex string", k)
		}
		switch k {
		case "left":
			s.Left = h
		case "right":
			s.Right = h
		default:
			return s, invalidf("unknown field %q, want \"left\" or \"right\"", k)
		}
	}
	return s, nil
}

// strictObject reads one JSON object with exactly the keys given.
func strictObject(b []byte, what string, keys ...string) (map[string]json.RawMessage, error) {
	obj, err := strictObjectAny(b, what)
	if err != nil {
		return nil, err
	}
	allowed := make(map[string]bool, len(keys))
	for _, k := range keys {
		allowed[k] = true
		if _, ok := obj[k]; !ok {
			return nil, invalidf("%s: missing field %q", what, k)
		}
	}
	for k := range obj {
		if !allowed[k] {
			return nil, invalidf("%s: unknown field %q", what, truncate(k))
		}
	}
	return obj, nil
}

// strictObjectAny reads one JSON object, rejecting duplicate keys and
// trailing data.
func strictObjectAny(b []byte, what string) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return nil, invalidf("%s: %v", what, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, invalidf("%s: want a JSON object", what)
	}
	obj := make(map[string]json.RawMessage)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, invalidf("%s: %v", what, err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, invalidf("%s: want a field name", what)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, invalidf("%s.%s: %v", what, truncate(key), err)
		}
		if _, dup := obj[key]; dup {
			return nil, invalidf("%s: duplicate field %q", what, truncate(key))
		}
		obj[key] = v
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, invalidf("%s: %v", what, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, invalidf("%s: unexpected data after the object", what)
	}
	return obj, nil
}

// decode checks the encodings of every field and returns them as bytes.
func (r *JSON) decode() (LeafComponents, []merkle.ProofStep, []byte, error) {
	var lc LeafComponents
	var err error
	if lc.WriteSetDigest, err = decodeHash32("leaf_components.write_set_digest", r.LeafComponents.WriteSetDigest); err != nil {
		return lc, nil, nil, err
	}
	if lc.ClaimsDigest, err = decodeHash32("leaf_components.claims_digest", r.LeafComponents.ClaimsDigest); err != nil {
		return lc, nil, nil, err
	}
	lc.CommitEvidence = r.LeafComponents.CommitEvidence
	if _, err := TxIDFromCommitEvidence(lc.CommitEvidence); err != nil {
		return lc, nil, nil, fmt.Errorf("leaf_components.commit_evidence: %w", err)
	}
	proof := make([]merkle.ProofStep, len(r.Proof))
	for i, s := range r.Proof {
		switch {
		case s.Left != "" && s.Right == "":
			proof[i].Left = true
			proof[i].Hash, err = decodeHash32(fmt.Sprintf("proof[%d].left", i), s.Left)
		case s.Right != "" && s.Left == "":
			proof[i].Hash, err = decodeHash32(fmt.Sprintf("proof[%d].right", i), s.Right)
		default:
			err = invalidf("proof[%d]: want exactly one of \"left\" or \"right\"", i)
		}
		if err != nil {
			return lc, nil, nil, err
		}
	}
	sig, err := base64.StdEncoding.Strict().DecodeString(r.Signature)
	if err != nil || len(sig) == 0 {
		return lc, nil, nil, invalidf("signature: want non-empty base64")
	}
	if len(r.NodeID) != 64 || !isLowerHex(r.NodeID) {
		return lc, nil, nil, invalidf("node_id: want 64 lowercase hex digits, got %q", truncate(r.NodeID))
	}
	return lc, proof, sig, nil
}

// Verify checks the receipt against the service certificate: the node
// certificate must be endorsed by the service, node_id must be that
// certificate's key id, and the node's signature must cover the root that the
// leaf and proof produce.
func (r *JSON) Verify(serviceCert *x509.Certificate) (*Verified, error) {
	if serviceCert == nil {
		return nil, fmt.Errorf("%w: no service certificate", ErrInvalid)
	}
	lc, proof, sig, err := r.decode()
	if err != nil {
		return nil, err
	}
	txid, err := TxIDFromCommitEvidence(lc.CommitEvidence)
	if err != nil {
		return nil, err
	}
	leaf := lc.Leaf()
	root := merkle.RootFromProof(leaf, proof)

	nodeCert, err := ParseCertPEM([]byte(r.Cert))
	if err != nil {
		return nil, fmt.Errorf("cert: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(serviceCert)
	// A receipt attests a past signature, and a JSON receipt carries no
	// signing time; like CCF, we do not reject it because the node
	// certificate has since expired: the chain is checked as of the moment
	// the node certificate became valid.
	if _, err := nodeCert.Verify(x509.VerifyOptions{
		Roots:       roots,
		CurrentTime: nodeCert.NotBefore,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return nil, fmt.Errorf("%w: cert is not endorsed by the service certificate: %w", ErrInvalid, err)
	}
	if id := KeyID(nodeCert); id != r.NodeID {
		return nil, invalidf("node_id %s does not match the certificate's key (%s)", r.NodeID, id)
	}
	key, ok := nodeCert.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return nil, invalidf("cert: node key is %T, want ECDSA", nodeCert.PublicKey)
	}
	if !ecdsa.VerifyASN1(key, root[:], sig) {
		return nil, invalidf("signature does not verify over root %x with the node key", root)
	}
	return &Verified{Kind: "json", TxID: txid, Leaf: leaf, Root: root}, nil
}
