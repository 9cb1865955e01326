package gov

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"mime"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/cocoledger/coco/app"
	cococrypto "github.com/cocoledger/coco/crypto"
	"github.com/cocoledger/coco/gov/constitution"
	govcose "github.com/cocoledger/coco/gov/cose"
	"github.com/cocoledger/coco/kv"
)

// APIVersion is the governance API version coco serves, CCF's: every /gov
// request names it in ?api-version=.
const APIVersion = "2024-07-01"

// Config configures the governance endpoints.
type Config struct {
	// Limits bound every constitution and ballot call; zero fields take
	// constitution.DefaultLimits.
	Limits constitution.Limits
	Logger *slog.Logger
}

// Governance serves the /gov endpoints: members' signed proposals, ballots,
// withdrawals and state-digest acknowledgements, judged by the
// constitution stored in the ledger, and the read-only views of the
// governance state. It keeps no state of its own besides a cache of the
// compiled constitution; everything else is in the kv.
type Governance struct {
	limits constitution.Limits
	log    *slog.Logger
	// calls holds a token per constitution or ballot call in progress.
	calls chan struct{}

	mu     sync.Mutex
	cached *constitution.Constitution // the last constitution compiled, by source
}

// New returns the governance endpoints' implementation.
func New(cfg Config) *Governance {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Governance{limits: cfg.Limits, log: log, calls: make(chan struct{}, maxConcurrentCalls)}
}

// maxConcurrentCalls bounds the constitution and ballot calls that run at
// once: in worker processes each may use Limits.MaxMemoryBytes of heap, so
// concurrent governance requests from members cannot multiply that.
const maxConcurrentCalls = 2

// js runs call as one constitution or ballot call, waiting for a free slot
// of maxConcurrentCalls (or for ctx).
func (g *Governance) js(ctx context.Context, call func() error) error {
	select {
	case g.calls <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("gov: waiting to run the constitution: %w", ctx.Err())
	}
	defer func() { <-g.calls }()
	return call()
}

// Endpoints lists the /gov endpoints, as CCF's API version 2024-07-01.
func (g *Governance) Endpoints() []app.Endpoint {
	get := func(path, summary string, h app.Handler) app.Endpoint {
		return app.Endpoint{Method: http.MethodGet, Path: path, Auth: app.AuthNone, Mode: app.ReadOnly, Summary: summary, Handler: g.versioned(h)}
	}
	post := func(path, summary string, h app.Handler) app.Endpoint {
		return app.Endpoint{Method: http.MethodPost, Path: path, Auth: app.AuthNone, Mode: app.ReadWrite, Summary: summary, Handler: g.versioned(h)}
	}
	return []app.Endpoint{
		post("/gov/members/proposals:create", "Create a proposal (COSE_Sign1, ccf.gov.msg.type proposal)", g.createProposal),
		get("/gov/members/proposals", "List proposals", g.listProposals),
		get("/gov/members/proposals/{proposalId}", "One proposal's state", g.getProposal),
		get("/gov/members/proposals/{proposalId}/actions", "One proposal's actions, as proposed", g.getActions),
		post("/gov/members/proposals/{proposalId}:withdraw", "Withdraw an open proposal (COSE_Sign1, withdrawal; proposer only)", g.withdraw),
		post("/gov/members/proposals/{proposalId}/ballots/{memberId}:submit", "Vote on an open proposal (COSE_Sign1, ballot)", g.submitBallot),
		get("/gov/members/proposals/{proposalId}/ballots/{memberId}", "One member's ballot on a proposal", g.getBallot),
		post("/gov/members/state-digests/{memberId}:update", "Get a fresh state digest to acknowledge (COSE_Sign1, state_digest)", g.updateDigest),
		post("/gov/members/state-digests/{memberId}:ack", "Acknowledge the state digest: an Accepted member becomes Active (COSE_Sign1, ack)", g.ackDigest),
		get("/gov/members/state-digests/{memberId}", "The state digest a member was last given", g.getDigest),
		get("/gov/service/info", "Service status, certificate and configuration", g.getServiceInfo),
		get("/gov/service/members", "The members", g.listMembers),
		get("/gov/service/members/{memberId}", "One member", g.getMember),
		get("/gov/service/users", "The users", g.listUsers),
		get("/gov/service/users/{userId}", "One user", g.getUser),
		get("/gov/service/nodes", "The nodes", g.listNodes),
		get("/gov/service/nodes/{nodeId}", "One node", g.getNode),
		get("/gov/service/constitution", "The constitution's source (JavaScript)", g.getConstitution),
	}
}

// versioned checks the api-version query parameter every /gov request
// carries, as CCF does.
func (g *Governance) versioned(h app.Handler) app.Handler {
	return func(c *app.Context) (*app.Response, error) {
		v := c.Query.Get("api-version")
		if v == "" {
			return nil, app.Errorf(http.StatusBadRequest, "MissingApiVersionParameter", "governance requests need the query parameter api-version=%s", APIVersion)
		}
		if v != APIVersion {
			return nil, app.Errorf(http.StatusBadRequest, "UnsupportedApiVersionValue", "api-version %q is not supported; use %s", v, APIVersion)
		}
		return h(c)
	}
}

// constitution compiles (or takes from the cache) the constitution in tx.
func (g *Governance) constitution(tx KV) (*constitution.Constitution, error) {
	src, ok := tx.Get(Constitution, ConstitutionKey)
	if !ok {
		return nil, errors.New("gov: the service has no constitution")
	}
	g.mu.Lock()
	c := g.cached
	g.mu.Unlock()
	if c != nil && c.Source() == string(src) {
		return c, nil
	}
	c, err := constitution.Parse(string(src))
	if err != nil {
		return nil, fmt.Errorf("gov: the stored constitution does not compile: %w", err)
	}
	c = c.WithLimits(g.limits)
	g.mu.Lock()
	g.cached = c
	g.mu.Unlock()
	return c, nil
}

// signed is a verified governance request and its signer.
type signed struct {
	req    *govcose.Request
	status string // the signer's member status
	// recent is the signer's window of requests other than proposals,
	// which record adds req to.
	recent *govcose.Window
}

// verify authenticates a signed governance request of type want: its
// content type, shape, signer (a registered member whose certificate is
// valid now and verifies the signature), proposal id (against the path's
// proposalId) and signer (against the path's memberId), and for a
// proposal its created_at (against the recent-proposals window). Nothing
// is written.
func (g *Governance) verify(c *app.Context, want govcose.MsgType) (*signed, error) {
	ct, _, err := mime.ParseMediaType(c.Request.Header.Get("Content-Type"))
	if err != nil || ct != "application/cose" {
		return nil, app.Errorf(http.StatusUnsupportedMediaType, "UnsupportedContentType", "governance writes are COSE_Sign1 with Content-Type: application/cose")
	}
	req, err := govcose.Parse(c.Body)
	if err != nil {
		return nil, app.BadRequest("%v", err)
	}
	if req.Type != want {
		return nil, app.BadRequest("the request is signed as a %q message; this endpoint takes %q", req.Type, want)
	}
	certPEM, ok := c.Tx.Get(MembersCerts, req.MemberID)
	if !ok {
		return nil, app.Errorf(http.StatusUnauthorized, "InvalidAuthenticationInfo", "signer %s (kid) is not a member of this service", req.MemberID)
	}
	cert, err := cococrypto.ParseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("gov: member %s certificate: %w", req.MemberID, err)
	}
	if err := req.Verify(cert); err != nil {
		return nil, app.Errorf(http.StatusUnauthorized, "InvalidAuthenticationInfo", "%v", err)
	}
	if err := cococrypto.CheckValidity(cert, time.Now()); err != nil {
		return nil, app.Errorf(http.StatusUnauthorized, "InvalidAuthenticationInfo", "member %s: %v", req.MemberID, err)
	}
	if pid := c.PathParams["proposalId"]; pid != "" && req.ProposalID != pid {
		return nil, app.BadRequest("the request is signed for proposal %q, not %q", req.ProposalID, pid)
	}
	if mid := c.PathParams["memberId"]; mid != "" && mid != req.MemberID {
		return nil, app.Errorf(http.StatusForbidden, "AuthorizationFailed", "member %s cannot act for member %s", req.MemberID, mid)
	}
	// Replays and stale requests. Proposals are checked against the
	// service's window of recent proposals, as in CCF. Every other signed
	// request is checked against its signer's own window, for replays and
	// against what it evicted, but not against its median: one shared with
	// other members would refuse a member whose clock is behind theirs, and
	// a median would refuse a member's requests sent out of the order they
	// were signed in, or all of them after one dated ahead.
	s := &signed{req: req}
	if want == govcose.MsgProposal {
		w, err := loadWindow(c.Tx)
		if err != nil {
			return nil, err
		}
		switch err := w.Check(req.Digest, req.CreatedAt); {
		case errors.Is(err, govcose.ErrReplay):
			return nil, app.Errorf(http.StatusBadRequest, "ProposalReplay", "this signed request was already accepted")
		case errors.Is(err, govcose.ErrTooOld):
			return nil, app.Errorf(http.StatusBadRequest, "ProposalCreatedTooLongAgo", "created_at %d is older than the recent proposals the service remembers; sign it again with the current time", req.CreatedAt)
		case err != nil:
			return nil, err
		}
	} else {
		s.recent = govcose.NewWindow(0)
		if _, err := getJSON(c.Tx, COSERecentRequests, req.MemberID, s.recent); err != nil {
			return nil, err
		}
		switch err := s.recent.CheckReplay(req.Digest, req.CreatedAt); {
		case errors.Is(err, govcose.ErrReplay):
			return nil, app.Errorf(http.StatusBadRequest, "RequestReplay", "this signed request was already accepted")
		case errors.Is(err, govcose.ErrTooOld):
			return nil, app.Errorf(http.StatusBadRequest, "RequestCreatedTooLongAgo", "created_at %d is not after the requests of member %s the service no longer remembers; sign it again with the current time", req.CreatedAt, req.MemberID)
		case err != nil:
			return nil, err
		}
	}
	var info MemberInfo
	if _, err := getJSON(c.Tx, MembersInfo, req.MemberID, &info); err != nil {
		return nil, err
	}
	s.status = info.Status
	return s, nil
}

// active refuses a signer that has not acknowledged the state digest: only
// Active members propose, vote and withdraw, as in CCF.
func (s *signed) active() error {
	if s.status != MemberActive {
		return app.Errorf(http.StatusForbidden, "AuthorizationFailed", "member %s is %s, not Active: acknowledge the state digest first (POST /gov/members/state-digests/{memberId}:ack)", s.req.MemberID, s.status)
	}
	return nil
}

// record keeps an accepted request in the ledger: as the member's latest
// signed request (CCF's cose_history) and, other than a proposal (which
// has the service's window), in the member's window.
func (s *signed) record(tx KV) error {
	if s.recent != nil {
		s.recent.Add(s.req.Digest, s.req.CreatedAt)
		if err := putJSON(tx, COSERecentRequests, s.req.MemberID, s.recent); err != nil {
			return err
		}
	}
	return tx.Put(COSEHistory, s.req.MemberID, s.req.Raw)
}

func loadWindow(tx KV) (*govcose.Window, error) {
	w := govcose.NewWindow(0)
	if _, err := getJSON(tx, COSERecentProposals, WindowKey, w); err != nil {
		return nil, err
	}
	return w, nil
}

func (g *Governance) createProposal(c *app.Context) (*app.Response, error) {
	s, err := g.verify(c, govcose.MsgProposal)
	if err != nil {
		return nil, err
	}
	if err := s.active(); err != nil {
		return nil, err
	}
	con, err := g.constitution(c.Tx)
	if err != nil {
		return nil, err
	}
	ctx := c.Request.Context()
	proposal := string(s.req.Payload)
	var valid bool
	var desc string
	err = g.js(ctx, func() (err error) {
		valid, desc, err = con.Validate(ctx, proposal)
		return err
	})
	if err != nil && !scriptFailure(err) {
		return nil, err
	}
	if err != nil {
		return nil, app.Errorf(http.StatusBadRequest, "ProposalFailedToValidate", "the constitution's validate failed: %v", err)
	}
	if !valid {
		return nil, app.Errorf(http.StatusBadRequest, "ProposalFailedToValidate", "%s", desc)
	}
	id := hex.EncodeToString(s.req.Digest[:])
	if _, ok := c.Tx.Get(Proposals, id); ok {
		return nil, app.Errorf(http.StatusBadRequest, "ProposalReplay", "proposal %s already exists", id)
	}
	w, err := loadWindow(c.Tx)
	if err != nil {
		return nil, err
	}
	w.Add(s.req.Digest, s.req.CreatedAt)
	if err := putJSON(c.Tx, COSERecentProposals, WindowKey, w); err != nil {
		return nil, err
	}
	if err := c.Tx.Put(Proposals, id, s.req.Payload); err != nil {
		return nil, err
	}
	if err := s.record(c.Tx); err != nil {
		return nil, err
	}
	info := &ProposalInfo{ProposerID: s.req.MemberID, State: ProposalOpen}
	if err := g.resolve(ctx, c.Tx, con, id, proposal, info); err != nil {
		return nil, err
	}
	g.log.Info("proposal created", "proposal_id", id, "proposer_id", info.ProposerID, "state", info.State)
	return app.JSON(proposalView(id, info)), nil
}

// resolve asks the constitution to decide an open proposal and, once it is
// Accepted, applies it in the same transaction. A constitution that
// throws, times out or answers nonsense fails the proposal (recorded as
// Failed, with the reason), never the request. info is stored.
func (g *Governance) resolve(ctx context.Context, tx KV, con *constitution.Constitution, id, proposal string, info *ProposalInfo) error {
	votes := make([]constitution.Vote, 0, len(info.Votes))
	for _, m := range slices.Sorted(maps.Keys(info.Votes)) {
		votes = append(votes, constitution.Vote{MemberID: m, Vote: info.Votes[m]})
	}
	var state string
	err := g.js(ctx, func() (err error) {
		state, err = con.Resolve(ctx, proposal, info.ProposerID, votes, tx)
		return err
	})
	switch {
	case err != nil && !scriptFailure(err):
		return err
	case err != nil:
		info.fail("resolve: " + err.Error())
	case state == ProposalOpen:
	case state == ProposalRejected:
		info.State = ProposalRejected
	case state == ProposalAccepted:
		before, _ := tx.Get(Constitution, ConstitutionKey)
		if err := g.js(ctx, func() error { return con.Apply(ctx, proposal, id, tx) }); err != nil {
			if !scriptFailure(err) {
				return err
			}
			info.fail("apply: " + err.Error())
			break
		}
		info.State = ProposalAccepted
		if err := dropRemovedAcks(tx); err != nil {
			return err
		}
		if after, _ := tx.Get(Constitution, ConstitutionKey); string(after) != string(before) {
			if err := dropOpenProposals(tx, id); err != nil {
				return err
			}
		}
	}
	if info.State != ProposalOpen {
		info.close()
	}
	return putJSON(tx, ProposalsInfo, id, info)
}

// scriptFailure reports whether err is the script's doing (it threw,
// looped, ran out of memory, answered nonsense or wrote too much), which
// fails the proposal, rather than the request's or the node's (a
// cancelled request, a worker that could not start), which fails only the
// request and leaves the proposal as it was.
func scriptFailure(err error) bool {
	return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) &&
		!errors.Is(err, constitution.ErrInternal)
}

// fail closes info as Failed for reason.
func (info *ProposalInfo) fail(reason string) {
	info.State, info.Failure = ProposalFailed, &Failure{Reason: reason}
	info.close()
}

// close freezes the votes of a proposal that is no longer Open.
func (info *ProposalInfo) close() {
	info.FinalVotes = maps.Clone(info.Votes)
	if info.FinalVotes == nil {
		info.FinalVotes = map[string]bool{}
	}
}

// dropOpenProposals closes every open proposal but except: they were
// validated and voted on under a constitution that no longer applies.
func dropOpenProposals(tx KV, except string) error {
	dropped := map[string]*ProposalInfo{}
	var err error
	tx.Range(ProposalsInfo, func(k string, v []byte) bool {
		var pi ProposalInfo
		if err = json.Unmarshal(v, &pi); err != nil {
			err = fmt.Errorf("gov: %s[%q] is corrupt: %w", ProposalsInfo, k, err)
			return false
		}
		if k != except && pi.State == ProposalOpen {
			dropped[k] = &pi
		}
		return true
	})
	if err != nil {
		return err
	}
	for _, k := range slices.Sorted(maps.Keys(dropped)) {
		pi := dropped[k]
		pi.State, pi.FinalVotes = ProposalDropped, maps.Clone(pi.Votes)
		if err := putJSON(tx, ProposalsInfo, k, pi); err != nil {
			return err
		}
	}
	return nil
}

// dropRemovedAcks deletes the state digests given to members that are no
// longer members, as CCF's remove_member deletes members.acks: were such
// a member set again, it must acknowledge the state as of its return, not
// a digest (or replay an ack) from before its removal. It is done here,
// not in the constitution, so that no constitution can forget it.
func dropRemovedAcks(tx KV) error {
	var removed []string
	tx.Range(MembersAcks, func(id string, _ []byte) bool {
		if _, ok := tx.Get(MembersCerts, id); !ok {
			removed = append(removed, id)
		}
		return true
	})
	for _, id := range removed {
		if err := tx.Delete(MembersAcks, id); err != nil {
			return err
		}
	}
	return nil
}

// openProposal loads the path's proposal, which must exist and be Open.
func openProposal(tx KV, id string) (*ProposalInfo, error) {
	info, err := loadProposal(tx, id)
	if err != nil {
		return nil, err
	}
	if info.State != ProposalOpen {
		return nil, app.Errorf(http.StatusBadRequest, "ProposalNotOpen", "proposal %s is %s, not Open", id, info.State)
	}
	return info, nil
}

func loadProposal(tx KV, id string) (*ProposalInfo, error) {
	var info ProposalInfo
	ok, err := getJSON(tx, ProposalsInfo, id, &info)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, app.Errorf(http.StatusNotFound, "ProposalNotFound", "no proposal %s", id)
	}
	return &info, nil
}

type ballotBody struct {
	Ballot string `json:"ballot"`
}

func (g *Governance) submitBallot(c *app.Context) (*app.Response, error) {
	s, err := g.verify(c, govcose.MsgBallot)
	if err != nil {
		return nil, err
	}
	if err := s.active(); err != nil {
		return nil, err
	}
	id, member := c.PathParams["proposalId"], s.req.MemberID
	info, err := openProposal(c.Tx, id)
	if err != nil {
		return nil, err
	}
	var body ballotBody
	if err := app.DecodeJSON(s.req.Payload, &body); err != nil {
		return nil, err
	}
	if body.Ballot == "" {
		return nil, app.BadRequest("ballot must be the source of a module exporting vote(proposal, proposerId)")
	}
	if old, ok := info.Ballots[member]; ok {
		if old == body.Ballot {
			return app.JSON(proposalView(id, info)), nil // the same ballot again: nothing changes
		}
		return nil, app.Errorf(http.StatusBadRequest, "VoteAlreadyExists", "member %s already voted on proposal %s with another ballot", member, id)
	}
	if err := constitution.CheckBallot(body.Ballot); err != nil {
		return nil, app.Errorf(http.StatusBadRequest, "InvalidBallot", "%v", err)
	}
	proposal, _ := c.Tx.Get(Proposals, id)
	ctx := c.Request.Context()
	var vote bool
	err = g.js(ctx, func() (err error) {
		vote, err = constitution.EvalBallot(ctx, body.Ballot, string(proposal), info.ProposerID, g.limits)
		return err
	})
	if err != nil && !scriptFailure(err) {
		return nil, err // the request went away, or the node failed: nothing is recorded
	}
	if info.Ballots == nil {
		info.Ballots, info.Votes = map[string]string{}, map[string]bool{}
	}
	info.Ballots[member] = body.Ballot
	if err := s.record(c.Tx); err != nil {
		return nil, err
	}
	if err != nil {
		// As in CCF, a ballot that throws, loops, runs out of memory or
		// answers something other than a boolean fails the proposal.
		info.fail("ballot of member " + member + ": " + err.Error())
		if err := putJSON(c.Tx, ProposalsInfo, id, info); err != nil {
			return nil, err
		}
		g.log.Info("ballot failed the proposal", "proposal_id", id, "member_id", member)
		return app.JSON(proposalView(id, info)), nil
	}
	info.Votes[member] = vote
	con, err := g.constitution(c.Tx)
	if err != nil {
		return nil, err
	}
	if err := g.resolve(ctx, c.Tx, con, id, string(proposal), info); err != nil {
		return nil, err
	}
	g.log.Info("ballot submitted", "proposal_id", id, "member_id", member, "state", info.State)
	return app.JSON(proposalView(id, info)), nil
}

func (g *Governance) withdraw(c *app.Context) (*app.Response, error) {
	s, err := g.verify(c, govcose.MsgWithdrawal)
	if err != nil {
		return nil, err
	}
	if err := s.active(); err != nil {
		return nil, err
	}
	id := c.PathParams["proposalId"]
	info, err := loadProposal(c.Tx, id)
	if err != nil {
		return nil, err
	}
	if info.ProposerID != s.req.MemberID {
		return nil, app.Errorf(http.StatusForbidden, "AuthorizationFailed", "only the proposer %s may withdraw proposal %s", info.ProposerID, id)
	}
	if info.State == ProposalWithdrawn {
		return app.JSON(proposalView(id, info)), nil
	}
	if info.State != ProposalOpen {
		return nil, app.Errorf(http.StatusBadRequest, "ProposalNotOpen", "proposal %s is %s, not Open", id, info.State)
	}
	info.State = ProposalWithdrawn
	if err := s.record(c.Tx); err != nil {
		return nil, err
	}
	if err := putJSON(c.Tx, ProposalsInfo, id, info); err != nil {
		return nil, err
	}
	g.log.Info("proposal withdrawn", "proposal_id", id)
	return app.JSON(proposalView(id, info)), nil
}

// stateDigestView is the answer of the state-digest endpoints.
type stateDigestView struct {
	MemberID    string `json:"memberId"`
	StateDigest string `json:"stateDigest"`
}

func (g *Governance) updateDigest(c *app.Context) (*app.Response, error) {
	s, err := g.verify(c, govcose.MsgStateDigest)
	if err != nil {
		return nil, err
	}
	d := StateDigest(c.Tx)
	if err := putJSON(c.Tx, MembersAcks, s.req.MemberID, MemberAck{StateDigest: d}); err != nil {
		return nil, err
	}
	if err := s.record(c.Tx); err != nil {
		return nil, err
	}
	return app.JSON(stateDigestView{MemberID: s.req.MemberID, StateDigest: d}), nil
}

type ackBody struct {
	StateDigest string `json:"stateDigest"`
}

func (g *Governance) ackDigest(c *app.Context) (*app.Response, error) {
	s, err := g.verify(c, govcose.MsgAck)
	if err != nil {
		return nil, err
	}
	var body ackBody
	if err := app.DecodeJSON(s.req.Payload, &body); err != nil {
		return nil, err
	}
	var ack MemberAck
	ok, err := getJSON(c.Tx, MembersAcks, s.req.MemberID, &ack)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, app.Errorf(http.StatusBadRequest, "StateDigestMismatch", "member %s has no state digest to acknowledge: call :update first", s.req.MemberID)
	}
	if body.StateDigest != ack.StateDigest {
		return nil, app.Errorf(http.StatusBadRequest, "StateDigestMismatch", "the acknowledged digest %q is not the one member %s was given", body.StateDigest, s.req.MemberID)
	}
	if s.status == MemberActive {
		return &app.Response{Status: http.StatusNoContent}, nil
	}
	var info MemberInfo
	if _, err := getJSON(c.Tx, MembersInfo, s.req.MemberID, &info); err != nil {
		return nil, err
	}
	info.Status = MemberActive
	if err := putJSON(c.Tx, MembersInfo, s.req.MemberID, info); err != nil {
		return nil, err
	}
	if err := s.record(c.Tx); err != nil {
		return nil, err
	}
	g.log.Info("member active", "member_id", s.req.MemberID)
	return &app.Response{Status: http.StatusNoContent}, nil
}

// compile-time check: the kv transaction is what governance runs on.
var _ KV = (*kv.Tx)(nil)
