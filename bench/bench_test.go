package bench

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func startCeiling(t *testing.T) *CeilingServer {
	t.Helper()
	s, err := StartCeilingServer(t.Context())
	if err != nil {
		t.Fatalf("StartCeilingServer: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func clientCert(t *testing.T) LogConfig {
	t.Helper()
	c, err := NewClientCert()
	if err != nil {
		t.Fatalf("NewClientCert: %v", err)
	}
	return LogConfig{ClientCert: c}
}

func checkResult(t *testing.T, res *Result) {
	t.Helper()
	t.Log(res)
	if res.Writes == 0 {
		t.Errorf("Writes = 0, want > 0")
	}
	if len(res.Errors) != 0 {
		t.Errorf("Errors = %v (last transport error %q), want none", res.Errors, res.LastTransportError)
	}
	if !(res.P50 <= res.P90 && res.P90 <= res.P99 && res.P99 <= res.Max) {
		t.Errorf("percentiles out of order: p50=%s p90=%s p99=%s max=%s", res.P50, res.P90, res.P99, res.Max)
	}
	if res.P50 <= 0 {
		t.Errorf("P50 = %s, want > 0", res.P50)
	}
}

func TestBenchRunLogCeiling(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		name := map[bool]string{false: "http1", true: "http2"}[h2]
		t.Run(name, func(t *testing.T) {
			s := startCeiling(t)
			cfg := clientCert(t)
			cfg.Targets = []string{s.Addr()}
			cfg.ServiceCert = s.CACert
			cfg.Clients = 4
			cfg.Duration = time.Second
			cfg.Warmup = 200 * time.Millisecond
			cfg.HTTP2 = h2
			res, err := RunLog(t.Context(), cfg)
			if err != nil {
				t.Fatalf("RunLog: %v", err)
			}
			checkResult(t, res)
			// One kept-alive connection per client, never re-dialed.
			if got := s.Connections(); got != 4 {
				t.Errorf("server accepted %d connections, want 4", got)
			}
			if res.Connections != 4 {
				t.Errorf("Result.Connections = %d, want 4", res.Connections)
			}
			// Every request stored a distinct id, warmup included.
			if uint64(s.Entries()) < res.Writes {
				t.Errorf("server holds %d entries, fewer than %d writes", s.Entries(), res.Writes)
			}
			if !strings.Contains(res.Markdown(), "| 4 |") {
				t.Errorf("Markdown() = %q", res.Markdown())
			}
		})
	}
}

func TestBenchRunLogRoundRobin(t *testing.T) {
	// One server under two names (127.0.0.1 and localhost, both in its
	// certificate) stands for two nodes endorsed by one service: each client
	// then keeps one connection per target.
	a := startCeiling(t)
	cfg := clientCert(t)
	cfg.Targets = []string{a.Addr(), "localhost:" + port(t, a.Addr())}
	cfg.ServiceCert = a.CACert
	cfg.Clients = 2
	cfg.Duration = time.Second
	res, err := RunLog(t.Context(), cfg)
	if err != nil {
		t.Fatalf("RunLog: %v", err)
	}
	checkResult(t, res)
	// Each client dials each target once and keeps the connection: at most
	// 2 clients x 2 targets. (Exactly 4 unless a client, on a loaded
	// machine, sent a single request in the whole second; asserting 4
	// made this test flaky under -race.)
	if res.Connections < 2 || res.Connections > 4 {
		t.Errorf("Result.Connections = %d, want 2 clients x 2 targets (4), and never more", res.Connections)
	}
	if res.Writes >= 100 && res.Connections != 4 {
		t.Errorf("Result.Connections = %d after %d writes, want 2 clients x 2 targets", res.Connections, res.Writes)
	}
}

func port(t *testing.T, addr string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBenchRunLogCountsErrorStatus(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"error":{"code":"ServiceNotReady","message":"not open"}}`))
	}))
	t.Cleanup(srv.Close)
	cfg := clientCert(t)
	cfg.Targets = []string{srv.Listener.Addr().String()}
	cfg.ServiceCert = srv.Certificate()
	cfg.Clients = 2
	cfg.Duration = 300 * time.Millisecond
	res, err := RunLog(t.Context(), cfg)
	if err != nil {
		t.Fatalf("RunLog: %v", err)
	}
	t.Log(res)
	if res.Writes != 0 {
		t.Errorf("Writes = %d, want 0", res.Writes)
	}
	if res.Errors["503"] == 0 || len(res.Errors) != 1 {
		t.Errorf("Errors = %v, want only 503s", res.Errors)
	}
	if !strings.Contains(res.Markdown(), "503:") {
		t.Errorf("Markdown() = %q does not report the 503s", res.Markdown())
	}
}

func TestBenchRunLogCountsTransportErrors(t *testing.T) {
	s := startCeiling(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	_ = ln.Close()
	cfg := clientCert(t)
	cfg.Targets = []string{dead}
	cfg.ServiceCert = s.CACert
	cfg.Clients = 1
	cfg.Duration = 200 * time.Millisecond
	res, err := RunLog(t.Context(), cfg)
	if err != nil {
		t.Fatalf("RunLog: %v", err)
	}
	if res.Errors["transport"] == 0 || res.LastTransportError == "" {
		t.Errorf("Errors = %v, last %q, want transport errors", res.Errors, res.LastTransportError)
	}
}

func TestBenchRunLogRejectsUntrustedServer(t *testing.T) {
	s := startCeiling(t)
	other := startCeiling(t)
	cfg := clientCert(t)
	cfg.Targets = []string{s.Addr()}
	cfg.ServiceCert = other.CACert // wrong service: must not be trusted
	cfg.Clients = 1
	cfg.Duration = 200 * time.Millisecond
	res, err := RunLog(t.Context(), cfg)
	if err != nil {
		t.Fatalf("RunLog: %v", err)
	}
	if res.Writes != 0 || res.Errors["transport"] == 0 {
		t.Errorf("writes=%d errors=%v, want only transport errors", res.Writes, res.Errors)
	}
}

func TestBenchRunLogConfigErrors(t *testing.T) {
	ca := &x509.Certificate{}
	for name, cfg := range map[string]LogConfig{
		"no targets":   {ServiceCert: ca, Clients: 1, Duration: time.Second},
		"bad target":   {Targets: []string{"nohost"}, ServiceCert: ca, Clients: 1, Duration: time.Second},
		"no cert":      {Targets: []string{"127.0.0.1:1"}, Clients: 1, Duration: time.Second},
		"no clients":   {Targets: []string{"127.0.0.1:1"}, ServiceCert: ca, Duration: time.Second},
		"no duration":  {Targets: []string{"127.0.0.1:1"}, ServiceCert: ca, Clients: 1},
		"bad path":     {Targets: []string{"127.0.0.1:1"}, ServiceCert: ca, Clients: 1, Duration: time.Second, Path: "app"},
		"neg msg size": {Targets: []string{"127.0.0.1:1"}, ServiceCert: ca, Clients: 1, Duration: time.Second, MsgSize: -1},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := RunLog(t.Context(), cfg); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("RunLog error = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestBenchRunLogCancelled(t *testing.T) {
	s := startCeiling(t)
	cfg := clientCert(t)
	cfg.Targets = []string{s.Addr()}
	cfg.ServiceCert = s.CACert
	cfg.Clients = 2
	cfg.Duration = time.Minute
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if _, err := RunLog(ctx, cfg); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("RunLog error = %v, want DeadlineExceeded", err)
	}
}

func TestBenchHistogram(t *testing.T) {
	var h histogram
	for i := 1; i <= 10000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 5000 * time.Microsecond}, {0.9, 9000 * time.Microsecond}, {0.99, 9900 * time.Microsecond}, {1, 10000 * time.Microsecond}} {
		got := h.quantile(tc.q)
		if diff := float64(got-tc.want) / float64(tc.want); diff > 0.01 || diff < -0.01 {
			t.Errorf("quantile(%v) = %s, want %s within 1%%", tc.q, got, tc.want)
		}
	}
	if h.max != 10*time.Millisecond {
		t.Errorf("max = %s", h.max)
	}
	// Bucket boundaries are contiguous and monotonic.
	prev := -1
	for v := uint64(0); v < 1<<20; v++ {
		i := histIndex(v)
		if i != prev && i != prev+1 {
			t.Fatalf("histIndex(%d) = %d after %d", v, i, prev)
		}
		prev = i
	}
	if i := histIndex(histMaxValue); i >= histBuckets {
		t.Fatalf("histIndex(max) = %d >= %d buckets", i, histBuckets)
	}
	h.record(time.Duration(1) << 50) // clamped, no panic
	var empty histogram
	if empty.quantile(0.5) != 0 {
		t.Error("empty quantile != 0")
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const sampleSandbox = `{"service_cert": "service_cert.pem", "chain_id": 1337,
 "nodes":   [{"node_id":"n0","rpc_address":"127.0.0.1:8000","pid":1,"data_dir":"/d/n0","args":["coco","node"]},
             {"node_id":"n1","rpc_address":"127.0.0.1:8001","pid":2,"data_dir":"/d/n1","args":["coco","node"]}],
 "members": [{"name":"member0","id":"m","cert":"/abs/m0.pem","key":"/abs/m0.key","enc_key":"/abs/m0.enc"}],
 "users":   [{"name":"user0","id":"u","cert":"/abs/u0.pem","key":"/abs/u0.key","eth_address":"0xabc","eth_key":"/abs/u0.eth"}],
 "future_field": true}`

func TestBenchLoadSandbox(t *testing.T) {
	dir := t.TempDir()
	sb, err := LoadSandbox(writeFile(t, dir, "sandbox.json", sampleSandbox))
	if err != nil {
		t.Fatalf("LoadSandbox: %v", err)
	}
	if sb.ChainID != 1337 || len(sb.Nodes) != 2 || sb.Nodes[1].PID != 2 || sb.Members[0].EncKey != "/abs/m0.enc" {
		t.Errorf("unexpected sandbox %+v", sb)
	}
	if want := filepath.Join(dir, "service_cert.pem"); sb.ServiceCert != want {
		t.Errorf("ServiceCert = %q, want %q (resolved against the file's dir)", sb.ServiceCert, want)
	}
	if got := sb.RPCAddresses(); len(got) != 2 || got[1] != "127.0.0.1:8001" {
		t.Errorf("RPCAddresses = %v", got)
	}
	u, err := sb.User("user0")
	if err != nil || u.EthAddress != "0xabc" {
		t.Errorf("User(user0) = %+v, %v", u, err)
	}
	if _, err := sb.User("nobody"); err == nil || !strings.Contains(err.Error(), "user0") {
		t.Errorf("User(nobody) error = %v, want one listing user0", err)
	}
}

func TestBenchLoadSandboxInvalid(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct{ content, wantMsg string }{
		"not json":      {`{"nodes":`, "unexpected end"},
		"wrong type":    {`{"service_cert": 3}`, "service_cert"},
		"no cert":       {`{"nodes":[{"rpc_address":"127.0.0.1:1"}]}`, "service_cert is missing"},
		"no nodes":      {`{"service_cert":"/c.pem"}`, "nodes is empty"},
		"no address":    {`{"service_cert":"/c.pem","nodes":[{"node_id":"x"}]}`, "nodes[0].rpc_address is missing"},
		"bad address":   {`{"service_cert":"/c.pem","nodes":[{"rpc_address":"localhost"}]}`, "nodes[0].rpc_address"},
		"user no key":   {`{"service_cert":"/c.pem","nodes":[{"rpc_address":"127.0.0.1:1"}],"users":[{"name":"u","cert":"/c"}]}`, "users[0]"},
		"dup user":      {`{"service_cert":"/c.pem","nodes":[{"rpc_address":"127.0.0.1:1"}],"users":[{"name":"u","cert":"/c","key":"/k"},{"name":"u","cert":"/c","key":"/k"}]}`, "duplicate"},
		"member no key": {`{"service_cert":"/c.pem","nodes":[{"rpc_address":"127.0.0.1:1"}],"members":[{"name":"m","cert":"/c"}]}`, "members[0]"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := LoadSandbox(writeFile(t, dir, strings.ReplaceAll(name, " ", "_")+".json", tc.content))
			if !errors.Is(err, ErrInvalidSandbox) || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("LoadSandbox error = %v, want ErrInvalidSandbox mentioning %q", err, tc.wantMsg)
			}
		})
	}
	if _, err := LoadSandbox(filepath.Join(dir, "missing.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file error = %v, want ErrNotExist", err)
	}
}
