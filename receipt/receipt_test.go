package receipt

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cocoledger/coco/merkle"
)

func TestReceiptTxIDFromCommitEvidence(t *testing.T) {
	hex64 := strings.Repeat("ab", 32)
	tests := []struct {
		ce   string
		want string
	}{
		{"ce:2.15:" + hex64, "2.15"},
		{"ce:1.1:" + hex64, "1.1"},
		{"ce:0.1:" + hex64, ""},
		{"ce:1.0:" + hex64, ""},
		{"ce:01.5:" + hex64, ""},
		{"ce:1.5:" + strings.ToUpper(hex64), ""},
		{"ce:1.5:" + hex64[2:], ""},
		{"ce:1.5", ""},
		{"xx:1.5:" + hex64, ""},
		{"ce:1.5:" + hex64 + ":", ""},
		{"ce:1:" + hex64, ""},
		{"ce:1.99999999999999999999:" + hex64, ""},
		{"", ""},
	}
	for _, tc := range tests {
		got, err := TxIDFromCommitEvidence(tc.ce)
		if tc.want == "" {
			if err == nil || !errors.Is(err, ErrInvalid) {
				t.Errorf("TxIDFromCommitEvidence(%q) = %q, %v; want ErrInvalid", tc.ce, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("TxIDFromCommitEvidence(%q) = %q, %v; want %q", tc.ce, got, err, tc.want)
		}
	}
}

func TestReceiptParseJSONStrict(t *testing.T) {
	valid, err := os.ReadFile(filepath.Join("testdata", "valid.json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseJSON(valid); err != nil {
		t.Fatalf("valid.json: %v", err)
	}
	s := string(valid)
	bad := map[string]string{
		"unknown field":    strings.Replace(s, `"cert":`, `"extra": 1, "cert":`, 1),
		"wrong case":       strings.Replace(s, `"cert":`, `"Cert":`, 1),
		"duplicate field":  strings.Replace(s, `"cert":`, `"node_id": "x", "cert":`, 1),
		"missing field":    strings.Replace(s, `"node_id":`, `"node_idx":`, 1),
		"trailing data":    s + "{}",
		"both sides":       strings.Replace(s, `"left":`, `"right": "00", "left":`, 1),
		"uppercase hex":    strings.Replace(s, `"write_set_digest": "`, `"write_set_digest": "A`, 1),
		"bad base64":       strings.Replace(s, `"signature": "`, `"signature": "!`, 1),
		"null proof":       s[:strings.Index(s, `"proof"`)] + `"proof": null}`,
		"not an object":    `[]`,
		"empty":            ``,
		"string for array": strings.Replace(s, `"proof": [`, `"proof": "x", "y": [`, 1),
	}
	for name, b := range bad {
		if r, err := ParseJSON([]byte(b)); err == nil {
			t.Errorf("%s: parsed %+v", name, r)
		}
	}
}

// TestReceiptRoundTripP384 issues and verifies a COSE receipt with a P-384
// service key for every leaf of a small tree.
func TestReceiptRoundTripP384(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := issueSelfSigned(t, key)
	const n = 7
	tree := merkle.New()
	comps := make([]LeafComponents, n)
	for i := range comps {
		comps[i] = LeafComponents{CommitEvidence: "ce:3." + strconv.Itoa(i+1) + ":" + strings.Repeat("0f", 32)}
		comps[i].WriteSetDigest[0] = byte(i)
		tree.Append(comps[i].Leaf())
	}
	root := tree.Root()
	signed, err := SignRoot(key, root, SignOptions{TxID: "3." + strconv.Itoa(n+1), IssuedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifySignedRoot(signed, root, ca); err != nil {
		t.Fatalf("VerifySignedRoot: %v", err)
	}
	for i := range comps {
		proof, err := tree.Proof(uint64(i), n)
		if err != nil {
			t.Fatal(err)
		}
		r, err := AttachProof(signed, comps[i], proof)
		if err != nil {
			t.Fatal(err)
		}
		v, err := Verify(r, ca)
		if err != nil {
			t.Fatalf("leaf %d: %v", i, err)
		}
		if v.TxID != "3."+strconv.Itoa(i+1) || v.Root != root || v.SignedTxID != "3.8" {
			t.Fatalf("leaf %d verified as %+v", i, v)
		}
		// A valid proof for another leaf's position is refused even though
		// it hashes to the signed root: the txid fixes the position.
		if i > 0 {
			other := comps[i]
			other.CommitEvidence = comps[i-1].CommitEvidence
			if _, err := VerifyCOSE(mustAttach(t, signed, other, proof), ca); err == nil {
				t.Fatalf("leaf %d: receipt with another txid verified", i)
			}
		}
		if _, err := AttachProof(r, comps[i], proof); err == nil {
			t.Fatalf("AttachProof on a receipt that already has a vdp succeeded")
		}
	}
	if _, err := SignRoot(key, root, SignOptions{TxID: "bad"}); err == nil {
		t.Fatal("SignRoot accepted a malformed txid")
	}
}

func mustAttach(t *testing.T, signed []byte, lc LeafComponents, proof []merkle.ProofStep) []byte {
	t.Helper()
	b, err := AttachProof(signed, lc, proof)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReceiptProofShapeMatchesTree(t *testing.T) {
	tr := merkle.New()
	for i := range 40 {
		tr.Append(merkle.Hash{byte(i)})
	}
	for size := uint64(1); size <= 40; size++ {
		for idx := uint64(0); idx < size; idx++ {
			p, _ := tr.Proof(idx, size)
			shape := proofShape(idx, size)
			if len(shape) != len(p) {
				t.Fatalf("shape(%d,%d) has %d steps, proof %d", idx, size, len(shape), len(p))
			}
			for i := range p {
				if p[i].Left != shape[i] {
					t.Fatalf("shape(%d,%d) step %d differs", idx, size, i)
				}
			}
		}
	}
}
