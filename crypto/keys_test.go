package crypto

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestGenerateKeyCurve(t *testing.T) {
	tests := []struct {
		name  string
		curve elliptic.Curve
		ok    bool
	}{
		{"P-256", elliptic.P256(), true},
		{"P-384", elliptic.P384(), true},
		{"P-224", elliptic.P224(), false},
		{"P-521", elliptic.P521(), false},
		{"nil", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := GenerateKeyCurve(tt.curve)
			if !tt.ok {
				if !errors.Is(err, ErrUnsupportedKey) {
					t.Fatalf("err = %v, want ErrUnsupportedKey", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if k.Curve != tt.curve {
				t.Fatalf("curve = %s", k.Curve.Params().Name)
			}
		})
	}
	k, err := GenerateKey()
	if err != nil || k.Curve != elliptic.P256() {
		t.Fatalf("GenerateKey: %v, %v", k, err)
	}
}

func TestIssueCertChainVerifies(t *testing.T) {
	tests := []struct {
		name  string
		curve elliptic.Curve
	}{
		{"P-256", elliptic.P256()},
		{"P-384", elliptic.P384()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svcKey := mustKey(t, tt.curve)
			svc, err := SelfSignedCert(svcKey, "coco service", 24*time.Hour, true)
			if err != nil {
				t.Fatal(err)
			}
			if !svc.IsCA || svc.Subject.CommonName != "coco service" {
				t.Fatalf("service cert: IsCA=%v CN=%q", svc.IsCA, svc.Subject.CommonName)
			}
			nodeKey := mustKey(t, tt.curve)
			node, err := IssueCert(nodeKey.Public(), CertOptions{
				CommonName: "node0",
				Hosts:      []string{"127.0.0.1", "::1", "node0.example", " "},
				Validity:   time.Hour,
				ServerAuth: true,
				ClientAuth: true,
			}, svc, svcKey)
			if err != nil {
				t.Fatal(err)
			}
			if node.IsCA {
				t.Fatal("node cert is a CA")
			}
			if len(node.IPAddresses) != 2 || !node.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) {
				t.Fatalf("IP SANs = %v", node.IPAddresses)
			}
			if len(node.DNSNames) != 1 || node.DNSNames[0] != "node0.example" {
				t.Fatalf("DNS SANs = %v", node.DNSNames)
			}
			roots := x509.NewCertPool()
			roots.AddCert(svc)
			for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
				if _, err := node.Verify(x509.VerifyOptions{
					Roots: roots, DNSName: "node0.example", KeyUsages: []x509.ExtKeyUsage{usage},
				}); err != nil {
					t.Fatalf("verify for %v: %v", usage, err)
				}
			}
			if err := node.VerifyHostname("127.0.0.1"); err != nil {
				t.Fatal(err)
			}

			// A certificate from another service does not verify.
			otherKey := mustKey(t, tt.curve)
			other, _ := SelfSignedCert(otherKey, "other", time.Hour, true)
			foreign, err := IssueCert(nodeKey.Public(), CertOptions{CommonName: "n", Validity: time.Hour, ServerAuth: true}, other, otherKey)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := foreign.Verify(x509.VerifyOptions{Roots: roots}); err == nil {
				t.Fatal("foreign certificate verified")
			}
		})
	}
}

func TestIssueCertErrors(t *testing.T) {
	caKey := mustKey(t, elliptic.P256())
	ca, _ := SelfSignedCert(caKey, "ca", time.Hour, true)
	leafKey := mustKey(t, elliptic.P256())
	leaf, _ := SelfSignedCert(leafKey, "leaf", time.Hour, false)
	ok := CertOptions{CommonName: "n", Validity: time.Hour}
	tests := []struct {
		name      string
		opts      CertOptions
		issuer    *x509.Certificate
		issuerKey *ecdsa.PrivateKey
		want      string
	}{
		{"issuer not CA", ok, leaf, leafKey, "not a CA"},
		{"wrong issuer key", ok, ca, leafKey, "does not match"},
		{"no CN", CertOptions{Validity: time.Hour}, ca, caKey, "common name"},
		{"zero validity", CertOptions{CommonName: "n"}, ca, caKey, "validity"},
		{"nil issuer", ok, nil, caKey, "nil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := IssueCert(leafKey.Public(), tt.opts, tt.issuer, tt.issuerKey)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
	if _, err := SelfSignedCert(nil, "x", time.Hour, false); err == nil {
		t.Fatal("nil key accepted")
	}
}

// The golden values were computed with OpenSSL, independently of this code:
//
//	openssl x509 -in golden_cert.pem -outform DER | sha256sum
//	openssl x509 -in golden_cert.pem -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum
func TestGoldenIDs(t *testing.T) {
	cert, err := ReadCertFile(filepath.Join("testdata", "golden_cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := CertID(cert), "cd93deca310ccd155d8df5d9a8bc3f04e82c26bf57afa14b2b34542b5cdbc225"; got != want {
		t.Errorf("CertID = %s, want %s", got, want)
	}
	got, err := KeyID(cert.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if want := "8df8dec2e231d05718907c663461dedc8cdec93683c51c4cc1fe86dbcb832a4b"; got != want {
		t.Errorf("KeyID = %s, want %s", got, want)
	}
	if CertID(nil) != "" {
		t.Error("CertID(nil) not empty")
	}
	if _, err := KeyID(nil); err == nil {
		t.Error("KeyID(nil) succeeded")
	}
	if _, err := KeyID("not a key"); err == nil {
		t.Error("KeyID(string) succeeded")
	}
}

func TestWrapUnwrapKey(t *testing.T) {
	k, err := GenerateEncryptionKey()
	if err != nil {
		t.Fatal(err)
	}
	if k.N.BitLen() != 2048 {
		t.Fatalf("key size %d", k.N.BitLen())
	}
	other, _ := GenerateEncryptionKey()
	share := []byte("a recovery share of some thirty-two bytes")
	tests := []struct {
		name string
		priv *rsa.PrivateKey
		mod  func([]byte) []byte
		ok   bool
	}{
		{"round trip", k, func(b []byte) []byte { return b }, true},
		{"wrong key", other, func(b []byte) []byte { return b }, false},
		{"flipped byte", k, func(b []byte) []byte { b[10] ^= 1; return b }, false},
		{"truncated", k, func(b []byte) []byte { return b[:len(b)-1] }, false},
		{"empty", k, func([]byte) []byte { return nil }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct, err := WrapKey(&k.PublicKey, share)
			if err != nil {
				t.Fatal(err)
			}
			pt, err := UnwrapKey(tt.priv, tt.mod(ct))
			if !tt.ok {
				if !errors.Is(err, ErrDecrypt) {
					t.Fatalf("err = %v, want ErrDecrypt", err)
				}
				return
			}
			if err != nil || string(pt) != string(share) {
				t.Fatalf("got %q, %v", pt, err)
			}
		})
	}
	// The public key survives a PEM round trip and still wraps for k.
	b, err := EncodePublicKeyPEM(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ParsePublicKeyPEM(b)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := WrapKey(pub.(*rsa.PublicKey), share)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := UnwrapKey(k, ct); err != nil || string(pt) != string(share) {
		t.Fatalf("after PEM: %q, %v", pt, err)
	}
	if _, err := WrapKey(nil, share); err == nil {
		t.Fatal("WrapKey(nil) succeeded")
	}
	// OAEP-SHA256 with a 2048-bit key holds at most 256-2*32-2 bytes.
	if _, err := WrapKey(&k.PublicKey, make([]byte, 191)); err == nil {
		t.Fatal("oversized plaintext wrapped")
	}
}

func mustKey(t testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := GenerateKeyCurve(c)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writeFile(t *testing.T, path string, b []byte, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, b, perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
}
