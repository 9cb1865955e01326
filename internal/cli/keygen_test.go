package cli

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ethcrypto "github.com/ethereum/go-ethereum/crypto"

	cococrypto "github.com/cocoledger/coco/crypto"
)

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errw bytes.Buffer
	code = Main(context.Background(), args, &out, &errw)
	return code, out.String(), errw.String()
}

func TestKeygen(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		curve    elliptic.Curve
		enc, eth bool
	}{
		{"default", nil, elliptic.P256(), false, false},
		{"p384", []string{"--curve", "p384"}, elliptic.P384(), false, false},
		{"member with enc", []string{"--enc"}, elliptic.P256(), true, false},
		{"user with eth", []string{"--eth"}, elliptic.P256(), false, true},
		{"everything", []string{"--curve", "p384", "--enc", "--eth"}, elliptic.P384(), true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "out") // created by keygen
			args := append([]string{"keygen", "--name", "m0", "--out", dir}, tt.args...)
			code, stdout, stderr := runCLI(t, args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			p := func(s string) string { return filepath.Join(dir, "m0"+s) }

			want := map[string]os.FileMode{"_privk.pem": 0o600, "_cert.pem": 0o644}
			if tt.enc {
				want["_enc_privk.pem"], want["_enc_pubk.pem"] = 0o600, 0o644
			}
			if tt.eth {
				want["_eth_key"] = 0o600
			}
			ents, _ := os.ReadDir(dir)
			if len(ents) != len(want) {
				t.Fatalf("wrote %d files, want %d: %v", len(ents), len(want), ents)
			}
			for suffix, mode := range want {
				fi, err := os.Stat(p(suffix))
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != mode {
					t.Errorf("%s: mode %#o, want %#o", suffix, fi.Mode().Perm(), mode)
				}
				if !strings.Contains(stdout, "wrote: "+p(suffix)+"\n") {
					t.Errorf("output does not list %s:\n%s", suffix, stdout)
				}
			}

			// The key matches the self-signed certificate, CN=NAME, and the
			// printed id is the certificate's.
			tc, err := cococrypto.LoadKeyPair(p("_cert.pem"), p("_privk.pem"))
			if err != nil {
				t.Fatal(err)
			}
			if cn := tc.Leaf.Subject.CommonName; cn != "m0" {
				t.Errorf("CN = %q", cn)
			}
			if k := tc.PrivateKey.(*ecdsa.PrivateKey); k.Curve != tt.curve {
				t.Errorf("curve %s", k.Curve.Params().Name)
			}
			if err := tc.Leaf.CheckSignature(tc.Leaf.SignatureAlgorithm, tc.Leaf.RawTBSCertificate, tc.Leaf.Signature); err != nil {
				t.Errorf("not self-signed: %v", err)
			}
			if d := tc.Leaf.NotAfter.Sub(tc.Leaf.NotBefore).Hours() / 24; d < 365 || d > 366 {
				t.Errorf("valid for %.1f days", d)
			}
			if id := cococrypto.CertID(tc.Leaf); !strings.HasPrefix(stdout, "id: "+id+"\n") {
				t.Errorf("output does not start with id %s:\n%s", id, stdout)
			}

			if tt.enc {
				priv, err := cococrypto.ReadKeyFile(p("_enc_privk.pem"))
				if err != nil {
					t.Fatal(err)
				}
				b, _ := os.ReadFile(p("_enc_pubk.pem"))
				pub, err := cococrypto.ParsePublicKeyPEM(b)
				if err != nil {
					t.Fatal(err)
				}
				rk := priv.(*rsa.PrivateKey)
				if rk.N.BitLen() != 2048 || !rk.PublicKey.Equal(pub) {
					t.Error("encryption key pair mismatch or not RSA-2048")
				}
			}
			if tt.eth {
				b, _ := os.ReadFile(p("_eth_key"))
				hexKey := strings.TrimSpace(string(b))
				if !strings.HasPrefix(hexKey, "0x") {
					t.Fatalf("eth key %q not 0x-prefixed", hexKey)
				}
				k, err := ethcrypto.HexToECDSA(hexKey[2:])
				if err != nil {
					t.Fatal(err)
				}
				addr := ethcrypto.PubkeyToAddress(k.PublicKey).Hex()
				if !strings.Contains(stdout, "eth_address: "+addr+"\n") {
					t.Errorf("output lacks eth_address %s:\n%s", addr, stdout)
				}
			}
		})
	}
}

func TestKeygenRefusesOverwrite(t *testing.T) {
	dir := t.TempDir()
	if code, _, stderr := runCLI(t, "keygen", "--name", "u0", "--out", dir); code != 0 {
		t.Fatalf("first run: %s", stderr)
	}
	before, _ := os.ReadFile(filepath.Join(dir, "u0_privk.pem"))

	// Some of the files exist and one (NAME_eth_key) does not: the existing
	// key must survive and nothing at all may be written.
	code, _, stderr := runCLI(t, "keygen", "--name", "u0", "--out", dir, "--eth")
	if code == 0 || !strings.Contains(stderr, "refusing to overwrite") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "u0_privk.pem"))
	if !bytes.Equal(before, after) {
		t.Fatal("key overwritten")
	}
	if _, err := os.Stat(filepath.Join(dir, "u0_eth_key")); !os.IsNotExist(err) {
		t.Fatalf("eth key written despite refusal: %v", err)
	}
}

func TestKeygenBadArgs(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no name", []string{}, `"name" not set`},
		{"empty name", []string{"--name", ""}, "empty"},
		{"path name", []string{"--name", "../x"}, "plain name"},
		{"dot name", []string{"--name", ".."}, "plain name"},
		{"bad curve", []string{"--name", "m", "--curve", "p521"}, "unknown --curve"},
		{"extra arg", []string{"--name", "m", "extra"}, "unknown command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"keygen", "--out", dir}, tt.args...)
			code, _, stderr := runCLI(t, args...)
			if code == 0 || !strings.Contains(stderr, tt.want) {
				t.Fatalf("exit %d, stderr %q, want %q", code, stderr, tt.want)
			}
		})
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("files written on bad args: %v", ents)
	}
}
