package gov_test

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"math/big"
	"reflect"
	"strings"
	"testing"
	"time"

	cococrypto "github.com/cocoledger/coco/crypto"
	"github.com/cocoledger/coco/gov"
	"github.com/cocoledger/coco/gov/constitution"
	govcose "github.com/cocoledger/coco/gov/cose"
	"github.com/veraison/go-cose"
)

// fixture is a service with three Active members (a, b, c), one member
// that has not acknowledged the state digest yet (d), someone who is not a
// member (x), and an Open proposal by a with no ballots.
type fixture struct {
	*harness
	a, b, c, d, x *member
	open          string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	h := newHarnessConfig(t, config{members: 4, active: 3})
	f := &fixture{harness: h, a: h.members[0], b: h.members[1], c: h.members[2], d: h.members[3], x: newMember(t, "outsider")}
	p := h.propose(f.a, setUser(userCert(t)))
	if p.ProposalState != gov.ProposalOpen {
		t.Fatalf("new proposal: %+v", p)
	}
	f.open = p.ProposalID
	return f
}

// accepted makes a new proposal and votes it through (a and b).
func (f *fixture) accepted(actions ...string) string {
	f.tb.Helper()
	id := f.propose(f.a, actions...).ProposalID
	f.vote(f.a, id, yes)
	if s := f.vote(f.b, id, yes).ProposalState; s != gov.ProposalAccepted {
		f.tb.Fatalf("proposal %s is %s, want Accepted", id, s)
	}
	return id
}

// expiredCert is a certificate for m's key whose validity ended an hour ago.
func expiredCert(t testing.TB, m *member) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "expired"},
		NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, m.key.Public(), m.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// TestBadRequests checks that every request the service must refuse gets
// its 4xx JSON error and changes nothing in the governance state.
func TestBadRequests(t *testing.T) {
	zeroID := strings.Repeat("0", 64)
	tests := []struct {
		name   string
		build  func(f *fixture) request // may change the state first
		status int
		code   string
	}{
		// The envelope.
		{"api-version missing", func(f *fixture) request {
			r := f.proposeReq(f.a, setUser(userCert(f.tb)))
			r.query = ""
			return r
		}, 400, "MissingApiVersionParameter"},
		{"api-version unsupported", func(f *fixture) request {
			r := f.proposeReq(f.a, setUser(userCert(f.tb)))
			r.query = "api-version=2023-06-01-preview"
			return r
		}, 400, "UnsupportedApiVersionValue"},
		{"content type json", func(f *fixture) request {
			r := f.proposeReq(f.a, setUser(userCert(f.tb)))
			r.contentType = "application/json"
			return r
		}, 415, "UnsupportedContentType"},
		{"content type missing", func(f *fixture) request {
			r := f.proposeReq(f.a, setUser(userCert(f.tb)))
			r.contentType = ""
			return r
		}, 415, "UnsupportedContentType"},
		{"body not COSE", func(f *fixture) request {
			return post(pathCreate, nil, proposalJSON(setUser(userCert(f.tb))))
		}, 400, "InvalidInput"},
		{"body empty", func(f *fixture) request { return post(pathCreate, nil, nil) }, 400, "InvalidInput"},

		// Who signed it.
		{"signer not a member", func(f *fixture) request {
			return f.proposeReq(f.x, setUser(userCert(f.tb)))
		}, 401, "InvalidAuthenticationInfo"},
		{"signed by a with the kid of b", func(f *fixture) request {
			r := f.proposeReq(f.a, setUser(userCert(f.tb)))
			r.body = bytes.Replace(r.body, []byte(f.a.id), []byte(f.b.id), 1)
			return r
		}, 401, "InvalidAuthenticationInfo"},
		{"signature byte flipped", func(f *fixture) request {
			r := f.proposeReq(f.a, setUser(userCert(f.tb)))
			r.body[len(r.body)-1] ^= 0x01
			return r
		}, 401, "InvalidAuthenticationInfo"},
		{"payload changed after signing", func(f *fixture) request {
			r := f.proposeReq(f.a, setUser(userCert(f.tb)))
			r.body = bytes.Replace(r.body, []byte("set_user"), []byte("set_usEr"), 1)
			return r
		}, 401, "InvalidAuthenticationInfo"},
		{"member certificate expired", func(f *fixture) request {
			e := &member{name: "expired", key: f.x.key}
			e.cert = expiredCert(f.tb, e)
			e.id = cococrypto.CertID(e.cert)
			tx := f.store.Begin()
			_ = tx.Put(gov.MembersCerts, e.id, cococrypto.EncodeCertPEM(e.cert))
			_ = tx.Put(gov.MembersInfo, e.id, []byte(`{"status":"Active"}`))
			f.commit(tx)
			return f.proposeReq(e, setUser(userCert(f.tb)))
		}, 401, "InvalidAuthenticationInfo"},
		{"vote by a removed member", func(f *fixture) request {
			f.accepted(removeMember(f.c.id))
			return f.ballotReq(f.c, f.open, yes)
		}, 401, "InvalidAuthenticationInfo"},

		// What it was signed for.
		{"ballot posted to proposals:create", func(f *fixture) request {
			return post(pathCreate, nil, f.sign(f.a, govcose.MsgBallot, f.open, ballotJSON(yes)))
		}, 400, "InvalidInput"},
		{"proposal posted to ballots:submit", func(f *fixture) request {
			r := f.ballotReq(f.a, f.open, yes)
			r.body = f.sign(f.a, govcose.MsgProposal, "", proposalJSON(setUser(userCert(f.tb))))
			return r
		}, 400, "InvalidInput"},
		{"ballot posted to :withdraw", func(f *fixture) request {
			r := f.withdrawReq(f.a, f.open)
			r.body = f.sign(f.a, govcose.MsgBallot, f.open, ballotJSON(yes))
			return r
		}, 400, "InvalidInput"},
		{"state_digest posted to :ack", func(f *fixture) request {
			r := f.ackReq(f.d, zeroID)
			r.body = f.sign(f.d, govcose.MsgStateDigest, "", nil)
			return r
		}, 400, "InvalidInput"},
		{"proposal id in the header is not the path's", func(f *fixture) request {
			r := f.ballotReq(f.b, f.open, yes)
			r.body = f.sign(f.b, govcose.MsgBallot, zeroID, ballotJSON(yes))
			return r
		}, 400, "InvalidInput"},
		{"ballot path names another member", func(f *fixture) request {
			r := f.ballotReq(f.a, f.open, yes)
			r.params["memberId"] = f.b.id
			return r
		}, 403, "AuthorizationFailed"},
		{"update path names another member", func(f *fixture) request {
			r := f.updateReq(f.a)
			r.params["memberId"] = f.d.id
			return r
		}, 403, "AuthorizationFailed"},
		{"ack path names another member", func(f *fixture) request {
			d := f.update(f.d)
			r := f.ackReq(f.a, d)
			r.params["memberId"] = f.d.id
			return r
		}, 403, "AuthorizationFailed"},

		// Replays.
		{"created_at too long ago", func(f *fixture) request {
			t0 := f.clock + 1000
			for range 3 {
				f.ok(post(pathCreate, nil, f.signAt(f.a, govcose.MsgProposal, t0, "", proposalJSON(setUser(userCert(f.tb))))), 200)
			}
			f.clock = t0 // later requests are signed after these
			return post(pathCreate, nil, f.signAt(f.a, govcose.MsgProposal, t0-1000, "", proposalJSON(setUser(userCert(f.tb)))))
		}, 400, "ProposalCreatedTooLongAgo"},
		{"same proposal bytes twice", func(f *fixture) request {
			r := f.proposeReq(f.a, setUser(userCert(f.tb)))
			f.ok(r, 200)
			return r
		}, 400, "ProposalReplay"},
		{"same signed proposal, new signature and unprotected header", func(f *fixture) request {
			payload := proposalJSON(setUser(userCert(f.tb)))
			createdAt := f.tick()
			f.ok(post(pathCreate, nil, f.signAt(f.a, govcose.MsgProposal, createdAt, "", payload)), 200)
			// ECDSA signatures are randomised: signing again gives other
			// bytes over the same signed content.
			again := f.signAt(f.a, govcose.MsgProposal, createdAt, "", payload)
			var msg cose.Sign1Message
			if err := msg.UnmarshalCBOR(again); err != nil {
				f.tb.Fatal(err)
			}
			msg.Headers.Unprotected[int64(99)] = "padding nobody signed"
			b, err := msg.MarshalCBOR()
			if err != nil {
				f.tb.Fatal(err)
			}
			return post(pathCreate, nil, b)
		}, 400, "ProposalReplay"},

		// The proposal.
		{"proposal not JSON", func(f *fixture) request {
			return post(pathCreate, nil, f.sign(f.a, govcose.MsgProposal, "", []byte(`{"actions":[`)))
		}, 400, "ProposalFailedToValidate"},
		{"proposal not an object", func(f *fixture) request {
			return post(pathCreate, nil, f.sign(f.a, govcose.MsgProposal, "", []byte(`[]`)))
		}, 400, "ProposalFailedToValidate"},
		{"proposal without actions", func(f *fixture) request {
			return post(pathCreate, nil, f.sign(f.a, govcose.MsgProposal, "", []byte(`{"actions":[]}`)))
		}, 400, "ProposalFailedToValidate"},
		{"unknown action", func(f *fixture) request {
			return f.proposeReq(f.a, action("make_me_rich", map[string]any{}))
		}, 400, "ProposalFailedToValidate"},
		{"invalid action argument", func(f *fixture) request {
			return f.proposeReq(f.a, action("set_user", map[string]any{"cert": "not a certificate"}))
		}, 400, "ProposalFailedToValidate"},
		{"unknown action argument", func(f *fixture) request {
			return f.proposeReq(f.a, action("remove_user", map[string]any{"user_id": zeroID, "force": true}))
		}, 400, "ProposalFailedToValidate"},
		{"second action invalid", func(f *fixture) request {
			return f.proposeReq(f.a, setUser(userCert(f.tb)), removeUser("not-an-id"))
		}, 400, "ProposalFailedToValidate"},
		{"constitution that does not compile", func(f *fixture) request {
			return f.proposeReq(f.a, setConstitution("export function validate( {"))
		}, 400, "ProposalFailedToValidate"},

		// Who may do what.
		{"accepted member proposes", func(f *fixture) request {
			return f.proposeReq(f.d, setUser(userCert(f.tb)))
		}, 403, "AuthorizationFailed"},
		{"accepted member votes", func(f *fixture) request { return f.ballotReq(f.d, f.open, yes) }, 403, "AuthorizationFailed"},
		{"withdraw by another member", func(f *fixture) request { return f.withdrawReq(f.b, f.open) }, 403, "AuthorizationFailed"},

		// The proposal's state.
		{"ballot on an unknown proposal", func(f *fixture) request { return f.ballotReq(f.b, zeroID, yes) }, 404, "ProposalNotFound"},
		{"withdraw an unknown proposal", func(f *fixture) request { return f.withdrawReq(f.a, zeroID) }, 404, "ProposalNotFound"},
		{"ballot on an accepted proposal", func(f *fixture) request {
			id := f.accepted(setUser(userCert(f.tb)))
			return f.ballotReq(f.c, id, yes)
		}, 400, "ProposalNotOpen"},
		{"withdraw an accepted proposal", func(f *fixture) request {
			return f.withdrawReq(f.a, f.accepted(setUser(userCert(f.tb))))
		}, 400, "ProposalNotOpen"},
		{"different second ballot", func(f *fixture) request {
			f.vote(f.b, f.open, yes)
			return f.ballotReq(f.b, f.open, no)
		}, 400, "VoteAlreadyExists"},

		// The ballot.
		{"ballot empty", func(f *fixture) request { return f.ballotReq(f.b, f.open, "") }, 400, "InvalidInput"},
		{"ballot body not JSON", func(f *fixture) request {
			r := f.ballotReq(f.b, f.open, yes)
			r.body = f.sign(f.b, govcose.MsgBallot, f.open, []byte(yes))
			return r
		}, 400, "InvalidInput"},
		{"ballot body unknown field", func(f *fixture) request {
			r := f.ballotReq(f.b, f.open, yes)
			r.body = f.sign(f.b, govcose.MsgBallot, f.open, []byte(`{"ballot":"`+yes+`","weight":2}`))
			return r
		}, 400, "InvalidInput"},
		{"ballot does not compile", func(f *fixture) request {
			return f.ballotReq(f.b, f.open, "export function vote( {")
		}, 400, "InvalidBallot"},
		{"ballot exports no vote", func(f *fixture) request {
			return f.ballotReq(f.b, f.open, "export function ballot() { return true }")
		}, 400, "InvalidBallot"},

		// Replays: the same signed bytes again, of every kind of request.
		{"ballot replayed", func(f *fixture) request {
			r := f.ballotReq(f.b, f.open, yes)
			f.ok(r, 200)
			return r
		}, 400, "RequestReplay"},
		{"withdrawal replayed", func(f *fixture) request {
			r := f.withdrawReq(f.a, f.propose(f.a, setUser(userCert(f.tb))).ProposalID)
			f.ok(r, 200)
			return r
		}, 400, "RequestReplay"},
		{"state digest update replayed", func(f *fixture) request {
			r := f.updateReq(f.d)
			f.ok(r, 200)
			return r
		}, 400, "RequestReplay"},
		{"ack replayed", func(f *fixture) request {
			r := f.ackReq(f.d, f.update(f.d))
			f.ok(r, 204)
			return r
		}, 400, "RequestReplay"},
		{"ballot as old as a request the member's window forgot", func(f *fixture) request {
			old := f.tick()
			for range govcose.DefaultWindowSize + 1 {
				f.update(f.b)
			}
			return post(pathBallot, map[string]string{"proposalId": f.open, "memberId": f.b.id},
				f.signAt(f.b, govcose.MsgBallot, old+1, f.open, ballotJSON(yes)))
		}, 400, "RequestCreatedTooLongAgo"},

		// State digests.
		{"ack with a wrong digest", func(f *fixture) request {
			f.update(f.d)
			return f.ackReq(f.d, zeroID)
		}, 400, "StateDigestMismatch"},
		{"ack without an update", func(f *fixture) request {
			return f.ackReq(f.d, zeroID)
		}, 400, "StateDigestMismatch"},
		{"ack of another member's digest", func(f *fixture) request {
			f.update(f.d)
			f.accepted(setUser(userCert(f.tb))) // the state moves on
			f.update(f.a)
			var v struct {
				StateDigest string `json:"stateDigest"`
			}
			res := f.ok(get(pathDigest, map[string]string{"memberId": f.a.id}), 200)
			_ = json.Unmarshal(res.body, &v)
			return f.ackReq(f.d, v.StateDigest)
		}, 400, "StateDigestMismatch"},
		{"ack body not JSON", func(f *fixture) request {
			f.update(f.d)
			r := f.ackReq(f.d, zeroID)
			r.body = f.sign(f.d, govcose.MsgAck, "", []byte("{"))
			return r
		}, 400, "InvalidInput"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			req := tc.build(f)
			before, version := f.snapshot(), f.store.Version()
			res := f.do(req)
			if res.err == nil {
				t.Fatalf("got %v, want %d %s: the handler succeeded, so the node would commit its writes", res, tc.status, tc.code)
			}
			if res.status != tc.status || res.code != tc.code {
				t.Errorf("got %d %s (%s), want %d %s", res.status, res.code, res.message, tc.status, tc.code)
			}
			if res.message == "" {
				t.Error("the error has no message")
			}
			var body struct {
				Error struct{ Code, Message string }
			}
			if err := json.Unmarshal(res.body, &body); err != nil || body.Error.Code != tc.code {
				t.Errorf("error body %s: %v", res.body, err)
			}
			if d := before.diff(f.snapshot()); d != "" || f.store.Version() != version {
				t.Errorf("the state changed: %s", d)
			}
			// The service still works: the open proposal can be decided.
			f.vote(f.a, f.open, yes)
		})
	}
}

// TestNoOps checks the requests that succeed without changing anything.
func TestNoOps(t *testing.T) {
	tests := []struct {
		name   string
		build  func(f *fixture) request
		status int
	}{
		{"same ballot, signed again", func(f *fixture) request {
			f.vote(f.b, f.open, yes)
			return f.ballotReq(f.b, f.open, yes)
		}, 200},
		{"withdraw twice", func(f *fixture) request {
			f.ok(f.withdrawReq(f.a, f.open), 200)
			return f.withdrawReq(f.a, f.open)
		}, 200},
		{"ack again", func(f *fixture) request {
			d := f.update(f.d)
			f.ok(f.ackReq(f.d, d), 204)
			return f.ackReq(f.d, d)
		}, 204},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			req := tc.build(f)
			before := f.snapshot()
			var view []byte
			if req.path == pathBallot || req.path == pathWithdraw {
				view = f.ok(get(pathProposal, map[string]string{"proposalId": f.open}), 200).body
			}
			res := f.ok(req, tc.status)
			if res.committed {
				t.Error("the transaction wrote something")
			}
			if d := before.diff(f.snapshot()); d != "" {
				t.Errorf("the state changed: %s", d)
			}
			if view != nil && !bytes.Equal(res.body, view) {
				t.Errorf("answered %s, the proposal is %s", res.body, view)
			}
		})
	}
}

// TestMajority checks the default constitution's rule: a proposal is
// Accepted exactly when strictly more than half of the Active members voted
// yes, Rejected when strictly more than half voted no, Open until then, and
// an Accepted proposal's actions take effect in the same transaction.
func TestMajority(t *testing.T) {
	const o, a, r = gov.ProposalOpen, gov.ProposalAccepted, gov.ProposalRejected
	tests := []struct {
		name            string
		members, active int
		votes           []bool   // by members 0, 1, ...
		want            []string // the state after each vote
	}{
		{"1 member yes", 1, 1, []bool{true}, []string{a}},
		{"1 member no", 1, 1, []bool{false}, []string{r}},
		{"3 members yes", 3, 3, []bool{true, true}, []string{o, a}},
		{"3 members no", 3, 3, []bool{false, false}, []string{o, r}},
		{"3 members split", 3, 3, []bool{true, false, true}, []string{o, o, a}},
		{"3 members split no", 3, 3, []bool{false, true, false}, []string{o, o, r}},
		{"5 members yes", 5, 5, []bool{true, true, true}, []string{o, o, a}},
		{"5 members no", 5, 5, []bool{false, false, false}, []string{o, o, r}},
		{"5 members split", 5, 5, []bool{true, false, true, false, true}, []string{o, o, o, o, a}},
		{"5 members split no", 5, 5, []bool{false, true, true, false, false}, []string{o, o, o, o, r}},
		// Members that have not acknowledged the state digest do not count.
		{"2 of 3 active", 3, 2, []bool{true, true}, []string{o, a}},
		{"3 of 5 active", 5, 3, []bool{true, true}, []string{o, a}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarnessConfig(t, config{members: tc.members, active: tc.active})
			user := userCert(t)
			userID := cococrypto.CertID(user)
			p := h.propose(h.members[0], setUser(user))
			if p.ProposalState != o || p.BallotCount != 0 || p.ProposerID != h.members[0].id {
				t.Fatalf("created: %+v", p)
			}
			want := map[string]bool{}
			for i, v := range tc.votes {
				ballot := no
				if v {
					ballot = yes
				}
				got := h.vote(h.members[i], p.ProposalID, ballot)
				want[h.members[i].id] = v
				if got.ProposalState != tc.want[i] || got.BallotCount != i+1 {
					t.Fatalf("after vote %d: %s with %d ballots, want %s with %d", i+1, got.ProposalState, got.BallotCount, tc.want[i], i+1)
				}
				if got.ProposalState == o && got.FinalVotes != nil {
					t.Errorf("an open proposal has final votes %v", got.FinalVotes)
				}
			}
			final := h.proposal(p.ProposalID)
			if final.ProposalState != tc.want[len(tc.want)-1] {
				t.Fatalf("read back as %s", final.ProposalState)
			}
			if !reflect.DeepEqual(final.FinalVotes, want) {
				t.Errorf("final votes %v, want %v", final.FinalVotes, want)
			}
			cert, ok := h.get(gov.UsersCerts, userID)
			if accepted := final.ProposalState == a; ok != accepted || ok && string(cert) != string(cococrypto.EncodeCertPEM(user)) {
				t.Errorf("%s: user registered = %v", final.ProposalState, ok)
			}
			// A closed proposal takes no more votes.
			if n := len(tc.votes); n < tc.active {
				res := h.do(h.ballotReq(h.members[n], p.ProposalID, yes))
				if res.code != "ProposalNotOpen" {
					t.Errorf("a vote after the decision: %v", res)
				}
			}
		})
	}
}

func TestWithdraw(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.vote(f.b, f.open, yes)
	got := f.proposalView(f.ok(f.withdrawReq(f.a, f.open), 200))
	if got.ProposalState != gov.ProposalWithdrawn || got.ProposalID != f.open || got.BallotCount != 1 {
		t.Fatalf("withdrawn: %+v", got)
	}
	if s := f.proposal(f.open).ProposalState; s != gov.ProposalWithdrawn {
		t.Errorf("read back as %s", s)
	}
	before := f.snapshot()
	if res := f.do(f.ballotReq(f.c, f.open, yes)); res.status != 400 || res.code != "ProposalNotOpen" {
		t.Errorf("vote on a withdrawn proposal: %v", res)
	}
	if d := before.diff(f.snapshot()); d != "" {
		t.Errorf("the state changed: %s", d)
	}
	// The withdrawal is recorded as the proposer's latest signed request.
	if _, ok := f.get(gov.COSEHistory, f.a.id); !ok {
		t.Error("the withdrawal is not in the governance history")
	}
}

// TestSetConstitution replaces the majority rule with unanimity: proposals
// open at the change are Dropped, and the next proposal needs every Active
// member's vote.
func TestSetConstitution(t *testing.T) {
	t.Parallel()
	unanimous := withResolve(t, `
export function resolve(proposal, proposerId, votes) {
  const active = [];
  ccf.kv["public:ccf.gov.members.info"].forEach((v, id) => {
    if (JSON.parse(v).status === "Active") active.push(id);
  });
  const yes = new Set(votes.filter((v) => v.vote).map((v) => v.member_id));
  if (votes.some((v) => !v.vote && active.includes(v.member_id))) return "Rejected";
  return active.every((id) => yes.has(id)) ? "Accepted" : "Open";
}`)
	f := newFixture(t)
	f.vote(f.b, f.open, yes)
	other := f.propose(f.c, setUser(userCert(t))).ProposalID

	change := f.propose(f.b, setConstitution(unanimous)).ProposalID
	f.vote(f.a, change, yes)
	if got := f.vote(f.c, change, yes); got.ProposalState != gov.ProposalAccepted {
		t.Fatalf("set_constitution: %+v", got)
	}
	res := f.ok(get(pathConstitution, nil), 200)
	if string(res.body) != unanimous {
		t.Fatal("GET /gov/service/constitution is not the new constitution")
	}
	for _, id := range []string{f.open, other} {
		got := f.proposal(id)
		if got.ProposalState != gov.ProposalDropped {
			t.Errorf("proposal open at the change is %s, want Dropped", got.ProposalState)
		}
		if res := f.do(f.ballotReq(f.a, id, yes)); res.code != "ProposalNotOpen" {
			t.Errorf("vote on a dropped proposal: %v", res)
		}
	}
	if got := f.proposal(f.open); !reflect.DeepEqual(got.FinalVotes, map[string]bool{f.b.id: true}) {
		t.Errorf("dropped proposal's final votes: %v", got.FinalVotes)
	}

	user := userCert(t)
	id := f.propose(f.a, setUser(user)).ProposalID
	for i, m := range []*member{f.a, f.b, f.c} {
		want := gov.ProposalOpen
		if i == 2 {
			want = gov.ProposalAccepted
		}
		if got := f.vote(m, id, yes); got.ProposalState != want {
			t.Fatalf("after %d of 3 yes votes: %s, want %s", i+1, got.ProposalState, want)
		}
	}
	if _, ok := f.get(gov.UsersCerts, cococrypto.CertID(user)); !ok {
		t.Error("the user was not registered")
	}
	// One no is enough to reject now.
	id = f.propose(f.a, setUser(userCert(t))).ProposalID
	if got := f.vote(f.c, id, no); got.ProposalState != gov.ProposalRejected {
		t.Errorf("one no under unanimity: %s", got.ProposalState)
	}
}

// TestFailingBallots: a ballot that compiles but fails when it runs (it
// throws, loops past the timeout, or answers something other than a
// boolean) fails the proposal, with the member and the cause as the
// reason, as in CCF; the request succeeds and the service carries on.
func TestFailingBallots(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, ballot, reason string
	}{
		{"throws", `export function vote() { throw new Error("no way") }`, "no way"},
		{"returns a number", "export function vote() { return 1 }", "want a boolean"},
		{"loops", "export function vote(p, id) { while (true) {} }", "timed out"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			start := time.Now()
			res := f.do(f.ballotReq(f.b, f.open, tc.ballot))
			if elapsed := time.Since(start); elapsed > 10*testLimits.Timeout {
				t.Errorf("the ballot took %v", elapsed)
			}
			if res.status != 200 {
				t.Fatalf("got %v, want 200", res)
			}
			got := f.proposal(f.open)
			if got.ProposalState != gov.ProposalFailed || got.Failure == nil ||
				!strings.Contains(got.Failure.Reason, "ballot of member "+f.b.id) || !strings.Contains(got.Failure.Reason, tc.reason) {
				t.Fatalf("after the ballot: %+v (failure %+v)", got, got.Failure)
			}
			// The proposal is closed; other proposals still pass.
			if res := f.do(f.ballotReq(f.c, f.open, yes)); res.status != 400 || res.code != "ProposalNotOpen" {
				t.Errorf("a ballot on the failed proposal: %v", res)
			}
			f.accepted(setUser(userCert(t)))
		})
	}
}

// TestLoopingResolve: once a constitution whose resolve loops is voted in,
// every new proposal Fails with a timeout as its reason; the requests
// themselves succeed and the service goes on serving the others.
func TestLoopingResolve(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 2)
	m0, m1 := h.members[0], h.members[1]
	looping := withResolve(t, "export function resolve(proposal, proposerId, votes) { while (true) {} }")
	id := h.propose(m0, setConstitution(looping)).ProposalID
	h.vote(m0, id, yes)
	if got := h.vote(m1, id, yes); got.ProposalState != gov.ProposalAccepted {
		t.Fatalf("set_constitution: %+v", got)
	}

	user := userCert(t)
	got := h.propose(m1, setUser(user))
	if got.ProposalState != gov.ProposalFailed || got.Failure == nil || !strings.Contains(got.Failure.Reason, "timed out") {
		t.Fatalf("a proposal under a looping resolve: %+v", got)
	}
	if !strings.HasPrefix(got.Failure.Reason, "resolve") {
		t.Errorf("failure reason %q does not say resolve failed", got.Failure.Reason)
	}
	if _, ok := h.get(gov.UsersCerts, cococrypto.CertID(user)); ok {
		t.Error("the failed proposal was applied")
	}
	if res := h.do(h.ballotReq(m0, got.ProposalID, yes)); res.code != "ProposalNotOpen" {
		t.Errorf("vote on a failed proposal: %v", res)
	}
	// Everything that does not resolve a proposal still works.
	h.ack(m0)
	h.ok(get(pathProposals, nil), 200)
	h.ok(get(pathMembers, nil), 200)
	if got := h.proposal(got.ProposalID); got.ProposalState != gov.ProposalFailed {
		t.Errorf("read back as %s", got.ProposalState)
	}
}

// TestLoopingValidate: a validate that loops refuses every proposal.
func TestLoopingValidate(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 1)
	m := h.members[0]
	src := strings.Replace(constitution.Default(), "export function validate(input) {", "export function validate(input) { while (true) {}", 1)
	id := h.propose(m, setConstitution(src)).ProposalID
	if got := h.vote(m, id, yes); got.ProposalState != gov.ProposalAccepted {
		t.Fatalf("set_constitution: %+v", got)
	}
	before := h.snapshot()
	res := h.do(h.proposeReq(m, setUser(userCert(t))))
	if res.status != 400 || res.code != "ProposalFailedToValidate" || !strings.Contains(res.message, "timed out") {
		t.Errorf("got %v, want 400 ProposalFailedToValidate (timed out)", res)
	}
	if d := before.diff(h.snapshot()); d != "" {
		t.Errorf("the state changed: %s", d)
	}
}

// TestResolveNonsense: a resolve that answers something other than a state
// fails the proposal.
func TestResolveNonsense(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 1)
	m := h.members[0]
	src := withResolve(t, `export function resolve(proposal, proposerId, votes) { return votes.length ? "Maybe" : "Open" }`)
	id := h.propose(m, setConstitution(src)).ProposalID
	h.vote(m, id, yes)
	id = h.propose(m, setUser(userCert(t))).ProposalID
	got := h.vote(m, id, yes)
	if got.ProposalState != gov.ProposalFailed || got.Failure == nil || !strings.Contains(got.Failure.Reason, "Maybe") {
		t.Errorf("got %+v", got)
	}
	if !reflect.DeepEqual(got.FinalVotes, map[string]bool{m.id: true}) {
		t.Errorf("final votes %v", got.FinalVotes)
	}
}

// TestApplyFailure: an accepted proposal whose apply throws is Failed, with
// the reason, and none of its actions take effect, not even those before
// the one that threw.
func TestApplyFailure(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 1)
	m := h.members[0]
	user := userCert(t)
	missing := strings.Repeat("ab", 32)
	p := h.propose(m, setUser(user), removeUser(missing)) // valid: the user id is well-formed
	before := h.snapshot()
	got := h.vote(m, p.ProposalID, yes)
	if got.ProposalState != gov.ProposalFailed || got.Failure == nil {
		t.Fatalf("got %+v, want Failed", got)
	}
	if !strings.HasPrefix(got.Failure.Reason, "apply") || !strings.Contains(got.Failure.Reason, "does not exist") {
		t.Errorf("failure reason %q", got.Failure.Reason)
	}
	if _, ok := h.get(gov.UsersCerts, cococrypto.CertID(user)); ok {
		t.Error("the first action was applied")
	}
	after := h.snapshot()
	// Only the proposal's record and the ballot's signed request changed.
	for _, n := range []string{gov.ProposalsInfo, gov.COSEHistory, gov.COSERecentRequests} {
		delete(before, n)
		delete(after, n)
	}
	if d := before.diff(after); d != "" {
		t.Errorf("the state changed: %s", d)
	}
	if res := h.do(h.ballotReq(m, p.ProposalID, yes)); res.code != "ProposalNotOpen" {
		t.Errorf("vote on a failed proposal: %v", res)
	}
}

// TestStateDigest: a genesis member is Accepted until it acknowledges the
// state digest it was given; acknowledging again changes nothing.
func TestStateDigest(t *testing.T) {
	t.Parallel()
	h := newHarnessConfig(t, config{members: 2, active: 1})
	m := h.members[1]
	status := func() string {
		var v gov.MemberView
		_ = json.Unmarshal(h.ok(get(pathMember, map[string]string{"memberId": m.id}), 200).body, &v)
		return v.Status
	}
	if s := status(); s != gov.MemberAccepted {
		t.Fatalf("a genesis member is %s, want Accepted", s)
	}
	if res := h.do(get(pathDigest, map[string]string{"memberId": m.id})); res.status != 404 {
		t.Errorf("digest before any update: %v", res)
	}

	want := gov.StateDigest(h.store.BeginReadOnly())
	d := h.update(m)
	if d != want {
		t.Errorf("update gave %s, StateDigest is %s", d, want)
	}
	res := h.ok(get(pathDigest, map[string]string{"memberId": m.id}), 200)
	if !strings.Contains(string(res.body), d) {
		t.Errorf("GET state-digest: %s", res.body)
	}
	if status() != gov.MemberAccepted {
		t.Error("an update made the member Active")
	}
	// The digest does not cover the acks themselves: updating again gives
	// the same digest.
	if again := h.update(m); again != d {
		t.Errorf("second update gave %s, first %s", again, d)
	}

	ack := h.ackReq(m, d)
	res = h.ok(ack, 204)
	if len(res.body) != 0 || !res.committed {
		t.Errorf("ack: %v, committed %v", res, res.committed)
	}
	if s := status(); s != gov.MemberActive {
		t.Fatalf("after the ack the member is %s", s)
	}
	if d2 := gov.StateDigest(h.store.BeginReadOnly()); d2 == d {
		t.Error("the state digest does not cover member statuses")
	}
	// Now Active, the member can govern.
	h.vote(m, h.propose(m, setUser(userCert(t))).ProposalID, yes)
}

// TestRemovedMemberReAdded: a member removed then set again must
// acknowledge the state as it is after its return, neither with a digest it
// was given before its removal nor by a replay of its old ack (the ledger
// holds every signed request). CCF's remove_member deletes the member's ack
// for this reason.
func TestRemovedMemberReAdded(t *testing.T) {
	t.Parallel()
	// removeAndReAdd removes b (whose vote counts only if it is Active) and
	// sets it again.
	removeAndReAdd := func(t *testing.T, h *harness, a, b *member, bActive bool) {
		t.Helper()
		id := h.propose(a, removeMember(b.id)).ProposalID
		h.vote(a, id, yes)
		if bActive {
			h.vote(b, id, yes)
		}
		if got := h.proposal(id); got.ProposalState != gov.ProposalAccepted {
			t.Fatalf("remove_member: %+v", got)
		}
		if _, ok := h.get(gov.MembersAcks, b.id); ok {
			t.Error("the removed member's state digest is still in " + gov.MembersAcks)
		}
		id = h.propose(a, setMember(b)).ProposalID
		if got := h.vote(a, id, yes); got.ProposalState != gov.ProposalAccepted {
			t.Fatalf("set_member: %+v", got)
		}
	}
	t.Run("stale digest", func(t *testing.T) {
		h := newHarnessConfig(t, config{members: 2, active: 1})
		a, b := h.members[0], h.members[1]
		stale := h.update(b)
		removeAndReAdd(t, h, a, b, false)
		if res := h.do(h.ackReq(b, stale)); res.err == nil {
			t.Errorf("the re-added member became Active by acknowledging a digest from before its removal (%v)", res)
		}
		h.ack(b) // update, then ack: fine
	})
	t.Run("replayed ack", func(t *testing.T) {
		h := newHarnessConfig(t, config{members: 2, active: 1})
		a, b := h.members[0], h.members[1]
		old := h.ackReq(b, h.update(b))
		h.ok(old, 204)
		removeAndReAdd(t, h, a, b, true)
		if res := h.do(old); res.err == nil {
			t.Errorf("a replay of the member's ack from before its removal made it Active again (%v)", res)
		}
		h.ack(b)
	})
}

// TestRequestWindowIsPerMember: only proposals are checked against the
// recent-proposals window (as in CCF, where validate_proposal_submission_time
// runs on proposals:create only). A member's other requests are checked
// against that member's own window, so a member whose clock is behind the
// proposer's is not refused.
func TestRequestWindowIsPerMember(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 3)
	a, b, c := h.members[0], h.members[1], h.members[2]
	ahead := h.clock + 600 // a's clock runs ten minutes ahead
	id := h.proposalView(h.ok(post(pathCreate, nil, h.signAt(a, govcose.MsgProposal, ahead, "", proposalJSON(setUser(userCert(t))))), 200)).ProposalID
	now := h.clock + 1
	res := h.do(post(pathBallot, map[string]string{"proposalId": id, "memberId": b.id}, h.signAt(b, govcose.MsgBallot, now, id, ballotJSON(yes))))
	if res.err != nil {
		t.Errorf("ballot signed %ds before the proposal: %v", ahead-now, res)
	}
	// The same holds for a member's state-digest requests.
	res = h.do(post(pathUpdate, map[string]string{"memberId": c.id}, h.signAt(c, govcose.MsgStateDigest, now, "", nil)))
	if res.err != nil {
		t.Errorf("state digest update signed %ds before the latest proposal: %v", ahead-now, res)
	}
}

// TestMemberWindowOrder: a member's requests may arrive in another order
// than they were signed in, and one dated ahead (a clock running fast)
// does not make the member's later requests "too old".
func TestMemberWindowOrder(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	early := f.tick()
	later := f.tick()
	f.ok(post(pathUpdate, map[string]string{"memberId": f.b.id}, f.signAt(f.b, govcose.MsgStateDigest, later, "", nil)), 200)
	f.ok(post(pathBallot, map[string]string{"proposalId": f.open, "memberId": f.b.id}, f.signAt(f.b, govcose.MsgBallot, early, f.open, ballotJSON(yes))), 200)
	ahead := f.clock + 365*24*3600
	f.ok(post(pathUpdate, map[string]string{"memberId": f.c.id}, f.signAt(f.c, govcose.MsgStateDigest, ahead, "", nil)), 200)
	if got := f.vote(f.c, f.open, yes); got.ProposalState != gov.ProposalAccepted {
		t.Errorf("after a request dated a year ahead: %+v", got)
	}
}
