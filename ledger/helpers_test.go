package ledger

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"hash/crc32"
	"math/big"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cocoledger/coco/merkle"
	"github.com/cocoledger/coco/receipt"
)

// txEntry makes a deterministic KindTx entry.
func txEntry(term, index uint64, size int) *Entry {
	r := mrand.New(mrand.NewPCG(term, index))
	e := &Entry{Kind: KindTx, Term: term, Index: index}
	e.Public = make([]byte, size)
	for i := range e.Public {
		e.Public[i] = byte(r.UintN(256))
	}
	e.Private = []byte(fmt.Sprintf("sealed-%d", index))
	e.CommitEvidenceDigest = sha256.Sum256([]byte(fmt.Sprintf("ce:%d.%d:x", term, index)))
	e.ClaimsDigest[0] = byte(index)
	return e
}

// identities are a service identity and one node identity issued by it.
type identities struct {
	serviceKey  *ecdsa.PrivateKey
	serviceCert *x509.Certificate
	nodeKey     *ecdsa.PrivateKey
	nodeCertPEM string
	nodeID      string
}

func newIdentities(t testing.TB) *identities {
	t.Helper()
	sk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "service"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &sk.PublicKey, sk)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	id := &identities{serviceKey: sk, serviceCert: sc}
	id.nodeKey, id.nodeCertPEM, id.nodeID = issueNode(t, sk, sc)
	return id
}

func issueNode(t testing.TB, issuerKey *ecdsa.PrivateKey, issuer *x509.Certificate) (*ecdsa.PrivateKey, string, string) {
	t.Helper()
	nk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "node"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, &nk.PublicKey, issuerKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	spki := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return nk, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), hex.EncodeToString(spki[:])
}

// signatureEntry makes the signature transaction at term.index over tree.
func (id *identities) signatureEntry(t testing.TB, term, index uint64, tree *merkle.Tree) *Entry {
	t.Helper()
	root := tree.Root()
	sig, err := ecdsa.SignASN1(rand.Reader, id.nodeKey, root[:])
	if err != nil {
		t.Fatal(err)
	}
	txid := fmt.Sprintf("%d.%d", term, index)
	cose, err := receipt.SignRoot(id.serviceKey, root, receipt.SignOptions{TxID: txid, IssuedAt: time.Unix(1700000000, 0), Issuer: "coco", Subject: "ledger.signature"})
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewSignatureEntry(term, index, &Signature{
		View: term, Seqno: index, TreeSize: tree.Size(), Root: hex.EncodeToString(root[:]),
		NodeID: id.nodeID, Cert: id.nodeCertPEM, Sig: sig, COSE: cose,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.CommitEvidenceDigest = sha256.Sum256([]byte("ce:" + txid))
	return e
}

func openT(t testing.TB, dir string, chunkSize int64) *Ledger {
	t.Helper()
	l, err := Open(Options{Dir: dir, ChunkSize: chunkSize})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func chunkFiles(t testing.TB, dir string) []string {
	t.Helper()
	cs, err := listChunks(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range cs {
		out = append(out, c.name)
	}
	return out
}

// rawRecord is one record of a chunk file, for tampering.
type rawRecord struct {
	off  int64
	body []byte
}

func readRecords(t testing.TB, path string) []rawRecord {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []rawRecord
	for off := 0; off < len(b); {
		if allZero(b[off:]) {
			break // an open chunk's preallocated zeros
		}
		n := int(binary.BigEndian.Uint32(b[off:]))
		out = append(out, rawRecord{off: int64(off), body: slices.Clone(b[off+8 : off+8+n])})
		off += 8 + n
	}
	return out
}

func writeRecords(t testing.TB, path string, recs []rawRecord) {
	t.Helper()
	var b []byte
	for _, r := range recs {
		b = binary.BigEndian.AppendUint32(b, uint32(len(r.body)))
		b = binary.BigEndian.AppendUint32(b, crc32.Checksum(r.body, castagnoli))
		b = append(b, r.body...)
	}
	if err := os.WriteFile(path, b, 0o640); err != nil {
		t.Fatal(err)
	}
}

func lastChunk(t testing.TB, dir string) string {
	t.Helper()
	fs := chunkFiles(t, dir)
	if len(fs) == 0 {
		t.Fatal("no chunks")
	}
	return filepath.Join(dir, fs[len(fs)-1])
}

func copyDir(t testing.TB, src string) string {
	t.Helper()
	dst := t.TempDir()
	des, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		b, err := os.ReadFile(filepath.Join(src, de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, de.Name()), b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func hexDecodeInto(dst []byte, s string) (int, error) { return hex.Decode(dst, []byte(s)) }

// signatureEntryFor signs a given root (not a tree) with id's keys.
func (id *identities) signatureEntryFor(t testing.TB, term, index uint64, root merkle.Hash, size uint64) *Entry {
	t.Helper()
	sig, err := ecdsa.SignASN1(rand.Reader, id.nodeKey, root[:])
	if err != nil {
		t.Fatal(err)
	}
	cose, err := receipt.SignRoot(id.serviceKey, root, receipt.SignOptions{TxID: fmt.Sprintf("%d.%d", term, index), IssuedAt: time.Unix(1700000000, 0), Issuer: "coco", Subject: "ledger.signature"})
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewSignatureEntry(term, index, &Signature{View: term, Seqno: index, TreeSize: size, Root: hex.EncodeToString(root[:]), NodeID: id.nodeID, Cert: id.nodeCertPEM, Sig: sig, COSE: cose})
	if err != nil {
		t.Fatal(err)
	}
	return e
}
