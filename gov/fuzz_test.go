package gov_test

import (
	"encoding/json"
	"testing"

	"github.com/cocoledger/coco/gov"
	"github.com/cocoledger/coco/gov/constitution"
	govcose "github.com/cocoledger/coco/gov/cose"
	"github.com/cocoledger/coco/kv"
)

// checkFailure checks a refused request: a 4xx *app.Error (h.run reports
// any other error), and a transaction the handler left without writes, so
// the store changes only on success whatever the framework does with it.
func checkFailure(t *testing.T, what string, res result, tx *kv.Tx) {
	t.Helper()
	if res.err == nil {
		return
	}
	if res.status < 400 || res.status > 499 {
		t.Errorf("%s: status %d (%v), want 4xx", what, res.status, res.err)
	}
	if tx.HasWrites() {
		t.Errorf("%s: refused with %v, but the handler wrote to its transaction", what, res.err)
	}
}

// FuzzCreateProposal feeds arbitrary bytes as the body of every signed
// governance write, proposals:create and ballots:submit first, against a
// service with two Active members and an Open proposal. The store is never
// committed to, so each input sees the same state (and a mutation of a
// valid seed that keeps its signature valid succeeds rather than being a
// replay of an earlier input).
func FuzzCreateProposal(f *testing.F) {
	h := newHarness(f, 2)
	a, b := h.members[0], h.members[1]
	open := h.propose(a, setUser(userCert(f))).ProposalID
	digest := h.update(b)

	f.Add(h.proposeReq(a, setUser(userCert(f))).body)
	f.Add(h.ballotReq(b, open, yes).body)
	f.Add(h.ballotReq(b, open, no).body)
	f.Add(h.withdrawReq(a, open).body)
	f.Add(h.updateReq(b).body)
	f.Add(h.ackReq(b, digest).body)
	f.Add(h.sign(a, govcose.MsgProposal, "", []byte(`{"actions":[`)))
	f.Add(h.ballotReq(b, open, "export function vote(p, id) { while (true) {} }").body)
	f.Add([]byte{})
	f.Add([]byte{0xd2, 0x84})
	f.Add(proposalJSON(setUser(userCert(f))))

	targets := []request{
		post(pathCreate, nil, nil),
		post(pathBallot, map[string]string{"proposalId": open, "memberId": b.id}, nil),
		post(pathWithdraw, map[string]string{"proposalId": open}, nil),
		post(pathUpdate, map[string]string{"memberId": b.id}, nil),
		post(pathAck, map[string]string{"memberId": b.id}, nil),
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		fh := *h // h.tb reports to this input's t
		fh.tb = t
		for _, req := range targets {
			req.body = body
			res, tx := fh.run(req)
			checkFailure(t, req.path, res, tx)
			if res.err != nil {
				continue
			}
			switch req.path {
			case pathCreate:
				var v gov.ProposalView
				if err := json.Unmarshal(res.body, &v); err != nil || res.status != 200 {
					t.Fatalf("create: %v", res)
				}
				if _, ok := tx.Get(gov.Proposals, v.ProposalID); !ok {
					t.Errorf("created proposal %s is not in %s", v.ProposalID, gov.Proposals)
				}
			case pathBallot:
				var v gov.ProposalView
				if err := json.Unmarshal(res.body, &v); err != nil || res.status != 200 || v.ProposalID != open || v.BallotCount != 1 {
					t.Errorf("ballot: %v", res)
				}
			}
		}
	})
}

// FuzzSignedProposal signs arbitrary bytes as a proposal, so the fuzzer
// reaches the constitution's validate, resolve and apply; a proposal that
// is created is then voted on by both members. Each input's writes are
// applied uncommitted and rolled back afterwards.
func FuzzSignedProposal(f *testing.F) {
	h := newHarness(f, 2)
	a, b := h.members[0], h.members[1]
	createdAt := h.tick()
	for _, p := range [][]byte{
		proposalJSON(setUser(userCert(f))),
		proposalJSON(setUser(userCert(f)), removeUser(a.id)),
		proposalJSON(action("set_member_data", map[string]any{"member_id": a.id, "member_data": map[string]any{"x": 1}})),
		proposalJSON(action("transition_service_to_open", nil)),
		proposalJSON(action("set_recovery_threshold", map[string]any{"recovery_threshold": 1})),
		proposalJSON(removeMember(b.id)),
		proposalJSON(setConstitution(constitution.Default())),
		[]byte(`{"actions":[{"name":"set_user","args":{"cert":"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"}}]}`),
		[]byte(`{"actions":[{"name":"__proto__","args":{}}]}`),
		[]byte(`null`),
	} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		fh := *h
		fh.tb = t
		base := h.store.Version()
		defer func() {
			if err := h.store.Rollback(base); err != nil {
				t.Fatal(err)
			}
		}()
		apply := func(tx *kv.Tx) {
			if err := h.store.Apply(h.store.Version()+1, tx.WriteSet()); err != nil {
				t.Fatal(err)
			}
		}
		res, tx := fh.run(post(pathCreate, nil, fh.signAt(a, govcose.MsgProposal, createdAt, "", payload)))
		checkFailure(t, "create", res, tx)
		if res.err != nil {
			return
		}
		apply(tx)
		var v gov.ProposalView
		if err := json.Unmarshal(res.body, &v); err != nil {
			t.Fatalf("create: %v", res)
		}
		if v.ProposalState != gov.ProposalOpen {
			t.Fatalf("a proposal with no votes is %s", v.ProposalState)
		}
		for _, m := range []*member{a, b} {
			res, tx := fh.run(post(pathBallot, map[string]string{"proposalId": v.ProposalID, "memberId": m.id},
				fh.signAt(m, govcose.MsgBallot, createdAt, v.ProposalID, ballotJSON(yes))))
			checkFailure(t, "ballot", res, tx)
			if res.err != nil {
				t.Fatalf("a yes ballot on an open proposal: %v", res)
			}
			apply(tx)
			v = gov.ProposalView{}
			if err := json.Unmarshal(res.body, &v); err != nil {
				t.Fatalf("ballot: %v", res)
			}
		}
		switch v.ProposalState {
		case gov.ProposalAccepted:
		case gov.ProposalFailed:
			if v.Failure == nil || v.Failure.Reason == "" {
				t.Errorf("failed without a reason: %+v", v)
			}
		default:
			t.Errorf("two yes votes out of two left the proposal %s", v.ProposalState)
		}
	})
}
