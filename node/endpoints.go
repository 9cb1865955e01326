package node

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"sort"
	"strings"

	"github.com/cocoledger/coco/app"
	"github.com/cocoledger/coco/consensus"
	"github.com/cocoledger/coco/gov"
	"github.com/cocoledger/coco/kv"
	"github.com/cocoledger/coco/receipt"
)

// frameworkEndpoints are the endpoints every node serves, whatever its apps.
func (n *Node) frameworkEndpoints() []app.Endpoint {
	get := func(path, summary string, auth app.Auth, h app.Handler) app.Endpoint {
		return app.Endpoint{Method: http.MethodGet, Path: path, Auth: auth, Mode: app.ReadOnly, Summary: summary, Handler: h}
	}
	return []app.Endpoint{
		get("/node/network", "Service status, certificate, view and primary", app.AuthNone, n.getNetwork),
		get("/node/network/nodes", "The service's nodes", app.AuthNone, n.getNodes),
		get("/node/state", "This node's state", app.AuthNone, n.getState),
		get("/node/version", "coco version", app.AuthNone, n.getVersion),
		get("/node/commit", "The latest committed transaction id", app.AuthNone, n.getCommit),
		get("/node/tx", "Status of a transaction id", app.AuthNone, n.getTx),
		get("/node/ready/app", "204 when this node serves application requests (the service is Open)", app.AuthNone, n.getReadyApp),
		get("/node/ready/gov", "204 when this node serves governance requests", app.AuthNone, n.getReadyGov),
		get("/app/api", "This OpenAPI document", app.AuthNone, n.getAPI),
		{Method: http.MethodPost, Path: "/node/join", Auth: app.AuthCert, Mode: app.ReadWrite, Summary: "A node asks to join the service (TLS client certificate of its node key)", Handler: n.postJoin},
		get("/app/receipt", "JSON receipt of a committed transaction", app.AuthUser, n.getReceipt),
		get("/app/receipt/cose", "COSE receipt (RFC 9942, CCF profile) of a committed transaction", app.AuthUser, n.getCOSEReceipt),
	}
}

func (n *Node) service(tx *kv.Tx) gov.Service {
	var s gov.Service
	if b, ok := tx.Get(gov.ServiceInfo, gov.ServiceKey); ok {
		_ = json.Unmarshal(b, &s)
	}
	return s
}

// nodeInfo is one node's record in tx (false if absent or malformed, as
// nodes skips it).
func (n *Node) nodeInfo(tx *kv.Tx, nodeID string) (gov.NodeInfo, bool) {
	var ni gov.NodeInfo
	b, ok := tx.Get(gov.NodesInfo, nodeID)
	if !ok || json.Unmarshal(b, &ni) != nil {
		return gov.NodeInfo{}, false
	}
	return ni, true
}

func (n *Node) nodes(tx *kv.Tx) []gov.NodeInfo {
	var out []gov.NodeInfo
	tx.Range(gov.NodesInfo, func(_ string, v []byte) bool {
		var ni gov.NodeInfo
		if json.Unmarshal(v, &ni) == nil {
			out = append(out, ni)
		}
		return true
	})
	return out
}

func (n *Node) primaryID(tx *kv.Tx, leader uint64) string {
	for _, ni := range n.nodes(tx) {
		if ni.RaftID == leader && leader != 0 {
			return ni.NodeID
		}
	}
	return ""
}

func (n *Node) getNetwork(c *app.Context) (*app.Response, error) {
	s := n.cons.Status()
	svc := n.service(c.Tx)
	return app.JSON(map[string]any{
		"service_status":      svc.Status,
		"service_certificate": svc.Cert,
		"current_view":        s.View,
		"primary_id":          n.primaryID(c.Tx, s.Leader),
		"recovery_count":      svc.RecoveryCount,
	}), nil
}

type nodeView struct {
	NodeID      string `json:"node_id"`
	Status      string `json:"status"`
	Primary     bool   `json:"primary"`
	RPCAddress  string `json:"rpc_address"`
	NodeAddress string `json:"node_address,omitempty"`
	// Membership is the node's place in the configuration this node has
	// applied: "Voter", "Learner" (catching up before it votes) or "None".
	Membership string `json:"membership"`
}

func (n *Node) getNodes(c *app.Context) (*app.Response, error) {
	leader := n.cons.Status().Leader
	conf := n.cons.Membership()
	out := []nodeView{}
	for _, ni := range n.nodes(c.Tx) {
		m := "None"
		switch {
		case slices.Contains(conf.Voters, ni.RaftID):
			m = "Voter"
		case slices.Contains(conf.Learners, ni.RaftID):
			m = "Learner"
		}
		out = append(out, nodeView{NodeID: ni.NodeID, Status: ni.Status, Primary: ni.RaftID == leader && leader != 0, RPCAddress: ni.RPCAddress, NodeAddress: ni.NodeAddress, Membership: m})
	}
	return app.JSON(map[string]any{"nodes": out}), nil
}

func (n *Node) getState(*app.Context) (*app.Response, error) {
	s := n.cons.Status()
	state := "PartOfNetwork"
	if s.Leader == 0 {
		state = "Candidate"
	}
	return app.JSON(map[string]any{
		"node_id":           n.id.nodeID,
		"state":             state,
		"primary":           s.IsPrimary,
		"view":              s.View,
		"commit_seqno":      s.CommitIndex,
		"last_seqno":        s.LastIndex,
		"last_signed_seqno": s.LastSignedSeqno,
	}), nil
}

func (n *Node) getVersion(*app.Context) (*app.Response, error) {
	return app.JSON(map[string]any{"coco_version": n.cfg.Version, "ccf_version": "coco-" + n.cfg.Version, "unsafe": false}), nil
}

func (n *Node) getCommit(*app.Context) (*app.Response, error) {
	s := n.cons.Status()
	return app.JSON(map[string]string{"transaction_id": consensus.TxID{View: s.CommitView, Seqno: s.CommitIndex}.String()}), nil
}

func queryTxID(c *app.Context) (consensus.TxID, error) {
	s := c.Query.Get("transaction_id")
	if s == "" {
		return consensus.TxID{}, app.BadRequest("query parameter transaction_id is required")
	}
	id, err := consensus.ParseTxID(s)
	if err != nil {
		return consensus.TxID{}, app.BadRequest("transaction_id: %v", err)
	}
	return id, nil
}

func (n *Node) getTx(c *app.Context) (*app.Response, error) {
	id, err := queryTxID(c)
	if err != nil {
		return nil, err
	}
	st, err := n.cons.TxStatus(id)
	if err != nil {
		return nil, err
	}
	return app.JSON(map[string]string{"transaction_id": id.String(), "status": string(st)}), nil
}

// getReadyGov answers 204 once this node can order writes or forward them:
// the primary once it has committed an entry of its view, a backup once it
// is in the configuration and knows a primary to forward writes to.
func (n *Node) getReadyGov(*app.Context) (*app.Response, error) {
	if !n.servesWrites() {
		return nil, app.Errorf(http.StatusServiceUnavailable, "ServiceUnavailable", "this node does not serve requests yet")
	}
	return &app.Response{Status: http.StatusNoContent}, nil
}

// getReadyApp is getReadyGov, and the service is Open.
func (n *Node) getReadyApp(c *app.Context) (*app.Response, error) {
	if !n.open.Load() {
		return nil, app.Errorf(http.StatusServiceUnavailable, "ServiceNotOpen", "the service is not open yet: its members must accept a transition_service_to_open proposal first (see GET /node/network)")
	}
	if !n.servesWrites() {
		return nil, app.Errorf(http.StatusServiceUnavailable, "ServiceUnavailable", "this node does not serve application requests yet")
	}
	return &app.Response{Status: http.StatusNoContent}, nil
}

func (n *Node) servesWrites() bool {
	s := n.cons.Status()
	return s.WritesReady || (!s.IsPrimary && s.Leader != 0 && n.cons.Membership().Contains(n.id.raftID) && n.primaryRPCAddress() != "")
}

// receiptFor builds the receipt data for the transaction in the query, or
// the error to answer with (202 while no signature covers it yet).
func (n *Node) receiptFor(c *app.Context) (*consensus.Receipt, *app.Response, error) {
	id, err := queryTxID(c)
	if err != nil {
		return nil, nil, err
	}
	r, err := n.cons.Receipt(id)
	switch {
	case err == nil:
		return r, nil, nil
	case errors.Is(err, consensus.ErrNotSigned):
		return nil, &app.Response{
			Status: http.StatusAccepted,
			Header: http.Header{"Retry-After": []string{"1"}},
			Body:   map[string]string{"transaction_id": id.String(), "status": "Committed", "message": "no signature covers this transaction yet; retry shortly"},
		}, nil
	case errors.Is(err, consensus.ErrNotCommitted):
		st, serr := n.cons.TxStatus(id)
		if serr != nil {
			return nil, nil, serr
		}
		return nil, nil, txStatusError(id, st)
	case errors.Is(err, consensus.ErrNoReceipt):
		return nil, nil, app.NotFound("transaction %s is an internal consensus entry and has no receipt", id)
	}
	return nil, nil, err
}

func (n *Node) getReceipt(c *app.Context) (*app.Response, error) {
	r, early, err := n.receiptFor(c)
	if err != nil || early != nil {
		return early, err
	}
	return app.JSON(receipt.NewJSON([]byte(r.Signature.Cert), r.Signature.NodeID, r.Signature.Sig, r.Leaf, r.Proof)), nil
}

func (n *Node) getCOSEReceipt(c *app.Context) (*app.Response, error) {
	r, early, err := n.receiptFor(c)
	if err != nil || early != nil {
		return early, err
	}
	b, err := receipt.AttachProof(r.Signature.COSE, r.Leaf, r.Proof)
	if err != nil {
		return nil, err
	}
	return &app.Response{Status: http.StatusOK, Raw: b, ContentType: "application/cose"}, nil
}

// getAPI describes every endpoint as an OpenAPI 3 document.
func (n *Node) getAPI(*app.Context) (*app.Response, error) {
	paths := map[string]map[string]any{}
	for path, methods := range n.routes.exact {
		ops := map[string]any{}
		for m, rt := range methods {
			op := map[string]any{
				"summary":   rt.ep.Summary,
				"responses": map[string]any{"default": map[string]string{"description": "see docs/api.md"}},
			}
			if rt.ep.Auth == app.AuthUser {
				op["security"] = []map[string][]string{{"user_cert": {}}}
			}
			ops[strings.ToLower(m)] = op
		}
		paths[path] = ops
	}
	names := make([]string, 0, len(n.cfg.Apps))
	for _, a := range n.cfg.Apps {
		names = append(names, a.Name())
	}
	sort.Strings(names)
	return app.JSON(map[string]any{
		"openapi": "3.0.3",
		"info":    map[string]string{"title": "coco (" + strings.Join(names, ", ") + ")", "version": n.cfg.Version},
		"paths":   paths,
		"components": map[string]any{"securitySchemes": map[string]any{
			"user_cert": map[string]string{"type": "mutualTLS", "description": "TLS client certificate registered as a user"},
		}},
	}), nil
}
