package node

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/cocoledger/coco/app"
	"github.com/cocoledger/coco/consensus"
	cococrypto "github.com/cocoledger/coco/crypto"
	"github.com/cocoledger/coco/gov"
	"github.com/cocoledger/coco/kv"
)

// TxIDHeader carries a transaction id, in responses to writes and in
// historical requests, as in CCF.
const TxIDHeader = "x-ms-ccf-transaction-id"

// route is one endpoint: an application handler, or a raw HTTP handler for
// the few framework endpoints that write their own bodies (metrics).
type route struct {
	ep  app.Endpoint
	raw http.Handler
	// app marks an application's endpoint: it is served only once the
	// service is open.
	app bool
	// linearizable reads (applications' and governance's) wait for a read
	// barrier unless the caller asks for local ones.
	linearizable bool
}

// ReadConsistencyHeader lets a caller of an application's read-only
// endpoint choose "local": the node answers from what it has committed
// without first confirming with the primary that it is up to date (faster,
// possibly stale on a backup). The default is linearizable.
const ReadConsistencyHeader = "x-coco-read-consistency"

// router maps a request path to its endpoints, by method. Most paths are
// fixed; governance paths carry parameters ({proposalId}), matched by
// pathTemplate.
type router struct {
	exact     map[string]map[string]*route
	templates []*pathTemplate
}

func (n *Node) buildRoutes() *router {
	rt := &router{exact: map[string]map[string]*route{}}
	add := func(r *route) {
		methods := rt.exact[r.ep.Path]
		if methods == nil {
			methods = map[string]*route{}
			rt.exact[r.ep.Path] = methods
			if strings.Contains(r.ep.Path, "{") {
				rt.templates = append(rt.templates, parseTemplate(r.ep.Path, methods))
			}
		}
		methods[r.ep.Method] = r
	}
	for _, ep := range n.frameworkEndpoints() {
		add(&route{ep: ep})
	}
	for _, ep := range n.gov.Endpoints() {
		add(&route{ep: ep, linearizable: true})
	}
	for _, a := range n.cfg.Apps {
		for _, ep := range a.Endpoints() {
			add(&route{ep: ep, app: true, linearizable: true})
		}
	}
	add(&route{ep: app.Endpoint{Method: http.MethodGet, Path: "/metrics", Auth: app.AuthNone, Summary: "Prometheus metrics"}, raw: n.metrics.handler()})
	return rt
}

// lookup returns the endpoints of path, the path's template (the metrics
// label: bounded, unlike the paths themselves) and its parameters.
func (rt *router) lookup(path string) (methods map[string]*route, label string, params map[string]string) {
	if strings.Contains(path, "{") {
		return nil, "", nil // a template is not a path
	}
	if m, ok := rt.exact[path]; ok {
		return m, path, nil
	}
	for _, t := range rt.templates {
		if params, ok := t.match(path); ok {
			return t.methods, t.path, params
		}
	}
	return nil, "", nil
}

// pathTemplate is a path such as
// /gov/members/proposals/{proposalId}/ballots/{memberId}:submit: each
// segment is a literal, or a parameter followed by an optional literal
// suffix (CCF's ":action" style). A parameter matches one non-empty
// segment (no '/'), up to its suffix.
type pathTemplate struct {
	path     string
	segments []templateSegment
	methods  map[string]*route
}

type templateSegment struct {
	literal string // the whole segment, when param is ""
	param   string
	suffix  string
}

func parseTemplate(path string, methods map[string]*route) *pathTemplate {
	t := &pathTemplate{path: path, methods: methods}
	for _, s := range strings.Split(path, "/") {
		lb, rb := strings.Index(s, "{"), strings.Index(s, "}")
		if lb != 0 || rb < 0 {
			t.segments = append(t.segments, templateSegment{literal: s})
			continue
		}
		t.segments = append(t.segments, templateSegment{param: s[1:rb], suffix: s[rb+1:]})
	}
	return t
}

func (t *pathTemplate) match(path string) (map[string]string, bool) {
	parts := strings.Split(path, "/")
	if len(parts) != len(t.segments) {
		return nil, false
	}
	var params map[string]string
	for i, seg := range t.segments {
		p := parts[i]
		if seg.param == "" {
			if p != seg.literal {
				return nil, false
			}
			continue
		}
		v, ok := strings.CutSuffix(p, seg.suffix)
		// A parameter without a suffix must not swallow another
		// template's ":action" (…/{proposalId} vs …/{proposalId}:withdraw).
		if !ok || v == "" || (seg.suffix == "" && strings.Contains(v, ":")) {
			return nil, false
		}
		if params == nil {
			params = map[string]string{}
		}
		params[seg.param] = v
	}
	return params, true
}

// statusWriter remembers the status code for metrics.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// ServeHTTP routes, authenticates and runs one request. Request bodies are
// never logged.
func (n *Node) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	label := "unknown"
	defer func() {
		n.metrics.observe(label, r.Method, sw.status, time.Since(start))
	}()

	methods, path, params := n.routes.lookup(r.URL.Path)
	if methods == nil {
		writeError(sw, app.Errorf(http.StatusNotFound, "ResourceNotFound", "unknown path: %s", r.URL.Path))
		return
	}
	label = path
	rt, ok := methods[r.Method]
	if !ok {
		allowed := make([]string, 0, len(methods))
		for m := range methods {
			allowed = append(allowed, m)
		}
		sort.Strings(allowed)
		sw.Header().Set("Allow", strings.Join(allowed, ", "))
		writeError(sw, app.Errorf(http.StatusMethodNotAllowed, "MethodNotAllowed", "%s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, strings.Join(allowed, ", ")))
		return
	}
	if (rt.app || rt.ep.Auth == app.AuthUser) && !n.open.Load() {
		writeError(sw, app.Errorf(http.StatusServiceUnavailable, "ServiceNotOpen", "the service is not open yet: its members must accept a transition_service_to_open proposal first (see GET /node/network)"))
		return
	}
	caller, aerr := n.authenticate(r, rt.ep.Auth)
	if aerr != nil {
		writeError(sw, aerr)
		return
	}
	if rt.raw != nil {
		rt.raw.ServeHTTP(sw, r)
		return
	}
	if r.ContentLength > n.cfg.MaxBodySize {
		writeError(sw, tooLarge(n.cfg.MaxBodySize))
		return
	}
	body, err := readBody(http.MaxBytesReader(sw, r.Body, n.cfg.MaxBodySize), r.ContentLength)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(sw, tooLarge(n.cfg.MaxBodySize))
			return
		}
		writeError(sw, app.BadRequest("reading request body: %v", err))
		return
	}
	c := &app.Context{Request: r, Query: r.URL.Query(), PathParams: params, Body: body, Caller: caller}
	switch rt.ep.Mode {
	case app.ReadOnly:
		if rt.linearizable && !strings.EqualFold(r.Header.Get(ReadConsistencyHeader), "local") {
			if err := n.readBarrier(r.Context()); err != nil {
				n.respond(sw, nil, err)
				return
			}
		}
		n.runReadOnly(sw, rt.ep, c)
	case app.Historical:
		n.runHistorical(sw, rt.ep, c)
	default:
		if !n.cons.Status().IsPrimary {
			n.forward(sw, r, body, caller)
			return
		}
		n.runReadWrite(r.Context(), sw, rt.ep, c)
	}
}

// readBarrier waits until this node has applied everything committed when
// the request arrived, as confirmed by the primary and a quorum.
func (n *Node) readBarrier(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := n.cons.ReadBarrier(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		return consensus.ErrReadTimeout
	}
	return err
}

func tooLarge(limit int64) *app.Error {
	return app.Errorf(http.StatusRequestEntityTooLarge, "RequestBodyTooLarge", "request body exceeds the limit of %d bytes", limit)
}

// authenticate checks the caller's TLS client certificate against the
// registered users in the committed state.
// A request a backup forwarded is authenticated with the caller's
// certificate the backup passed on, after checking the backup is a trusted
// node.
func (n *Node) authenticate(r *http.Request, auth app.Auth) (app.Caller, *app.Error) {
	cert, forwarded, aerr := n.forwardedCaller(r)
	if aerr != nil {
		return app.Caller{}, aerr
	}
	if !forwarded && r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		cert = r.TLS.PeerCertificates[0]
	}
	if auth == app.AuthNone {
		return app.Caller{}, nil
	}
	if cert == nil {
		if auth == app.AuthCert {
			return app.Caller{}, app.Errorf(http.StatusUnauthorized, "InvalidAuthenticationInfo", "this endpoint requires a TLS client certificate")
		}
		return app.Caller{}, app.Errorf(http.StatusUnauthorized, "InvalidAuthenticationInfo", "this endpoint requires a TLS client certificate registered as a user")
	}
	// The handshake proved possession of the key but, with self-signed
	// certificates, checked no dates.
	if err := cococrypto.CheckValidity(cert, time.Now()); err != nil {
		return app.Caller{}, app.Errorf(http.StatusUnauthorized, "InvalidAuthenticationInfo", "the TLS client certificate: %v", err)
	}
	id := cococrypto.CertID(cert)
	if auth == app.AuthCert {
		return app.Caller{Kind: "cert", ID: id, Cert: cert}, nil
	}
	known, err := n.isUser(r.Context(), id)
	if err != nil {
		return app.Caller{}, n.toAppError(err)
	}
	if !known {
		return app.Caller{}, app.Errorf(http.StatusUnauthorized, "InvalidAuthenticationInfo", "the TLS client certificate %s is not registered as a user", id)
	}
	return app.Caller{Kind: "user", ID: id, Cert: cert}, nil
}

// isUser reports whether id is a registered user. A certificate this node
// does not know may belong to a user added by a transaction it has not
// applied yet (it is catching up, or restarted behind the service): it is
// refused only once a read barrier confirms the node has applied
// everything committed when the request arrived (if the barrier fails,
// the error: the node cannot tell).
func (n *Node) isUser(ctx context.Context, id string) (bool, error) {
	if _, ok := n.store.BeginReadOnly().Get(gov.UsersCerts, id); ok {
		return true, nil
	}
	if err := n.readBarrier(ctx); err != nil {
		return false, err
	}
	_, ok := n.store.BeginReadOnly().Get(gov.UsersCerts, id)
	return ok, nil
}

// runReadOnly runs a handler on the committed state. A handler that needs
// the primary (app.ErrNotPrimary) has its request forwarded there when
// this node is a backup.
func (n *Node) runReadOnly(w http.ResponseWriter, ep app.Endpoint, c *app.Context) {
	c.Tx = n.store.BeginReadOnly()
	resp, err := ep.Handler(c)
	if errors.Is(err, app.ErrNotPrimary) && !n.cons.Status().IsPrimary {
		n.forward(w, c.Request, c.Body, c.Caller)
		return
	}
	n.respond(w, resp, err)
}

func (n *Node) runHistorical(w http.ResponseWriter, ep app.Endpoint, c *app.Context) {
	h := c.Request.Header.Get(TxIDHeader)
	if h == "" {
		writeError(w, app.BadRequest("historical queries need the %s request header", TxIDHeader))
		return
	}
	id, err := consensus.ParseTxID(h)
	if err != nil {
		writeError(w, app.BadRequest("%s: %v", TxIDHeader, err))
		return
	}
	st, err := n.cons.TxStatus(id)
	if err != nil {
		n.respond(w, nil, err)
		return
	}
	if e := txStatusError(id, st); e != nil {
		writeError(w, e)
		return
	}
	c.Tx = n.store.BeginReadOnly()
	c.Historical = &historicalState{n: n, seqno: id.Seqno}
	resp, err := ep.Handler(c)
	n.respond(w, resp, err)
}

// txStatusError is the error for a transaction that is not committed.
func txStatusError(id consensus.TxID, st consensus.TxStatus) *app.Error {
	switch st {
	case consensus.TxCommitted:
		return nil
	case consensus.TxInvalid:
		return app.Errorf(http.StatusNotFound, "TransactionInvalid", "transaction %s is invalid: it was dropped by a view change", id)
	default:
		return app.Errorf(http.StatusNotFound, "TransactionPendingOrUnknown", "transaction %s is %s, not committed", id, st)
	}
}

// runReadWrite executes a transaction on the head state, orders it and
// waits for it to commit, re-executing it when a concurrent commit
// invalidated what it read.
func (n *Node) runReadWrite(ctx context.Context, w http.ResponseWriter, ep app.Endpoint, c *app.Context) {
	for attempt := 1; ; attempt++ {
		c.Tx = n.store.Begin()
		resp, err := ep.Handler(c)
		if err != nil || !c.Tx.HasWrites() {
			n.respond(w, resp, err)
			return
		}
		id, err := n.cons.Submit(ctx, c.Tx, [32]byte{})
		if !id.IsZero() {
			// Also on errors (invalidated, shutting down): the client can
			// then ask /node/tx what became of it instead of guessing.
			w.Header().Set(TxIDHeader, id.String())
		}
		if err == nil {
			n.respond(w, resp, nil)
			return
		}
		if errors.Is(err, kv.ErrConflict) && attempt < n.cfg.MaxConflictRetries {
			n.metrics.conflicts.Inc()
			continue
		}
		n.respond(w, nil, err)
		return
	}
}

// respond writes a handler's response, or maps its error to a JSON error.
func (n *Node) respond(w http.ResponseWriter, resp *app.Response, err error) {
	if err != nil {
		writeError(w, n.toAppError(err))
		return
	}
	if resp == nil {
		resp = &app.Response{Status: http.StatusNoContent}
	}
	for k, vs := range resp.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	status := resp.Status
	if status == 0 {
		status = http.StatusOK
	}
	switch {
	case resp.Raw != nil:
		ct := resp.ContentType
		if ct == "" {
			ct = "application/octet-stream"
		}
		w.Header().Set("Content-Type", ct)
		w.WriteHeader(status)
		_, _ = w.Write(resp.Raw)
	case resp.Body != nil:
		b, err := json.Marshal(resp.Body)
		if err != nil {
			n.log.Error("encode response", "err", err)
			writeError(w, app.Errorf(http.StatusInternalServerError, "InternalError", "could not encode the response"))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(b)
	default:
		w.WriteHeader(status)
	}
}

func (n *Node) toAppError(err error) *app.Error {
	var ae *app.Error
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, kv.ErrConflict):
		return app.Errorf(http.StatusConflict, "TransactionConflict", "the transaction conflicted with concurrent ones %d times; retry", n.cfg.MaxConflictRetries)
	case errors.Is(err, consensus.ErrNotPrimary), errors.Is(err, app.ErrNotPrimary):
		return app.Errorf(http.StatusServiceUnavailable, "NotPrimary", "this node is not the primary and cannot order writes")
	case errors.Is(err, consensus.ErrNotReady):
		return app.Errorf(http.StatusServiceUnavailable, "ServiceUnavailable", "the primary is catching up; retry shortly")
	case errors.Is(err, consensus.ErrInvalidated):
		return app.Errorf(http.StatusServiceUnavailable, "TransactionInvalidated", "the transaction was dropped by a view change and will not commit; retry")
	case errors.Is(err, consensus.ErrReadTimeout):
		return app.Errorf(http.StatusServiceUnavailable, "ServiceUnavailable", "could not confirm with the primary that this node is up to date; retry (or ask for %s: local)", ReadConsistencyHeader)
	case errors.Is(err, consensus.ErrStopped):
		return app.Errorf(http.StatusServiceUnavailable, "ServiceUnavailable", "the node is shutting down")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return app.Errorf(http.StatusServiceUnavailable, "RequestCancelled", "the request was cancelled before its transaction committed; check /node/tx")
	}
	n.log.Error("request failed", "err", err)
	return app.Errorf(http.StatusInternalServerError, "InternalError", "internal error")
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func writeError(w http.ResponseWriter, e *app.Error) {
	b, _ := json.Marshal(errorBody{Error: errorDetail{Code: e.Code, Message: e.Message}})
	w.Header().Set("Content-Type", "application/json")
	if e.Status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	w.WriteHeader(e.Status)
	_, _ = w.Write(b)
}

// readBody reads a request body whole. When the client said how long it
// is (at most the body limit, checked before; net/http then delivers
// exactly that many bytes or an error), the buffer is allocated once at
// that size instead of grown from 512 bytes: for a 1 KiB body, 0.8 us and
// one allocation instead of 2.1 us and five.
func readBody(r io.Reader, contentLength int64) ([]byte, error) {
	if contentLength <= 0 {
		return io.ReadAll(r)
	}
	b := make([]byte, contentLength)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}
