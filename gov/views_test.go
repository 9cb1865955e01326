package gov_test

import (
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/cocoledger/coco/app"
	cococrypto "github.com/cocoledger/coco/crypto"
	"github.com/cocoledger/coco/gov"
	"github.com/cocoledger/coco/gov/constitution"
	govcose "github.com/cocoledger/coco/gov/cose"
)

func decode[T any](t *testing.T, res result) T {
	t.Helper()
	var v T
	if res.contentType != "application/json" {
		t.Errorf("content type %q, want application/json", res.contentType)
	}
	if err := json.Unmarshal(res.body, &v); err != nil {
		t.Fatalf("decode %s: %v", res.body, err)
	}
	return v
}

type list[T any] struct {
	Value []T `json:"value"`
}

// TestEndpoints checks the endpoint table: CCF's paths, reads read-only and
// anonymous, writes read-write, and every one refusing a request without
// the api-version parameter.
func TestEndpoints(t *testing.T) {
	h := newHarness(t, 1)
	want := []string{
		"GET " + pathProposals, "GET " + pathProposal, "GET " + pathActions, "GET " + pathGetBallot,
		"GET " + pathDigest, "GET " + pathServiceInfo, "GET " + pathMembers, "GET " + pathMember,
		"GET " + pathUsers, "GET " + pathUser, "GET " + pathNodes, "GET " + pathNode, "GET " + pathConstitution,
		"POST " + pathCreate, "POST " + pathWithdraw, "POST " + pathBallot, "POST " + pathUpdate, "POST " + pathAck,
	}
	var got []string
	for _, ep := range h.eps {
		got = append(got, ep.Method+" "+ep.Path)
		if ep.Summary == "" || ep.Handler == nil {
			t.Errorf("%s %s: no summary or handler", ep.Method, ep.Path)
		}
		wantMode := app.ReadOnly
		if ep.Method == http.MethodPost {
			wantMode = app.ReadWrite
		}
		if ep.Mode != wantMode || ep.Auth != app.AuthNone {
			t.Errorf("%s %s: mode %v auth %v", ep.Method, ep.Path, ep.Mode, ep.Auth)
		}
		params := map[string]string{"proposalId": "p", "memberId": h.members[0].id, "userId": "u", "nodeId": "n"}
		res := h.do(request{method: ep.Method, path: ep.Path, params: params, contentType: coseType})
		if res.status != 400 || res.code != "MissingApiVersionParameter" {
			t.Errorf("%s %s without api-version: %v", ep.Method, ep.Path, res)
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("endpoints\n got %q\nwant %q", got, want)
	}
}

// TestViews reads every governance view back after a few changes.
func TestViews(t *testing.T) {
	h := newHarnessConfig(t, config{members: 2, active: 1, genesis: func(g *gov.Genesis) {
		g.Members[0].EncryptionKeyPEM = encKey(t)
		g.Members[0].Data = json.RawMessage(`{"role":"operator"}`)
	}})
	a, b := h.members[0], h.members[1]

	// Empty lists are lists.
	for _, p := range []string{pathUsers, pathNodes} {
		if res := h.ok(get(p, nil), 200); string(res.body) != `{"value":[]}` {
			t.Errorf("GET %s: %s", p, res.body)
		}
	}

	// A user, set by a proposal with user_data.
	user := userCert(t)
	userID := cococrypto.CertID(user)
	setU := action("set_user", map[string]any{"cert": string(cococrypto.EncodeCertPEM(user)), "user_data": map[string]any{"team": "blue"}})
	accepted := h.propose(a, setU)
	h.vote(a, accepted.ProposalID, yes)
	// An open proposal with one ballot.
	payload := proposalJSON(setUser(userCert(t)))
	open := h.proposalView(h.ok(post(pathCreate, nil, h.sign(a, govcose.MsgProposal, "", payload)), 200))
	// a's vote decides with one Active member, so open stays open only
	// until then: make b Active first so it takes two votes.
	h.ack(b)
	h.vote(b, open.ProposalID, yes)
	// A node, as the join endpoint writes it.
	node := gov.NodeInfo{NodeID: strings.Repeat("c", 64), RaftID: 1<<60 + 1, Status: gov.NodeTrusted, Cert: "node cert", RPCAddress: "127.0.0.1:8000", NodeAddress: "127.0.0.1:8001"}
	nb, _ := json.Marshal(node)
	tx := h.store.Begin()
	_ = tx.Put(gov.NodesInfo, node.NodeID, nb)
	h.commit(tx)

	t.Run("proposals", func(t *testing.T) {
		ps := decode[list[gov.ProposalView]](t, h.ok(get(pathProposals, nil), 200))
		byID := map[string]gov.ProposalView{}
		for _, p := range ps.Value {
			byID[p.ProposalID] = p
		}
		if len(byID) != 2 || byID[accepted.ProposalID].ProposalState != gov.ProposalAccepted || byID[open.ProposalID].ProposalState != gov.ProposalOpen {
			t.Errorf("list: %+v", ps.Value)
		}
		got := h.proposal(open.ProposalID)
		want := gov.ProposalView{ProposalID: open.ProposalID, ProposerID: a.id, ProposalState: gov.ProposalOpen, BallotCount: 1}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("got %+v, want %+v", got, want)
		}
		// camelCase, as CCF's API.
		raw := decode[map[string]any](t, h.ok(get(pathProposal, map[string]string{"proposalId": accepted.ProposalID}), 200))
		for _, k := range []string{"proposalId", "proposerId", "proposalState", "ballotCount", "finalVotes"} {
			if _, ok := raw[k]; !ok {
				t.Errorf("no %q in %v", k, raw)
			}
		}
	})
	t.Run("actions", func(t *testing.T) {
		res := h.ok(get(pathActions, map[string]string{"proposalId": open.ProposalID}), 200)
		if string(res.body) != string(payload) || res.contentType != "application/json" {
			t.Errorf("actions %q (%s), want the signed payload %q", res.body, res.contentType, payload)
		}
	})
	t.Run("ballots", func(t *testing.T) {
		res := h.ok(get(pathGetBallot, map[string]string{"proposalId": open.ProposalID, "memberId": b.id}), 200)
		if got := decode[map[string]string](t, res); !reflect.DeepEqual(got, map[string]string{"ballot": yes}) {
			t.Errorf("ballot %v", got)
		}
		res = h.do(get(pathGetBallot, map[string]string{"proposalId": open.ProposalID, "memberId": a.id}))
		if res.status != 404 || res.code != "VoteNotFound" {
			t.Errorf("no ballot: %v", res)
		}
	})
	t.Run("unknown proposal", func(t *testing.T) {
		zero := strings.Repeat("0", 64)
		for _, r := range []request{
			get(pathProposal, map[string]string{"proposalId": zero}),
			get(pathActions, map[string]string{"proposalId": zero}),
			get(pathGetBallot, map[string]string{"proposalId": zero, "memberId": a.id}),
		} {
			if res := h.do(r); res.status != 404 || res.code != "ProposalNotFound" {
				t.Errorf("GET %s: %v", r.path, res)
			}
		}
	})
	t.Run("members", func(t *testing.T) {
		ms := decode[list[gov.MemberView]](t, h.ok(get(pathMembers, nil), 200))
		if len(ms.Value) != 2 {
			t.Fatalf("members %+v", ms.Value)
		}
		m := decode[gov.MemberView](t, h.ok(get(pathMember, map[string]string{"memberId": a.id}), 200))
		want := gov.MemberView{MemberID: a.id, Status: gov.MemberActive, Certificate: a.certPEM(),
			MemberData: json.RawMessage(`{"role":"operator"}`), PublicEncryptionKey: string(encKey(t))}
		if !reflect.DeepEqual(m, want) {
			t.Errorf("got %+v\nwant %+v", m, want)
		}
		if !slices.ContainsFunc(ms.Value, func(v gov.MemberView) bool { return reflect.DeepEqual(v, want) }) {
			t.Errorf("the list does not hold %+v", want)
		}
		if res := h.do(get(pathMember, map[string]string{"memberId": userID})); res.status != 404 {
			t.Errorf("unknown member: %v", res)
		}
	})
	t.Run("users", func(t *testing.T) {
		want := gov.UserView{UserID: userID, Certificate: string(cococrypto.EncodeCertPEM(user)), UserData: json.RawMessage(`{"team":"blue"}`)}
		us := decode[list[gov.UserView]](t, h.ok(get(pathUsers, nil), 200))
		if len(us.Value) != 1 || !reflect.DeepEqual(us.Value[0], want) {
			t.Errorf("users %+v", us.Value)
		}
		if u := decode[gov.UserView](t, h.ok(get(pathUser, map[string]string{"userId": userID}), 200)); !reflect.DeepEqual(u, want) {
			t.Errorf("user %+v", u)
		}
		if res := h.do(get(pathUser, map[string]string{"userId": a.id})); res.status != 404 {
			t.Errorf("unknown user: %v", res)
		}
	})
	t.Run("nodes", func(t *testing.T) {
		want := gov.NodeView{NodeID: node.NodeID, Status: gov.NodeTrusted, Certificate: "node cert", RPCAddress: "127.0.0.1:8000", NodeAddress: "127.0.0.1:8001"}
		ns := decode[list[gov.NodeView]](t, h.ok(get(pathNodes, nil), 200))
		if len(ns.Value) != 1 || ns.Value[0] != want {
			t.Errorf("nodes %+v", ns.Value)
		}
		if n := decode[gov.NodeView](t, h.ok(get(pathNode, map[string]string{"nodeId": node.NodeID}), 200)); n != want {
			t.Errorf("node %+v", n)
		}
		if res := h.do(get(pathNode, map[string]string{"nodeId": a.id})); res.status != 404 {
			t.Errorf("unknown node: %v", res)
		}
	})
	t.Run("constitution", func(t *testing.T) {
		res := h.ok(get(pathConstitution, nil), 200)
		if string(res.body) != constitution.Default() || res.contentType != "text/javascript" {
			t.Errorf("constitution (%s) is not the default's source", res.contentType)
		}
	})
	t.Run("service info", func(t *testing.T) {
		got := decode[gov.ServiceInfoView](t, h.ok(get(pathServiceInfo, nil), 200))
		if got.Status != gov.StatusOpening || got.Certificate != h.svc.certPEM() || got.RecoveryCount != 0 ||
			got.RecentCoseProposalsWindowSize != govcose.DefaultWindowSize || got.Configuration.RecoveryThreshold != 1 {
			t.Errorf("service info %+v", got)
		}
	})
	t.Run("state digest", func(t *testing.T) {
		d := h.update(a)
		got := decode[map[string]string](t, h.ok(get(pathDigest, map[string]string{"memberId": a.id}), 200))
		if got["memberId"] != a.id || got["stateDigest"] != d {
			t.Errorf("state digest %v, want %s", got, d)
		}
	})
}
