package crypto

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPrivateKeyPEMRoundTrip(t *testing.T) {
	rsaKey, err := GenerateEncryptionKey()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		key  crypto.Signer
	}{
		{"P-256", mustKey(t, elliptic.P256())},
		{"P-384", mustKey(t, elliptic.P384())},
		{"RSA-2048", rsaKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := EncodePrivateKeyPEM(tt.key)
			if err != nil {
				t.Fatal(err)
			}
			if blk, _ := pem.Decode(b); blk == nil || blk.Type != "PRIVATE KEY" {
				t.Fatalf("not a PKCS#8 PEM block: %q", b)
			}
			got, err := ParsePrivateKeyPEM(b)
			if err != nil {
				t.Fatal(err)
			}
			if !got.(interface{ Equal(crypto.PrivateKey) bool }).Equal(tt.key) {
				t.Fatal("key changed in round trip")
			}

			// Through files too, with the modes the contract promises.
			dir := t.TempDir()
			path := filepath.Join(dir, "k.pem")
			if err := WriteKeyFile(path, tt.key); err != nil {
				t.Fatal(err)
			}
			assertMode(t, path, 0o600)
			got, err = ReadKeyFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !publicKeysEqual(got.Public(), tt.key.Public()) {
				t.Fatal("key changed in file round trip")
			}
		})
	}
}

func TestParsePrivateKeyPEMFormats(t *testing.T) {
	tests := []struct {
		file string
		want func(crypto.Signer) bool
	}{
		// openssl ecparam -name secp384r1 -genkey: EC PARAMETERS then SEC1.
		{"sec1_p384.pem", func(k crypto.Signer) bool {
			ek, ok := k.(*ecdsa.PrivateKey)
			return ok && ek.Curve == elliptic.P384()
		}},
		// openssl genrsa -traditional: PKCS#1.
		{"pkcs1_rsa.pem", func(k crypto.Signer) bool { _, ok := k.(*rsa.PrivateKey); return ok }},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			k, err := ParsePrivateKeyPEM(b)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.want(k) {
				t.Fatalf("unexpected key %T", k)
			}
		})
	}
}

func TestParsePEMErrors(t *testing.T) {
	cert, err := os.ReadFile(filepath.Join("testdata", "golden_cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	key, _ := EncodePrivateKeyPEM(mustKey(t, elliptic.P256()))
	garbage := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")})
	garbageKey := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("junk")})
	encrypted := pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte("x")})
	legacyEncrypted := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: []byte("x")})

	certTests := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "no PEM block"},
		{"not PEM", []byte("hello"), "no PEM block"},
		{"only a key", key, `found ["PRIVATE KEY"]`},
		{"bad DER", garbage, "parse certificate"},
	}
	for _, tt := range certTests {
		t.Run("cert/"+tt.name, func(t *testing.T) {
			_, err := ParseCertPEM(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
	// A key before the certificate is skipped.
	if _, err := ParseCertPEM(append(append([]byte{}, key...), cert...)); err != nil {
		t.Fatalf("key then cert: %v", err)
	}

	keyTests := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "no PEM block"},
		{"only a cert", cert, `found ["CERTIFICATE"]`},
		{"bad DER", garbageKey, "parse PRIVATE KEY"},
		{"encrypted PKCS#8", encrypted, "encrypted"},
		{"legacy encrypted", legacyEncrypted, "encrypted"},
	}
	for _, tt := range keyTests {
		t.Run("key/"+tt.name, func(t *testing.T) {
			_, err := ParsePrivateKeyPEM(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
	if _, err := EncodePrivateKeyPEM(nil); !errors.Is(err, ErrUnsupportedKey) {
		t.Fatalf("EncodePrivateKeyPEM(nil) = %v", err)
	}
}

func TestCertFileRoundTrip(t *testing.T) {
	k := mustKey(t, elliptic.P384())
	cert, err := SelfSignedCert(k, "member0", time.Hour, false)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "c.pem")
	if err := WriteCertFile(path, cert); err != nil {
		t.Fatal(err)
	}
	assertMode(t, path, 0o644)
	got, err := ReadCertFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(cert) || CertID(got) != CertID(cert) {
		t.Fatal("certificate changed in round trip")
	}
	if !bytes.Equal(EncodeCertPEM(got), EncodeCertPEM(cert)) {
		t.Fatal("PEM changed")
	}
}

func TestReadKeyFilePermissions(t *testing.T) {
	b, _ := EncodePrivateKeyPEM(mustKey(t, elliptic.P256()))
	tests := []struct {
		perm os.FileMode
		ok   bool
	}{
		{0o600, true},
		{0o400, true},
		{0o640, false},
		{0o644, false},
		{0o604, false},
		{0o660, false},
	}
	for _, tt := range tests {
		t.Run(tt.perm.String(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "k.pem")
			writeFile(t, path, b, tt.perm)
			_, err := ReadKeyFile(path)
			if tt.ok != (err == nil) {
				t.Fatalf("err = %v", err)
			}
			if !tt.ok && (!errors.Is(err, ErrInsecureKeyFile) || !strings.Contains(err.Error(), "chmod 600")) {
				t.Fatalf("unclear error: %v", err)
			}
		})
	}
	if _, err := ReadKeyFile(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := ReadKeyFile(t.TempDir()); err == nil {
		t.Fatal("read a directory as a key")
	}
}

func TestLoadKeyPair(t *testing.T) {
	dir := t.TempDir()
	svcKey := mustKey(t, elliptic.P256())
	svc, _ := SelfSignedCert(svcKey, "svc", time.Hour, true)
	nodeKey := mustKey(t, elliptic.P256())
	node, err := IssueCert(nodeKey.Public(), CertOptions{CommonName: "n", Validity: time.Hour, ServerAuth: true}, svc, svcKey)
	if err != nil {
		t.Fatal(err)
	}
	p := func(n string) string { return filepath.Join(dir, n) }
	for n, c := range map[string]*ecdsa.PrivateKey{"node.key": nodeKey, "svc.key": svcKey} {
		if err := WriteKeyFile(p(n), c); err != nil {
			t.Fatal(err)
		}
	}
	if err := WriteCertFile(p("node.pem"), node); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(p("chain.pem"), append(EncodeCertPEM(node), EncodeCertPEM(svc)...), 0o644); err != nil {
		t.Fatal(err)
	}
	writeFile(t, p("open.key"), mustPEM(t, nodeKey), 0o644)

	tests := []struct {
		name, cert, key string
		chain           int
		wantErr         error
	}{
		{"match", "node.pem", "node.key", 1, nil},
		{"chain", "chain.pem", "node.key", 2, nil},
		{"mismatch", "node.pem", "svc.key", 0, ErrKeyMismatch},
		{"insecure key", "node.pem", "open.key", 0, ErrInsecureKeyFile},
		{"missing cert", "nope.pem", "node.key", 0, os.ErrNotExist},
		{"key as cert", "node.key", "node.key", 0, ErrNoPEM},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc, err := LoadKeyPair(p(tt.cert), p(tt.key))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(tc.Certificate) != tt.chain || !tc.Leaf.Equal(node) {
				t.Fatalf("chain of %d, leaf %v", len(tc.Certificate), tc.Leaf.Subject)
			}
		})
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	for i, data := range []string{"first", "second"} {
		perm := []os.FileMode{0o600, 0o640}[i]
		if err := WriteFileAtomic(path, []byte(data), perm); err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(path)
		if string(got) != data {
			t.Fatalf("content %q, want %q", got, data)
		}
		assertMode(t, path, perm)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("temporary files left behind: %v", ents)
	}
	if err := WriteFileAtomic(filepath.Join(dir, "missing", "f"), nil, 0o600); err == nil {
		t.Fatal("wrote into a missing directory")
	}
}

func mustPEM(t *testing.T, k crypto.Signer) []byte {
	t.Helper()
	b, err := EncodePrivateKeyPEM(k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Fatalf("%s: mode %#o, want %#o", path, got, want)
	}
}
