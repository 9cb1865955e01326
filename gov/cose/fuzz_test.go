package govcose

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	cococrypto "github.com/cocoledger/coco/crypto"
)

var update = flag.Bool("update", false, "rewrite testdata: the test members and the FuzzParse seed corpus")

// The test members are fixed (a test-only key in testdata) so that seeds
// verify and the fuzzer explores Verify's success path too.
func memberFiles(curve string) (certPath, keyPath string) {
	return filepath.Join("testdata", "member_"+curve+"_cert.pem"), filepath.Join("testdata", "member_"+curve+"_key.pem")
}

func loadMember(tb testing.TB, curve string) member {
	tb.Helper()
	certPath, keyPath := memberFiles(curve)
	cb, err := os.ReadFile(certPath)
	if err != nil {
		tb.Fatalf("%v (run go test -run TestUpdateTestdata -update)", err)
	}
	cert, err := cococrypto.ParseCertPEM(cb)
	if err != nil {
		tb.Fatal(err)
	}
	kb, err := os.ReadFile(keyPath)
	if err != nil {
		tb.Fatal(err)
	}
	key, err := cococrypto.ParsePrivateKeyPEM(kb)
	if err != nil {
		tb.Fatal(err)
	}
	ek, ok := key.(*ecdsa.PrivateKey)
	if !ok {
		tb.Fatalf("%s: %T", keyPath, key)
	}
	return member{key: ek, cert: cert, id: cococrypto.CertID(cert)}
}

// TestUpdateTestdata regenerates the test members and the seed corpus with
// -update; without it, it checks the seeds still parse as they should.
func TestUpdateTestdata(t *testing.T) {
	if *update {
		for name, c := range map[string]elliptic.Curve{"p256": elliptic.P256(), "p384": elliptic.P384()} {
			m := newMember(t, c)
			certPath, keyPath := memberFiles(name)
			kp, err := cococrypto.EncodePrivateKeyPEM(m.key)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(certPath, cococrypto.EncodeCertPEM(m.cert), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(keyPath, kp, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	seeds := seedCorpus(t)
	dir := filepath.Join("testdata", "fuzz", "FuzzParse")
	for name, b := range seeds {
		path := filepath.Join(dir, name)
		want := []byte(fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b))
		if *update {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if _, err := os.Stat(path); err != nil {
			t.Errorf("seed %s missing (run with -update): %v", name, err)
		}
	}
	if *update {
		return
	}
	// The checked-in seeds must still mean what their names say.
	members := map[string]member{"p256": loadMember(t, "p256"), "p384": loadMember(t, "p384")}
	for name := range seeds {
		b := readSeed(t, filepath.Join(dir, name))
		r, err := Parse(b)
		switch {
		case strings.HasPrefix(name, "valid_"), name == "unprotected_pad":
			m := members["p256"]
			if strings.HasPrefix(name, "valid_p384") {
				m = members["p384"]
			}
			if err != nil {
				t.Errorf("seed %s: Parse: %v", name, err)
			} else if err := r.Verify(m.cert); err != nil {
				t.Errorf("seed %s: Verify: %v", name, err)
			}
		case err == nil:
			t.Errorf("seed %s: Parse accepted it", name)
		}
	}
}

// readSeed decodes a corpus file of one []byte value.
func readSeed(t *testing.T, path string) []byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitN(strings.TrimSpace(string(raw)), "\n", 2)
	if len(lines) != 2 || lines[0] != "go test fuzz v1" || !strings.HasPrefix(lines[1], "[]byte(") || !strings.HasSuffix(lines[1], ")") {
		t.Fatalf("%s: not a one-value corpus file", path)
	}
	s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return []byte(s)
}

// seedCorpus returns named seeds: valid requests of every type from both
// members, and near misses. Signatures are randomised, so the valid seeds
// differ at each run; the checked-in files are one such run.
func seedCorpus(t *testing.T) map[string][]byte {
	m256, m384 := loadMember(t, "p256"), loadMember(t, "p384")
	seeds := map[string][]byte{}
	for _, m := range []struct {
		name string
		m    member
	}{{"p256", m256}, {"p384", m384}} {
		for _, typ := range []MsgType{MsgProposal, MsgBallot, MsgWithdrawal, MsgAck, MsgStateDigest, MsgRecoveryShare} {
			pid := ""
			if typ.needsProposalID() {
				pid = "5c1e0d9a3f4b2c6e8d7f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d"
			}
			seeds[fmt.Sprintf("valid_%s_%s", m.name, typ)] = mustSign(t, m.m, typ, testCreatedAt, pid, []byte(`{"actions":[{"name":"set_user","args":{"cert":"-----BEGIN CERTIFICATE-----"}}]}`))
		}
	}
	good := seeds["valid_p256_proposal"]
	prot, _, payload, sig := decodeSign1(t, good)
	seeds["untagged"] = good[1:]
	seeds["detached"] = encodeSign1(t, true, prot, nil, nil, sig)
	seeds["unprotected_pad"] = encodeSign1(t, true, prot, map[any]any{"x.pad": "x", int64(33): []byte{1}}, payload, sig)
	h := validHeader(m256.id)
	h[int64(2)] = []any{"x.critical"}
	h["x.critical"] = true
	seeds["unknown_crit"] = encodeSign1(t, true, encodeMap(t, h), nil, payload, sig)
	h = validHeader(m256.id)
	h[HeaderMsgType] = "ballot"
	seeds["ballot_no_proposal_id"] = encodeSign1(t, true, encodeMap(t, h), nil, payload, sig)
	return seeds
}

func FuzzParse(f *testing.F) {
	m256, m384 := loadMember(f, "p256"), loadMember(f, "p384")
	// A few seeds made now, as well as testdata/fuzz/FuzzParse.
	f.Add(mustSign(f, m256, MsgProposal, 0, "", nil))
	f.Add(mustSign(f, m384, MsgBallot, MaxCreatedAt, "p", []byte(`{"ballot":"x"}`)))
	f.Add([]byte{})
	f.Add([]byte{cborTagSign1, 0x84, 0x40, 0xa0, 0x40, 0x40})
	certs := []*x509.Certificate{m256.cert, m384.cert}

	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b)
		r, err := Parse(b)
		if !bytes.Equal(in, b) {
			t.Fatal("Parse changed its input")
		}
		if err != nil {
			if r != nil {
				t.Fatal("Parse returned a request and an error")
			}
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if !isMemberID([]byte(r.MemberID)) || !r.Type.Known() || r.CreatedAt < 0 || r.CreatedAt > MaxCreatedAt ||
			r.Type.needsProposalID() != (r.ProposalID != "") || r.Payload == nil || !bytes.Equal(r.Raw, b) {
			t.Fatalf("Parse accepted an invalid request: %+v", r)
		}
		r2, err := Parse(b)
		if err != nil || r2.Digest != r.Digest {
			t.Fatalf("Parse is not deterministic: %v", err)
		}
		for _, cert := range certs {
			err := r.Verify(cert)
			switch {
			case err == nil:
				if r.MemberID != cococrypto.CertID(cert) {
					t.Fatal("Verify accepted a request for another member")
				}
			case errors.Is(err, ErrWrongKid), errors.Is(err, ErrBadSignature):
			default:
				t.Fatalf("Verify: unexpected error %v", err)
			}
		}
		w := NewWindow(2)
		if err := w.Check(r.Digest, r.CreatedAt); err != nil {
			t.Fatalf("empty window: %v", err)
		}
		w.Add(r.Digest, r.CreatedAt)
		if err := w.Check(r.Digest, r.CreatedAt); !errors.Is(err, ErrReplay) {
			t.Fatalf("replay not detected: %v", err)
		}
	})
}
