package node

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/cocoledger/coco/app"
	"github.com/cocoledger/coco/consensus"
	cococrypto "github.com/cocoledger/coco/crypto"
	"github.com/cocoledger/coco/gov"
	"github.com/cocoledger/coco/kv"
)

// JoinConfig makes a node with an empty data directory join an existing
// service instead of creating one.
type JoinConfig struct {
	// Target is host:port of any node's HTTPS API.
	Target string
	// ServiceCertFile is the service certificate the target must present;
	// it is how the joiner knows it joins the right service.
	ServiceCertFile string
	// RetryInterval is how often a pending joiner asks again; default 500ms.
	RetryInterval time.Duration
}

// maxPendingNodes bounds the nodes waiting to be trusted.
const maxPendingNodes = 32

// joinRequest is the body of POST /node/join. The caller's identity is the
// TLS client certificate it presents (self-signed with its node key).
type joinRequest struct {
	NodeAddress string `json:"node_address"`
	RPCAddress  string `json:"rpc_address"`
}

// joinResponse answers POST /node/join. The secrets are filled in only once
// the node is Trusted in the committed state, and only for the caller that
// holds the node's key.
type joinResponse struct {
	NodeID        string          `json:"node_id"`
	Status        string          `json:"status"`
	NodeCert      string          `json:"node_cert,omitempty"`
	ServiceCert   string          `json:"service_cert,omitempty"`
	ServiceKey    string          `json:"service_key,omitempty"`
	LedgerSecrets json.RawMessage `json:"ledger_secrets,omitempty"`
	Nodes         []joinPeer      `json:"nodes,omitempty"`
}

// joinPeer is a trusted node a joiner can reach.
type joinPeer struct {
	NodeID      string `json:"node_id"`
	RaftID      uint64 `json:"raft_id"`
	NodeAddress string `json:"node_address"`
	RPCAddress  string `json:"rpc_address"`
}

// checkAddress accepts host:port with a host others can dial.
func checkAddress(name, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return app.BadRequest("%s %q: %v", name, addr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 || p > 65535 {
		return app.BadRequest("%s %q: bad port", name, addr)
	}
	if host == "" {
		return app.BadRequest("%s %q: a host is required", name, addr)
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return app.BadRequest("%s %q: an unspecified address cannot be dialled by other nodes", name, addr)
	}
	return nil
}

// postJoin registers the calling node as Pending and, once the members
// have trusted it (transition_node_to_trusted) in the committed state,
// endorses its key and hands it the service's secrets. It runs on the
// primary.
func (n *Node) postJoin(c *app.Context) (*app.Response, error) {
	cert := c.Caller.Cert
	if cert == nil {
		return nil, app.Errorf(http.StatusUnauthorized, "InvalidAuthenticationInfo", "joining needs a TLS client certificate for the node's key")
	}
	nodeID, err := cococrypto.KeyID(cert.PublicKey)
	if err != nil {
		return nil, app.BadRequest("client certificate key: %v", err)
	}
	raftID, err := consensus.RaftID(nodeID)
	if err != nil {
		return nil, app.BadRequest("node id: %v", err)
	}
	var req joinRequest
	if err := app.DecodeJSON(c.Body, &req); err != nil {
		return nil, err
	}
	if err := checkAddress("node_address", req.NodeAddress); err != nil {
		return nil, err
	}
	if err := checkAddress("rpc_address", req.RPCAddress); err != nil {
		return nil, err
	}
	var existing *gov.NodeInfo
	for _, ni := range n.nodes(c.Tx) {
		switch {
		case ni.NodeID == nodeID:
			existing = &ni
		case ni.RaftID == raftID:
			return nil, app.Errorf(http.StatusConflict, "NodeIdCollision", "node %s maps to raft id %d, which node %s already has; use another node key", nodeID, raftID, ni.NodeID)
		}
	}
	if existing != nil {
		switch existing.Status {
		case gov.NodeRetired:
			return nil, app.Errorf(http.StatusForbidden, "NodeRetired", "node %s was retired from this service; a retired node cannot join again", nodeID)
		case gov.NodeTrusted:
			// The head may hold an admission that is not committed yet (its
			// commit is pending, or a view change will drop it): the secrets
			// go out only once the committed state trusts the node.
			committed := n.store.BeginReadOnly()
			if ci, ok := n.nodeInfo(committed, nodeID); !ok || ci.Status != gov.NodeTrusted {
				return app.JSON(joinResponse{NodeID: nodeID, Status: gov.NodePending}), nil
			}
			endorsed := n.endorsedByService(existing.Cert)
			if endorsed && existing.RPCAddress == req.RPCAddress && existing.NodeAddress == req.NodeAddress {
				return n.joinAnswer(nodeID, committed)
			}
			// A node the members trusted (transition_node_to_trusted) still
			// has the certificate it joined with: the service endorses its
			// key now. A trusted node restarted on other addresses (its own
			// request, see refreshOwnRecord) has them recorded, so its peers
			// and the backups forwarding to it find it.
			upd := *existing
			upd.RPCAddress, upd.NodeAddress = req.RPCAddress, req.NodeAddress
			if !endorsed {
				ec, err := n.endorse(cert, req.RPCAddress, req.NodeAddress)
				if err != nil {
					return nil, err
				}
				upd.Cert = string(cococrypto.EncodeCertPEM(ec))
				n.log.Info("node trusted by governance: certificate endorsed", "node", nodeID)
			}
			ub, err := json.Marshal(upd)
			if err != nil {
				return nil, err
			}
			if err := c.Tx.Put(gov.NodesInfo, nodeID, ub); err != nil {
				return nil, err
			}
			n.log.Info("node addresses changed", "node", nodeID, "rpc_address", req.RPCAddress, "node_address", req.NodeAddress)
			return n.joinAnswer(nodeID, c.Tx)
		}
	}
	if existing == nil {
		pending := 0
		for _, ni := range n.nodes(c.Tx) {
			if ni.Status == gov.NodePending {
				pending++
			}
		}
		// Anyone who can reach the port can ask to join: bound what they
		// can make the service record.
		if pending >= maxPendingNodes {
			return nil, app.Errorf(http.StatusTooManyRequests, "TooManyPendingNodes", "%d nodes are already waiting to be trusted; try again once they are trusted or removed", pending)
		}
	}
	ni := gov.NodeInfo{NodeID: nodeID, RaftID: raftID, Status: gov.NodePending, Cert: string(cococrypto.EncodeCertPEM(cert)), RPCAddress: req.RPCAddress, NodeAddress: req.NodeAddress}
	b, err := json.Marshal(ni)
	if err != nil {
		return nil, err
	}
	if old, ok := c.Tx.Get(gov.NodesInfo, nodeID); ok && bytes.Equal(old, b) {
		// A pending joiner asking again: nothing to record.
		return app.JSON(joinResponse{NodeID: nodeID, Status: ni.Status}), nil
	}
	if err := c.Tx.Put(gov.NodesInfo, nodeID, b); err != nil {
		return nil, err
	}
	n.log.Info("node joining: Pending until the members trust it", "joiner", nodeID, "node_address", req.NodeAddress)
	return app.JSON(joinResponse{NodeID: nodeID, Status: ni.Status}), nil
}

// endorse issues a joining node's certificate for its key, signed by the
// service identity, valid for its addresses.
func (n *Node) endorse(joiner *x509.Certificate, rpcAddr, nodeAddr string) (*x509.Certificate, error) {
	nodeID, err := cococrypto.KeyID(joiner.PublicKey)
	if err != nil {
		return nil, err
	}
	c, err := cococrypto.IssueCert(joiner.PublicKey, cococrypto.CertOptions{
		CommonName: "coco node " + nodeID[:16], Hosts: certHosts(rpcAddr, nodeAddr), Validity: 365 * 24 * time.Hour,
		ServerAuth: true, ClientAuth: true,
	}, n.id.serviceCert, n.id.serviceKey)
	if err != nil {
		return nil, fmt.Errorf("node: endorse joining node: %w", err)
	}
	return c, nil
}

// endorsedByService reports whether a node record's certificate was issued
// by the service (a joiner's own certificate is self-signed).
func (n *Node) endorsedByService(certPEM string) bool {
	c, err := cococrypto.ParseCertPEM([]byte(certPEM))
	return err == nil && c.CheckSignatureFrom(n.id.serviceCert) == nil
}

// joinAnswer is the answer to a trusted node: its endorsed certificate, the
// service identity and the ledger secrets, and the trusted nodes to talk to.
func (n *Node) joinAnswer(nodeID string, tx *kv.Tx) (*app.Response, error) {
	ni, ok := n.nodeInfo(tx, nodeID)
	if !ok {
		return nil, fmt.Errorf("node: node %s vanished", nodeID)
	}
	svcKey, err := cococrypto.EncodePrivateKeyPEM(n.id.serviceKey)
	if err != nil {
		return nil, err
	}
	secrets, err := cococrypto.MarshalSecrets(n.id.keyring.Secrets())
	if err != nil {
		return nil, err
	}
	resp := joinResponse{
		NodeID: nodeID, Status: ni.Status, NodeCert: ni.Cert,
		ServiceCert: string(cococrypto.EncodeCertPEM(n.id.serviceCert)), ServiceKey: string(svcKey), LedgerSecrets: secrets,
	}
	for _, p := range n.nodes(n.store.BeginReadOnly()) {
		if p.Status == gov.NodeTrusted && p.NodeID != nodeID {
			resp.Nodes = append(resp.Nodes, joinPeer{NodeID: p.NodeID, RaftID: p.RaftID, NodeAddress: p.NodeAddress, RPCAddress: p.RPCAddress})
		}
	}
	return app.JSON(resp), nil
}

// joinClient is an HTTPS client that pins the service certificate and
// presents cert.
func joinClient(serviceCert *x509.Certificate, cert tls.Certificate) *http.Client {
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: serviceTLS(serviceCert, cert)},
	}
}

// serviceTLS is the client TLS configuration of a node talking to another
// node's API: it pins the service certificate and presents cert.
func serviceTLS(serviceCert *x509.Certificate, cert tls.Certificate) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(serviceCert)
	return &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, Certificates: []tls.Certificate{cert}}
}

// joinService asks cfg.Join.Target to admit this node until it is trusted,
// then writes the service identity, the ledger secrets and the endorsed
// node certificate into the data directory (the service key last: its
// presence marks the set complete).
func (n *Node) joinService(ctx context.Context, key crypto.Signer, rpcAddr, nodeAddr string) (*joinResponse, error) {
	jc := n.cfg.Join
	svcCert, err := cococrypto.ReadCertFile(jc.ServiceCertFile)
	if err != nil {
		return nil, fmt.Errorf("node: join: service certificate: %w", err)
	}
	ek, ok := key.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("node: join: node key must be ECDSA, not %T", key)
	}
	self, err := cococrypto.SelfSignedCert(ek, "coco joining node", 24*time.Hour, false)
	if err != nil {
		return nil, err
	}
	client := joinClient(svcCert, tls.Certificate{Certificate: [][]byte{self.Raw}, PrivateKey: key, Leaf: self})
	defer client.CloseIdleConnections()
	body, _ := json.Marshal(joinRequest{NodeAddress: nodeAddr, RPCAddress: rpcAddr})
	url := "https://" + jc.Target + "/node/join"
	wait := jc.RetryInterval
	if wait <= 0 {
		wait = 500 * time.Millisecond
	}
	logged := ""
	for {
		resp, status, err := postJSON(ctx, client, url, body)
		switch {
		case err != nil:
			if logged != "unreachable" {
				n.log.Warn("join: target not reachable yet; retrying", "target", jc.Target, "err", err)
				logged = "unreachable"
			}
		case status == http.StatusOK:
			var jr joinResponse
			if err := json.Unmarshal(resp, &jr); err != nil {
				return nil, fmt.Errorf("node: join: answer from %s: %w", jc.Target, err)
			}
			if jr.Status == gov.NodeTrusted {
				if err := n.saveJoinSecrets(&jr, key, svcCert); err != nil {
					return nil, err
				}
				n.log.Info("joined the service", "node_id", jr.NodeID, "target", jc.Target, "peers", len(jr.Nodes))
				return &jr, nil
			}
			if logged != jr.Status {
				n.log.Info("join: waiting to be trusted", "node_id", jr.NodeID, "status", jr.Status)
				logged = jr.Status
			}
		case status >= 400 && status < 500:
			return nil, fmt.Errorf("node: join refused by %s (%d): %s", jc.Target, status, bytes.TrimSpace(resp))
		default:
			if logged != "busy" {
				n.log.Warn("join: target cannot admit nodes now; retrying", "target", jc.Target, "status", status, "body", string(bytes.TrimSpace(resp)))
				logged = "busy"
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("node: join %s: %w", jc.Target, ctx.Err())
		case <-time.After(wait):
		}
	}
}

func postJSON(ctx context.Context, client *http.Client, url string, body []byte) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, 0, err
	}
	return b, resp.StatusCode, nil
}

// saveJoinSecrets checks what a trusted joiner received and writes it.
func (n *Node) saveJoinSecrets(jr *joinResponse, key crypto.Signer, pinned *x509.Certificate) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("node: join: the service's answer is unusable: "+format, args...)
	}
	svcCert, err := cococrypto.ParseCertPEM([]byte(jr.ServiceCert))
	if err != nil {
		return bad("service certificate: %v", err)
	}
	if !bytes.Equal(svcCert.Raw, pinned.Raw) {
		return bad("the service certificate differs from %s", n.cfg.Join.ServiceCertFile)
	}
	nodeCert, err := cococrypto.ParseCertPEM([]byte(jr.NodeCert))
	if err != nil {
		return bad("node certificate: %v", err)
	}
	if err := nodeCert.CheckSignatureFrom(svcCert); err != nil {
		return bad("node certificate is not endorsed by the service: %v", err)
	}
	certID, err1 := cococrypto.KeyID(nodeCert.PublicKey)
	ownID, err2 := cococrypto.KeyID(key.Public())
	if err1 != nil || err2 != nil || certID != ownID {
		return bad("node certificate is for another key")
	}
	svcKey, err := cococrypto.ParsePrivateKeyPEM([]byte(jr.ServiceKey))
	if err != nil {
		return bad("service key: %v", err)
	}
	keyID, err1 := cococrypto.KeyID(svcKey.Public())
	svcID, err2 := cococrypto.KeyID(svcCert.PublicKey)
	if err1 != nil || err2 != nil || keyID != svcID {
		return bad("service key does not match the service certificate")
	}
	if _, err := cococrypto.UnmarshalSecrets(jr.LedgerSecrets); err != nil {
		return bad("ledger secrets: %v", err)
	}
	dir := n.cfg.DataDir
	// The marker first: a node holding secrets it was given must never
	// start a service of its own with them, even if restarted with
	// "node start" before its ledger has its first entry.
	marker, _ := json.Marshal(map[string]string{"target": n.cfg.Join.Target, "node_id": jr.NodeID, "joined_at": time.Now().UTC().Format(time.RFC3339)})
	if err := cococrypto.WriteFileAtomic(filepath.Join(dir, JoinedFile), marker, 0o600); err != nil {
		return err
	}
	if err := cococrypto.WriteFileAtomic(filepath.Join(dir, LedgerSecretsFile), jr.LedgerSecrets, 0o600); err != nil {
		return err
	}
	if err := cococrypto.WriteCertFile(filepath.Join(dir, ServiceCertFile), svcCert); err != nil {
		return err
	}
	if err := cococrypto.WriteCertFile(filepath.Join(dir, NodeCertFile), nodeCert); err != nil {
		return err
	}
	return cococrypto.WriteKeyFile(filepath.Join(dir, ServiceKeyFile), svcKey)
}

// fetchPeers asks the join target for the service's nodes, so that a
// joined node restarting with little of the ledger can still reach the
// primary. Best effort: the ledger has the same information.
func (n *Node) fetchPeers(ctx context.Context) []joinPeer {
	svcCert := n.id.serviceCert
	client := joinClient(svcCert, n.id.tlsCert())
	client.Timeout = 2 * time.Second
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+n.cfg.Join.Target+"/node/network/nodes", nil)
	if err != nil {
		return nil
	}
	resp, err := client.Do(req)
	if err != nil {
		n.log.Debug("fetch peers from join target", "err", err)
		return nil
	}
	defer resp.Body.Close()
	var out struct {
		Nodes []nodeView `json:"nodes"` // as getNodes writes them
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&out) != nil {
		return nil
	}
	var peers []joinPeer
	for _, p := range out.Nodes {
		id, err := consensus.RaftID(p.NodeID)
		if err != nil || p.Status != gov.NodeTrusted || p.NodeID == n.id.nodeID {
			continue
		}
		peers = append(peers, joinPeer{NodeID: p.NodeID, RaftID: id, NodeAddress: p.NodeAddress, RPCAddress: p.RPCAddress})
	}
	return peers
}

// refreshOwnRecord makes the service record this node's current addresses
// when they differ from the recorded ones (a restart on other ports): it
// asks the other nodes, in turn, to let it join again (a backup forwards the
// request to the primary), since until its record changes the primary may
// not reach it. It returns once the committed record matches.
func (n *Node) refreshOwnRecord(ctx context.Context, rpcAddr, nodeAddr string) {
	client := joinClient(n.id.serviceCert, n.id.tlsCert())
	defer client.CloseIdleConnections()
	body, _ := json.Marshal(joinRequest{NodeAddress: nodeAddr, RPCAddress: rpcAddr})
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		committed := n.store.BeginReadOnly()
		if ni, ok := n.nodeInfo(committed, n.id.nodeID); ok && ni.Status == gov.NodeTrusted {
			if ni.RPCAddress == rpcAddr && ni.NodeAddress == nodeAddr {
				return
			}
			for _, p := range n.nodes(committed) {
				if p.NodeID == n.id.nodeID || p.Status != gov.NodeTrusted || p.RPCAddress == "" {
					continue
				}
				_, status, err := postJSON(ctx, client, "https://"+p.RPCAddress+"/node/join", body)
				if err == nil && status == http.StatusOK {
					break
				}
				n.log.Debug("record new addresses", "via", p.RPCAddress, "status", status, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// haveSecrets reports whether dir holds a complete set of service secrets.
func haveSecrets(dir string) (bool, error) {
	for _, f := range []string{ServiceKeyFile, LedgerSecretsFile} {
		_, err := os.Stat(filepath.Join(dir, f))
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
	}
	return true, nil
}
