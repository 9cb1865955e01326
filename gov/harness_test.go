package gov_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cocoledger/coco/app"
	cococrypto "github.com/cocoledger/coco/crypto"
	"github.com/cocoledger/coco/gov"
	"github.com/cocoledger/coco/gov/constitution"
	govcose "github.com/cocoledger/coco/gov/cose"
	"github.com/cocoledger/coco/kv"
)

// The governance endpoints' path templates, as gov.Endpoints names them.
const (
	pathCreate       = "/gov/members/proposals:create"
	pathProposals    = "/gov/members/proposals"
	pathProposal     = "/gov/members/proposals/{proposalId}"
	pathActions      = "/gov/members/proposals/{proposalId}/actions"
	pathWithdraw     = "/gov/members/proposals/{proposalId}:withdraw"
	pathBallot       = "/gov/members/proposals/{proposalId}/ballots/{memberId}:submit"
	pathGetBallot    = "/gov/members/proposals/{proposalId}/ballots/{memberId}"
	pathUpdate       = "/gov/members/state-digests/{memberId}:update"
	pathAck          = "/gov/members/state-digests/{memberId}:ack"
	pathDigest       = "/gov/members/state-digests/{memberId}"
	pathServiceInfo  = "/gov/service/info"
	pathMembers      = "/gov/service/members"
	pathMember       = "/gov/service/members/{memberId}"
	pathUsers        = "/gov/service/users"
	pathUser         = "/gov/service/users/{userId}"
	pathNodes        = "/gov/service/nodes"
	pathNode         = "/gov/service/nodes/{nodeId}"
	pathConstitution = "/gov/service/constitution"
)

const (
	versionQuery = "api-version=" + gov.APIVersion
	coseType     = "application/cose"

	yes = "export function vote (proposal, proposerId) { return true }"
	no  = "export function vote (proposal, proposerId) { return false }"

	// startTime is the created_at of a harness's first signed request; each
	// later one is a second later, so no two requests have the same signed
	// bytes unless a test means them to.
	startTime int64 = 1_800_000_000
)

// testLimits keep a looping script to 500ms instead of the default second;
// less made ordinary calls time out under -race on a busy 2-core machine
// (a ballot on a new proposal failed the proposal at 100ms).
var testLimits = constitution.Limits{Timeout: 500 * time.Millisecond}

// govMaps are the maps the governance endpoints and the default
// constitution write. A harness also snapshots every other map a committed
// transaction wrote.
var govMaps = []string{
	gov.UsersCerts, gov.UsersInfo, gov.NodesInfo, gov.ServiceInfo,
	gov.MembersCerts, gov.MembersInfo, gov.MembersEncryptionPublicKeys, gov.NodesMeasurements,
	gov.ServiceConfig, gov.Constitution, gov.MembersAcks, gov.Proposals, gov.ProposalsInfo,
	gov.COSERecentProposals, gov.COSEHistory,
}

// member is a member's (or an outsider's) identity.
type member struct {
	name string
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
	id   string
}

func newMember(tb testing.TB, name string) *member {
	tb.Helper()
	key, err := cococrypto.GenerateKey()
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := cococrypto.SelfSignedCert(key, name, time.Hour, false)
	if err != nil {
		tb.Fatal(err)
	}
	return &member{name: name, key: key, cert: cert, id: cococrypto.CertID(cert)}
}

func (m *member) certPEM() string { return string(cococrypto.EncodeCertPEM(m.cert)) }

// encryptionKeyPEM is one RSA-2048 public key (PEM) shared by the tests
// that need a member's encryption key: generating one costs more than the
// rest of a test.
var encryptionKeyPEM = sync.OnceValues(func() ([]byte, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	return cococrypto.EncodePublicKeyPEM(&k.PublicKey)
})

func encKey(tb testing.TB) []byte {
	tb.Helper()
	b, err := encryptionKeyPEM()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// harness is one service's governance state in a kv store, served by the
// gov endpoints the way the node serves them, without consensus or HTTP: a
// handler runs in a fresh transaction, which is committed only when the
// handler succeeded and wrote something.
type harness struct {
	tb      testing.TB
	store   *kv.Store
	gov     *gov.Governance
	eps     []app.Endpoint
	svc     *member // the service identity
	members []*member
	clock   int64           // created_at of the next signed request
	written map[string]bool // every map a committed transaction wrote
}

// config describes a harness's genesis.
type config struct {
	members      int    // genesis members
	active       int    // how many of them (the first ones) ack the state digest
	constitution string // default: constitution.Default()
	genesis      func(*gov.Genesis)
}

// newHarness starts a service with n members, all Active.
func newHarness(tb testing.TB, n int) *harness {
	tb.Helper()
	return newHarnessConfig(tb, config{members: n, active: n})
}

func newHarnessConfig(tb testing.TB, cfg config) *harness {
	tb.Helper()
	g := gov.New(gov.Config{Limits: testLimits})
	h := &harness{
		tb: tb, store: kv.NewStore(), gov: g, eps: g.Endpoints(),
		clock: startTime, written: map[string]bool{},
	}
	svcKey, err := cococrypto.GenerateKey()
	if err != nil {
		tb.Fatal(err)
	}
	svcCert, err := cococrypto.SelfSignedCert(svcKey, "service", time.Hour, true)
	if err != nil {
		tb.Fatal(err)
	}
	h.svc = &member{name: "service", key: svcKey, cert: svcCert, id: cococrypto.CertID(svcCert)}
	gen := gov.Genesis{ServiceCert: svcCert, Constitution: cfg.constitution}
	if gen.Constitution == "" {
		gen.Constitution = constitution.Default()
	}
	for i := range cfg.members {
		m := newMember(tb, fmt.Sprintf("member%d", i))
		h.members = append(h.members, m)
		gen.Members = append(gen.Members, gov.Member{Cert: m.cert})
	}
	if cfg.genesis != nil {
		cfg.genesis(&gen)
	}
	tx := h.store.Begin()
	if err := gov.WriteGenesis(tx, gen); err != nil {
		tb.Fatalf("WriteGenesis: %v", err)
	}
	h.commit(tx)
	for _, m := range h.members[:cfg.active] {
		h.ack(m)
	}
	return h
}

// commit validates tx and applies it at the next version, as the
// consensus loop does once the entry is committed.
func (h *harness) commit(tx *kv.Tx) {
	h.tb.Helper()
	if err := h.store.Validate(tx); err != nil {
		h.tb.Fatalf("Validate: %v", err)
	}
	ws := tx.WriteSet()
	for _, mw := range ws.Maps {
		h.written[mw.Name] = true
	}
	v := h.store.Version() + 1
	if err := h.store.Apply(v, ws); err != nil {
		h.tb.Fatalf("Apply(%d): %v", v, err)
	}
	if err := h.store.MarkCommitted(v); err != nil {
		h.tb.Fatalf("MarkCommitted(%d): %v", v, err)
	}
}

// request is one HTTP request to a /gov endpoint.
type request struct {
	method      string
	path        string // the endpoint's template
	params      map[string]string
	body        []byte
	contentType string
	query       string // raw query string; the builders below set api-version
}

// result is what the node would answer, and what happened to the store.
type result struct {
	status        int
	code, message string // of the *app.Error the handler returned
	body          []byte // the response body: JSON, or Raw
	contentType   string
	err           error // what the handler returned
	committed     bool  // the handler succeeded and its writes were committed
}

func (r result) String() string {
	if r.err != nil {
		return fmt.Sprintf("%d %v", r.status, r.err)
	}
	return fmt.Sprintf("%d %s", r.status, r.body)
}

// endpoint finds the endpoint serving method on the template path.
func (h *harness) endpoint(method, path string) app.Endpoint {
	h.tb.Helper()
	for _, ep := range h.eps {
		if ep.Method == method && ep.Path == path {
			return ep
		}
	}
	h.tb.Fatalf("no endpoint %s %s", method, path)
	return app.Endpoint{}
}

// do serves req: in a read-write transaction on the head for writes (a
// read-only one on the committed state for reads), committed only when the
// handler returned no error, exactly as the node does.
func (h *harness) do(req request) result {
	h.tb.Helper()
	res, tx := h.run(req)
	if res.err == nil && tx.HasWrites() {
		h.commit(tx)
		res.committed = true
	}
	return res
}

// run serves req without committing; the caller decides what to do with tx.
func (h *harness) run(req request) (result, *kv.Tx) {
	h.tb.Helper()
	ep := h.endpoint(req.method, req.path)
	target := req.path
	for k, v := range req.params {
		target = strings.ReplaceAll(target, "{"+k+"}", v)
	}
	if req.query != "" {
		target += "?" + req.query
	}
	r := httptest.NewRequest(req.method, target, bytes.NewReader(req.body))
	if req.contentType != "" {
		r.Header.Set("Content-Type", req.contentType)
	}
	c := &app.Context{Request: r, Query: r.URL.Query(), PathParams: maps.Clone(req.params), Body: req.body}
	if ep.Mode == app.ReadOnly {
		c.Tx = h.store.BeginReadOnly()
	} else {
		c.Tx = h.store.Begin()
	}
	resp, err := ep.Handler(c)
	res := result{err: err}
	if err != nil {
		var ae *app.Error
		if !errors.As(err, &ae) {
			h.tb.Errorf("%s %s: the handler failed with %v, not an *app.Error: the node would answer 500", req.method, target, err)
			res.status = http.StatusInternalServerError
			return res, c.Tx
		}
		res.status, res.code, res.message = ae.Status, ae.Code, ae.Message
		res.contentType = "application/json"
		res.body, _ = json.Marshal(map[string]any{"error": map[string]string{"code": ae.Code, "message": ae.Message}})
		return res, c.Tx
	}
	if resp == nil {
		resp = &app.Response{Status: http.StatusNoContent}
	}
	res.status = resp.Status
	if res.status == 0 {
		res.status = http.StatusOK
	}
	switch {
	case resp.Raw != nil:
		res.body, res.contentType = resp.Raw, resp.ContentType
	case resp.Body != nil:
		b, err := json.Marshal(resp.Body)
		if err != nil {
			h.tb.Fatalf("%s %s: encode response: %v", req.method, target, err)
		}
		res.body, res.contentType = b, "application/json"
	}
	return res, c.Tx
}

// tick returns the created_at of the next signed request.
func (h *harness) tick() int64 {
	h.clock++
	return h.clock
}

// signAt signs a governance request as m.
func (h *harness) signAt(m *member, t govcose.MsgType, createdAt int64, proposalID string, payload []byte) []byte {
	h.tb.Helper()
	b, err := govcose.Sign(m.key, m.cert, t, createdAt, proposalID, payload)
	if err != nil {
		h.tb.Fatalf("sign: %v", err)
	}
	return b
}

func (h *harness) sign(m *member, t govcose.MsgType, proposalID string, payload []byte) []byte {
	h.tb.Helper()
	return h.signAt(m, t, h.tick(), proposalID, payload)
}

// post is a signed write to path.
func post(path string, params map[string]string, body []byte) request {
	return request{method: http.MethodPost, path: path, params: params, body: body, contentType: coseType, query: versionQuery}
}

// get is a read of path.
func get(path string, params map[string]string) request {
	return request{method: http.MethodGet, path: path, params: params, query: versionQuery}
}

func proposalJSON(actions ...string) []byte {
	return []byte(`{"actions":[` + strings.Join(actions, ",") + `]}`)
}

func (h *harness) proposeReq(m *member, actions ...string) request {
	h.tb.Helper()
	return post(pathCreate, nil, h.sign(m, govcose.MsgProposal, "", proposalJSON(actions...)))
}

func ballotJSON(ballot string) []byte {
	b, _ := json.Marshal(map[string]string{"ballot": ballot})
	return b
}

func (h *harness) ballotReq(m *member, id, ballot string) request {
	h.tb.Helper()
	return post(pathBallot, map[string]string{"proposalId": id, "memberId": m.id}, h.sign(m, govcose.MsgBallot, id, ballotJSON(ballot)))
}

func (h *harness) withdrawReq(m *member, id string) request {
	h.tb.Helper()
	return post(pathWithdraw, map[string]string{"proposalId": id}, h.sign(m, govcose.MsgWithdrawal, id, nil))
}

func (h *harness) updateReq(m *member) request {
	h.tb.Helper()
	return post(pathUpdate, map[string]string{"memberId": m.id}, h.sign(m, govcose.MsgStateDigest, "", nil))
}

func (h *harness) ackReq(m *member, digest string) request {
	h.tb.Helper()
	body, _ := json.Marshal(map[string]string{"stateDigest": digest})
	return post(pathAck, map[string]string{"memberId": m.id}, h.sign(m, govcose.MsgAck, "", body))
}

// ok serves req and fails the test unless it succeeded with want.
func (h *harness) ok(req request, want int) result {
	h.tb.Helper()
	res := h.do(req)
	if res.err != nil || res.status != want {
		h.tb.Fatalf("%s %s: got %v, want %d", req.method, req.path, res, want)
	}
	return res
}

// proposalView decodes a proposal endpoint's answer.
func (h *harness) proposalView(res result) gov.ProposalView {
	h.tb.Helper()
	var v gov.ProposalView
	if err := json.Unmarshal(res.body, &v); err != nil {
		h.tb.Fatalf("decode %s: %v", res.body, err)
	}
	return v
}

// propose creates a proposal of actions as m; it must be accepted (200).
func (h *harness) propose(m *member, actions ...string) gov.ProposalView {
	h.tb.Helper()
	return h.proposalView(h.ok(h.proposeReq(m, actions...), http.StatusOK))
}

// vote submits m's ballot on proposal id; it must be accepted (200).
func (h *harness) vote(m *member, id, ballot string) gov.ProposalView {
	h.tb.Helper()
	return h.proposalView(h.ok(h.ballotReq(m, id, ballot), http.StatusOK))
}

// update asks for m's state digest.
func (h *harness) update(m *member) string {
	h.tb.Helper()
	var v struct {
		MemberID    string `json:"memberId"`
		StateDigest string `json:"stateDigest"`
	}
	res := h.ok(h.updateReq(m), http.StatusOK)
	if err := json.Unmarshal(res.body, &v); err != nil {
		h.tb.Fatalf("decode %s: %v", res.body, err)
	}
	if v.MemberID != m.id || len(v.StateDigest) != 64 {
		h.tb.Fatalf("update: got %s", res.body)
	}
	return v.StateDigest
}

// ack makes m Active: update, then acknowledge the digest.
func (h *harness) ack(m *member) {
	h.tb.Helper()
	h.ok(h.ackReq(m, h.update(m)), http.StatusNoContent)
}

// proposal reads proposal id's state.
func (h *harness) proposal(id string) gov.ProposalView {
	h.tb.Helper()
	return h.proposalView(h.ok(get(pathProposal, map[string]string{"proposalId": id}), http.StatusOK))
}

// get reads key in mapName from the committed state.
func (h *harness) get(mapName, key string) ([]byte, bool) {
	return h.store.BeginReadOnly().Get(mapName, key)
}

// state is every governance map's contents: map -> key -> value.
type state map[string]map[string]string

// snapshot reads every governance map and every map a committed
// transaction ever wrote.
func (h *harness) snapshot() state {
	tx := h.store.BeginReadOnly()
	names := slices.Clone(govMaps)
	for n := range h.written {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	s := state{}
	for _, n := range names {
		m := map[string]string{}
		tx.Range(n, func(k string, v []byte) bool {
			m[k] = string(v)
			return true
		})
		if len(m) > 0 {
			s[n] = m
		}
	}
	return s
}

// diff describes how b differs from a, or returns "".
func (a state) diff(b state) string {
	var out []string
	names := slices.Sorted(maps.Keys(a))
	for n := range b {
		if _, ok := a[n]; !ok {
			names = append(names, n)
		}
	}
	for _, n := range names {
		keys := map[string]bool{}
		for k := range a[n] {
			keys[k] = true
		}
		for k := range b[n] {
			keys[k] = true
		}
		for _, k := range slices.Sorted(maps.Keys(keys)) {
			va, oka := a[n][k]
			vb, okb := b[n][k]
			switch {
			case !oka:
				out = append(out, fmt.Sprintf("%s[%.16q] added", n, k))
			case !okb:
				out = append(out, fmt.Sprintf("%s[%.16q] deleted", n, k))
			case va != vb:
				out = append(out, fmt.Sprintf("%s[%.16q] changed", n, k))
			}
		}
	}
	return strings.Join(out, "; ")
}

// Action builders, with CCF's argument names.

func action(name string, args any) string {
	b, err := json.Marshal(map[string]any{"name": name, "args": args})
	if err != nil {
		panic(err)
	}
	return string(b)
}

func setUser(cert *x509.Certificate) string {
	return action("set_user", map[string]any{"cert": string(cococrypto.EncodeCertPEM(cert))})
}

func removeUser(id string) string { return action("remove_user", map[string]any{"user_id": id}) }

func setMember(m *member) string {
	return action("set_member", map[string]any{"cert": m.certPEM()})
}

func removeMember(id string) string { return action("remove_member", map[string]any{"member_id": id}) }

func setConstitution(src string) string {
	return action("set_constitution", map[string]any{"constitution": src})
}

// userCert is a fresh certificate to register as a user.
func userCert(tb testing.TB) *x509.Certificate {
	tb.Helper()
	return newMember(tb, "user").cert
}

// withResolve returns the default constitution with its resolve replaced.
func withResolve(tb testing.TB, resolve string) string {
	tb.Helper()
	src := constitution.Default()
	start := strings.Index(src, "// ---- resolve.js ----")
	end := strings.Index(src, "// ---- apply.js ----")
	if start < 0 || end < start {
		tb.Fatal("the default constitution has no resolve.js section")
	}
	return src[:start] + resolve + "\n" + src[end:]
}
