package linearizability

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cocoledger/coco/internal/testproc"
)

// sandboxInfo is what the tests use of DIR/sandbox.json, the description
// `coco sandbox` writes once the service is open (the sandbox contract in
// docs/operations.md). It is parsed here rather than with package sandbox's
// type so that the test reads the file as any user of the contract would.
type sandboxInfo struct {
	ServiceCert string `json:"service_cert"`
	Nodes       []struct {
		NodeID     string   `json:"node_id"`
		RPCAddress string   `json:"rpc_address"`
		PID        int      `json:"pid"`
		DataDir    string   `json:"data_dir"`
		Args       []string `json:"args"`
	} `json:"nodes"`
	Users []struct {
		Cert string `json:"cert"`
		Key  string `json:"key"`
	} `json:"users"`
}

// service is a `coco sandbox` process and the nodes it started, each of
// which the fault injector can crash and restart on its own.
type service struct {
	t       testing.TB
	dir     string
	proc    *testproc.Proc // coco sandbox
	certPEM []byte
	user    tls.Certificate
	nodes   []*sandboxNode
	anon    *http.Client // trusts the service certificate, presents none
}

// sandboxNode is one node of a sandbox. It implements Restartable: it kills
// the process the sandbox started (or, after a restart, the one this test
// started) and restarts it with its args from sandbox.json.
type sandboxNode struct {
	index    int
	id       string // node id (hex key id), as in primary_id
	rpc      string
	dataDir  string
	logPath  string
	certPath string   // the service certificate, for waitServing
	args     []string // full command line, args[0] the binary

	mu   sync.Mutex // guards pid, proc and down: the fault injector, the watchdog and cleanup use them
	pid  int        // the sandbox's child, until the first kill; then 0
	proc *testproc.Proc
	down bool // killed by the test, not yet restarted
}

var _ Restartable = (*sandboxNode)(nil)

// startSandbox runs `coco sandbox --dir DIR/sandbox` (3 nodes by default)
// with one member and one user, waits until sandbox.json says the service
// is open, and loads it. nodeArgs go to every node (--node-arg). t.Cleanup
// stops the sandbox and every node the test restarted.
func startSandbox(t testing.TB, dir string, nodeArgs ...string) *service {
	t.Helper()
	s := &service{t: t, dir: filepath.Join(dir, "sandbox")}
	args := []string{"sandbox", "--dir", s.dir, "--members", "1", "--users", "1"}
	for _, a := range nodeArgs {
		args = append(args, "--node-arg="+a)
	}
	logPath := filepath.Join(dir, "sandbox.log")
	p, err := testproc.Start(cocoBin, logPath, args...)
	if err != nil {
		t.Fatal(err)
	}
	s.proc = p
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("last output of coco sandbox (%s):\n%s", logPath, testproc.Tail(logPath, 20))
			for _, n := range s.nodes {
				t.Logf("last output of node %d (%s):\n%s", n.index, n.logPath, testproc.Tail(n.logPath, 40))
			}
		}
	})

	infoPath := filepath.Join(s.dir, "sandbox.json")
	deadline := time.Now().Add(startTimeout)
	for {
		if _, err := os.Stat(infoPath); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		if p.Exited() {
			t.Fatalf("coco sandbox exited during start-up:\n%s", testproc.Tail(logPath, 40))
		}
		if time.Now().After(deadline) {
			t.Fatalf("coco sandbox did not open within %v:\n%s", startTimeout, testproc.Tail(logPath, 40))
		}
		time.Sleep(50 * time.Millisecond)
	}
	b, err := os.ReadFile(infoPath)
	if err != nil {
		t.Fatal(err)
	}
	var info sandboxInfo
	if err := json.Unmarshal(b, &info); err != nil {
		t.Fatalf("%s: %v", infoPath, err)
	}
	if len(info.Nodes) < 2 || len(info.Users) == 0 {
		t.Fatalf("%s lists %d nodes and %d users, want several nodes and a user", infoPath, len(info.Nodes), len(info.Users))
	}
	if s.certPEM, err = os.ReadFile(info.ServiceCert); err != nil {
		t.Fatal(err)
	}
	if s.user, err = tls.LoadX509KeyPair(info.Users[0].Cert, info.Users[0].Key); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.certPEM)
	s.anon = &http.Client{
		Timeout:   time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}},
	}
	t.Cleanup(s.anon.CloseIdleConnections)
	for i, ni := range info.Nodes {
		if len(ni.Args) < 2 || ni.PID <= 0 || ni.NodeID == "" {
			t.Fatalf("%s: node %d lacks args, pid or node_id: %+v", infoPath, i, ni)
		}
		s.nodes = append(s.nodes, &sandboxNode{
			index:    i,
			id:       ni.NodeID,
			rpc:      ni.RPCAddress,
			dataDir:  ni.DataDir,
			logPath:  filepath.Join(ni.DataDir, "node.log"),
			certPath: info.ServiceCert,
			args:     ni.Args,
			pid:      ni.PID,
		})
	}
	return s
}

// restartables is s.nodes as the fault injector takes them.
func (s *service) restartables() []Restartable {
	rs := make([]Restartable, len(s.nodes))
	for i, n := range s.nodes {
		rs[i] = n
	}
	return rs
}

// primary is the index of the node that GET /node/network (asked of each
// node in turn) names as primary_id, waiting while none is known (an
// election) until ctx ends.
func (s *service) primary(ctx context.Context) (int, error) {
	var last error
	for {
		for _, n := range s.nodes {
			id, err := s.primaryID(ctx, n.rpc)
			if err != nil {
				last = err
				continue
			}
			if id == "" {
				last = fmt.Errorf("node %d knows no primary", n.index)
				continue
			}
			for _, m := range s.nodes {
				if m.id == id {
					return m.index, nil
				}
			}
			return 0, fmt.Errorf("node %d names primary %s, which is not in sandbox.json", n.index, id)
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("no primary known (%v): %w", last, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *service) primaryID(ctx context.Context, addr string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/node/network", nil)
	if err != nil {
		return "", err
	}
	resp, err := s.anon.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s/node/network: %s", addr, resp.Status)
	}
	var net struct {
		PrimaryID string `json:"primary_id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&net); err != nil {
		return "", fmt.Errorf("GET %s/node/network: %w", addr, err)
	}
	return net.PrimaryID, nil
}

// picker chooses the node to crash: the primary in even rounds (so the
// service goes through an election), a backup picked at random in odd ones.
func (s *service) picker(seed uint64) func(context.Context, int) (int, string, error) {
	rng := rand.New(rand.NewPCG(seed, 0xb4c))
	return func(ctx context.Context, round int) (int, string, error) {
		p, err := s.primary(ctx)
		if err != nil {
			return 0, "", err
		}
		if round%2 == 0 {
			return p, "primary", nil
		}
		b := rng.IntN(len(s.nodes) - 1)
		if b >= p {
			b++
		}
		return b, "backup", nil
	}
}

// stop ends the sandbox (which stops the nodes it started, SIGKILL for its
// whole process group past stopTimeout) and the nodes the test restarted,
// all at once.
func (s *service) stop() {
	var wg sync.WaitGroup
	for _, n := range s.nodes {
		wg.Go(func() {
			n.mu.Lock()
			p := n.proc
			n.mu.Unlock()
			if p == nil {
				return
			}
			if _, forced := p.Stop(stopTimeout); forced {
				s.t.Errorf("node %d (pid %d) did not stop within %v of SIGTERM; killed it", n.index, p.PID(), stopTimeout)
			}
		})
	}
	wg.Go(func() {
		// The sandbox gives its nodes 15 s to stop before it kills them.
		if _, forced := s.proc.Stop(stopTimeout + 5*time.Second); forced {
			s.t.Errorf("coco sandbox (pid %d) did not stop in time; killed its process group", s.proc.PID())
		}
	})
	wg.Wait()
}

// watch cancels ctx, with the reason, when the sandbox process or a node
// exits without the test having killed it: the run cannot go on (the
// sandbox's nodes get SIGTERM when it dies), and the clients would only
// find the service unavailable until the run times out.
func (s *service) watch(ctx context.Context, cancel context.CancelCauseFunc) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.proc.Done():
			cancel(fmt.Errorf("coco sandbox (pid %d) exited during the run with code %d (-1: a signal); nothing in the test stops it, so something else did, and its nodes stop with it", s.proc.PID(), s.proc.ExitCode()))
			return
		case <-tick.C:
		}
		for _, n := range s.nodes {
			if err := n.exitedOnItsOwn(); err != nil {
				cancel(err)
				return
			}
		}
	}
}

// exitedOnItsOwn reports a node process that is gone although the test did
// not kill it.
func (n *sandboxNode) exitedOnItsOwn() error {
	n.mu.Lock()
	pid, p, down := n.pid, n.proc, n.down
	n.mu.Unlock()
	var dead bool
	switch {
	case down:
	case pid != 0:
		dead = processDead(pid)
	case p != nil:
		dead = p.Exited()
	}
	if !dead {
		return nil
	}
	// Kill may have run between the read above and the check: the node is
	// then gone because the test killed it.
	n.mu.Lock()
	killed := n.down || n.pid != pid || n.proc != p
	n.mu.Unlock()
	switch {
	case killed:
		return nil
	case pid != 0:
		return fmt.Errorf("node %d (pid %d, started by the sandbox) exited on its own:\n%s", n.index, pid, testproc.Tail(n.logPath, 40))
	default:
		return fmt.Errorf("node %d (pid %d) exited on its own with code %d:\n%s", n.index, p.PID(), p.ExitCode(), testproc.Tail(n.logPath, 40))
	}
}

// Kill implements Restartable.
func (n *sandboxNode) Kill() error {
	n.mu.Lock()
	pid, p := n.pid, n.proc
	n.pid = 0
	n.down = true
	n.mu.Unlock()
	switch {
	case pid != 0:
		return killSandboxChild(pid, n.dataDir)
	case p != nil:
		if p.Exited() {
			return fmt.Errorf("node %d (pid %d) had exited on its own:\n%s", n.index, p.PID(), testproc.Tail(n.logPath, 40))
		}
		return p.Kill()
	}
	return errors.New("node is not running")
}

// Restart implements Restartable: it runs the node's args from
// sandbox.json, appending to the node's log like the sandbox does.
func (n *sandboxNode) Restart(ctx context.Context) error {
	p, err := testproc.Start(n.args[0], n.logPath, n.args[1:]...)
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.proc = p
	n.down = false
	n.mu.Unlock()
	return waitServing(ctx, n.rpc, n.certPath, n.logPath, p.Done())
}

// killSandboxChild sends SIGKILL to a node process that the sandbox started
// (so only the sandbox can reap it) and waits until it is dead: gone, or a
// zombie, which holds no sockets any more. It first checks that pid is
// still that node (its command line names dataDir), so that a node that
// exited on its own is reported rather than a reused pid killed.
func killSandboxChild(pid int, dataDir string) error {
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || !bytes.Contains(cmdline, []byte(dataDir)) {
		return fmt.Errorf("node process %d (%s) is gone: it exited on its own (see its node.log)", pid, dataDir)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill %d: %w", pid, err)
	}
	deadline := time.Now().Add(stopTimeout)
	for {
		if processDead(pid) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node process %d still alive %v after SIGKILL", pid, stopTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// processDead reports whether pid has exited (reaped, or a zombie).
func processDead(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// pid (comm) state ...; comm may hold spaces and parentheses.
	if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] == 'Z' || b[i+2] == 'X'
	}
	return false
}
