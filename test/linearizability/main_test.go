package linearizability

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Test flags: the only package-level state besides the binary path.
var (
	long   = flag.Bool("long", false, "run the long linearizability tests (minutes)")
	vizDir = flag.String("viz-dir", "", "write porcupine's HTML visualization of a violation here (default: a new directory under $TMPDIR, kept)")
	seed   = flag.Uint64("seed", 0, "seed of the clients' choice of operations (0: random, logged)")
)

// cocoBin is the coco executable built by TestMain.
var cocoBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "coco-linearizability-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "linearizability:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	cocoBin = filepath.Join(dir, "coco")
	build := exec.Command("go", "build", "-o", cocoBin, "github.com/cocoledger/coco/cmd/coco")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "linearizability: build coco:", err)
		return 1
	}
	return m.Run()
}

// Bounds on waiting for processes: they stop a broken build from hanging
// the suite; nothing asserts on how long anything takes.
const (
	startTimeout = 60 * time.Second
	stopTimeout  = 15 * time.Second
)

// node is a `coco node start` process that can be killed and restarted on
// its data directory. It implements Restartable.
type node struct {
	t       testing.TB
	args    []string
	dataDir string
	addr    string
	logPath string
	user    tls.Certificate

	mu   sync.Mutex // guards cmd and done: the fault injector and cleanup both use them
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

var _ Restartable = (*node)(nil)

// startNode creates a single-node service in dir with one user and waits
// until it serves. t.Cleanup stops it.
func startNode(t testing.TB, dir string, extra ...string) *node {
	t.Helper()
	certPath, user := newUser(t, dir)
	n := &node{t: t, dataDir: filepath.Join(dir, "node"), addr: freeAddr(t), user: user}
	n.logPath = filepath.Join(dir, "node.log")
	n.args = append([]string{"node", "start", "--data-dir", n.dataDir, "--rpc-address", n.addr, "--user-cert", certPath}, extra...)
	t.Cleanup(func() {
		n.stop()
		if t.Failed() {
			t.Logf("last output of coco node (%s):\n%s", n.logPath, tail(n.logPath, 40))
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := n.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	return n
}

func (n *node) serviceCertPEM(t testing.TB) []byte {
	b, err := os.ReadFile(filepath.Join(n.dataDir, "service_cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Restart implements Restartable (it also does the first start).
func (n *node) Restart(ctx context.Context) error {
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(cocoBin, n.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// A group of its own, so cleanup can reach anything it starts and a
	// Ctrl-C of `go test` is not what kills it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start coco %s: %w", strings.Join(n.args, " "), err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	n.mu.Lock()
	n.cmd, n.done = cmd, done
	n.mu.Unlock()
	return n.waitReady(ctx, done)
}

// waitReady polls GET /node/ready/app until 204. The service certificate
// only exists once the first start has created the service.
func (n *node) waitReady(ctx context.Context, done <-chan struct{}) error {
	var last string
	for {
		select {
		case <-done:
			return fmt.Errorf("coco node exited while starting:\n%s", tail(n.logPath, 40))
		case <-ctx.Done():
			return fmt.Errorf("node not ready (%s): %w", last, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
		pemBytes, err := os.ReadFile(filepath.Join(n.dataDir, "service_cert.pem"))
		if err != nil {
			last = err.Error()
			continue
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pemBytes)
		hc := &http.Client{
			Timeout:   time.Second,
			Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}, DisableKeepAlives: true},
		}
		resp, err := hc.Get("https://" + n.addr + "/node/ready/app")
		if err != nil {
			last = err.Error()
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusNoContent {
			return nil
		}
		last = resp.Status
	}
}

// Kill implements Restartable.
func (n *node) Kill() error {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd == nil {
		return errors.New("node was never started")
	}
	if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	<-done
	return nil
}

// stop ends the node (SIGTERM, then SIGKILL to its group) for cleanup.
func (n *node) stop() {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(stopTimeout):
		n.t.Errorf("coco node (pid %d) did not stop within %v of SIGTERM; killing it", cmd.Process.Pid, stopTimeout)
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

func tail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// freeAddr returns 127.0.0.1:port for a port that was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// newUser writes a fresh self-signed client certificate to dir for
// --user-cert and returns its path and the certificate with its key.
func newUser(t testing.TB, dir string) (string, tls.Certificate) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "user0"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "user0_cert.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
}
