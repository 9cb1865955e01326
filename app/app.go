package app

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/cocoledger/coco/kv"
)

// Application is a ledger protocol hosted by coco.
type Application interface {
	// Name is a short name for logs and the OpenAPI document.
	Name() string
	// Endpoints lists the HTTP endpoints the application serves.
	Endpoints() []Endpoint
	// IndexedMaps lists the maps whose write history the framework indexes
	// for historical queries (Context.Historical).
	IndexedMaps() []string
}

// GenesisWriter is implemented by an application that writes initial
// state into the genesis transaction of a new service (the Ethereum app's
// genesis block and allocation). It is called once, when the service is
// created, never on restart or join.
type GenesisWriter interface {
	WriteGenesis(tx *kv.Tx) error
}

// Runner is implemented by an application with work of its own beside its
// endpoints (the Ethereum app's block builder). The node calls Run just
// before it serves requests, on every node; Run lasts until ctx ends. Only the
// primary can submit transactions: Host.Submit says when this node is not
// it.
type Runner interface {
	Run(ctx context.Context, h Host) error
}

// CommitObserver is implemented by an application that keeps derived
// state of its own in memory, such as the Ethereum app's index of block and
// transaction hashes. The node calls Committed with the write set of every
// committed transaction (private maps in clear), in seqno order, on every
// node, including while it replays its ledger at start-up. It runs on the
// consensus loop: it must be fast, must not block, and must not read the
// store. What it records is visible before the committed state that holds
// it, so readers must check what it points to in their own snapshot.
type CommitObserver interface {
	Committed(seqno uint64, ws *kv.WriteSet)
}

// Host is what the framework offers a Runner.
type Host interface {
	// Begin starts a read-write transaction on the latest state, including
	// transactions ordered but not yet committed.
	Begin() *kv.Tx
	// Submit orders tx's writes and waits until they commit. ordered, if
	// not nil, is called as soon as they are applied to the latest state
	// (so the next Begin sees them), before they commit; it must return at
	// once. Errors: kv.ErrConflict when tx read stale state (re-execute);
	// ErrNotPrimary when this node cannot order writes now; anything else
	// (a view change dropped it, the node is stopping, ctx ended) means
	// the writes did not commit, or, for ctx, may not have.
	Submit(ctx context.Context, tx *kv.Tx, ordered func()) error
	// IsPrimary reports whether this node is the primary now.
	IsPrimary() bool
	// CommittedWrites returns the writes of the committed transaction at
	// seqno (private maps in clear), read from this node's ledger: for
	// state an application keeps in the ledger only, such as the Ethereum
	// app's older blocks. The result must not be modified.
	CommittedWrites(seqno uint64) (*kv.WriteSet, error)
}

// ErrNotPrimary says a request needs the primary. A ReadOnly handler that
// returns it (wrapped or not) on a backup has its request forwarded to the
// primary, like a ReadWrite one; Host.Submit returns it on a node that
// cannot order writes.
var ErrNotPrimary = errors.New("this node is not the primary")

// Auth says who may call an endpoint.
type Auth int

const (
	// AuthUser: a TLS client certificate registered as a user.
	AuthUser Auth = iota
	// AuthNone: anyone who can reach the node over TLS.
	AuthNone
	// AuthCert: any TLS client certificate, registered or not; the caller
	// proved possession of its key (Caller.Cert). Used by node joins.
	AuthCert
)

// Mode says how the framework runs an endpoint's transaction.
type Mode int

const (
	// ReadWrite handlers run on the primary's latest state; their writes are
	// ordered, replicated and committed before the response is sent.
	ReadWrite Mode = iota
	// ReadOnly handlers run on a snapshot of the committed state and may be
	// served by any node.
	ReadOnly
	// Historical handlers read the state as of the transaction named by the
	// request header x-ms-ccf-transaction-id, through Context.Historical.
	Historical
)

// Endpoint is one method on one path.
type Endpoint struct {
	Method  string
	Path    string
	Auth    Auth
	Mode    Mode
	Summary string // one line for the OpenAPI document
	Handler Handler
}

// Handler runs one request. It may be called more than once for the same
// request (after a conflict), so it must not have side effects outside tx.
type Handler func(c *Context) (*Response, error)

// Caller is the authenticated identity of a request.
type Caller struct {
	Kind string // "user", "cert" (AuthCert), or "" when anonymous
	ID   string
	// Cert is the caller's certificate (as presented to this node or to
	// the backup that forwarded the request); nil when anonymous.
	Cert *x509.Certificate
}

// HistoricalState reads the committed state as of one transaction.
type HistoricalState interface {
	// Get returns the value key had in mapName right after the transaction;
	// mapName must be one of the application's IndexedMaps.
	Get(mapName, key string) ([]byte, bool, error)
}

// Context is what a handler sees.
type Context struct {
	Request    *http.Request
	Query      url.Values
	PathParams map[string]string // the {name} segments of a templated path
	Body       []byte
	Caller     Caller
	Tx         *kv.Tx
	Historical HistoricalState // set for Historical endpoints
}

// Response is a handler's answer; Body is encoded as JSON unless Raw is set.
type Response struct {
	Status      int
	Body        any
	Raw         []byte
	ContentType string
	Header      http.Header
}

// JSON returns a 200 response with v as JSON body.
func JSON(v any) *Response { return &Response{Status: http.StatusOK, Body: v} }

// Error is an error with an HTTP status and a PascalCase code, rendered as
// {"error":{"code":...,"message":...}}.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf builds an *Error.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// BadRequest is a 400 InvalidInput error.
func BadRequest(format string, args ...any) *Error {
	return Errorf(http.StatusBadRequest, "InvalidInput", format, args...)
}

// NotFound is a 404 ResourceNotFound error.
func NotFound(format string, args ...any) *Error {
	return Errorf(http.StatusNotFound, "ResourceNotFound", format, args...)
}

// DecodeJSON strictly decodes a request body into v: unknown fields,
// trailing data and wrong types are InvalidInput errors.
func DecodeJSON(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return BadRequest("field %q must be of type %s", te.Field, te.Type)
		}
		return BadRequest("malformed JSON body: %v", err)
	}
	if dec.More() {
		return BadRequest("malformed JSON body: trailing data")
	}
	return nil
}
