package node

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cococrypto "github.com/cocoledger/coco/crypto"
	"github.com/cocoledger/coco/gov"
	govclient "github.com/cocoledger/coco/gov/client"
)

// testMember is a member's key pair on disk.
type testMember struct {
	certPath string
	cert     *x509.Certificate
	key      *ecdsa.PrivateKey
}

func newTestMember(t *testing.T) *testMember {
	t.Helper()
	k, err := cococrypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := cococrypto.SelfSignedCert(k, "member0", time.Hour, false)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "member0_cert.pem")
	if err := cococrypto.WriteCertFile(p, cert); err != nil {
		t.Fatal(err)
	}
	return &testMember{certPath: p, cert: cert, key: k}
}

// client is the member's governance client for the node at addr.
func (m *testMember) client(t *testing.T, addr, serviceCertPath string) *govclient.Client {
	t.Helper()
	svc, err := cococrypto.ReadCertFile(serviceCertPath)
	if err != nil {
		t.Fatal(err)
	}
	c := govclient.New(addr, svc, m.cert, m.key)
	t.Cleanup(c.Close)
	return c
}

// openService makes the member Active, registers users and opens the
// service, through proposals.
func openService(t *testing.T, gc *govclient.Client, users ...*x509.Certificate) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	if err := gc.Ack(ctx); err != nil {
		t.Fatalf("ack: %v", err)
	}
	var p govclient.Proposal
	for _, u := range users {
		p.Actions = append(p.Actions, govclient.Action{Name: "set_user", Args: map[string]any{"cert": string(cococrypto.EncodeCertPEM(u))}})
	}
	p.Actions = append(p.Actions, govclient.Action{Name: "transition_service_to_open"})
	if _, err := govclient.Pass(ctx, gc, []*govclient.Client{gc}, p); err != nil {
		t.Fatalf("open the service: %v", err)
	}
}

// pass has the single member pass one action.
func pass(t *testing.T, gc *govclient.Client, name string, args map[string]any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	if _, err := govclient.Pass(ctx, gc, []*govclient.Client{gc}, govclient.Proposal{Actions: []govclient.Action{{Name: name, Args: args}}}); err != nil {
		t.Fatalf("%s %v: %v", name, args, err)
	}
}

// TestServiceOpening: a new service answers application requests with 503
// ServiceNotOpen until its members open it; governance and node endpoints
// work meanwhile.
func TestServiceOpening(t *testing.T) {
	dir := t.TempDir()
	member := newTestMember(t)
	certPath, pair := newUser(t, t.TempDir())
	uc, err := cococrypto.ReadCertFile(certPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := clusterConfig(t)
	cfg.DataDir = dir
	cfg.Members = []MemberConfig{{CertFile: member.certPath}}
	n, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	c := &cluster{t: t, closed: map[*testNode]bool{}}
	svc, err := cococrypto.ReadCertFile(n.ServiceCertPath())
	if err != nil {
		t.Fatal(err)
	}
	c.pool = x509.NewCertPool()
	c.pool.AddCert(svc)
	user := c.clientFor([]tls.Certificate{pair})
	anon := c.clientFor(nil)
	t.Cleanup(user.CloseIdleConnections)
	t.Cleanup(anon.CloseIdleConnections)

	status := func() string {
		code, _, b, err := call(anon, n.Addr(), "GET", "/node/network", "")
		var v struct {
			Status string `json:"service_status"`
		}
		if err != nil || code != 200 || json.Unmarshal(b, &v) != nil {
			t.Fatalf("/node/network: %d %s %v", code, b, err)
		}
		return v.Status
	}
	if s := status(); s != gov.StatusOpening {
		t.Fatalf("a new service is %s; want Opening", s)
	}
	for _, path := range []string{"/app/log/public?id=1", "/app/receipt?transaction_id=2.1"} {
		code, _, b, err := call(user, n.Addr(), "GET", path, "")
		if err != nil || code != http.StatusServiceUnavailable || errorCode(b) != "ServiceNotOpen" {
			t.Fatalf("GET %s before opening: %d %s %v", path, code, b, err)
		}
	}
	if code, _, b, err := call(anon, n.Addr(), "GET", "/gov/service/members?api-version="+gov.APIVersion, ""); err != nil || code != 200 {
		t.Fatalf("governance reads while Opening: %d %s %v", code, b, err)
	}
	ready := func(path string, want int, wantCode string) {
		t.Helper()
		code, _, b, err := call(anon, n.Addr(), "GET", path, "")
		if err != nil || code != want || (wantCode != "" && errorCode(b) != wantCode) {
			t.Fatalf("GET %s: %d %s %v; want %d %s", path, code, b, err, want, wantCode)
		}
	}
	ready("/node/ready/gov", http.StatusNoContent, "")
	ready("/node/ready/app", http.StatusServiceUnavailable, "ServiceNotOpen")

	gc := member.client(t, n.Addr(), n.ServiceCertPath())
	openService(t, gc, uc)
	if s := status(); s != gov.StatusOpen {
		t.Fatalf("after transition_service_to_open: %s", s)
	}
	ready("/node/ready/app", http.StatusNoContent, "")
	if code, _, b, err := call(user, n.Addr(), "POST", "/app/log/public", `{"id":1,"msg":"open"}`); err != nil || code != 200 {
		t.Fatalf("write once open: %d %s %v", code, b, err)
	}
	// Opening twice fails the proposal (apply throws); nothing changes.
	v, err := gc.Propose(t.Context(), govclient.Proposal{Actions: []govclient.Action{{Name: "transition_service_to_open"}}})
	if err != nil {
		t.Fatal(err)
	}
	if v, err = gc.Vote(t.Context(), v.ProposalID, govclient.BallotYes); err != nil || v.ProposalState != gov.ProposalFailed || v.Failure == nil {
		t.Fatalf("opening an open service: %+v %v", v, err)
	}
	if s := status(); s != gov.StatusOpen {
		t.Fatalf("after a failed proposal: %s", s)
	}
}

// TestNewServiceNeedsMembers: nobody could ever govern a service created
// without members, so Start refuses, and leaves no ledger behind.
func TestNewServiceNeedsMembers(t *testing.T) {
	cfg := clusterConfig(t)
	if _, err := Start(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "at least one member") {
		t.Fatalf("start without members: %v", err)
	}
	cfg.Members = []MemberConfig{{CertFile: filepath.Join(t.TempDir(), "missing.pem")}}
	if _, err := Start(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "member certificate") {
		t.Fatalf("start with a missing member certificate: %v", err)
	}
	entries, err := os.ReadDir(filepath.Join(cfg.DataDir, LedgerDir))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Fatalf("a refused start left %d ledger files", len(entries))
	}
}

// TestGovernanceAcrossNodes: governance writes sent to a backup are
// forwarded to the primary; after remove_user, every node refuses that
// user.
func TestGovernanceAcrossNodes(t *testing.T) {
	c := newCluster(t, 3, nil)
	p := c.primary(c.nodes...)
	b := c.backups(p, c.nodes...)[0]
	removed, kept := c.users[0], c.users[1]
	// An authenticated user reading an absent entry gets 404.
	read := func(u *testUser, tn *testNode) (int, []byte) {
		code, _, body, err := call(u.client, tn.n.Addr(), "GET", "/app/log/public?id=1", "", ReadConsistencyHeader, "local")
		if err != nil {
			t.Fatal(err)
		}
		return code, body
	}
	for _, tn := range c.nodes {
		if code, body := read(removed, tn); code != http.StatusNotFound {
			t.Fatalf("user on %s before removal: %d %s", tn.n.NodeID()[:8], code, body)
		}
	}
	pass(t, c.govOn(b), "remove_user", map[string]any{"user_id": cococrypto.CertID(removed.cert)})
	for _, tn := range c.nodes {
		eventually(t, "the removed user refused on "+tn.n.NodeID()[:8], func() (bool, string) {
			code, body := read(removed, tn)
			return code == http.StatusUnauthorized && errorCode(body) == "InvalidAuthenticationInfo", fmt.Sprintf("%d %s", code, body)
		})
		if code, body := read(kept, tn); code != http.StatusNotFound {
			t.Fatalf("remaining user on %s: %d %s", tn.n.NodeID()[:8], code, body)
		}
	}
	// Every node serves the same governance state.
	for _, tn := range c.nodes {
		var users struct {
			Value []gov.UserView `json:"value"`
		}
		if err := c.govOn(tn).Get(t.Context(), "/gov/service/users", &users); err != nil {
			t.Fatal(err)
		}
		if len(users.Value) != 1 || users.Value[0].UserID != cococrypto.CertID(kept.cert) {
			t.Fatalf("users on %s: %+v", tn.n.NodeID()[:8], users.Value)
		}
	}
}
