package bench

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// h1Transport is one closed-loop client's HTTP/1.1 connections, at most one
// per host, each kept alive and reused. It is what the load generators use
// instead of net/http's Transport: the client shares the machine with what
// it measures, and the Transport passes every request between three
// goroutines (the caller, the connection's writer and its reader), which
// cost the client about as much CPU per request as a trivial HTTPS server
// spends answering it. h1Transport writes the request and reads the answer
// on the caller's goroutine; net/http still formats and parses both
// (Request.Write, ReadResponse).
//
// It serves one goroutine at a time, and the caller must read each
// answer's body to the end or close it before sending the next request on
// the same host (closing a body that was not read to the end drops the
// connection).
type h1Transport struct {
	tls   *tls.Config // nil: plain TCP (the peer chains' JSON-RPC)
	dials *atomic.Int64
	conns map[string]*h1Conn
}

type h1Conn struct {
	net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	used time.Time // when its last answer was read
}

// idleProbeAfter is how long a connection may sit idle before it is
// checked for a close by the server (an idle timeout) before reuse: a
// request written to a closed connection fails, and a POST is not
// retried.
const idleProbeAfter = 50 * time.Millisecond

// closed reports whether the server closed c (or sent something
// unasked) while it was idle. It waits up to a millisecond: a deadline
// already past would fail the read before it looked at the socket.
func (c *h1Conn) closed() bool {
	if err := c.SetReadDeadline(time.Now().Add(time.Millisecond)); err != nil {
		return true
	}
	_, err := c.br.Peek(1)
	if c.SetReadDeadline(time.Time{}) != nil {
		return true
	}
	var ne net.Error
	return !errors.As(err, &ne) || !ne.Timeout()
}

// dialTimeout bounds a connection's TCP and TLS handshakes.
const dialTimeout = 10 * time.Second

// newH1Transport returns an h1Transport; tlsConf nil means plain HTTP, and
// dials, if not nil, counts the connections dialed.
func newH1Transport(tlsConf *tls.Config, dials *atomic.Int64) *h1Transport {
	if tlsConf != nil {
		tlsConf = tlsConf.Clone()
	}
	return &h1Transport{tls: tlsConf, dials: dials, conns: map[string]*h1Conn{}}
}

// RoundTrip sends req on its host's connection, dialing it first if there
// is none, and returns the answer. Any failure drops the connection, so the
// next request dials afresh; requests are not retried.
func (t *h1Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	host := req.URL.Host
	if (req.URL.Scheme == "https") != (t.tls != nil) {
		closeBody(req)
		return nil, fmt.Errorf("%s %s: scheme %q does not match this transport (TLS: %v)", req.Method, req.URL, req.URL.Scheme, t.tls != nil)
	}
	c, err := t.conn(ctx, host)
	if err != nil {
		closeBody(req)
		return nil, fmt.Errorf("%s %s: %w", req.Method, host, err)
	}
	// Cancelling ctx unblocks the request until its body is closed: the
	// deadline fails its write or read, and the connection is dropped.
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	resp, err := t.send(c, req)
	if err != nil {
		stop()
		t.drop(host, c)
		return nil, fmt.Errorf("%s %s: %w", req.Method, host, err)
	}
	keep := !resp.Close
	if !keep {
		// The server will close: the body is read off this connection,
		// which no later request may use.
		delete(t.conns, host)
	}
	resp.Body = &h1Body{ReadCloser: resp.Body, onClose: func(drained bool) {
		// A cancel that fired after the body was read still left its
		// deadline on the connection.
		if stopped := stop(); !keep || !drained || !stopped {
			t.drop(host, c)
			return
		}
		c.used = time.Now()
	}}
	return resp, nil
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

func (t *h1Transport) send(c *h1Conn, req *http.Request) (*http.Response, error) {
	if err := req.Write(c.bw); err != nil {
		return nil, err
	}
	if err := c.bw.Flush(); err != nil {
		return nil, err
	}
	return http.ReadResponse(c.br, req)
}

func (t *h1Transport) conn(ctx context.Context, host string) (*h1Conn, error) {
	if c := t.conns[host]; c != nil {
		if time.Since(c.used) < idleProbeAfter || !c.closed() {
			return c, nil
		}
		t.drop(host, c)
	}
	if t.dials != nil {
		t.dials.Add(1)
	}
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	var nc net.Conn
	var err error
	if t.tls != nil {
		d := tls.Dialer{Config: t.tls}
		nc, err = d.DialContext(ctx, "tcp", host)
	} else {
		var d net.Dialer
		nc, err = d.DialContext(ctx, "tcp", host)
	}
	if err != nil {
		return nil, err
	}
	c := &h1Conn{Conn: nc, br: bufio.NewReader(nc), bw: bufio.NewWriter(nc), used: time.Now()}
	t.conns[host] = c
	return c, nil
}

func (t *h1Transport) drop(host string, c *h1Conn) {
	if t.conns[host] == c {
		delete(t.conns, host)
	}
	_ = c.Close()
}

// CloseIdleConnections closes every connection (none is busy: requests
// are sent one at a time and bodies must be done with before the next).
func (t *h1Transport) CloseIdleConnections() {
	for host, c := range t.conns {
		c.Close()
		delete(t.conns, host)
	}
}

// h1Body tells its transport, on Close, whether the body was read to the
// end, which is when the connection can carry the next request.
type h1Body struct {
	io.ReadCloser
	eof     bool
	closed  bool
	onClose func(drained bool)
}

func (b *h1Body) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) {
		b.eof = true
	}
	return n, err
}

func (b *h1Body) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	err := b.ReadCloser.Close()
	b.onClose(b.eof && err == nil)
	return err
}
