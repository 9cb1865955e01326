package node

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/cocoledger/coco/app"
	cococrypto "github.com/cocoledger/coco/crypto"
	"github.com/cocoledger/coco/gov"
)

// Forwarding: a backup sends a write to the primary over HTTPS, presenting
// its own node certificate, with the caller's certificate in
// ForwardedCallerHeader. The primary believes that header only from a
// trusted node (whose TLS handshake proved it holds the node key), then
// authenticates the caller as if it had connected directly; the response
// goes back unchanged. A forwarded request is never forwarded again.
const (
	// ForwardedHeader marks a request forwarded by a backup.
	ForwardedHeader = "x-coco-forwarded"
	// ForwardedCallerHeader carries the caller's DER certificate, base64,
	// or is absent for an anonymous caller.
	ForwardedCallerHeader = "x-coco-forwarded-caller"
)

// forwarder sends requests to the primary.
type forwarder struct {
	client *http.Client

	mu       sync.Mutex
	verified map[[32]byte]time.Time // node certificates whose endorsement was checked, until when
}

func newForwarder(serviceCert *x509.Certificate, nodeCert tls.Certificate) *forwarder {
	return &forwarder{
		client: &http.Client{
			Transport: &http.Transport{
				TLSClientConfig:     serviceTLS(serviceCert, nodeCert),
				ForceAttemptHTTP2:   true,
				MaxIdleConnsPerHost: 256,
				IdleConnTimeout:     time.Minute,
				// A primary that stops answering (frozen, partitioned) is
				// noticed by its silence to pings, not only by a write's
				// timeout.
				HTTP2: &http.HTTP2Config{SendPingTimeout: time.Second, PingTimeout: time.Second},
			},
			// A write waits for its commit; the client's own context (the
			// incoming request's) bounds it.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		verified: make(map[[32]byte]time.Time),
	}
}

// forwardedHeaders are the request headers passed on to the primary.
var forwardedHeaders = []string{"Content-Type", "Accept", TxIDHeader}

// forward sends a request to the primary and relays its answer.
func (n *Node) forward(w http.ResponseWriter, r *http.Request, body []byte, caller app.Caller) {
	if r.Header.Get(ForwardedHeader) != "" {
		writeError(w, app.Errorf(http.StatusServiceUnavailable, "NotPrimary", "this node is no longer the primary; retry"))
		return
	}
	// Watch for a new primary from before choosing the one to forward to.
	changed := n.leaderChanged()
	addr := n.primaryRPCAddress()
	if addr == "" {
		writeError(w, app.Errorf(http.StatusServiceUnavailable, "NotPrimary", "no primary is known at the moment (election in progress); retry"))
		return
	}
	url := "https://" + addr + r.URL.RequestURI()
	// A forward ends with the caller's request, after forwardTimeout, or
	// as soon as another node becomes primary: the old one may never answer.
	ctx, cancel := context.WithTimeout(r.Context(), forwardTimeout)
	defer cancel()
	go func() {
		select {
		case <-changed:
			cancel()
		case <-ctx.Done():
		}
	}()
	req, err := http.NewRequestWithContext(ctx, r.Method, url, bytes.NewReader(body))
	if err != nil {
		writeError(w, app.BadRequest("cannot forward request: %v", err))
		return
	}
	for _, h := range forwardedHeaders {
		if v := r.Header.Values(h); len(v) > 0 {
			req.Header[http.CanonicalHeaderKey(h)] = v
		}
	}
	req.Header.Set(ForwardedHeader, n.id.nodeID)
	if caller.Cert != nil {
		req.Header.Set(ForwardedCallerHeader, base64.StdEncoding.EncodeToString(caller.Cert.Raw))
	}
	resp, err := n.fwd.client.Do(req)
	if err != nil {
		n.metrics.forwardErrors.Inc()
		n.log.Debug("forward to primary failed", "primary", addr, "err", err)
		writeError(w, app.Errorf(http.StatusServiceUnavailable, "ForwardingFailed", "no answer from the primary at %s (%s); if it received the request, the write may still commit: check before retrying writes that are not idempotent", addr, forwardFailure(r.Context(), ctx, changed)))
		return
	}
	defer resp.Body.Close()
	// The whole answer first: a status sent before a body that never
	// arrives would tell the client something the primary did not say.
	respBody, err := io.ReadAll(io.LimitReader(resp.Body, maxForwardedResponse))
	if err != nil {
		n.metrics.forwardErrors.Inc()
		writeError(w, app.Errorf(http.StatusServiceUnavailable, "ForwardingFailed", "the answer from the primary at %s was cut off (%s); if it received the request, the write may still commit: check before retrying writes that are not idempotent", addr, forwardFailure(r.Context(), ctx, changed)))
		return
	}
	n.metrics.forwarded.Inc()
	for k, vs := range resp.Header {
		switch http.CanonicalHeaderKey(k) {
		case "Connection", "Keep-Alive", "Transfer-Encoding", "Content-Length", "Date", "Server":
			continue
		}
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(respBody)
}

// maxForwardedResponse bounds an answer relayed from the primary.
const maxForwardedResponse = 64 << 20

// forwardTimeout bounds a forwarded request: writes commit in
// milliseconds, so this only ends forwards to a primary that hangs.
const forwardTimeout = 10 * time.Second

func forwardFailure(caller, fwd context.Context, changed <-chan struct{}) string {
	select {
	case <-changed:
		return "the primary changed"
	default:
	}
	switch {
	case caller.Err() != nil:
		return "the request was cancelled"
	case fwd.Err() != nil:
		return "timed out"
	}
	return "connection failed"
}

// leaderChanged returns a channel closed when the primary known to this node
// next changes.
func (n *Node) leaderChanged() <-chan struct{} {
	return *n.leaderCh.Load()
}

// watchLeader closes the leaderChanged channel whenever the primary changes.
func (n *Node) watchLeader(ctx context.Context) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	last := n.cons.Status().Leader
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if l := n.cons.Status().Leader; l != last {
			last = l
			ch := make(chan struct{})
			close(*n.leaderCh.Swap(&ch))
		}
	}
}

// primaryRPCAddress is the primary's HTTPS address from the committed nodes
// map, or "" when no primary is known.
func (n *Node) primaryRPCAddress() string {
	leader := n.cons.Status().Leader
	if leader == 0 || leader == n.id.raftID {
		return ""
	}
	for _, ni := range n.nodes(n.store.BeginReadOnly()) {
		if ni.RaftID == leader {
			return ni.RPCAddress
		}
	}
	return ""
}

// forwardedCaller returns the certificate a trusted backup forwarded, with
// ok false when the request was not forwarded, and an error when it claims
// to be forwarded but does not come from a trusted node.
func (n *Node) forwardedCaller(r *http.Request) (cert *x509.Certificate, ok bool, aerr *app.Error) {
	if r.Header.Get(ForwardedHeader) == "" {
		return nil, false, nil
	}
	refuse := func(format string, args ...any) (*x509.Certificate, bool, *app.Error) {
		return nil, true, app.Errorf(http.StatusUnauthorized, "InvalidAuthenticationInfo", format, args...)
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return refuse("forwarded requests are accepted only from the service's nodes")
	}
	if err := n.checkNodeCert(r.TLS.PeerCertificates[0]); err != nil {
		return refuse("forwarded requests are accepted only from the service's trusted nodes: %v", err)
	}
	h := r.Header.Get(ForwardedCallerHeader)
	if h == "" {
		return nil, true, nil
	}
	der, err := base64.StdEncoding.DecodeString(h)
	if err != nil {
		return refuse("bad %s header: %v", ForwardedCallerHeader, err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return refuse("bad %s header: %v", ForwardedCallerHeader, err)
	}
	return c, true, nil
}

// checkNodeCert accepts a certificate endorsed by the service identity
// whose node is Trusted in the committed state.
func (n *Node) checkNodeCert(c *x509.Certificate) error {
	now := time.Now()
	if now.Before(c.NotBefore) || now.After(c.NotAfter) {
		return errors.New("certificate not valid now")
	}
	sum := sha256.Sum256(c.Raw)
	n.fwd.mu.Lock()
	until, ok := n.fwd.verified[sum]
	n.fwd.mu.Unlock()
	if !ok || now.After(until) {
		if err := c.CheckSignatureFrom(n.id.serviceCert); err != nil {
			return errors.New("not endorsed by the service")
		}
		n.fwd.mu.Lock()
		if len(n.fwd.verified) > 1024 {
			clear(n.fwd.verified)
		}
		n.fwd.verified[sum] = now.Add(time.Minute)
		n.fwd.mu.Unlock()
	}
	id, err := cococrypto.KeyID(c.PublicKey)
	if err != nil {
		return errors.New("bad key")
	}
	ni, ok := n.nodeInfo(n.store.BeginReadOnly(), id)
	switch {
	case !ok:
		return fmt.Errorf("node %s is unknown", id)
	case ni.Status != gov.NodeTrusted:
		return fmt.Errorf("node %s is %s", id, ni.Status)
	}
	return nil
}
