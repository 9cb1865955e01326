package bench

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// h1Server answers POST /echo with the body, /close with Connection:
// close, /big with 1 MiB, and /hang only when the test lets it.
func h1Server(t *testing.T) (*httptest.Server, *atomic.Int64, chan struct{}) {
	return h1ServerIdle(t, 0)
}

// h1ServerIdle is h1Server closing connections idle for longer than idle
// (0: never).
func h1ServerIdle(t *testing.T, idle time.Duration) (*httptest.Server, *atomic.Int64, chan struct{}) {
	t.Helper()
	var conns atomic.Int64
	release := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/echo":
			w.Header().Set("X-Method", r.Method)
			_, _ = w.Write(b)
		case "/close":
			w.Header().Set("Connection", "close")
			_, _ = w.Write([]byte("bye"))
		case "/big":
			_, _ = w.Write([]byte(strings.Repeat("x", 1<<20)))
		case "/hang":
			<-release
		}
	}))
	srv.Config.IdleTimeout = idle
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, &conns, release
}

func h1Post(ctx context.Context, t *testing.T, tr *h1Transport, srv *httptest.Server, path, body string) (int, string, error) {
	t.Helper()
	u, err := url.Parse(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := tr.RoundTrip(newPost(ctx, u, http.Header{"Content-Type": {"application/json"}}, []byte(body)))
	if err != nil {
		return 0, "", err
	}
	b, err := io.ReadAll(resp.Body)
	if cerr := resp.Body.Close(); err == nil {
		err = cerr
	}
	return resp.StatusCode, string(b), err
}

func TestH1TransportKeepsOneConnection(t *testing.T) {
	srv, conns, _ := h1Server(t)
	var dials atomic.Int64
	tr := newH1Transport(srv.Client().Transport.(*http.Transport).TLSClientConfig, &dials)
	defer tr.CloseIdleConnections()
	for i := range 50 {
		body := strings.Repeat("y", i*37)
		status, got, err := h1Post(t.Context(), t, tr, srv, "/echo", body)
		if err != nil || status != http.StatusOK || got != body {
			t.Fatalf("request %d: status %d, %d bytes, err %v", i, status, len(got), err)
		}
	}
	if dials.Load() != 1 || conns.Load() != 1 {
		t.Fatalf("dials %d, server connections %d; want 1 and 1", dials.Load(), conns.Load())
	}
}

func TestH1TransportRedialsWhenItMust(t *testing.T) {
	srv, conns, _ := h1Server(t)
	tr := newH1Transport(srv.Client().Transport.(*http.Transport).TLSClientConfig, nil)
	defer tr.CloseIdleConnections()
	ctx := t.Context()
	steps := []struct {
		name      string
		do        func() error
		wantConns int64
	}{
		{"first", func() error { _, _, err := h1Post(ctx, t, tr, srv, "/echo", "a"); return err }, 1},
		{"server closes after answering", func() error {
			_, got, err := h1Post(ctx, t, tr, srv, "/close", "")
			if err == nil && got != "bye" {
				err = errors.New("body " + got)
			}
			return err
		}, 1},
		{"after a close", func() error { _, _, err := h1Post(ctx, t, tr, srv, "/echo", "b"); return err }, 2},
		{"body closed unread", func() error {
			u, _ := url.Parse(srv.URL + "/big")
			resp, err := tr.RoundTrip(newPost(ctx, u, nil, nil))
			if err != nil {
				return err
			}
			buf := make([]byte, 10)
			_, _ = resp.Body.Read(buf)
			return resp.Body.Close()
		}, 2},
		{"after an unread body", func() error { _, _, err := h1Post(ctx, t, tr, srv, "/echo", "c"); return err }, 3},
		{"same connection again", func() error { _, _, err := h1Post(ctx, t, tr, srv, "/echo", "d"); return err }, 3},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got := conns.Load(); got != s.wantConns {
			t.Fatalf("%s: server saw %d connections, want %d", s.name, got, s.wantConns)
		}
	}
}

func TestH1TransportCancelUnblocks(t *testing.T) {
	srv, _, release := h1Server(t)
	defer close(release)
	tr := newH1Transport(srv.Client().Transport.(*http.Transport).TLSClientConfig, nil)
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	if _, _, err := h1Post(ctx, t, tr, srv, "/hang", ""); err == nil {
		t.Fatal("a cancelled request succeeded")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("cancel took %v", d)
	}
	// The next request dials afresh and works.
	if _, got, err := h1Post(t.Context(), t, tr, srv, "/echo", "after"); err != nil || got != "after" {
		t.Fatalf("after cancel: %q, %v", got, err)
	}
}

func TestH1TransportServerGone(t *testing.T) {
	srv, _, _ := h1Server(t)
	tr := newH1Transport(srv.Client().Transport.(*http.Transport).TLSClientConfig, nil)
	defer tr.CloseIdleConnections()
	if _, _, err := h1Post(t.Context(), t, tr, srv, "/echo", "x"); err != nil {
		t.Fatal(err)
	}
	srv.CloseClientConnections()
	// The dead connection fails one request (no retries: a POST may have
	// been applied); the next one dials afresh.
	var failed int
	for range 2 {
		if _, _, err := h1Post(t.Context(), t, tr, srv, "/echo", "y"); err != nil {
			failed++
		}
	}
	if failed > 1 {
		t.Fatalf("%d of 2 requests failed after the server dropped the connection", failed)
	}
	if _, got, err := h1Post(t.Context(), t, tr, srv, "/echo", "z"); err != nil || got != "z" {
		t.Fatalf("third request: %q, %v", got, err)
	}
}

// A connection the server closed while it sat idle (an idle timeout) is
// noticed before reuse, as net/http does, instead of failing the request.
func TestH1TransportIdleClose(t *testing.T) {
	srv, conns, _ := h1ServerIdle(t, 20*time.Millisecond)
	tr := newH1Transport(srv.Client().Transport.(*http.Transport).TLSClientConfig, nil)
	defer tr.CloseIdleConnections()
	for i := range 3 {
		if _, got, err := h1Post(t.Context(), t, tr, srv, "/echo", "x"); err != nil || got != "x" {
			t.Fatalf("request %d: %q, %v", i, got, err)
		}
		time.Sleep(250 * time.Millisecond) // well past the idle timeout, even on a loaded machine
	}
	if conns.Load() != 3 {
		t.Errorf("server saw %d connections, want 3 (one per idle timeout)", conns.Load())
	}
}

// Cancelling the request's context also unblocks a body that stalls.
func TestH1TransportCancelDuringBody(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		_, _ = w.Write([]byte("partial"))
		w.(http.Flusher).Flush()
		<-release
	}))
	defer srv.Close()
	defer close(release) // before Close, which waits for the handler
	tr := newH1Transport(srv.Client().Transport.(*http.Transport).TLSClientConfig, nil)
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, _, err := h1Post(ctx, t, tr, srv, "/", ""); err == nil {
		t.Fatal("a stalled body read to the end")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("cancel took %v", d)
	}
}

// The transport speaks the scheme it was made for, and says so.
func TestH1TransportScheme(t *testing.T) {
	srv, _, _ := h1Server(t)
	plain := newH1Transport(nil, nil)
	if _, _, err := h1Post(t.Context(), t, plain, srv, "/echo", "x"); err == nil || !strings.Contains(err.Error(), "scheme") {
		t.Fatalf("plain transport, https URL: %v", err)
	}
}
