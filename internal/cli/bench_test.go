package cli

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cocoledger/coco/bench"
)

func TestBenchCeilingCmd(t *testing.T) {
	var out, errw bytes.Buffer
	figs := filepath.Join(t.TempDir(), "figs.json")
	code := Main(t.Context(), []string{"bench", "ceiling", "--clients", "2", "--duration", "300ms", "--warmup", "100ms", "--json", figs}, &out, &errw)
	if code != 0 {
		t.Fatalf("exit %d, stderr: %s", code, errw.String())
	}
	t.Log(out.String())

	// The figure it appended is what bench report reads.
	var rep bytes.Buffer
	if code := Main(t.Context(), []string{"bench", "report", figs}, &rep, &errw); code != 0 {
		t.Fatalf("bench report: exit %d, stderr: %s", code, errw.String())
	}
	if !strings.Contains(rep.String(), "| writes-100B | https-ceiling | 2 | ") {
		t.Errorf("report lacks the ceiling's figure:\n%s", rep.String())
	}
	if code := Main(t.Context(), []string{"bench", "report", filepath.Join(t.TempDir(), "missing.json")}, &rep, &errw); code == 0 {
		t.Error("bench report of a missing file succeeded")
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || lines[0] != strings.Split(bench.MarkdownHeader, "\n")[0] {
		t.Fatalf("want header, separator and one row, got:\n%s", out.String())
	}
	if !strings.HasPrefix(lines[2], "| https-ceiling 127.0.0.1:") || !strings.HasSuffix(lines[2], "| 0 |") {
		t.Errorf("unexpected row %q", lines[2])
	}
}

func TestBenchCeilingCmdBadFlags(t *testing.T) {
	var out, errw bytes.Buffer
	if code := Main(t.Context(), []string{"bench", "ceiling", "--clients", "0"}, &out, &errw); code == 0 {
		t.Fatal("exit 0 with --clients 0")
	}
	if !strings.Contains(errw.String(), "clients must be positive") {
		t.Errorf("stderr %q does not explain", errw.String())
	}
}

// TestBenchLogCmd points a sandbox.json at a ceiling server, which answers
// like a node, to run `bench log --ceiling` end to end without a cluster.
func TestBenchLogCmd(t *testing.T) {
	srv, err := bench.StartCeilingServer(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	dir := t.TempDir()
	benchWritePEM(t, filepath.Join(dir, "service_cert.pem"), "CERTIFICATE", srv.CACert.Raw)
	userCert, userKey := benchUserFiles(t, dir)
	sb := map[string]any{
		"service_cert": filepath.Join(dir, "service_cert.pem"),
		"chain_id":     1337,
		"nodes":        []map[string]any{{"node_id": "n0", "rpc_address": srv.Addr(), "pid": 1, "data_dir": dir, "args": []string{"coco"}}},
		"members":      []map[string]any{},
		"users":        []map[string]any{{"name": "user0", "id": "u", "cert": userCert, "key": userKey}},
	}
	raw, err := json.Marshal(sb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sandbox.json"), raw, 0o600); err != nil {
		t.Fatal(err)
	}

	var out, errw bytes.Buffer
	code := Main(t.Context(), []string{"bench", "log", "--sandbox", dir, "--clients", "2", "--duration", "300ms", "--warmup", "0s", "--ceiling"}, &out, &errw)
	if code != 0 {
		t.Fatalf("exit %d, stderr: %s", code, errw.String())
	}
	t.Log(out.String())
	got := out.String()
	if !strings.Contains(got, "| "+srv.Addr()+" | 2 |") || !strings.Contains(got, "| https-ceiling ") {
		t.Errorf("missing coco or ceiling row:\n%s", got)
	}
	if !strings.Contains(got, "ratio writes coco/https-ceiling = ") {
		t.Errorf("missing ratio line:\n%s", got)
	}

	errw.Reset()
	if code := Main(t.Context(), []string{"bench", "log", "--sandbox", dir, "--user", "nobody"}, &out, &errw); code == 0 || !strings.Contains(errw.String(), `no user "nobody"`) {
		t.Errorf("unknown user: exit %d, stderr %q", code, errw.String())
	}
}

func benchWritePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// benchUserFiles writes a self-signed P-256 user certificate and key, as the
// sandbox does for its users.
func benchUserFiles(t *testing.T, dir string) (certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "user0"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, "user0_cert.pem"), filepath.Join(dir, "user0_privk.pem")
	benchWritePEM(t, certPath, "CERTIFICATE", der)
	benchWritePEM(t, keyPath, "EC PRIVATE KEY", keyDER)
	return certPath, keyPath
}
