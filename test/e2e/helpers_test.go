// Package e2e holds end-to-end tests that start real coco processes (the
// binary built once by TestMain) and talk to them over HTTPS, as a user
// of the README would.
package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cocoledger/coco/internal/testproc"
	"github.com/cocoledger/coco/sandbox"
)

// cocoBin is the coco executable built by TestMain.
var cocoBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	bin, cleanup, err := testproc.Build("coco-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer cleanup()
	cocoBin = bin
	return m.Run()
}

// Timeouts for waiting on processes. They bound how long a broken build
// can hang the suite; no test asserts on how long anything takes.
const (
	startTimeout = 30 * time.Second
	stopTimeout  = 15 * time.Second
)

// proc is a coco process started by a test (see testproc.Proc).
type proc struct {
	*testproc.Proc
	t       testing.TB
	logPath string
}

// startProc starts coco with args, its stdout and stderr appended to
// logPath. t.Cleanup stops it (SIGTERM, then SIGKILL to its whole group).
func startProc(t testing.TB, logPath string, args ...string) *proc {
	t.Helper()
	tp, err := testproc.Start(cocoBin, logPath, args...)
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{Proc: tp, t: t, logPath: logPath}
	t.Cleanup(func() {
		p.stop(stopTimeout)
		if t.Failed() {
			t.Logf("last output of coco %s (pid %d, %s):\n%s", strings.Join(args, " "), p.pid(), logPath, tail(logPath, 40))
		}
	})
	return p
}

// startArgv is startProc for a whole command line whose first element is
// the executable, such as a node's args in sandbox.json.
func startArgv(t testing.TB, logPath string, argv []string) *proc {
	t.Helper()
	tp, err := testproc.Start(argv[0], logPath, argv[1:]...)
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{Proc: tp, t: t, logPath: logPath}
	t.Cleanup(func() {
		p.stop(stopTimeout)
		if t.Failed() {
			t.Logf("last output of %s (pid %d, %s):\n%s", strings.Join(argv, " "), p.pid(), logPath, tail(logPath, 40))
		}
	})
	return p
}

func (p *proc) pid() int      { return p.PID() }
func (p *proc) exited() bool  { return p.Exited() }
func (p *proc) exitCode() int { return p.ExitCode() }

// stop sends SIGTERM and waits; after timeout it kills the whole process
// group (an error: coco must stop on SIGTERM). It returns the exit code.
func (p *proc) stop(timeout time.Duration) int {
	code, forced := p.Stop(timeout)
	if forced {
		p.t.Errorf("coco %s (pid %d) did not stop within %v of SIGTERM; killed it", p.Args[0], p.pid(), timeout)
	}
	return code
}

// kill sends SIGKILL to the process (not its group) and waits for it.
func (p *proc) kill() {
	if err := p.Kill(); err != nil {
		p.t.Fatal(err)
	}
}

func tail(path string, lines int) string { return testproc.Tail(path, lines) }

// freeAddr returns 127.0.0.1:port for a port that was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	addr, err := testproc.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// waitFor polls cond every interval until it returns true or timeout
// passes, then fails with the last reason cond gave.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %s", timeout, what, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runCoco runs a coco CLI command to completion.
func runCoco(t testing.TB, args ...string) (out string, code int) {
	t.Helper()
	// A command that should exit but serves instead (a node started on a
	// ledger it should refuse) must not hang the suite.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, cocoBin, args...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	cmd.WaitDelay = stopTimeout
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return buf.String(), 0
	case errors.As(err, &ee):
		return buf.String(), ee.ExitCode()
	}
	t.Fatalf("run coco %s: %v", strings.Join(args, " "), err)
	return "", 0
}

// --- identities ---

// identity is a key and self-signed certificate in PEM files.
type identity struct {
	cert, key string
}

// newIdentity writes a fresh P-256 key and self-signed client certificate.
func newIdentity(t testing.TB, dir, name string) identity {
	t.Helper()
	u, err := testproc.NewUser(dir, name)
	if err != nil {
		t.Fatal(err)
	}
	return identity{cert: u.CertPath, key: u.KeyPath}
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// --- HTTP ---

// client is an HTTPS client pinned to a service certificate, optionally
// presenting a user's client certificate.
type client struct {
	t    testing.TB
	base string
	hc   *http.Client
}

type clientOpts struct {
	id    *identity // client certificate; nil for none
	http1 bool      // HTTP/1.1 only; default prefers HTTP/2
}

func newClient(t testing.TB, addr, serviceCert string, o clientOpts) *client {
	t.Helper()
	pemBytes, err := os.ReadFile(serviceCert)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatalf("%s holds no certificate", serviceCert)
	}
	tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13, MaxVersion: tls.VersionTLS13}
	if o.id != nil {
		c, err := tls.LoadX509KeyPair(o.id.cert, o.id.key)
		if err != nil {
			t.Fatal(err)
		}
		tc.Certificates = []tls.Certificate{c}
	}
	tr := &http.Transport{TLSClientConfig: tc, MaxIdleConnsPerHost: 32, Protocols: new(http.Protocols)}
	if o.http1 {
		tr.Protocols.SetHTTP1(true)
	} else {
		tr.Protocols.SetHTTP2(true)
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &client{t: t, base: "https://" + addr, hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// response is a fully read HTTP response.
type response struct {
	Status int
	Header http.Header
	Body   []byte
	Proto  string
}

func (r *response) String() string {
	return fmt.Sprintf("%d %s", r.Status, bytes.TrimSpace(r.Body))
}

// do sends a request; body may be nil, a string or []byte (sent as is) or
// any other value (sent as JSON). It fails the test on transport errors.
func (c *client) do(method, path string, body any, hdr ...string) *response {
	c.t.Helper()
	r, err := c.try(method, path, body, hdr...)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

// try is do without failing the test, for use from other goroutines and
// against processes that may be dying.
func (c *client) try(method, path string, body any, hdr ...string) (*response, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	case io.Reader:
		rd = b
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return &response{Status: resp.StatusCode, Header: resp.Header, Body: b, Proto: resp.Proto}, nil
}

// expect checks the status and decodes a JSON body into v (if not nil).
func expect(t testing.TB, r *response, status int, v any) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("got %s, want status %d", r, status)
	}
	if v != nil {
		if err := json.Unmarshal(r.Body, v); err != nil {
			t.Fatalf("decode %s: %v", r, err)
		}
	}
}

// expectError checks that r is exactly a coco JSON error with status and code.
func expectError(t testing.TB, r *response, status int, code string) {
	t.Helper()
	if r.Status != status {
		t.Errorf("got %s, want status %d %s", r, status, code)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q, want application/json", r, ct)
	}
	var outer map[string]json.RawMessage
	if err := json.Unmarshal(r.Body, &outer); err != nil || len(outer) != 1 || outer["error"] == nil {
		t.Errorf("%s: body is not exactly {\"error\":{...}} (%v)", r, err)
		return
	}
	var inner map[string]any
	if err := json.Unmarshal(outer["error"], &inner); err != nil || len(inner) != 2 {
		t.Errorf("%s: error is not exactly {\"code\",\"message\"} (%v)", r, err)
		return
	}
	gotCode, _ := inner["code"].(string)
	msg, _ := inner["message"].(string)
	if gotCode != code || msg == "" {
		t.Errorf("%s: want code %q and a message", r, code)
	}
}

// txStatus returns the status /node/tx reports for txid.
func (c *client) txStatus(txid string) string {
	c.t.Helper()
	var st struct {
		TransactionID string `json:"transaction_id"`
		Status        string `json:"status"`
	}
	expect(c.t, c.do("GET", "/node/tx?transaction_id="+txid, nil), http.StatusOK, &st)
	if st.TransactionID != txid {
		c.t.Fatalf("/node/tx answered for %q, asked for %q", st.TransactionID, txid)
	}
	return st.Status
}

// write POSTs a record and returns its transaction id.
func (c *client) write(table string, id uint64, msg string) string {
	c.t.Helper()
	return c.written(table, id, c.do("POST", "/app/log/"+table, map[string]any{"id": id, "msg": msg}))
}

// written checks the answer to a write of id and returns its transaction id.
func (c *client) written(table string, id uint64, r *response) string {
	c.t.Helper()
	if r.Status != http.StatusOK || string(bytes.TrimSpace(r.Body)) != "true" {
		c.t.Fatalf("POST /app/log/%s id %d: got %s, want 200 true", table, id, r)
	}
	txid := r.Header.Get("x-ms-ccf-transaction-id")
	if _, _, err := parseTxID(txid); err != nil {
		c.t.Fatalf("POST /app/log/%s id %d: header x-ms-ccf-transaction-id %q: %v", table, id, txid, err)
	}
	return txid
}

// read GETs a record; ok is false on 404.
func (c *client) read(table string, id uint64) (msg string, ok bool) {
	c.t.Helper()
	r := c.do("GET", "/app/log/"+table+"?id="+strconv.FormatUint(id, 10), nil)
	if r.Status == http.StatusNotFound {
		expectError(c.t, r, http.StatusNotFound, "ResourceNotFound")
		return "", false
	}
	var m struct {
		Msg string `json:"msg"`
	}
	expect(c.t, r, http.StatusOK, &m)
	return m.Msg, true
}

func parseTxID(s string) (view, seqno uint64, err error) {
	v, q, ok := strings.Cut(s, ".")
	if !ok {
		return 0, 0, fmt.Errorf("txid %q is not view.seqno", s)
	}
	if view, err = strconv.ParseUint(v, 10, 64); err != nil {
		return 0, 0, err
	}
	if seqno, err = strconv.ParseUint(q, 10, 64); err != nil {
		return 0, 0, err
	}
	if view == 0 || seqno == 0 {
		return 0, 0, fmt.Errorf("txid %q has a zero part", s)
	}
	return view, seqno, nil
}

func seqnoOf(t testing.TB, txid string) uint64 {
	t.Helper()
	_, s, err := parseTxID(txid)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// --- services ---

// node is a `coco node start` process.
type node struct {
	*proc
	dataDir, addr string
	args          []string
	user          identity
}

// startNode starts a new single-node service in dir/node with one member
// and extra flags, and has the member register one user and open the
// service; its output goes to DATA/node.log.
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
	n := &node{dataDir: filepath.Join(dir, "node"), addr: freeAddr(t), user: identity{cert: user.CertPath, key: user.KeyPath}}
	n.args = append([]string{"node", "start", "--data-dir", n.dataDir, "--rpc-address", n.addr, "--member", member.CertPath}, extra...)
	n.restart(t)
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := testproc.OpenService(ctx, n.addr, n.serviceCert(), member, user); err != nil {
		t.Fatal(err)
	}
	return n
}

// restart starts the node process again with the same arguments and waits
// until it serves requests.
func (n *node) restart(t testing.TB) {
	t.Helper()
	if err := os.MkdirAll(n.dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	n.proc = startProc(t, filepath.Join(n.dataDir, "node.log"), n.args...)
	waitFor(t, startTimeout, "the node's service certificate", func() (bool, string) {
		if n.exited() {
			t.Fatalf("coco node exited early (code %d):\n%s", n.exitCode(), tail(n.logPath, 40))
		}
		_, err := os.Stat(n.serviceCert())
		return err == nil, fmt.Sprint(err)
	})
	anon := newClient(t, n.addr, n.serviceCert(), clientOpts{})
	waitReady(t, anon, n.proc)
}

func (n *node) serviceCert() string { return filepath.Join(n.dataDir, "service_cert.pem") }

func (n *node) userClient(t testing.TB) *client {
	return newClient(t, n.addr, n.serviceCert(), clientOpts{id: &n.user})
}

// waitReady waits until the node serves requests (/node/ready/gov: a new
// service is not Open yet, so /node/ready/app would wait for its opening).
func waitReady(t testing.TB, c *client, p *proc) {
	t.Helper()
	waitFor(t, startTimeout, "GET /node/ready/gov -> 204", func() (bool, string) {
		if p.exited() {
			t.Fatalf("coco exited early (code %d):\n%s", p.exitCode(), tail(p.logPath, 40))
		}
		r, err := c.try("GET", "/node/ready/gov", nil)
		if err != nil {
			return false, err.Error()
		}
		return r.Status == http.StatusNoContent, r.String()
	})
}

// sandboxRun is a running `coco sandbox`.
type sandboxRun struct {
	*proc
	dir  string
	info *sandbox.Info
}

// startSandbox runs `coco sandbox --dir dir args...` and waits until it
// says the service is open (sandbox.json may be left from an earlier run).
func startSandbox(t testing.TB, dir string, args ...string) *sandboxRun {
	t.Helper()
	logPath := filepath.Join(filepath.Dir(dir), filepath.Base(dir)+".sandbox.log")
	_ = os.Remove(logPath)
	p := startProc(t, logPath, append([]string{"sandbox", "--dir", dir}, args...)...)
	waitFor(t, startTimeout, "coco sandbox to open", func() (bool, string) {
		if p.exited() {
			t.Fatalf("coco sandbox exited early (code %d):\n%s", p.exitCode(), tail(logPath, 40))
		}
		b, _ := os.ReadFile(logPath)
		return bytes.Contains(b, []byte("coco sandbox is open")), "no 'coco sandbox is open' line yet"
	})
	info, err := sandbox.Load(filepath.Join(dir, "sandbox.json"))
	if err != nil {
		t.Fatal(err)
	}
	return &sandboxRun{proc: p, dir: dir, info: info}
}

func (s *sandboxRun) client(t testing.TB, user int) *client {
	u := s.info.Users[user]
	return newClient(t, s.info.Nodes[0].RPCAddress, s.info.ServiceCert, clientOpts{id: &identity{cert: u.Cert, key: u.Key}})
}

func (s *sandboxRun) anon(t testing.TB) *client {
	return newClient(t, s.info.Nodes[0].RPCAddress, s.info.ServiceCert, clientOpts{})
}

// nodeClient is a client of node i of the sandbox, as user (or anonymous
// when user < 0).
func (s *sandboxRun) nodeClient(t testing.TB, i, user int) *client {
	o := clientOpts{}
	if user >= 0 {
		u := s.info.Users[user]
		o.id = &identity{cert: u.Cert, key: u.Key}
	}
	return newClient(t, s.info.Nodes[i].RPCAddress, s.info.ServiceCert, o)
}

// pidAlive reports whether pid is a live (not zombie) process.
func pidAlive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return !(i > 0 && i+2 < len(b) && b[i+2] == 'Z')
}

// ledgerCLI skips t if this build of coco has no `ledger verify`/`ledger read`.
func ledgerCLI(t *testing.T) {
	t.Helper()
	out, _ := runCoco(t, "ledger", "--help")
	if !strings.Contains(out, "verify") || !strings.Contains(out, "read") {
		t.Skip("coco ledger verify/read are not implemented in this build (internal/cli/ledger.go is still a skeleton)")
	}
}

// syncMap is a mutex-guarded map for concurrent writers.
type syncMap[K comparable, V any] struct {
	mu sync.Mutex
	m  map[K]V
}

func (s *syncMap[K, V]) set(k K, v V) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[K]V{}
	}
	s.m[k] = v
}

func (s *syncMap[K, V]) snapshot() map[K]V {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[K]V, len(s.m))
	for k, v := range s.m {
		out[k] = v
	}
	return out
}
