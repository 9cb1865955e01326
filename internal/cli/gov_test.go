package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cocoledger/coco/app"
	"github.com/cocoledger/coco/app/logging"
	cococrypto "github.com/cocoledger/coco/crypto"
	"github.com/cocoledger/coco/gov"
	govcose "github.com/cocoledger/coco/gov/cose"
	"github.com/cocoledger/coco/node"
	"github.com/cocoledger/coco/sandbox"
)

func TestParseArgs(t *testing.T) {
	dir := t.TempDir()
	pemFile := filepath.Join(dir, "cert.pem")
	if err := os.WriteFile(pemFile, []byte("-----BEGIN CERTIFICATE-----\nMII=\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := parseArgs([]string{
		"cert=@" + pemFile,
		"threshold=2",
		"flag=true",
		"name=hello world",
		`data={"a": [1, 2]}`,
		`quoted="123"`,
		"empty=",
		"eq=a=b",
		"hexid=3f2a",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"cert":      `"-----BEGIN CERTIFICATE-----\nMII=\n-----END CERTIFICATE-----\n"`,
		"threshold": `2`,
		"flag":      `true`,
		"name":      `"hello world"`,
		"data":      `{"a":[1,2]}`,
		"quoted":    `"123"`,
		"empty":     `""`,
		"eq":        `"a=b"`,
		"hexid":     `"3f2a"`,
	}
	if len(got) != len(want) {
		t.Fatalf("got %d args, want %d: %s", len(got), len(want), got)
	}
	for k, w := range want {
		if string(got[k]) != w {
			t.Errorf("%s = %s, want %s", k, got[k], w)
		}
	}

	for _, bad := range [][]string{
		{"novalue"},
		{"=v"},
		{"k=1", "k=2"},
		{"cert=@" + filepath.Join(dir, "missing.pem")},
	} {
		if _, err := parseArgs(bad); err == nil {
			t.Errorf("parseArgs(%q) succeeded", bad)
		}
	}
}

func TestBuildProposal(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "p.json")
	body := `{"actions":[{"name":"transition_service_to_open"}]}`
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := buildProposal(nil, file, "", nil); err != nil || string(b) != body {
		t.Errorf("--actions FILE: %s, %v", b, err)
	}
	if b, err := buildProposal(strings.NewReader(body), "-", "", nil); err != nil || string(b) != body {
		t.Errorf("--actions -: %s, %v", b, err)
	}
	b, err := buildProposal(nil, "", "set_recovery_threshold", []string{"recovery_threshold=2"})
	if err != nil || string(b) != `{"actions":[{"name":"set_recovery_threshold","args":{"recovery_threshold":2}}]}` {
		t.Errorf("--action with --arg: %s, %v", b, err)
	}
	b, err = buildProposal(nil, "", "transition_service_to_open", nil)
	if err != nil || string(b) != `{"actions":[{"name":"transition_service_to_open","args":{}}]}` {
		t.Errorf("--action without --arg: %s, %v", b, err)
	}

	for name, tc := range map[string]struct {
		stdin, file, action string
		args                []string
	}{
		"nothing":          {},
		"not JSON":         {stdin: "{", file: "-"},
		"no actions":       {stdin: `{"actions":[]}`, file: "-"},
		"missing file":     {file: filepath.Join(dir, "missing.json")},
		"--arg, --actions": {stdin: body, file: "-", args: []string{"a=1"}},
		"bad --arg":        {action: "x", args: []string{"a"}},
	} {
		if b, err := buildProposal(strings.NewReader(tc.stdin), tc.file, tc.action, tc.args); err == nil {
			t.Errorf("%s: built %s", name, b)
		}
	}
}

func TestBallotSource(t *testing.T) {
	js := "export function vote (proposal, proposerId) { return true }"
	for in, want := range map[string]string{
		js: js,
		`{"ballot": "export function vote () { return false }"}`: "export function vote () { return false }",
	} {
		if got := ballotSource([]byte(in)); got != want {
			t.Errorf("ballotSource(%q) = %q, want %q", in, got, want)
		}
	}
}

// writeSandboxJSON writes a sandbox.json naming two members and a node at
// addr, as `coco sandbox` would.
func writeSandboxJSON(t *testing.T, dir, addr, serviceCert string, members ...*govMember) string {
	t.Helper()
	info := sandbox.Info{ServiceCert: serviceCert, Nodes: []sandbox.NodeInfo{{RPCAddress: addr, DataDir: dir, Args: []string{"coco"}}}}
	for _, m := range members {
		info.Members = append(info.Members, sandbox.MemberInfo{Name: m.name, ID: m.id, Cert: m.cert, Key: m.key})
	}
	b, err := json.Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sandbox.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

type govMember struct {
	name, id, cert, key string
}

func newGovMember(t *testing.T, dir, name string) *govMember {
	t.Helper()
	if code, _, stderr := runCLI(t, "keygen", "--name", name, "--out", dir); code != 0 {
		t.Fatalf("keygen: %s", stderr)
	}
	m := &govMember{name: name, cert: filepath.Join(dir, name+"_cert.pem"), key: filepath.Join(dir, name+"_privk.pem")}
	cert, err := cococrypto.ReadCertFile(m.cert)
	if err != nil {
		t.Fatal(err)
	}
	m.id = cococrypto.CertID(cert)
	return m
}

func TestGovFlags(t *testing.T) {
	dir := t.TempDir()
	m0, m1 := newGovMember(t, dir, "member0"), newGovMember(t, dir, "member1")
	sb := writeSandboxJSON(t, dir, "127.0.0.1:1", "/svc.pem", m0, m1)

	g := govFlags{sandbox: sb, member: "member1"}
	got, err := g.resolve(true, true)
	if err != nil {
		t.Fatal(err)
	}
	if want := (govTarget{address: "127.0.0.1:1", serviceCert: "/svc.pem", cert: m1.cert, key: m1.key}); got != want {
		t.Errorf("from the sandbox: %+v, want %+v", got, want)
	}
	// sandbox.json itself, a member by id, explicit flags override.
	g = govFlags{sandbox: filepath.Join(sb, "sandbox.json"), member: m0.id, address: "127.0.0.1:2"}
	if got, err = g.resolve(true, true); err != nil || got.address != "127.0.0.1:2" || got.cert != m0.cert || got.serviceCert != "/svc.pem" {
		t.Errorf("overrides: %+v, %v", got, err)
	}
	// Everything explicit: no sandbox needed.
	g = govFlags{sandbox: filepath.Join(dir, "none"), address: "a:1", serviceCert: "s", cert: "c", key: "k"}
	if got, err = g.resolve(true, true); err != nil || got != (govTarget{"a:1", "s", "c", "k"}) {
		t.Errorf("explicit: %+v, %v", got, err)
	}
	// sign needs no node.
	g = govFlags{sandbox: filepath.Join(dir, "none"), cert: "c", key: "k"}
	if _, err = g.resolve(false, true); err != nil {
		t.Errorf("sign with --cert and --key: %v", err)
	}

	for name, tc := range map[string]struct {
		g       govFlags
		wantErr string
	}{
		"no sandbox":     {govFlags{sandbox: filepath.Join(dir, "none"), address: "a:1"}, "--service-cert, --cert, --key"},
		"unknown member": {govFlags{sandbox: sb, member: "member7"}, `no member "member7"`},
		"cert, no key":   {govFlags{sandbox: sb, member: "member0", cert: "c"}, "both --cert and --key"},
	} {
		if _, err := tc.g.resolve(true, true); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: %v, want an error containing %q", name, err, tc.wantErr)
		}
	}

	// The commands refuse missing or contradictory flags before talking to
	// any node.
	s := []string{"--sandbox", sb}
	for _, args := range [][]string{
		append([]string{"gov", "propose"}, s...),
		append([]string{"gov", "propose", "--action", "a", "--actions", "f"}, s...),
		append([]string{"gov", "propose", "--actions", "-", "--arg", "a=1"}, s...),
		append([]string{"gov", "propose", "--action", "a", "--arg", "noequals"}, s...),
		append([]string{"gov", "vote"}, s...),
		append([]string{"gov", "vote", "--proposal", "p", "--reject", "--ballot", "f"}, s...),
		append([]string{"gov", "withdraw"}, s...),
		append([]string{"gov", "show"}, s...),
		append([]string{"gov", "list", "extra"}, s...),
		append([]string{"gov", "sign"}, s...),
		append([]string{"gov", "sign", "--type", "bogus"}, s...),
		append([]string{"gov", "sign", "--type", "recovery_share"}, s...),
		append([]string{"gov", "sign", "--type", "ballot"}, s...),
		append([]string{"gov", "sign", "--type", "proposal", "--proposal", "p"}, s...),
		{"gov", "ack", "--sandbox", filepath.Join(dir, "none")},
		{"gov", "sign", "--type", "ack", "--sandbox", sb, "--member", "nobody"},
	} {
		if code, _, stderr := runCLI(t, args...); code == 0 || stderr == "" {
			t.Errorf("coco %s: exit %d, stderr %q; want an error", strings.Join(args, " "), code, stderr)
		}
	}
}

// TestGovSign: the signed request parses, is signed by the member and
// carries what was asked for.
func TestGovSign(t *testing.T) {
	dir := t.TempDir()
	m := newGovMember(t, dir, "member0")
	sb := writeSandboxJSON(t, dir, "127.0.0.1:1", "/svc.pem", m)
	payload := filepath.Join(dir, "ballot.json")
	if err := os.WriteFile(payload, []byte(`{"ballot":"export function vote () { return true }"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "req.cose")
	if code, _, stderr := runCLI(t, "gov", "sign", "--sandbox", sb, "--type", "ballot", "--proposal", "abc", "--payload", payload, "--out", out); code != 0 {
		t.Fatal(stderr)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	req, err := govcose.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := cococrypto.ReadCertFile(m.cert)
	if err != nil {
		t.Fatal(err)
	}
	if err := req.Verify(cert); err != nil {
		t.Fatal(err)
	}
	if req.Type != govcose.MsgBallot || req.ProposalID != "abc" || req.MemberID != m.id || !strings.Contains(string(req.Payload), "return true") {
		t.Errorf("signed %+v", req)
	}
	if d := time.Since(time.Unix(req.CreatedAt, 0)); d < 0 || d > time.Minute {
		t.Errorf("created_at %d is not now", req.CreatedAt)
	}
	// To stdout, with no payload.
	code, stdout, stderr := runCLI(t, "gov", "sign", "--cert", m.cert, "--key", m.key, "--type", "state_digest")
	if code != 0 {
		t.Fatal(stderr)
	}
	if req, err := govcose.Parse([]byte(stdout)); err != nil || req.Type != govcose.MsgStateDigest || len(req.Payload) != 0 {
		t.Errorf("state_digest to stdout: %+v, %v", req, err)
	}
}

// TestGovEndToEnd governs a real node (in this process) with two members
// through the CLI: acknowledge, propose, vote, reject, withdraw, list,
// show, and a request signed by `gov sign` and posted by hand.
func TestGovEndToEnd(t *testing.T) {
	dir := t.TempDir()
	m0, m1 := newGovMember(t, dir, "member0"), newGovMember(t, dir, "member1")
	user := newGovMember(t, dir, "user0")
	n, err := node.Start(context.Background(), node.Config{
		DataDir: filepath.Join(dir, "node"), RPCAddress: "127.0.0.1:0", NodeAddress: "127.0.0.1:0",
		Members: []node.MemberConfig{{CertFile: m0.cert}, {CertFile: m1.cert}},
		Apps:    []app.Application{logging.App{}}, TickInterval: 5 * time.Millisecond, SigInterval: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	sb := writeSandboxJSON(t, dir, n.Addr(), n.ServiceCertPath(), m0, m1)
	cli := func(member string, args ...string) (int, string, string) {
		t.Helper()
		return runCLI(t, append(append([]string{"gov"}, args...), "--sandbox", sb, "--member", member)...)
	}
	view := func(member string, args ...string) gov.ProposalView {
		t.Helper()
		code, stdout, stderr := cli(member, args...)
		if code != 0 {
			t.Fatalf("coco gov %s as %s: exit %d: %s", strings.Join(args, " "), member, code, stderr)
		}
		var v gov.ProposalView
		if err := json.Unmarshal([]byte(stdout), &v); err != nil || v.ProposalID == "" {
			t.Fatalf("coco gov %s: %q: %v", strings.Join(args, " "), stdout, err)
		}
		return v
	}

	// Only Active members propose.
	if code, _, stderr := cli("member0", "propose", "--action", "transition_service_to_open"); code == 0 || !strings.Contains(stderr, "AuthorizationFailed") {
		t.Errorf("a proposal before ack: exit %d: %s", code, stderr)
	}
	for _, m := range []string{"member0", "member1"} {
		if code, stdout, stderr := cli(m, "ack"); code != 0 || !strings.Contains(stdout, "Active") {
			t.Fatalf("ack %s: exit %d: %s%s", m, code, stdout, stderr)
		}
	}

	// A user and the opening, by majority (both members).
	v := view("member0", "propose", "--action", "set_user", "--arg", "cert=@"+user.cert, "--vote")
	if v.ProposalState != "Open" || v.BallotCount != 1 {
		t.Fatalf("set_user with the proposer's vote: %+v", v)
	}
	if v = view("member1", "vote", "--proposal", v.ProposalID); v.ProposalState != "Accepted" {
		t.Fatalf("set_user after both votes: %+v", v)
	}
	setUser := v.ProposalID
	ballot := filepath.Join(dir, "yes.js")
	if err := os.WriteFile(ballot, []byte("export function vote (proposal, proposerId) { return true }"), 0o600); err != nil {
		t.Fatal(err)
	}
	actions := filepath.Join(dir, "open.json")
	if err := os.WriteFile(actions, []byte(`{"actions":[{"name":"transition_service_to_open","args":{}}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	v = view("member1", "propose", "--actions", actions)
	if v = view("member0", "vote", "--proposal", v.ProposalID, "--ballot", ballot); v.ProposalState != "Open" {
		t.Fatalf("open after one vote: %+v", v)
	}
	if v = view("member1", "vote", "--proposal", v.ProposalID); v.ProposalState != "Accepted" {
		t.Fatalf("open after both votes: %+v", v)
	}
	checkUserWrite(t, n, user)

	// A rejection ballot counts; the proposer may withdraw.
	v = view("member0", "propose", "--action", "set_recovery_threshold", "--arg", "recovery_threshold=1")
	if v = view("member1", "vote", "--proposal", v.ProposalID, "--reject"); v.ProposalState != "Open" || v.BallotCount != 1 {
		t.Fatalf("after a no: %+v", v)
	}
	if code, _, stderr := cli("member1", "withdraw", "--proposal", v.ProposalID); code == 0 || !strings.Contains(stderr, "AuthorizationFailed") {
		t.Errorf("withdrawal by another member: exit %d: %s", code, stderr)
	}
	if v = view("member0", "withdraw", "--proposal", v.ProposalID); v.ProposalState != "Withdrawn" {
		t.Errorf("after withdrawal: %+v", v)
	}
	// The service's error code and message, and a non-zero exit.
	code, _, stderr := cli("member0", "propose", "--action", "no_such_action")
	if code == 0 || !strings.Contains(stderr, "ProposalFailedToValidate") || !strings.Contains(stderr, "no_such_action") {
		t.Errorf("invalid proposal: exit %d: %s", code, stderr)
	}

	code, stdout, stderr := cli("member1", "list")
	var list []gov.ProposalView
	if code != 0 || json.Unmarshal([]byte(stdout), &list) != nil || len(list) != 3 {
		t.Errorf("list: exit %d: %s%s", code, stdout, stderr)
	}
	code, stdout, stderr = cli("member1", "show", setUser)
	var shown struct {
		Proposal gov.ProposalView `json:"proposal"`
		Actions  struct {
			Actions []struct {
				Name string            `json:"name"`
				Args map[string]string `json:"args"`
			} `json:"actions"`
		} `json:"actions"`
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &shown) != nil || shown.Proposal.ProposalID != setUser ||
		len(shown.Actions.Actions) != 1 || shown.Actions.Actions[0].Name != "set_user" || !strings.Contains(shown.Actions.Actions[0].Args["cert"], "BEGIN CERTIFICATE") {
		t.Errorf("show: exit %d: %s%s", code, stdout, stderr)
	}
	if code, _, stderr := cli("member1", "show", strings.Repeat("0", 64)); code == 0 || !strings.Contains(stderr, "ProposalNotFound") {
		t.Errorf("show of an unknown proposal: exit %d: %s", code, stderr)
	}

	// `gov sign` for curl users: post it as they would.
	payload := filepath.Join(dir, "p.json")
	if err := os.WriteFile(payload, []byte(`{"actions":[{"name":"set_recovery_threshold","args":{"recovery_threshold":1}}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	code, signed, stderr := cli("member1", "sign", "--type", "proposal", "--payload", payload)
	if code != 0 {
		t.Fatal(stderr)
	}
	status, body := post(t, n, "/gov/members/proposals:create?api-version="+gov.APIVersion, "application/cose", []byte(signed), nil)
	if err := json.Unmarshal(body, &v); status != http.StatusOK || err != nil || v.ProposerID != m1.id || v.ProposalState != "Open" {
		t.Errorf("posting a signed proposal: %d %s", status, body)
	}
}

// post sends body to the node, presenting client certificates certs.
func post(t *testing.T, n *node.Node, path, contentType string, body []byte, certs []tls.Certificate) (int, []byte) {
	t.Helper()
	svc, err := cococrypto.ReadCertFile(n.ServiceCertPath())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(svc)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: certs, MinVersion: tls.VersionTLS13}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Post("https://"+n.Addr()+path, contentType, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// checkUserWrite: the user the members registered writes to the open service.
func checkUserWrite(t *testing.T, n *node.Node, user *govMember) {
	t.Helper()
	pair, err := cococrypto.LoadKeyPair(user.cert, user.key)
	if err != nil {
		t.Fatal(err)
	}
	if status, body := post(t, n, "/app/log/private", "application/json", []byte(`{"id":1,"msg":"governed"}`), []tls.Certificate{pair}); status != http.StatusOK {
		t.Errorf("the registered user's write to the opened service: %d %s", status, body)
	}
}
