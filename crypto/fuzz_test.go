package crypto

import (
	"bytes"
	"crypto/elliptic"
	"os"
	"path/filepath"
	"testing"
)

// The decoders below read files and network input; they must fail cleanly,
// never panic. Seeds are the valid inputs of the other tests.

func FuzzParsePEM(f *testing.F) {
	for _, name := range []string{"golden_cert.pem", "sec1_p384.pem", "pkcs1_rsa.pem"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	k, _ := GenerateKeyCurve(elliptic.P256())
	b, _ := EncodePrivateKeyPEM(k)
	f.Add(b)
	pub, _ := EncodePublicKeyPEM(k.Public())
	f.Add(pub)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ParseCertPEM(b)
		_, _ = ParsePublicKeyPEM(b)
		if k, err := ParsePrivateKeyPEM(b); err == nil {
			if _, err := EncodePrivateKeyPEM(k); err != nil {
				t.Fatalf("parsed key does not re-encode: %v", err)
			}
		}
	})
}

func FuzzUnmarshalSecrets(f *testing.F) {
	b, _ := MarshalSecrets([]LedgerSecret{fixedSecret(1, 1), fixedSecret(2, 10)})
	f.Add(b)
	f.Add([]byte(`{"version":1,"secrets":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ss, err := UnmarshalSecrets(b)
		if err != nil {
			return
		}
		again, err := MarshalSecrets(ss)
		if err != nil {
			t.Fatalf("accepted secrets do not marshal: %v", err)
		}
		ss2, err := UnmarshalSecrets(again)
		if err != nil || len(ss2) != len(ss) {
			t.Fatalf("round trip: %v", err)
		}
		if len(ss) > 0 {
			if _, err := NewKeyring(ss...); err != nil {
				t.Fatalf("accepted secrets do not make a keyring: %v", err)
			}
		}
	})
}

func FuzzOpen(f *testing.F) {
	k := mustKeyring(f, fixedSecret(1, 1), fixedSecret(2, 10))
	sealed, _ := k.Seal(3, []byte("plaintext"), []byte("aad"))
	f.Add(sealed, []byte("aad"))
	f.Add([]byte{0, 0, 0, 2}, []byte(nil))
	f.Fuzz(func(t *testing.T, sealed, aad []byte) {
		pt, err := k.Open(sealed, aad)
		if err != nil {
			return
		}
		// Anything that opens must be what was sealed: forging is infeasible.
		if !bytes.Equal(pt, []byte("plaintext")) {
			t.Fatalf("opened forged data: %q", pt)
		}
	})
}
