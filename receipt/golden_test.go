package receipt

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cocoledger/coco/merkle"
	"github.com/veraison/go-cose"
)

var update = flag.Bool("update", false, "regenerate the golden receipts in testdata/")

// The golden tree: leaves for transactions 2.1 .. 2.10, signed by the
// signature transaction 2.11; receipts are for 2.7 (index 6, a proof with
// steps on both sides).
const (
	goldenLeaves     = 10
	goldenIndex      = 6
	goldenTxID       = "2.7"
	goldenSignedTxID = "2.11"
)

type goldenIdentity struct {
	key     *ecdsa.PrivateKey
	cert    *x509.Certificate
	certPEM []byte
}

func newCA(t *testing.T, name string) goldenIdentity {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(100, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	return issue(t, tmpl, key, tmpl, key)
}

func newNode(t *testing.T, key *ecdsa.PrivateKey, ca goldenIdentity) goldenIdentity {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "coco node"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(100, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	return issue(t, tmpl, key, ca.cert, ca.key)
}

func issue(t *testing.T, tmpl *x509.Certificate, key *ecdsa.PrivateKey, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) goldenIdentity {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return goldenIdentity{key: key, cert: cert, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func randomHash(t *testing.T) [32]byte {
	t.Helper()
	var h [32]byte
	if _, err := rand.Read(h[:]); err != nil {
		t.Fatal(err)
	}
	return h
}

// generateGolden writes every golden file into dir.
func generateGolden(t *testing.T, dir string) {
	service := newCA(t, "coco service")
	otherService := newCA(t, "another service")
	nodeKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	node := newNode(t, nodeKey, service)
	nodeOtherCA := newNode(t, nodeKey, otherService)

	tree := merkle.New()
	comps := make([]LeafComponents, goldenLeaves)
	for i := range comps {
		mac := randomHash(t)
		comps[i] = LeafComponents{
			WriteSetDigest: randomHash(t),
			CommitEvidence: fmt.Sprintf("ce:2.%d:%s", i+1, hex.EncodeToString(mac[:])),
			ClaimsDigest:   randomHash(t),
		}
		tree.Append(comps[i].Leaf())
	}
	root, err := tree.RootAt(goldenLeaves)
	if err != nil {
		t.Fatal(err)
	}
	proof, err := tree.Proof(goldenIndex, goldenLeaves)
	if err != nil {
		t.Fatal(err)
	}
	lc := comps[goldenIndex]

	files := map[string][]byte{"service_cert.pem": service.certPEM}
	putJSON := func(name string, r *JSON) {
		b, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		files[name] = append(b, '\n')
	}

	// JSON receipts.
	sig, err := ecdsa.SignASN1(rand.Reader, nodeKey, root[:])
	if err != nil {
		t.Fatal(err)
	}
	nodeID := KeyID(node.cert)
	valid := NewJSON(node.certPEM, nodeID, sig, lc, proof)
	putJSON("valid.json", valid)
	jsonVariant := func(name string, edit func(r *JSON)) {
		r := NewJSON(node.certPEM, nodeID, sig, lc, proof)
		edit(r)
		putJSON("tampered_json_"+name+".json", r)
	}
	jsonVariant("cert_other_ca", func(r *JSON) { r.Cert = string(nodeOtherCA.certPEM) })
	jsonVariant("node_id", func(r *JSON) { r.NodeID = flipHex(r.NodeID) })
	jsonVariant("signature", func(r *JSON) {
		b, _ := base64.StdEncoding.DecodeString(r.Signature)
		b[10] ^= 0x01 // inside r, so the DER stays well-formed
		r.Signature = base64.StdEncoding.EncodeToString(b)
	})
	jsonVariant("write_set_digest", func(r *JSON) { r.LeafComponents.WriteSetDigest = flipHex(r.LeafComponents.WriteSetDigest) })
	jsonVariant("commit_evidence", func(r *JSON) { r.LeafComponents.CommitEvidence = flipHex(r.LeafComponents.CommitEvidence) })
	jsonVariant("commit_evidence_txid", func(r *JSON) {
		r.LeafComponents.CommitEvidence = strings.Replace(r.LeafComponents.CommitEvidence, "ce:2.7:", "ce:2.8:", 1)
	})
	jsonVariant("claims_digest", func(r *JSON) { r.LeafComponents.ClaimsDigest = flipHex(r.LeafComponents.ClaimsDigest) })
	for i := range proof {
		jsonVariant(fmt.Sprintf("proof_%d_side", i), func(r *JSON) {
			r.Proof[i].Left, r.Proof[i].Right = r.Proof[i].Right, r.Proof[i].Left
		})
		jsonVariant(fmt.Sprintf("proof_%d_hash", i), func(r *JSON) {
			if r.Proof[i].Left != "" {
				r.Proof[i].Left = flipHex(r.Proof[i].Left)
			} else {
				r.Proof[i].Right = flipHex(r.Proof[i].Right)
			}
		})
	}
	jsonVariant("proof_removed", func(r *JSON) { r.Proof = r.Proof[:len(r.Proof)-1] })
	jsonVariant("proof_added", func(r *JSON) {
		extra := randomHash(t)
		r.Proof = append(r.Proof, JSONProofStep{Right: hex.EncodeToString(extra[:])})
	})

	// COSE receipts.
	opts := SignOptions{TxID: goldenSignedTxID, IssuedAt: time.Unix(1700000000, 0), Issuer: "coco", Subject: "ledger"}
	signed, err := SignRoot(service.key, root, opts)
	if err != nil {
		t.Fatal(err)
	}
	attach := func(signed []byte, lc LeafComponents, proof []merkle.ProofStep) []byte {
		b, err := AttachProof(signed, lc, proof)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	files["signed_root.cose"] = signed
	files["valid.cose"] = attach(signed, lc, proof)
	coseVariant := func(name string, b []byte) { files["tampered_cose_"+name+".cose"] = b }

	reheader := func(edit func(ph cose.ProtectedHeader)) []byte {
		var m cose.Sign1Message
		if err := m.UnmarshalCBOR(signed); err != nil {
			t.Fatal(err)
		}
		edit(m.Headers.Protected)
		m.Headers.RawProtected = nil
		b, err := m.MarshalCBOR()
		if err != nil {
			t.Fatal(err)
		}
		return attach(b, lc, proof)
	}
	{
		var m cose.Sign1Message
		if err := m.UnmarshalCBOR(signed); err != nil {
			t.Fatal(err)
		}
		m.Signature[5] ^= 0x01
		b, err := m.MarshalCBOR()
		if err != nil {
			t.Fatal(err)
		}
		coseVariant("signature", attach(b, lc, proof))
	}
	coseVariant("kid", reheader(func(ph cose.ProtectedHeader) {
		ph[cose.HeaderLabelKeyID] = []byte(flipHex(string(ph[cose.HeaderLabelKeyID].([]byte))))
	}))
	coseVariant("vds", reheader(func(ph cose.ProtectedHeader) { ph[headerVDS] = int64(3) }))
	coseVariant("alg", reheader(func(ph cose.ProtectedHeader) { ph.SetAlgorithm(cose.AlgorithmES384) }))
	coseVariant("signed_txid", reheader(func(ph cose.ProtectedHeader) { ph[headerCCFV1] = map[string]any{"txid": "2.12"} }))
	otherSigned, err := SignRoot(otherService.key, root, opts)
	if err != nil {
		t.Fatal(err)
	}
	coseVariant("other_service", attach(otherSigned, lc, proof))
	coseVariant("no_vdp", signed)
	edited := func(edit func(lc *LeafComponents)) LeafComponents {
		c := lc
		edit(&c)
		return c
	}
	coseVariant("write_set_digest", attach(signed, edited(func(c *LeafComponents) { c.WriteSetDigest[0] ^= 1 }), proof))
	coseVariant("commit_evidence", attach(signed, edited(func(c *LeafComponents) { c.CommitEvidence = flipHex(c.CommitEvidence) }), proof))
	coseVariant("claims_digest", attach(signed, edited(func(c *LeafComponents) { c.ClaimsDigest[31] ^= 1 }), proof))
	for i := range proof {
		p := append([]merkle.ProofStep(nil), proof...)
		p[i].Left = !p[i].Left
		coseVariant(fmt.Sprintf("proof_%d_side", i), attach(signed, lc, p))
		p = append([]merkle.ProofStep(nil), proof...)
		p[i].Hash[0] ^= 1
		coseVariant(fmt.Sprintf("proof_%d_hash", i), attach(signed, lc, p))
	}
	coseVariant("proof_removed", attach(signed, lc, proof[:len(proof)-1]))
	coseVariant("proof_added", attach(signed, lc, append(append([]merkle.ProofStep(nil), proof...), merkle.ProofStep{Hash: randomHash(t)})))

	old, _ := filepath.Glob(filepath.Join(dir, "tampered_*"))
	for _, f := range old {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// flipHex changes the last hex digit of s, keeping it valid lowercase hex.
func flipHex(s string) string {
	last := s[len(s)-1]
	repl := byte('0')
	if last == '0' {
		repl = '1'
	}
	return s[:len(s)-1] + string(repl)
}

func loadServiceCert(t testing.TB) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "service_cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ParseCertPEM(b)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestGolden(t *testing.T) {
	if *update {
		generateGolden(t, "testdata")
	}
	cert := loadServiceCert(t)
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	vj, err := Verify(read("valid.json"), cert)
	if err != nil {
		t.Fatalf("valid.json: %v", err)
	}
	vc, err := Verify(read("valid.cose"), cert)
	if err != nil {
		t.Fatalf("valid.cose: %v", err)
	}
	if vj.Kind != "json" || vj.TxID != goldenTxID || vj.SignedTxID != "" {
		t.Errorf("valid.json verified as %+v", vj)
	}
	if vc.Kind != "cose" || vc.TxID != goldenTxID || vc.SignedTxID != goldenSignedTxID {
		t.Errorf("valid.cose verified as %+v", vc)
	}
	if vj.Root != vc.Root || vj.Leaf != vc.Leaf {
		t.Errorf("json and cose receipts disagree: %x/%x vs %x/%x", vj.Leaf, vj.Root, vc.Leaf, vc.Root)
	}
	if err := VerifySignedRoot(read("signed_root.cose"), vc.Root, cert); err != nil {
		t.Errorf("signed_root.cose: %v", err)
	}
	wrongRoot := vc.Root
	wrongRoot[0] ^= 1
	if err := VerifySignedRoot(read("signed_root.cose"), wrongRoot, cert); err == nil {
		t.Errorf("signed_root.cose verified over a wrong root")
	}

	tampered, err := filepath.Glob(filepath.Join("testdata", "tampered_*"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(tampered)
	var nJSON, nCOSE int
	for _, f := range tampered {
		name := filepath.Base(f)
		if strings.HasSuffix(name, ".json") {
			nJSON++
		} else {
			nCOSE++
		}
		t.Run(name, func(t *testing.T) {
			v, err := Verify(read(name), cert)
			if err == nil {
				t.Fatalf("tampered receipt verified: %+v", v)
			}
			t.Logf("rejected: %v", err)
		})
	}
	// 9 field variants + 2 per proof step + removed/added, for both forms.
	if nJSON < 15 || nCOSE < 15 {
		t.Fatalf("only %d json and %d cose tampered receipts in testdata", nJSON, nCOSE)
	}
}

func issueSelfSigned(t *testing.T, key *ecdsa.PrivateKey) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test service"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	return issue(t, tmpl, key, tmpl, key).cert
}
