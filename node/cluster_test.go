package node

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cocoledger/coco/app"
	"github.com/cocoledger/coco/app/logging"
	cococrypto "github.com/cocoledger/coco/crypto"
	"github.com/cocoledger/coco/gov"
	govclient "github.com/cocoledger/coco/gov/client"
)

// Multi-node tests: in-process services of a few nodes on loopback, with
// fast ticks. Every wait polls a condition against a deadline; sleeps only
// pace the polling.

const (
	clusterTick    = 5 * time.Millisecond
	clusterTimeout = 20 * time.Second // deadline of every wait (generous for -race)
)

// whoamiMap is where the whoami test application records its callers.
const whoamiMap = "public:test.whoami"

// whoamiApp has one write endpoint that records and answers the caller's
// identity as the node that executed it saw it: it shows whether a write
// forwarded by a backup ran as its original caller.
type whoamiApp struct{}

func (whoamiApp) Name() string          { return "whoami" }
func (whoamiApp) IndexedMaps() []string { return nil }
func (whoamiApp) Endpoints() []app.Endpoint {
	return []app.Endpoint{{
		Method: http.MethodPost, Path: "/app/whoami", Mode: app.ReadWrite, Summary: "Record and return the caller",
		Handler: func(c *app.Context) (*app.Response, error) {
			if err := c.Tx.Put(whoamiMap, c.Caller.ID, []byte(c.Caller.Kind)); err != nil {
				return nil, err
			}
			return app.JSON(map[string]string{"kind": c.Caller.Kind, "id": c.Caller.ID}), nil
		},
	}}
}

// clusterConfig is a fast configuration for one node of a test service.
func clusterConfig(t *testing.T) Config {
	logger := slog.New(slog.DiscardHandler)
	if os.Getenv("COCO_TEST_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return Config{
		DataDir: t.TempDir(), RPCAddress: "127.0.0.1:0", NodeAddress: "127.0.0.1:0",
		Apps:         []app.Application{logging.App{}, whoamiApp{}},
		TickInterval: clusterTick, SigInterval: 10 * time.Millisecond,
		ElectionTimeout: 300 * time.Millisecond,
		Logger:          logger,
	}
}

// testUser is a user key pair and the client that presents it.
type testUser struct {
	cert   *x509.Certificate
	client *http.Client
}

// cluster is an in-process service. Node 0 created it with one member,
// who opened it; the others joined it and the member trusted them.
type cluster struct {
	t      *testing.T
	nodes  []*testNode
	pool   *x509.CertPool    // the service certificate
	users  []*testUser       // users[0] and users[1] are registered
	member *testMember       // the only member; Active
	gov    *govclient.Client // the member's client of node 0
	anon   *http.Client
	closed map[*testNode]bool
	mu     sync.Mutex
}

// newCluster starts size nodes; mod may change node i's configuration.
// It returns once every node is a trusted voter and all agree on the
// primary.
func newCluster(t *testing.T, size int, mod func(i int, cfg *Config)) *cluster {
	t.Helper()
	c := &cluster{t: t, closed: map[*testNode]bool{}}
	var pairs []tls.Certificate
	for range 3 {
		_, pair := newUser(t, t.TempDir())
		cert, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		c.users = append(c.users, &testUser{cert: cert})
		pairs = append(pairs, pair)
	}
	c.member = newTestMember(t)
	cfg := clusterConfig(t)
	cfg.Members = []MemberConfig{{CertFile: c.member.certPath}}
	if mod != nil {
		mod(0, &cfg)
	}
	first := c.start(cfg)
	c.gov = c.member.client(t, first.n.Addr(), first.n.ServiceCertPath())
	openService(t, c.gov, c.users[0].cert, c.users[1].cert)
	svc, err := cococrypto.ReadCertFile(first.n.ServiceCertPath())
	if err != nil {
		t.Fatal(err)
	}
	c.pool = x509.NewCertPool()
	c.pool.AddCert(svc)
	c.anon = c.clientFor(nil)
	first.anon = c.anon
	for i, u := range c.users {
		u.client = c.clientFor([]tls.Certificate{pairs[i]})
	}
	t.Cleanup(c.closeAll)
	for i := 1; i < size; i++ {
		cfg := clusterConfig(t)
		cfg.Join = &JoinConfig{Target: first.n.Addr(), ServiceCertFile: first.n.ServiceCertPath(), RetryInterval: 10 * time.Millisecond}
		if mod != nil {
			mod(i, &cfg)
		}
		tn := c.join(cfg)
		tn.anon = c.anon
	}
	c.waitVoters(c.nodes...)
	return c
}

func (c *cluster) clientFor(certs []tls.Certificate) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: c.pool, Certificates: certs, MinVersion: tls.VersionTLS13},
		MaxConnsPerHost: 16, MaxIdleConnsPerHost: 16,
	}}
}

func (c *cluster) start(cfg Config) *testNode {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	n, err := Start(ctx, cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	tn := &testNode{n: n, cfg: cfg}
	c.mu.Lock()
	c.nodes = append(c.nodes, tn)
	c.mu.Unlock()
	return tn
}

// startResult is what Start returned.
type startResult struct {
	n   *Node
	err error
}

// startAsync runs Start on its own goroutine: a joiner's Start returns
// only once the service trusts it.
func startAsync(ctx context.Context, cfg Config) chan startResult {
	started := make(chan startResult, 1)
	go func() {
		n, err := Start(ctx, cfg)
		started <- startResult{n, err}
	}()
	return started
}

// join starts a joining node and has the member trust it once it is
// Pending.
func (c *cluster) join(cfg Config) *testNode {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	started := startAsync(ctx, cfg)
	trusted := map[string]bool{}
	for {
		select {
		case r := <-started:
			if r.err != nil {
				c.t.Fatal(r.err)
			}
			tn := &testNode{n: r.n, cfg: cfg}
			c.mu.Lock()
			c.nodes = append(c.nodes, tn)
			c.mu.Unlock()
			return tn
		case <-time.After(5 * time.Millisecond):
		}
		p := c.primary(c.nodes...)
		views, err := c.nodesOf(p)
		if err != nil {
			continue
		}
		for id, v := range views {
			if v.Status == gov.NodePending && !trusted[id] {
				trusted[id] = true
				pass(c.t, c.govOn(p), "transition_node_to_trusted", map[string]any{"node_id": id})
			}
		}
	}
}

// govOn is the member's governance client for node tn.
func (c *cluster) govOn(tn *testNode) *govclient.Client {
	return c.member.client(c.t, tn.n.Addr(), tn.n.ServiceCertPath())
}

// stop closes one node.
func (c *cluster) stop(tn *testNode) {
	c.mu.Lock()
	done := c.closed[tn]
	c.closed[tn] = true
	c.mu.Unlock()
	if !done {
		tn.n.fwd.client.CloseIdleConnections()
		if err := tn.n.Close(); err != nil {
			c.t.Errorf("close %s: %v", tn.n.NodeID(), err)
		}
	}
}

// closeAll closes every node at once, after dropping the idle connections
// that would hold an HTTP server's graceful shutdown.
func (c *cluster) closeAll() {
	for _, u := range c.users {
		if u.client != nil {
			u.client.CloseIdleConnections()
		}
	}
	if c.anon != nil {
		c.anon.CloseIdleConnections()
	}
	c.mu.Lock()
	nodes := append([]*testNode(nil), c.nodes...)
	c.mu.Unlock()
	for _, tn := range nodes {
		tn.n.fwd.client.CloseIdleConnections()
	}
	var wg sync.WaitGroup
	for _, tn := range nodes {
		wg.Go(func() { c.stop(tn) })
	}
	wg.Wait()
}

// call sends one request; unlike testNode.do it returns transport errors,
// for polling.
func call(client *http.Client, addr, method, path, body string, hdr ...string) (int, http.Header, []byte, error) {
	req, err := http.NewRequest(method, "https://"+addr+path, strings.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b, err
}

// eventually polls cond until it holds, failing the test with cond's last
// explanation at the deadline.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(clusterTimeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; last: %s", what, clusterTimeout, why)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func errorCode(body []byte) string {
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil || e.Error.Message == "" {
		return ""
	}
	return e.Error.Code
}

// nodesOf is GET /node/network/nodes on tn.
func (c *cluster) nodesOf(tn *testNode) (map[string]nodeView, error) {
	code, _, b, err := call(c.anon, tn.n.Addr(), "GET", "/node/network/nodes", "")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("%d %s", code, b)
	}
	var out struct{ Nodes []nodeView }
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	m := map[string]nodeView{}
	for _, v := range out.Nodes {
		m[v.NodeID] = v
	}
	return m, nil
}

// primaryIDOf is primary_id in GET /node/network on tn.
func (c *cluster) primaryIDOf(tn *testNode) (string, error) {
	code, _, b, err := call(c.anon, tn.n.Addr(), "GET", "/node/network", "")
	if err != nil {
		return "", err
	}
	var out struct {
		PrimaryID string `json:"primary_id"`
	}
	if code != http.StatusOK || json.Unmarshal(b, &out) != nil {
		return "", fmt.Errorf("%d %s", code, b)
	}
	return out.PrimaryID, nil
}

// waitVoters waits until every node in live lists exactly live as Trusted
// voters (plus retired nodes out of the configuration) and all name the
// same primary, one of live.
func (c *cluster) waitVoters(live ...*testNode) {
	c.t.Helper()
	ids := map[string]bool{}
	for _, tn := range live {
		ids[tn.n.NodeID()] = true
	}
	eventually(c.t, "every node a trusted voter, one primary", func() (bool, string) {
		primary := ""
		for _, tn := range live {
			view, err := c.nodesOf(tn)
			if err != nil {
				return false, err.Error()
			}
			for id, v := range view {
				switch {
				case ids[id] && (v.Status != gov.NodeTrusted || v.Membership != "Voter"):
					return false, fmt.Sprintf("%s sees %s %s/%s", tn.n.NodeID()[:8], id[:8], v.Status, v.Membership)
				case !ids[id] && (v.Status != gov.NodeRetired || v.Membership != "None"):
					return false, fmt.Sprintf("%s sees extra node %s %s/%s", tn.n.NodeID()[:8], id[:8], v.Status, v.Membership)
				}
			}
			for id := range ids {
				if _, ok := view[id]; !ok {
					return false, fmt.Sprintf("%s does not list %s", tn.n.NodeID()[:8], id[:8])
				}
			}
			p, err := c.primaryIDOf(tn)
			if err != nil {
				return false, err.Error()
			}
			if !ids[p] || (primary != "" && p != primary) {
				return false, fmt.Sprintf("%s says the primary is %q (others %q)", tn.n.NodeID()[:8], p, primary)
			}
			primary = p
		}
		return true, ""
	})
}

// primary waits for a node of live that can order writes.
func (c *cluster) primary(live ...*testNode) *testNode {
	c.t.Helper()
	var p *testNode
	eventually(c.t, "a writable primary", func() (bool, string) {
		for _, tn := range live {
			if tn.n.cons.Status().WritesReady {
				p = tn
				return true, ""
			}
		}
		return false, "no node is writable"
	})
	return p
}

func (c *cluster) backups(p *testNode, live ...*testNode) []*testNode {
	var out []*testNode
	for _, tn := range live {
		if tn != p {
			out = append(out, tn)
		}
	}
	return out
}

// write posts a log message through tn, retrying while the service has no
// primary (503), and fails on any other answer than 200.
func (c *cluster) write(tn *testNode, client *http.Client, id int, msg string) {
	c.t.Helper()
	body := fmt.Sprintf(`{"id":%d,"msg":%q}`, id, msg)
	eventually(c.t, "write "+strconv.Itoa(id)+" through "+tn.n.NodeID()[:8], func() (bool, string) {
		code, _, b, err := call(client, tn.n.Addr(), "POST", "/app/log/public", body)
		switch {
		case err != nil:
			return false, err.Error()
		case code == http.StatusServiceUnavailable:
			return false, string(b)
		case code != http.StatusOK:
			c.t.Fatalf("write %d through %s: %d %s", id, tn.n.NodeID()[:8], code, b)
		}
		return true, ""
	})
}

// forwardedCount reads coco_forwarded_requests_total from tn's /metrics.
func (c *cluster) forwardedCount(t *testing.T, tn *testNode) float64 {
	t.Helper()
	code, _, b, err := call(c.anon, tn.n.Addr(), "GET", "/metrics", "")
	if err != nil || code != 200 {
		t.Fatalf("metrics: %d %v", code, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "coco_forwarded_requests_total "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatal("no coco_forwarded_requests_total in /metrics")
	return 0
}

// nodeKeyClient is a client presenting a self-signed certificate for key,
// as a joining node does, and the node id that key gives.
func (c *cluster) nodeKeyClient(t *testing.T, key *ecdsa.PrivateKey) (*http.Client, string) {
	t.Helper()
	if key == nil {
		var err error
		if key, err = cococrypto.GenerateKey(); err != nil {
			t.Fatal(err)
		}
	}
	self, err := cococrypto.SelfSignedCert(key, "coco joining node", time.Hour, false)
	if err != nil {
		t.Fatal(err)
	}
	id, err := cococrypto.KeyID(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	cl := c.clientFor([]tls.Certificate{{Certificate: [][]byte{self.Raw}, PrivateKey: key, Leaf: self}})
	t.Cleanup(cl.CloseIdleConnections)
	return cl, id
}

// nodeCertClient is a client presenting tn's endorsed node certificate, as
// a backup forwarding a request does.
func (c *cluster) nodeCertClient(t *testing.T, tn *testNode) *http.Client {
	cl := c.clientFor([]tls.Certificate{tn.n.id.tlsCert()})
	t.Cleanup(cl.CloseIdleConnections)
	return cl
}

func joinBody(nodeAddr, rpcAddr string) string {
	b, _ := json.Marshal(joinRequest{NodeAddress: nodeAddr, RPCAddress: rpcAddr})
	return string(b)
}

// committedNodes is the nodes map in tn's committed state; headNodes in its
// head state (with this primary's pending writes).
func committedNodes(tn *testNode) []gov.NodeInfo { return tn.n.nodes(tn.n.store.BeginReadOnly()) }
func headNodes(tn *testNode) []gov.NodeInfo      { return tn.n.nodes(tn.n.store.Begin()) }

func summary(nodes []gov.NodeInfo) string {
	var parts []string
	for _, ni := range nodes {
		parts = append(parts, ni.NodeID[:8]+":"+ni.Status+"@"+ni.NodeAddress)
	}
	return strings.Join(parts, " ")
}

// TestClusterJoin: two nodes join a service whose first node trusts joiners
// at once; all three end up trusted voters that agree on the primary, hold
// the service's secrets, and serve writes and reads.
func TestClusterJoin(t *testing.T) {
	c := newCluster(t, 3, nil)
	first := c.nodes[0]
	for _, tn := range c.nodes[1:] {
		for _, f := range []string{ServiceKeyFile, LedgerSecretsFile, ServiceCertFile, NodeCertFile} {
			if _, err := os.Stat(filepath.Join(tn.cfg.DataDir, f)); err != nil {
				t.Fatalf("joined node lacks %s: %v", f, err)
			}
		}
		if err := tn.n.id.nodeCert.CheckSignatureFrom(first.n.id.serviceCert); err != nil {
			t.Fatalf("joined node's certificate is not endorsed by the service: %v", err)
		}
		if !tn.n.id.serviceCert.Equal(first.n.id.serviceCert) {
			t.Fatal("joined node has another service certificate")
		}
	}
	// Every node takes writes (backups forward them) and reads them back.
	for i, tn := range c.nodes {
		c.write(tn, c.users[0].client, 100+i, fmt.Sprintf("via %d", i))
	}
	for _, tn := range c.nodes {
		for i := range c.nodes {
			if code, _, b := tn.do(t, c.users[0].client, "GET", fmt.Sprintf("/app/log/public?id=%d", 100+i), ""); code != 200 || string(b) != fmt.Sprintf(`{"msg":"via %d"}`, i) {
				t.Fatalf("read %d on %s: %d %s", 100+i, tn.n.NodeID()[:8], code, b)
			}
		}
	}
}

// TestJoinPendingUntilTrusted: until the members trust it, a joiner stays
// Pending and gets no secrets; its Start polls until its context ends.
func TestJoinPendingUntilTrusted(t *testing.T) {
	c := newCluster(t, 1, nil)
	first := c.nodes[0]

	jcfg := clusterConfig(t)
	jcfg.Join = &JoinConfig{Target: first.n.Addr(), ServiceCertFile: first.n.ServiceCertPath(), RetryInterval: 10 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := startAsync(ctx, jcfg)
	t.Cleanup(func() {
		cancel()
		if r := <-started; r.n != nil {
			r.n.Close()
		}
	})

	// The joiner is registered Pending (on the committed state) while its
	// Start keeps waiting.
	eventually(t, "joiner registered Pending", func() (bool, string) {
		view, err := c.nodesOf(first)
		if err != nil {
			return false, err.Error()
		}
		for id, v := range view {
			if id != first.n.NodeID() {
				return v.Status == gov.NodePending && v.Membership == "None", fmt.Sprintf("%s %s", v.Status, v.Membership)
			}
		}
		return false, "not listed"
	})
	select {
	case r := <-started:
		t.Fatalf("Start returned while the node is Pending: %v", r.err)
	default:
	}

	// The same answer to a raw join request: Pending, and no secrets.
	cl, id := c.nodeKeyClient(t, nil)
	for attempt := range 2 { // asking again changes nothing
		code, _, b, err := call(cl, first.n.Addr(), "POST", "/node/join", joinBody("127.0.0.1:1", "127.0.0.1:2"))
		if err != nil || code != http.StatusOK {
			t.Fatalf("join attempt %d: %d %s %v", attempt, code, b, err)
		}
		var got map[string]any
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if got["status"] != gov.NodePending || got["node_id"] != id {
			t.Fatalf("join attempt %d: %s", attempt, b)
		}
		for _, secret := range []string{"service_key", "ledger_secrets", "node_cert", "service_cert", "nodes"} {
			if _, ok := got[secret]; ok {
				t.Fatalf("a pending node got %s: %s", secret, b)
			}
		}
	}
	for _, ni := range committedNodes(first) {
		if ni.NodeID == id && ni.Status != gov.NodePending {
			t.Fatalf("raw joiner is %s", ni.Status)
		}
	}

	cancel()
	var r startResult
	select {
	case r = <-started:
	case <-time.After(clusterTimeout):
		t.Fatal("Start did not return after its context was cancelled")
	}
	started <- r // for the cleanup
	if r.n != nil || !errors.Is(r.err, context.Canceled) {
		t.Fatalf("Start = %v, %v; want an error wrapping context.Canceled", r.n, r.err)
	}
	for _, f := range []string{ServiceKeyFile, LedgerSecretsFile, NodeCertFile} {
		if _, err := os.Stat(filepath.Join(jcfg.DataDir, f)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("a node that never was trusted has %s (%v)", f, err)
		}
	}
}

// TestJoinValidation: bad join requests are JSON errors that change
// nothing, whether sent to the primary or forwarded by a backup.
func TestJoinValidation(t *testing.T) {
	c := newCluster(t, 2, nil)
	p := c.primary(c.nodes...)
	b := c.backups(p, c.nodes...)[0]
	cl, _ := c.nodeKeyClient(t, nil)
	good := "127.0.0.1:1"
	cases := []struct {
		name   string
		client *http.Client
		body   string
		code   int
		err    string
	}{
		{"malformed", cl, `{"node_address":`, 400, "InvalidInput"},
		{"empty body", cl, ``, 400, "InvalidInput"},
		{"not an object", cl, `[]`, 400, "InvalidInput"},
		{"wrong type", cl, `{"node_address":1,"rpc_address":"127.0.0.1:1"}`, 400, "InvalidInput"},
		{"unknown field", cl, `{"node_address":"127.0.0.1:1","rpc_address":"127.0.0.1:1","status":"Trusted"}`, 400, "InvalidInput"},
		{"trailing data", cl, joinBody(good, good) + `{"node_address":"x"}`, 400, "InvalidInput"},
		{"missing addresses", cl, `{}`, 400, "InvalidInput"},
		{"missing rpc address", cl, `{"node_address":"127.0.0.1:1"}`, 400, "InvalidInput"},
		{"unspecified IPv4", cl, joinBody("0.0.0.0:1", good), 400, "InvalidInput"},
		{"unspecified IPv6", cl, joinBody("[::]:1", good), 400, "InvalidInput"},
		{"unspecified rpc address", cl, joinBody(good, "0.0.0.0:1"), 400, "InvalidInput"},
		{"no host", cl, joinBody(":1", good), 400, "InvalidInput"},
		{"port 0", cl, joinBody("host:0", good), 400, "InvalidInput"},
		{"port too large", cl, joinBody("host:65536", good), 400, "InvalidInput"},
		{"named port", cl, joinBody("host:http", good), 400, "InvalidInput"},
		{"no port", cl, joinBody(good, "host"), 400, "InvalidInput"},
		{"no client certificate", c.anon, joinBody(good, good), 401, "InvalidAuthenticationInfo"},
	}
	for _, target := range []*testNode{p, b} {
		name := "primary"
		if target == b {
			name = "backup"
		}
		t.Run(name, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					code, h, body, err := call(tc.client, target.n.Addr(), "POST", "/node/join", tc.body)
					if err != nil {
						t.Fatal(err)
					}
					if code != tc.code || h.Get("Content-Type") != "application/json" || errorCode(body) != tc.err {
						t.Fatalf("got %d %s %s; want %d %s", code, h.Get("Content-Type"), body, tc.code, tc.err)
					}
				})
			}
		})
	}
	// Nothing was written, committed or pending, and the service still
	// works.
	c.write(b, c.users[0].client, 1, "after bad joins")
	for _, tn := range c.nodes {
		if got := committedNodes(tn); len(got) != 2 {
			t.Fatalf("%s: the nodes map has %d entries: %s", tn.n.NodeID()[:8], len(got), summary(got))
		}
	}
	if got := headNodes(p); len(got) != 2 {
		t.Fatalf("the primary's head has %d nodes: %s", len(got), summary(got))
	}
}

// TestForwardingAuthentication: only trusted nodes may forward, forwarded
// writes run as their original caller, and the primary checks that caller.
func TestForwardingAuthentication(t *testing.T) {
	c := newCluster(t, 2, nil)
	p := c.primary(c.nodes...)
	b := c.backups(p, c.nodes...)[0]
	user, other, stranger := c.users[0], c.users[1], c.users[2]
	b64 := func(cert *x509.Certificate) string { return base64.StdEncoding.EncodeToString(cert.Raw) }
	asBackup := c.nodeCertClient(t, b)
	pendingCl, _ := c.nodeKeyClient(t, nil)
	whoami := func(t *testing.T, cl *http.Client, target *testNode, hdr ...string) (int, []byte) {
		t.Helper()
		code, _, body, err := call(cl, target.n.Addr(), "POST", "/app/whoami", "", hdr...)
		if err != nil {
			t.Fatal(err)
		}
		return code, body
	}

	t.Run("refused", func(t *testing.T) {
		fwdBefore := c.forwardedCount(t, b)
		for _, tc := range []struct {
			name   string
			client *http.Client
			target *testNode
			hdr    []string
		}{
			{"user claims to forward itself to primary", user.client, p, []string{ForwardedHeader, b.n.NodeID(), ForwardedCallerHeader, b64(user.cert)}},
			{"user claims to forward another user to primary", user.client, p, []string{ForwardedHeader, b.n.NodeID(), ForwardedCallerHeader, b64(other.cert)}},
			{"stranger claims to forward a user to primary", stranger.client, p, []string{ForwardedHeader, b.n.NodeID(), ForwardedCallerHeader, b64(user.cert)}},
			{"stranger claims to forward a user to backup", stranger.client, b, []string{ForwardedHeader, p.n.NodeID(), ForwardedCallerHeader, b64(user.cert)}},
			{"anonymous claims to forward a user to primary", c.anon, p, []string{ForwardedHeader, "x", ForwardedCallerHeader, b64(user.cert)}},
			{"unendorsed node key claims to forward", pendingCl, p, []string{ForwardedHeader, "x", ForwardedCallerHeader, b64(user.cert)}},
			{"unregistered cert to backup", stranger.client, b, nil},
			{"no cert to backup", c.anon, b, nil},
			// A trusted node forwarding: the primary checks the caller it names.
			{"node forwards an unregistered caller", asBackup, p, []string{ForwardedHeader, b.n.NodeID(), ForwardedCallerHeader, b64(stranger.cert)}},
			{"node forwards an anonymous caller", asBackup, p, []string{ForwardedHeader, b.n.NodeID()}},
			{"node forwards a bad caller header", asBackup, p, []string{ForwardedHeader, b.n.NodeID(), ForwardedCallerHeader, "%%%"}},
			{"node forwards a non-certificate", asBackup, p, []string{ForwardedHeader, b.n.NodeID(), ForwardedCallerHeader, base64.StdEncoding.EncodeToString([]byte("not DER"))}},
			{"node's own certificate is no user", asBackup, p, nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				code, body := whoami(t, tc.client, tc.target, tc.hdr...)
				if code != http.StatusUnauthorized || errorCode(body) != "InvalidAuthenticationInfo" {
					t.Fatalf("got %d %s; want 401 InvalidAuthenticationInfo", code, body)
				}
			})
		}
		// The backup refused its share itself, forwarding nothing.
		if after := c.forwardedCount(t, b); after != fwdBefore {
			t.Fatalf("the backup forwarded %v refused requests", after-fwdBefore)
		}
		if _, ok := p.n.store.Begin().Get(whoamiMap, cococrypto.CertID(stranger.cert)); ok {
			t.Fatal("a refused caller's write was recorded")
		}
	})

	t.Run("forwarded as the caller", func(t *testing.T) {
		fwdBefore := c.forwardedCount(t, b)
		for _, u := range []*testUser{user, other} {
			var code int
			var body []byte
			eventually(t, "write through the backup", func() (bool, string) {
				code, body = whoami(t, u.client, b)
				return code != http.StatusServiceUnavailable, string(body)
			})
			want := fmt.Sprintf(`{"id":%q,"kind":"user"}`, cococrypto.CertID(u.cert))
			if code != 200 || string(body) != want {
				t.Fatalf("whoami through the backup: %d %s; want %s", code, body, want)
			}
			if v, ok := p.n.store.BeginReadOnly().Get(whoamiMap, cococrypto.CertID(u.cert)); !ok || string(v) != "user" {
				t.Fatalf("the primary did not commit the forwarded write as the caller: %q %v", v, ok)
			}
		}
		if after := c.forwardedCount(t, b); after < fwdBefore+2 {
			t.Fatalf("the backup forwarded %v requests; want 2", after-fwdBefore)
		}
		// Without x-coco-forwarded the caller header means nothing: a user
		// stays itself, directly or through a backup.
		for _, target := range []*testNode{p, b} {
			code, body := whoami(t, user.client, target, ForwardedCallerHeader, b64(other.cert))
			if want := fmt.Sprintf(`{"id":%q,"kind":"user"}`, cococrypto.CertID(user.cert)); code != 200 || string(body) != want {
				t.Fatalf("caller header alone: %d %s; want %s", code, body, want)
			}
		}
		// A trusted node naming a registered caller is believed.
		code, body := whoami(t, asBackup, p, ForwardedHeader, b.n.NodeID(), ForwardedCallerHeader, b64(user.cert))
		if code != 200 || !strings.Contains(string(body), cococrypto.CertID(user.cert)) {
			t.Fatalf("forwarded by a trusted node: %d %s", code, body)
		}
	})

	t.Run("removed user", func(t *testing.T) {
		// The members remove other from the users.
		pass(t, c.govOn(p), "remove_user", map[string]any{"user_id": cococrypto.CertID(other.cert)})
		// The primary refuses the removed user even when a trusted node
		// forwards it (the backup may not know of the removal yet).
		code, body := whoami(t, asBackup, p, ForwardedHeader, b.n.NodeID(), ForwardedCallerHeader, b64(other.cert))
		if code != http.StatusUnauthorized || errorCode(body) != "InvalidAuthenticationInfo" {
			t.Fatalf("removed user forwarded by a trusted node: %d %s", code, body)
		}
		// Through the backup: refused, by whichever of the two checks it
		// first; the remaining user still writes.
		code, body = whoami(t, other.client, b)
		if code != http.StatusUnauthorized || errorCode(body) != "InvalidAuthenticationInfo" {
			t.Fatalf("removed user through the backup: %d %s", code, body)
		}
		if code, body := whoami(t, user.client, b); code != 200 {
			t.Fatalf("remaining user through the backup: %d %s", code, body)
		}
	})
}

// TestRetire: a retired node leaves the configuration, the others keep
// committing, and it can neither join again nor forward.
func TestRetire(t *testing.T) {
	for _, tc := range []struct {
		size   int
		victim string
	}{{3, "backup"}, {3, "primary"}, {2, "backup"}} {
		victim := tc.victim
		t.Run(fmt.Sprintf("%d-%s", tc.size, victim), func(t *testing.T) {
			// With two voters the victim's acknowledgement is needed to
			// commit its own removal: it must stay a member until then.
			c := newCluster(t, tc.size, nil)
			p := c.primary(c.nodes...)
			v := c.backups(p, c.nodes...)[0]
			if victim == "primary" {
				v = p
			}
			gc := c.govOn(p)
			pass(t, gc, "remove_node", map[string]any{"node_id": v.n.NodeID()})
			rest := c.backups(v, c.nodes...)
			// On the remaining nodes: the victim is Retired and out of the
			// configuration, the two others are voters with one primary.
			c.waitVoters(rest...)
			// The member set follows the applied configuration shortly
			// after (the membership watcher runs on a signal).
			for _, tn := range rest {
				eventually(t, tn.n.NodeID()[:8]+" to stop accepting raft messages from the retired node", func() (bool, string) {
					return !tn.n.isMember(v.n.id.raftID), "still a member"
				})
			}
			np := c.primary(rest...)
			if np == v {
				t.Fatal("the retired node is primary")
			}
			// Both keep committing writes, each visible on the other.
			for i, tn := range rest {
				c.write(tn, c.users[0].client, 200+i, fmt.Sprintf("after retire %d", i))
			}
			for _, tn := range rest {
				for i := range rest {
					if code, _, b := tn.do(t, c.users[0].client, "GET", fmt.Sprintf("/app/log/public?id=%d", 200+i), ""); code != 200 || string(b) != fmt.Sprintf(`{"msg":"after retire %d"}`, i) {
						t.Fatalf("read %d on %s: %d %s", 200+i, tn.n.NodeID()[:8], code, b)
					}
				}
			}
			// The retired node cannot join again, with its node key ...
			key, ok := v.n.id.nodeKey.(*ecdsa.PrivateKey)
			if !ok {
				t.Fatalf("node key is %T", v.n.id.nodeKey)
			}
			cl, id := c.nodeKeyClient(t, key)
			if id != v.n.NodeID() {
				t.Fatal("node key gives another id")
			}
			for _, tn := range rest {
				code, _, body, err := call(cl, tn.n.Addr(), "POST", "/node/join", joinBody("127.0.0.1:1", "127.0.0.1:2"))
				if err != nil || code != http.StatusForbidden || errorCode(body) != "NodeRetired" {
					t.Fatalf("retired node joins through %s: %d %s %v", tn.n.NodeID()[:8], code, body, err)
				}
			}
			// ... nor forward requests with its node certificate.
			code, _, body, err := call(c.nodeCertClient(t, v), np.n.Addr(), "POST", "/app/whoami", "",
				ForwardedHeader, v.n.NodeID(), ForwardedCallerHeader, base64.StdEncoding.EncodeToString(c.users[0].cert.Raw))
			if err != nil || code != http.StatusUnauthorized || errorCode(body) != "InvalidAuthenticationInfo" {
				t.Fatalf("retired node forwards: %d %s %v", code, body, err)
			}
		})
	}
}

// TestReadBarrier: a write acknowledged by the primary is seen at once by a
// default (linearizable) read on any backup.
func TestReadBarrier(t *testing.T) {
	c := newCluster(t, 3, nil)
	p := c.primary(c.nodes...)
	bs := c.backups(p, c.nodes...)
	user := c.users[0].client
	for i := range 24 {
		msg := fmt.Sprintf("m%d", i)
		if code, _, b := p.do(t, user, "POST", "/app/log/public", fmt.Sprintf(`{"id":%d,"msg":%q}`, i%4, msg)); code != 200 {
			t.Fatalf("write %d: %d %s", i, code, b)
		}
		b := bs[i%len(bs)]
		if code, _, body := b.do(t, user, "GET", fmt.Sprintf("/app/log/public?id=%d", i%4), ""); code != 200 || string(body) != fmt.Sprintf(`{"msg":%q}`, msg) {
			t.Fatalf("read %d on backup %s right after the write: %d %s", i, b.n.NodeID()[:8], code, body)
		}
	}
	// A local read skips the barrier but still answers.
	if code, _, body := bs[0].do(t, user, "GET", "/app/log/public?id=0", "", ReadConsistencyHeader, "local"); code != 200 {
		t.Fatalf("local read: %d %s", code, body)
	}
}

// TestJoinSecretsOnlyWhenCommitted: a node whose admission is ordered but
// not committed (here: the primary lost its quorum) gets no secrets, even
// when it asks again: the head state may still lose that admission.
func TestJoinSecretsOnlyWhenCommitted(t *testing.T) {
	// Without its quorum the primary stays primary for at least one
	// election timeout (raft's quorum check): make it long enough for the
	// few requests below. (Not longer: a new service's first node waits
	// one election timeout before it leads.)
	c := newCluster(t, 2, func(i int, cfg *Config) {
		if i == 0 {
			cfg.ElectionTimeout = time.Second
		}
	})
	p := c.primary(c.nodes...)
	gc := c.govOn(p)

	// A joiner registers (Pending, committed) and a member proposes to
	// trust it, while the service has its quorum.
	cl, id := c.nodeKeyClient(t, nil)
	body := joinBody("127.0.0.1:1", "127.0.0.1:2")
	if code, _, b, err := call(cl, p.n.Addr(), "POST", "/node/join", body); err != nil || code != http.StatusOK {
		t.Fatalf("join: %d %s %v", code, b, err)
	}
	prop, err := gc.Propose(t.Context(), govclient.Proposal{Actions: []govclient.Action{{Name: "transition_node_to_trusted", Args: map[string]any{"node_id": id}}}})
	if err != nil {
		t.Fatal(err)
	}

	// The vote that accepts it cannot commit once the backup is gone.
	c.stop(c.backups(p, c.nodes...)[0])
	ctx, cancel := context.WithCancel(context.Background())
	voted := make(chan error, 1)
	go func() {
		v, err := gc.Vote(ctx, prop.ProposalID, govclient.BallotYes)
		if err == nil {
			err = fmt.Errorf("the vote committed without a quorum: %+v", v)
		}
		voted <- err
	}()
	defer func() {
		cancel()
		if err := <-voted; !errors.Is(err, context.Canceled) {
			t.Errorf("vote: %v", err)
		}
	}()
	eventually(t, "the trust ordered on the primary", func() (bool, string) {
		for _, ni := range headNodes(p) {
			if ni.NodeID == id {
				return ni.Status == gov.NodeTrusted, ni.Status
			}
		}
		return false, summary(headNodes(p))
	})
	for _, ni := range committedNodes(p) {
		if ni.NodeID == id && ni.Status != gov.NodePending {
			t.Fatalf("the trust committed without a quorum: %s", summary(committedNodes(p)))
		}
	}

	code, _, b, err := call(cl, p.n.Addr(), "POST", "/node/join", body)
	if err != nil {
		t.Fatal(err)
	}
	if !p.n.cons.Status().IsPrimary {
		t.Fatal("the primary stepped down during the test; its election timeout is too short")
	}
	var got map[string]any
	if code != http.StatusOK || json.Unmarshal(b, &got) != nil {
		t.Fatalf("asking again: %d %s", code, b)
	}
	for _, secret := range []string{"service_key", "ledger_secrets", "node_cert"} {
		if _, ok := got[secret]; ok {
			t.Fatalf("asking again before the trust committed got %s (status %v)", secret, got["status"])
		}
	}
	if got["status"] != gov.NodePending {
		t.Fatalf("asking again: status %v; want Pending until committed", got["status"])
	}
}

// TestJoinLimits: a service records at most maxPendingNodes joiners waiting
// to be trusted.
func TestJoinLimits(t *testing.T) {
	c := newCluster(t, 1, nil)
	first := c.nodes[0]
	for i := range maxPendingNodes + 1 {
		cl, _ := c.nodeKeyClient(t, nil)
		code, _, body, err := call(cl, first.n.Addr(), "POST", "/node/join", joinBody(fmt.Sprintf("127.0.0.1:%d", 2000+i), "127.0.0.1:1"))
		switch {
		case err != nil:
			t.Fatal(err)
		case i < maxPendingNodes && code != http.StatusOK:
			t.Fatalf("joiner %d: %d %s", i, code, body)
		case i == maxPendingNodes && (code != http.StatusTooManyRequests || errorCode(body) != "TooManyPendingNodes"):
			t.Fatalf("joiner %d beyond the limit: %d %s", i, code, body)
		}
	}
}

// TestRestartOnNewAddresses: a backup restarted on other ports (both its
// API and its node-to-node listener) gets its record updated, so that the
// primary replicates to it and other backups forward through it.
func TestRestartOnNewAddresses(t *testing.T) {
	c := newCluster(t, 3, nil)
	p := c.primary(c.nodes...)
	b := c.backups(p, c.nodes...)[0]
	oldRPC, oldNode := b.n.Addr(), b.n.tr.Addr()
	c.stop(b)
	nb := c.start(b.cfg) // the config asks for port 0: new ports
	nb.anon = c.anon
	if nb.n.Addr() == oldRPC || nb.n.tr.Addr() == oldNode {
		t.Skip("the kernel handed out the same ports again")
	}
	id := nb.n.NodeID()
	eventually(t, "the new addresses recorded on the primary", func() (bool, string) {
		views, err := c.nodesOf(p)
		if err != nil {
			return false, err.Error()
		}
		v := views[id]
		return v.RPCAddress == nb.n.Addr() && v.NodeAddress == nb.n.tr.Addr() && v.Membership == "Voter", fmt.Sprintf("%+v", v)
	})
	c.write(nb, c.users[0].client, 300, "through the restarted node")
	if code, _, body := nb.do(t, c.users[0].client, "GET", "/app/log/public?id=300", ""); code != 200 || string(body) != `{"msg":"through the restarted node"}` {
		t.Fatalf("read on the restarted node: %d %s", code, body)
	}
}
