package gov

import (
	"encoding/json"
	"net/http"

	"github.com/cocoledger/coco/app"
)

// The read-only /gov views. Bodies are camelCase and lists are
// {"value":[...]}, as in CCF's API version 2024-07-01.

// ProposalView is what the proposal endpoints answer.
type ProposalView struct {
	ProposalID    string          `json:"proposalId"`
	ProposerID    string          `json:"proposerId"`
	ProposalState string          `json:"proposalState"`
	BallotCount   int             `json:"ballotCount"`
	FinalVotes    map[string]bool `json:"finalVotes,omitempty"`
	Failure       *Failure        `json:"failure,omitempty"`
}

func proposalView(id string, info *ProposalInfo) ProposalView {
	return ProposalView{
		ProposalID: id, ProposerID: info.ProposerID, ProposalState: info.State,
		BallotCount: len(info.Ballots), FinalVotes: info.FinalVotes, Failure: info.Failure,
	}
}

type list[T any] struct {
	Value []T `json:"value"`
}

func (g *Governance) listProposals(c *app.Context) (*app.Response, error) {
	out := list[ProposalView]{Value: []ProposalView{}}
	var err error
	c.Tx.Range(ProposalsInfo, func(id string, v []byte) bool {
		var info ProposalInfo
		if err = json.Unmarshal(v, &info); err != nil {
			return false
		}
		out.Value = append(out.Value, proposalView(id, &info))
		return true
	})
	if err != nil {
		return nil, err
	}
	return app.JSON(out), nil
}

func (g *Governance) getProposal(c *app.Context) (*app.Response, error) {
	id := c.PathParams["proposalId"]
	info, err := loadProposal(c.Tx, id)
	if err != nil {
		return nil, err
	}
	return app.JSON(proposalView(id, info)), nil
}

func (g *Governance) getActions(c *app.Context) (*app.Response, error) {
	id := c.PathParams["proposalId"]
	p, ok := c.Tx.Get(Proposals, id)
	if !ok {
		return nil, app.Errorf(http.StatusNotFound, "ProposalNotFound", "no proposal %s", id)
	}
	return &app.Response{Status: http.StatusOK, Raw: p, ContentType: "application/json"}, nil
}

func (g *Governance) getBallot(c *app.Context) (*app.Response, error) {
	id, member := c.PathParams["proposalId"], c.PathParams["memberId"]
	info, err := loadProposal(c.Tx, id)
	if err != nil {
		return nil, err
	}
	b, ok := info.Ballots[member]
	if !ok {
		return nil, app.Errorf(http.StatusNotFound, "VoteNotFound", "member %s has not voted on proposal %s", member, id)
	}
	return app.JSON(ballotBody{Ballot: b}), nil
}

func (g *Governance) getDigest(c *app.Context) (*app.Response, error) {
	member := c.PathParams["memberId"]
	var ack MemberAck
	ok, err := getJSON(c.Tx, MembersAcks, member, &ack)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, app.NotFound("member %s has no state digest", member)
	}
	return app.JSON(stateDigestView{MemberID: member, StateDigest: ack.StateDigest}), nil
}

// ServiceInfoView is GET /gov/service/info.
type ServiceInfoView struct {
	Status                        string `json:"status"`
	Certificate                   string `json:"certificate"`
	RecoveryCount                 uint64 `json:"recoveryCount"`
	RecentCoseProposalsWindowSize int    `json:"recentCoseProposalsWindowSize"`
	Configuration                 struct {
		RecoveryThreshold int `json:"recoveryThreshold"`
	} `json:"configuration"`
}

func (g *Governance) getServiceInfo(c *app.Context) (*app.Response, error) {
	var svc Service
	if ok, err := getJSON(c.Tx, ServiceInfo, ServiceKey, &svc); err != nil || !ok {
		return nil, app.Errorf(http.StatusServiceUnavailable, "ServiceUnavailable", "the service is not set up yet")
	}
	var cfg ServiceConfiguration
	if _, err := getJSON(c.Tx, ServiceConfig, ServiceKey, &cfg); err != nil {
		return nil, err
	}
	w, err := loadWindow(c.Tx)
	if err != nil {
		return nil, err
	}
	v := ServiceInfoView{Status: svc.Status, Certificate: svc.Cert, RecoveryCount: svc.RecoveryCount, RecentCoseProposalsWindowSize: w.Size()}
	v.Configuration.RecoveryThreshold = cfg.RecoveryThreshold
	return app.JSON(v), nil
}

// MemberView is one member in /gov/service/members.
type MemberView struct {
	MemberID            string          `json:"memberId"`
	Status              string          `json:"status"`
	Certificate         string          `json:"certificate"`
	MemberData          json.RawMessage `json:"memberData,omitempty"`
	PublicEncryptionKey string          `json:"publicEncryptionKey,omitempty"`
}

func memberView(tx KV, id string, cert []byte) (MemberView, error) {
	var info MemberInfo
	if _, err := getJSON(tx, MembersInfo, id, &info); err != nil {
		return MemberView{}, err
	}
	enc, _ := tx.Get(MembersEncryptionPublicKeys, id)
	return MemberView{MemberID: id, Status: info.Status, Certificate: string(cert), MemberData: info.MemberData, PublicEncryptionKey: string(enc)}, nil
}

func (g *Governance) listMembers(c *app.Context) (*app.Response, error) {
	out := list[MemberView]{Value: []MemberView{}}
	var err error
	c.Tx.Range(MembersCerts, func(id string, cert []byte) bool {
		var m MemberView
		if m, err = memberView(c.Tx, id, cert); err != nil {
			return false
		}
		out.Value = append(out.Value, m)
		return true
	})
	if err != nil {
		return nil, err
	}
	return app.JSON(out), nil
}

func (g *Governance) getMember(c *app.Context) (*app.Response, error) {
	id := c.PathParams["memberId"]
	cert, ok := c.Tx.Get(MembersCerts, id)
	if !ok {
		return nil, app.NotFound("no member %s", id)
	}
	m, err := memberView(c.Tx, id, cert)
	if err != nil {
		return nil, err
	}
	return app.JSON(m), nil
}

// UserView is one user in /gov/service/users.
type UserView struct {
	UserID      string          `json:"userId"`
	Certificate string          `json:"certificate"`
	UserData    json.RawMessage `json:"userData,omitempty"`
}

func userView(tx KV, id string, cert []byte) UserView {
	var info struct {
		UserData json.RawMessage `json:"user_data"`
	}
	if b, ok := tx.Get(UsersInfo, id); ok {
		_ = json.Unmarshal(b, &info) // user_data is whatever a proposal set
	}
	return UserView{UserID: id, Certificate: string(cert), UserData: info.UserData}
}

func (g *Governance) listUsers(c *app.Context) (*app.Response, error) {
	out := list[UserView]{Value: []UserView{}}
	c.Tx.Range(UsersCerts, func(id string, cert []byte) bool {
		out.Value = append(out.Value, userView(c.Tx, id, cert))
		return true
	})
	return app.JSON(out), nil
}

func (g *Governance) getUser(c *app.Context) (*app.Response, error) {
	id := c.PathParams["userId"]
	cert, ok := c.Tx.Get(UsersCerts, id)
	if !ok {
		return nil, app.NotFound("no user %s", id)
	}
	return app.JSON(userView(c.Tx, id, cert)), nil
}

// NodeView is one node in /gov/service/nodes.
type NodeView struct {
	NodeID      string `json:"nodeId"`
	Status      string `json:"status"`
	Certificate string `json:"certificate"`
	RPCAddress  string `json:"rpcAddress"`
	NodeAddress string `json:"nodeAddress,omitempty"`
}

func nodeView(ni NodeInfo) NodeView {
	return NodeView{NodeID: ni.NodeID, Status: ni.Status, Certificate: ni.Cert, RPCAddress: ni.RPCAddress, NodeAddress: ni.NodeAddress}
}

func (g *Governance) listNodes(c *app.Context) (*app.Response, error) {
	out := list[NodeView]{Value: []NodeView{}}
	var err error
	c.Tx.Range(NodesInfo, func(_ string, v []byte) bool {
		var ni NodeInfo
		if err = json.Unmarshal(v, &ni); err != nil {
			return false
		}
		out.Value = append(out.Value, nodeView(ni))
		return true
	})
	if err != nil {
		return nil, err
	}
	return app.JSON(out), nil
}

func (g *Governance) getNode(c *app.Context) (*app.Response, error) {
	id := c.PathParams["nodeId"]
	var ni NodeInfo
	ok, err := getJSON(c.Tx, NodesInfo, id, &ni)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, app.NotFound("no node %s", id)
	}
	return app.JSON(nodeView(ni)), nil
}

func (g *Governance) getConstitution(c *app.Context) (*app.Response, error) {
	src, ok := c.Tx.Get(Constitution, ConstitutionKey)
	if !ok {
		return nil, app.NotFound("the service has no constitution")
	}
	return &app.Response{Status: http.StatusOK, Raw: src, ContentType: "text/javascript"}, nil
}
