package linearizability

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cocoledger/coco/internal/testproc"
)

// Test flags: the only package-level state besides the binary path.
var (
	long   = flag.Bool("long", false, "run the long linearizability tests (minutes)")
	vizDir = flag.String("viz-dir", "", "write porcupine's HTML visualization of a violation here (default: a new directory under $TMPDIR, kept)")
	seed   = flag.Uint64("seed", 0, "seed of the clients' choice of operations, nodes and faults (0: random, logged)")
	// readConsistency exists to show that the check catches stale reads
	// (-read-consistency local, which may fail); the suite never sets it.
	readConsistency = flag.String("read-consistency", "", "send x-coco-read-consistency with every read (\"local\": possibly stale on a backup)")
)

// cocoBin is the coco executable built by TestMain.
var cocoBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	bin, cleanup, err := testproc.Build("coco-linearizability-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "linearizability:", err)
		return 1
	}
	defer cleanup()
	cocoBin = bin
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

	mu   sync.Mutex // guards proc: the fault injector and cleanup both use it
	proc *testproc.Proc
}

var _ Restartable = (*node)(nil)

// startNode creates a single-node service in dir with one member, which
// registers one user and opens the service, and waits until it serves.
// t.Cleanup stops it.
func startNode(t testing.TB, dir string, extra ...string) *node {
	t.Helper()
	member, err := testproc.NewUser(dir, "member0")
	if err != nil {
		t.Fatal(err)
	}
	user, err := testproc.NewUser(dir, "user0")
	if err != nil {
		t.Fatal(err)
	}
	addr, err := testproc.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, dataDir: filepath.Join(dir, "node"), addr: addr, user: user.TLS}
	n.logPath = filepath.Join(dir, "node.log")
	n.args = append([]string{"node", "start", "--data-dir", n.dataDir, "--rpc-address", n.addr, "--member", member.CertPath}, extra...)
	t.Cleanup(func() {
		n.stop()
		if t.Failed() {
			t.Logf("last output of coco node (%s):\n%s", n.logPath, testproc.Tail(n.logPath, 40))
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := n.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if err := testproc.OpenService(ctx, n.addr, filepath.Join(n.dataDir, "service_cert.pem"), member, user); err != nil {
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
	p, err := testproc.Start(cocoBin, n.logPath, n.args...)
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.proc = p
	n.mu.Unlock()
	return n.waitReady(ctx, p.Done())
}

// waitReady polls GET /node/ready/gov until 204. The service certificate
// only exists once the first start has created the service.
func (n *node) waitReady(ctx context.Context, done <-chan struct{}) error {
	return waitServing(ctx, n.addr, filepath.Join(n.dataDir, "service_cert.pem"), n.logPath, done)
}

// waitServing polls GET https://addr/node/ready/gov (a new service is not
// Open yet, so /node/ready/app would wait for its opening), trusting the service
// certificate in certPath (read anew each time, as it may not exist yet),
// until it answers 204. It fails at once when done is closed: the process
// that was to serve on addr exited (its output is in logPath).
func waitServing(ctx context.Context, addr, certPath, logPath string, done <-chan struct{}) error {
	var last string
	for {
		select {
		case <-done:
			return fmt.Errorf("coco node exited while starting:\n%s", testproc.Tail(logPath, 40))
		case <-ctx.Done():
			return fmt.Errorf("node %s not ready (%s): %w", addr, last, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
		pemBytes, err := os.ReadFile(certPath)
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
		resp, err := hc.Get("https://" + addr + "/node/ready/gov")
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
	p := n.proc
	n.mu.Unlock()
	if p == nil {
		return errors.New("node was never started")
	}
	return p.Kill()
}

// stop ends the node (SIGTERM, then SIGKILL to its group) for cleanup.
func (n *node) stop() {
	n.mu.Lock()
	p := n.proc
	n.mu.Unlock()
	if p == nil {
		return
	}
	if _, forced := p.Stop(stopTimeout); forced {
		n.t.Errorf("coco node (pid %d) did not stop within %v of SIGTERM; killed it", p.PID(), stopTimeout)
	}
}
