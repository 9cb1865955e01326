package linearizability

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"syscall"
	"time"
)

// HTTPClient is a [Client] for one coco node's logging app
// (/app/log/public). It has connections of its own, so history clients do
// not queue behind each other on one HTTP/2 connection.
type HTTPClient struct {
	base string
	hc   *http.Client
	// ReadConsistency, if set, is sent as x-coco-read-consistency on Gets.
	// Leave it empty (linearizable reads) for a history that is checked:
	// "local" reads may be stale on a backup, so they only serve to show
	// that the check catches stale reads.
	ReadConsistency string
}

var _ Client = (*HTTPClient)(nil)

// NewHTTPClient returns a client for the node at addr (host:port) that
// pins serviceCertPEM as its only CA and authenticates as user. timeout
// bounds each request: past it, a Put is indeterminate.
func NewHTTPClient(addr string, serviceCertPEM []byte, user tls.Certificate, timeout time.Duration) (*HTTPClient, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(serviceCertPEM) {
		return nil, errors.New("linearizability: the service certificate PEM holds no certificate")
	}
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{
			RootCAs:      pool,
			Certificates: []tls.Certificate{user},
			MinVersion:   tls.VersionTLS13,
		},
		ForceAttemptHTTP2: true,
	}
	return &HTTPClient{base: "https://" + addr, hc: &http.Client{Transport: tr, Timeout: timeout}}, nil
}

// Close releases idle connections.
func (c *HTTPClient) Close() { c.hc.CloseIdleConnections() }

// APIViolation prefixes the [Output.Detail] of a 200 whose body is not
// what docs/api.md promises (empty, cut short). Such an answer is a coco
// bug, but not one that makes the history meaningless: the operation is
// recorded as Indeterminate, so the check goes on, and the test fails on
// the count of these details (see [Stats.Details]).
const APIViolation = "API violation: "

// Do implements [Client]. The mapping of answers to outcomes follows
// docs/api.md: only a 200 with the documented body is a success; a Put is Failed only for the errors
// raised before a transaction is ordered (TransactionConflict, NotPrimary)
// or that say it will not commit (TransactionInvalidated); every other
// 5xx, and any transport error after the connection was made, leaves it
// Indeterminate. On a backup, a write is forwarded to the primary and its
// answer relayed: a NotPrimary from either node is still raised before
// ordering, and ForwardingFailed (the primary may have received the write
// before the exchange broke) is an other 5xx, so Indeterminate.
func (c *HTTPClient) Do(ctx context.Context, in Input) (Output, error) {
	var req *http.Request
	var err error
	switch in.Kind {
	case Put:
		body, _ := json.Marshal(map[string]any{"id": in.ID, "msg": in.Value})
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/app/log/public", bytes.NewReader(body))
		if err == nil {
			req.Header.Set("Content-Type", "application/json")
		}
	case Get:
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/app/log/public?id="+strconv.FormatUint(in.ID, 10), nil)
		if err == nil && c.ReadConsistency != "" {
			req.Header.Set("x-coco-read-consistency", c.ReadConsistency)
		}
	default:
		return Output{}, fmt.Errorf("linearizability: operation kind %v", in.Kind)
	}
	if err != nil {
		return Output{}, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return transportOutcome(err), nil
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		// The status may say 200, but a Put's fate is only known from a
		// complete answer.
		return transportOutcome(err), nil
	}
	code := errorCode(body)
	switch {
	case in.Kind == Put && resp.StatusCode == http.StatusOK:
		if string(bytes.TrimSpace(body)) != "true" {
			// The status says committed, but an incomplete body is
			// what a relay that lost the primary's answer half-way
			// through looks like: coco breaks its API, and the write's
			// fate is unknown.
			return Output{Outcome: Indeterminate, Detail: fmt.Sprintf("%s200 %q, want true", APIViolation, body)}, nil
		}
		return Output{Outcome: OK}, nil
	case in.Kind == Put && (resp.StatusCode == http.StatusConflict ||
		resp.StatusCode == http.StatusServiceUnavailable && (code == "NotPrimary" || code == "TransactionInvalidated")):
		return Output{Outcome: Failed, Detail: fmt.Sprintf("%d %s", resp.StatusCode, code)}, nil
	case in.Kind == Get && resp.StatusCode == http.StatusOK:
		var m struct {
			Msg *string `json:"msg"`
		}
		if err := json.Unmarshal(body, &m); err != nil || m.Msg == nil {
			return Output{Outcome: Indeterminate, Detail: fmt.Sprintf("%s200 %q, want {\"msg\":...}", APIViolation, body)}, nil
		}
		return Output{Outcome: Found, Value: *m.Msg}, nil
	case in.Kind == Get && resp.StatusCode == http.StatusNotFound && code == "ResourceNotFound":
		return Output{Outcome: Absent}, nil
	case resp.StatusCode >= 500:
		return Output{Outcome: Indeterminate, Detail: fmt.Sprintf("%d %s", resp.StatusCode, code)}, nil
	}
	// 4xx other than the above: the request was wrong or coco rejected a
	// valid one; either way the history would be meaningless.
	return Output{}, fmt.Errorf("%w: %d %s", ErrUnexpected, resp.StatusCode, bytes.TrimSpace(body))
}

// transportOutcome classifies a failed exchange. A refused connection
// means the request was never sent; anything else may have reached the
// node. (net/http itself resends a request only when the first attempt
// provably was not processed.)
func transportOutcome(err error) Output {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return Output{Outcome: Unsent, Detail: "connection refused"}
	}
	return Output{Outcome: Indeterminate, Detail: errorKind(err)}
}

// errorKind names a transport error without addresses or ports, so that
// counts of them aggregate.
func errorKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EPIPE):
		return "broken pipe"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "EOF"
	case errors.Is(err, context.Canceled):
		return "cancelled"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return err.Error()
}

// errorCode is the code of a coco JSON error body, or "".
func errorCode(body []byte) string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	return e.Error.Code
}
