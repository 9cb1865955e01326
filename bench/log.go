package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Defaults applied by RunLog to zero LogConfig fields.
const (
	DefaultLogPath = "/app/log/private"
	DefaultMsgSize = 100
)

// ErrInvalidConfig is wrapped by RunLog's configuration errors.
var ErrInvalidConfig = errors.New("invalid bench configuration")

// idsPerClient spaces the id ranges of clients so that ids are unique within
// a run: client i writes ids i*idsPerClient, i*idsPerClient+1, ...
const idsPerClient = 1_000_000_000

// stopGrace bounds how long RunLog waits after the window for the requests
// still in flight before it cancels them, so a hung server cannot hang it.
const stopGrace = 10 * time.Second

// transportBackoff is how long a client pauses after a request got no
// response, so that a dead target is not hammered in a tight loop.
const transportBackoff = 10 * time.Millisecond

// LogConfig describes a logging-app write workload.
type LogConfig struct {
	// Targets are the RPC addresses (host:port) requests rotate over.
	Targets []string
	// ServiceCert is the only CA trusted for the servers' certificates.
	ServiceCert *x509.Certificate
	// ClientCert authenticates the user (TLS client certificate).
	ClientCert tls.Certificate
	// Clients is the number of concurrent closed-loop clients; each keeps
	// its own connection to every target.
	Clients int
	// Duration is the measured window; Warmup precedes it and is not counted.
	Duration time.Duration
	Warmup   time.Duration
	// Path defaults to DefaultLogPath.
	Path string
	// MsgSize is the length of "msg" in bytes; 0 means DefaultMsgSize.
	MsgSize int
	// HTTP2 makes clients speak HTTP/2 (one connection each) instead of
	// HTTP/1.1.
	HTTP2 bool
}

func (c *LogConfig) normalise() error {
	errs := checkRun(c.Targets, c.ServiceCert, c.Duration, c.Warmup)
	if c.Clients <= 0 {
		errs = append(errs, fmt.Errorf("clients must be positive, got %d", c.Clients))
	}
	if c.MsgSize < 0 {
		errs = append(errs, fmt.Errorf("msg size must not be negative, got %d", c.MsgSize))
	}
	if c.Path == "" {
		c.Path = DefaultLogPath
	}
	if !strings.HasPrefix(c.Path, "/") {
		errs = append(errs, fmt.Errorf("path %q must start with /", c.Path))
	}
	if c.MsgSize == 0 {
		c.MsgSize = DefaultMsgSize
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

// RunLog runs cfg.Clients closed-loop clients that POST unique log entries
// to cfg.Path, rotating over cfg.Targets, for cfg.Warmup then cfg.Duration,
// and reports the committed writes and their latency during cfg.Duration.
// Non-200 answers and transport failures are counted in Result.Errors, not
// returned as errors: a benchmark under overload must still report. Cancelling
// ctx stops the run early with ctx's error.
func RunLog(ctx context.Context, cfg LogConfig) (*Result, error) {
	if err := cfg.normalise(); err != nil {
		return nil, err
	}
	// Parsed once: requests share these read-only URLs instead of parsing
	// a string per request.
	urls := make([]*url.URL, len(cfg.Targets))
	for i, t := range cfg.Targets {
		urls[i] = &url.URL{Scheme: "https", Host: t, Path: cfg.Path}
	}

	tlsConf := userTLS(cfg.ServiceCert, cfg.ClientCert)

	var dials atomic.Int64
	msgTail := []byte(`,"msg":"` + strings.Repeat("x", cfg.MsgSize) + `"}`)
	clients := make([]*logClient, cfg.Clients)
	err := runWindowed(ctx, cfg.Warmup, cfg.Duration, cfg.Clients, func(ctx context.Context, i int, window, end time.Time) {
		c := &logClient{
			urls:        urls,
			next:        i % len(urls),
			id:          uint64(i) * idsPerClient,
			msgTail:     msgTail,
			window:      window,
			end:         end,
			errors:      map[string]int{},
			contentType: []string{"application/json"},
			http:        loadTransport(tlsConf, cfg.HTTP2, len(urls), &dials),
		}
		clients[i] = c
		c.run(ctx)
		c.http.CloseIdleConnections()
	})
	if err != nil {
		return nil, err
	}

	res := &Result{
		Target:      strings.Join(cfg.Targets, ","),
		Clients:     cfg.Clients,
		Errors:      map[string]int{},
		Connections: dials.Load(),
		Elapsed:     cfg.Duration,
	}
	var h histogram
	for _, c := range clients {
		h.merge(&c.hist)
		for k, v := range c.errors {
			res.Errors[k] += v
		}
		if c.lastErr != nil {
			res.LastTransportError = c.lastErr.Error()
		}
	}
	res.Writes = h.n
	res.latencyStats = h.stats(cfg.Duration)
	return res, nil
}

// roundTripper is what a closed-loop client sends its requests with.
type roundTripper interface {
	RoundTrip(*http.Request) (*http.Response, error)
	CloseIdleConnections()
}

// loadTransport is one closed-loop client's transport: an h1Transport for
// HTTP/1.1, net/http's for HTTP/2 (see newTransport).
func loadTransport(tlsConf *tls.Config, h2 bool, targets int, dials *atomic.Int64) roundTripper {
	if h2 {
		return newTransport(tlsConf, true, targets, dials)
	}
	return newH1Transport(tlsConf, dials)
}

// newTransport gives one client its own connection pool, limited to one
// connection per target, so that Clients really means Clients concurrent
// TCP+TLS connections, each kept alive and reused for every request. dials,
// if not nil, counts the connections dialed.
func newTransport(tlsConf *tls.Config, h2 bool, targets int, dials *atomic.Int64) *http.Transport {
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	var protos http.Protocols
	if h2 {
		protos.SetHTTP2(true)
	} else {
		protos.SetHTTP1(true)
	}
	return &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if dials != nil {
				dials.Add(1)
			}
			return dialer.DialContext(ctx, network, addr)
		},
		TLSClientConfig:     tlsConf.Clone(),
		TLSHandshakeTimeout: 10 * time.Second,
		Protocols:           &protos,
		MaxConnsPerHost:     1,
		MaxIdleConnsPerHost: 1,
		MaxIdleConns:        targets,
		DisableCompression:  true,
	}
}

// logClient is one closed-loop client. It is owned by its goroutine until
// run returns, so its counters need no locking.
type logClient struct {
	urls    []*url.URL
	next    int
	id      uint64
	msgTail []byte
	window  time.Time
	end     time.Time
	http    roundTripper

	bodyLen     int      // of the previous body, to size the next one
	contentType []string // shared by this client's requests, which only read it
	hist        histogram
	errors      map[string]int
	lastErr     error
}

func (c *logClient) run(ctx context.Context) {
	for ctx.Err() == nil {
		sent := time.Now()
		if !sent.Before(c.end) {
			return
		}
		status, err := c.post(ctx)
		done := time.Now()
		if sent.Before(c.window) || done.After(c.end) {
			// Outside the window: warmup, or straddling its end.
			if err != nil {
				SleepCtx(ctx, transportBackoff)
			}
			continue
		}
		switch {
		case err != nil:
			c.errors["transport"]++
			c.lastErr = err
			SleepCtx(ctx, transportBackoff)
		case status == http.StatusOK:
			c.hist.record(done.Sub(sent))
		default:
			c.errors[strconv.Itoa(status)]++
		}
	}
}

// post sends one write and drains the response so the connection is reused.
// Each write gets its own body buffer (see newPost).
func (c *logClient) post(ctx context.Context) (int, error) {
	buf := make([]byte, 0, c.bodyLen)
	buf = append(buf, `{"id":`...)
	buf = strconv.AppendUint(buf, c.id, 10)
	buf = append(buf, c.msgTail...)
	c.bodyLen = len(buf) + 1 // room for one more digit
	c.id++

	u := c.urls[c.next]
	c.next = (c.next + 1) % len(c.urls)
	req := newPost(ctx, u, http.Header{"Content-Type": c.contentType}, buf)
	resp, err := c.http.RoundTrip(req)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	if cerr := resp.Body.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("read response: %w", err)
	}
	return resp.StatusCode, nil
}

// SleepCtx waits for d, or until ctx is done: a load client's pause after
// a failed request.
func SleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
