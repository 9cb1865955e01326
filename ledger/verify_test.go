package ledger

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// signedLedger builds a 35-entry ledger with real signatures at 10, 20, 30
// in chunks ledger_1-10, ledger_11-20, ledger_21-30, ledger_31.
func signedLedger(t *testing.T) (string, *identities) {
	t.Helper()
	dir := t.TempDir()
	l := openT(t, dir, 500)
	s := newSigner(t)
	appendRange(t, l, s, 1, 1, 22)
	appendRange(t, l, s, 2, 23, 35)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, s.id
}

func TestVerifyGood(t *testing.T) {
	dir, id := signedLedger(t)
	for _, opts := range []VerifyOptions{{}, {ServiceCert: id.serviceCert}} {
		rep, err := Verify(context.Background(), dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		want := VerifyReport{Entries: 35, Signatures: 3, LastSignedSeqno: 29, Files: 4}
		if *rep != want {
			t.Fatalf("report %+v, want %+v", *rep, want)
		}
	}
	// Verify is read-only, even on a torn tail.
	p := filepath.Join(dir, "ledger_31")
	b, _ := os.ReadFile(p)
	os.WriteFile(p, b[:len(b)-3], 0o640)
	if _, err := Verify(context.Background(), dir, VerifyOptions{}); err == nil {
		t.Fatal("torn tail not reported")
	}
	if b2, _ := os.ReadFile(p); len(b2) != len(b)-3 {
		t.Fatal("Verify modified the ledger")
	}
}

// TestVerifyEveryByte flips each byte of every file in turn: Verify must
// name the entry whose record holds it.
func TestVerifyEveryByte(t *testing.T) {
	src, id := signedLedger(t)
	stride := 1
	if testing.Short() {
		stride = 7
	}
	for _, name := range chunkFiles(t, src) {
		recs := readRecords(t, filepath.Join(src, name))
		orig, _ := os.ReadFile(filepath.Join(src, name))
		first := mustIndex(t, recs[0].body)
		dir := copyDir(t, src)
		p := filepath.Join(dir, name)
		for off := 0; off < len(orig); off += stride {
			r := len(recs) - 1
			for recs[r].off > int64(off) {
				r--
			}
			b := append([]byte(nil), orig...)
			b[off] ^= 0x10
			if err := os.WriteFile(p, b, 0o640); err != nil {
				t.Fatal(err)
			}
			_, err := Verify(context.Background(), dir, VerifyOptions{ServiceCert: id.serviceCert})
			var ve *VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("%s byte %d: %v", name, off, err)
			}
			if want := first + uint64(r); ve.File != name || ve.Index != want || ve.Offset != recs[r].off {
				t.Fatalf("%s byte %d: %v; want entry %d at offset %d", name, off, ve, want, recs[r].off)
			}
		}
	}
}

func mustIndex(t *testing.T, body []byte) uint64 {
	e, err := UnmarshalEntry(body)
	if err != nil {
		t.Fatal(err)
	}
	return e.Index
}

// rewrite replaces entry i of file (0-based record) with f(entry), with a
// correct CRC: damage only the Merkle tree and signatures can reveal.
func rewrite(t *testing.T, dir, file string, rec int, f func(e *Entry)) {
	t.Helper()
	p := filepath.Join(dir, file)
	recs := readRecords(t, p)
	e, err := UnmarshalEntry(recs[rec].body)
	if err != nil {
		t.Fatal(err)
	}
	f(e)
	recs[rec].body = e.Marshal()
	writeRecords(t, p, recs)
}

func editSignature(t *testing.T, f func(s *Signature)) func(e *Entry) {
	return func(e *Entry) {
		s, err := e.Signature()
		if err != nil {
			t.Fatal(err)
		}
		f(s)
		if e.Public, err = json.Marshal(s); err != nil {
			t.Fatal(err)
		}
	}
}

func TestVerifyTampered(t *testing.T) {
	src, id := signedLedger(t)
	other := newIdentities(t) // another service and its node
	tests := []struct {
		name      string
		damage    func(t *testing.T, dir string)
		service   bool   // pass the service certificate
		wantIndex uint64 // 0: must verify
		wantFile  string
	}{
		{"tx payload changed, CRC fixed", func(t *testing.T, dir string) {
			rewrite(t, dir, "ledger_11-20", 2, func(e *Entry) { e.Public[0] ^= 1 })
		}, false, 20, "ledger_11-20"},
		{"tx digest changed, CRC fixed", func(t *testing.T, dir string) {
			rewrite(t, dir, "ledger_21-30", 0, func(e *Entry) { e.ClaimsDigest[3] ^= 1 })
		}, false, 30, "ledger_21-30"},
		{"swapped records", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "ledger_1-10")
			rs := readRecords(t, p)
			rs[5], rs[6] = rs[6], rs[5]
			writeRecords(t, p, rs)
		}, false, 6, "ledger_1-10"},
		{"records moved across chunks", func(t *testing.T, dir string) {
			os.Rename(filepath.Join(dir, "ledger_11-20"), filepath.Join(dir, "ledger_21-30x"))
			os.Rename(filepath.Join(dir, "ledger_21-30"), filepath.Join(dir, "ledger_11-20"))
			os.Rename(filepath.Join(dir, "ledger_21-30x"), filepath.Join(dir, "ledger_21-30"))
		}, false, 11, "ledger_11-20"},
		{"closed chunk truncated", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "ledger_1-10")
			st, _ := os.Stat(p)
			os.Truncate(p, st.Size()-1)
		}, false, 10, "ledger_1-10"},
		{"open chunk torn", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "ledger_31")
			st, _ := os.Stat(p)
			os.Truncate(p, st.Size()-1)
		}, false, 35, "ledger_31"},
		{"signature by another key", func(t *testing.T, dir string) {
			rewrite(t, dir, "ledger_11-20", 9, editSignature(t, func(s *Signature) {
				forged, err := ecdsa.SignASN1(rand.Reader, other.nodeKey, []byte("0123456789abcdef0123456789abcdef"))
				if err != nil {
					t.Fatal(err)
				}
				s.Sig = forged
			}))
		}, false, 20, "ledger_11-20"},
		{"signature and cert of a foreign node", func(t *testing.T, dir string) {
			rewrite(t, dir, "ledger_11-20", 9, editSignature(t, func(s *Signature) {
				s.Cert, s.NodeID = other.nodeCertPEM, other.nodeID
				var root [32]byte
				hexDecode(t, s.Root, root[:])
				sig, err := ecdsa.SignASN1(rand.Reader, other.nodeKey, root[:])
				if err != nil {
					t.Fatal(err)
				}
				s.Sig = sig
			}))
		}, true, 20, "ledger_11-20"},
		// Without the service certificate anyone could re-sign; the next
		// signature still catches it, because a signature is itself a leaf.
		{"foreign node caught by the next root", func(t *testing.T, dir string) {
			rewrite(t, dir, "ledger_11-20", 9, editSignature(t, func(s *Signature) {
				s.Cert, s.NodeID = other.nodeCertPEM, other.nodeID
				var root [32]byte
				hexDecode(t, s.Root, root[:])
				sig, err := ecdsa.SignASN1(rand.Reader, other.nodeKey, root[:])
				if err != nil {
					t.Fatal(err)
				}
				s.Sig = sig
			}))
		}, false, 30, "ledger_21-30"},
		{"COSE from another service", func(t *testing.T, dir string) {
			rewrite(t, dir, "ledger_21-30", 9, func(e *Entry) {
				s, _ := e.Signature()
				var root [32]byte
				hexDecode(t, s.Root, root[:])
				forged := other.signatureEntryFor(t, e.Term, e.Index, root, s.TreeSize)
				fs, _ := forged.Signature()
				s.COSE = fs.COSE
				e.Public, _ = json.Marshal(s)
			})
		}, true, 30, "ledger_21-30"},
		{"wrong node id", func(t *testing.T, dir string) {
			rewrite(t, dir, "ledger_1-10", 9, editSignature(t, func(s *Signature) { s.NodeID = other.nodeID }))
		}, false, 10, "ledger_1-10"},
		{"wrong tree size", func(t *testing.T, dir string) {
			rewrite(t, dir, "ledger_1-10", 9, editSignature(t, func(s *Signature) { s.TreeSize = 8 }))
		}, false, 10, "ledger_1-10"},
		{"signature txid mismatch", func(t *testing.T, dir string) {
			rewrite(t, dir, "ledger_1-10", 9, editSignature(t, func(s *Signature) { s.View = 2 }))
		}, false, 10, "ledger_1-10"},
		{"unrelated files are ignored", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "README"), []byte("hi"), 0o640)
		}, true, 0, ""},
		{"term goes down", func(t *testing.T, dir string) {
			rewrite(t, dir, "ledger_31", 1, func(e *Entry) { e.Term = 1 })
		}, false, 32, "ledger_31"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := copyDir(t, src)
			tt.damage(t, dir)
			opts := VerifyOptions{}
			if tt.service {
				opts.ServiceCert = id.serviceCert
			}
			_, err := Verify(context.Background(), dir, opts)
			if tt.wantIndex == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ve *VerifyError
			if !errors.As(err, &ve) || ve.Index != tt.wantIndex || ve.File != tt.wantFile {
				t.Fatalf("Verify: %v; want entry %d in %s", err, tt.wantIndex, tt.wantFile)
			}
			t.Log(ve)
		})
	}
}

func hexDecode(t *testing.T, s string, dst []byte) {
	t.Helper()
	if n, err := hexDecodeInto(dst, s); err != nil || n != len(dst) {
		t.Fatalf("hex %q: %v", s, err)
	}
}
