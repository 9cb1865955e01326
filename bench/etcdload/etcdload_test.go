package etcdload

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cocoledger/coco/bench"
)

// fakeStore stands in for an etcd cluster: it records every Put and can be
// told to fail some of them.
type fakeStore struct {
	mu        sync.Mutex
	keys      map[string]string
	endpoints map[string]int // putters made per endpoint
	closed    atomic.Int64
	delay     time.Duration
	fail      func(key string) error
}

func newFakeStore() *fakeStore {
	return &fakeStore{keys: map[string]string{}, endpoints: map[string]int{}}
}

func (s *fakeStore) dial(endpoint string, dials *atomic.Int64) (putter, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endpoints[endpoint]++
	dials.Add(1)
	return fakePutter{s}, nil
}

type fakePutter struct{ s *fakeStore }

func (p fakePutter) Put(ctx context.Context, key, value string) error {
	if p.s.delay > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(p.s.delay):
		}
	}
	if p.s.fail != nil {
		if err := p.s.fail(key); err != nil {
			return err
		}
	}
	p.s.mu.Lock()
	defer p.s.mu.Unlock()
	if _, dup := p.s.keys[key]; dup {
		return fmt.Errorf("duplicate key %q", key)
	}
	p.s.keys[key] = value
	return nil
}

func (p fakePutter) Close() error {
	p.s.closed.Add(1)
	return nil
}

func validConfig() Config {
	return Config{
		Endpoints: []string{"127.0.0.1:2379", "http://127.0.0.1:2381", "localhost:2383"},
		Clients:   6,
		Duration:  300 * time.Millisecond,
		Warmup:    100 * time.Millisecond,
	}
}

func TestConfigErrors(t *testing.T) {
	for name, mod := range map[string]func(*Config){
		"no endpoints":      func(c *Config) { c.Endpoints = nil },
		"endpoint no port":  func(c *Config) { c.Endpoints = []string{"127.0.0.1"} },
		"endpoint scheme":   func(c *Config) { c.Endpoints = []string{"unix://x:1"} },
		"endpoint no host":  func(c *Config) { c.Endpoints = []string{":2379"} },
		"zero clients":      func(c *Config) { c.Clients = 0 },
		"negative size":     func(c *Config) { c.ValueSize = -1 },
		"zero duration":     func(c *Config) { c.Duration = 0 },
		"negative warmup":   func(c *Config) { c.Warmup = -time.Second },
		"several at a time": func(c *Config) { c.Clients, c.Duration = -1, -1 },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := validConfig()
			mod(&cfg)
			store := newFakeStore()
			_, err := run(t.Context(), cfg, store.dial)
			if !errors.Is(err, bench.ErrInvalidConfig) {
				t.Fatalf("run = %v, want ErrInvalidConfig", err)
			}
			if len(store.endpoints) != 0 {
				t.Errorf("an invalid config dialed %v", store.endpoints)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	cfg := validConfig()
	if err := cfg.normalise(); err != nil {
		t.Fatal(err)
	}
	if cfg.ValueSize != DefaultValueSize || cfg.KeyPrefix != DefaultKeyPrefix {
		t.Errorf("defaults: value size %d key prefix %q", cfg.ValueSize, cfg.KeyPrefix)
	}
}

func TestRunCountsAcknowledgedPuts(t *testing.T) {
	store := newFakeStore()
	store.delay = time.Millisecond
	cfg := validConfig()
	cfg.ValueSize = 1024
	cfg.KeyPrefix = "p/"
	res, err := run(t.Context(), cfg, store.dial)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res)
	if res.Writes == 0 {
		t.Fatal("Writes = 0")
	}
	if n := res.ErrorCount(); n != 0 {
		t.Errorf("errors %v (%s), want none", res.Errors, res.LastTransportError)
	}
	// The warmup's Puts reach the store but are not counted.
	if uint64(len(store.keys)) <= res.Writes {
		t.Errorf("store holds %d keys, counted %d: warmup Puts were counted", len(store.keys), res.Writes)
	}
	for k, v := range store.keys {
		if !strings.HasPrefix(k, "p/") || len(v) != 1024 {
			t.Fatalf("key %q value of %d bytes, want prefix p/ and 1024 bytes", k, len(v))
		}
	}
	// One putter per client, rotated over the endpoints, all closed.
	for _, e := range cfg.Endpoints {
		if store.endpoints[e] != 2 {
			t.Errorf("endpoint %s got %d clients, want 2", e, store.endpoints[e])
		}
	}
	if res.Connections != 6 || store.closed.Load() != 6 {
		t.Errorf("connections %d closed %d, want 6 and 6", res.Connections, store.closed.Load())
	}
	if !(res.P50 > 0 && res.P50 <= res.P90 && res.P90 <= res.P99 && res.P99 <= res.Max) {
		t.Errorf("latencies out of order: p50=%s p90=%s p99=%s max=%s", res.P50, res.P90, res.P99, res.Max)
	}
	if want := float64(res.Writes) / cfg.Duration.Seconds(); res.Throughput != want {
		t.Errorf("throughput %f, want %f", res.Throughput, want)
	}
	f := res.Figure(DefaultSystem)
	if f.Workload != "writes-1024B" || f.System != "etcd-3" || f.Clients != 6 || f.PerSec != res.Throughput {
		t.Errorf("figure %+v", f)
	}
	if row := res.Markdown(); strings.Count(row, "|") != strings.Count(strings.SplitN(bench.MarkdownHeader, "\n", 2)[0], "|") {
		t.Errorf("row %q does not match the header", row)
	}
}

func TestRunCountsErrorsByCause(t *testing.T) {
	store := newFakeStore()
	store.delay = time.Millisecond
	var n atomic.Int64
	store.fail = func(string) error {
		switch n.Add(1) % 4 {
		case 1:
			return status.Error(codes.Unavailable, "connection refused")
		case 2:
			return rpctypes.ErrNoLeader
		}
		return nil
	}
	cfg := validConfig()
	cfg.Warmup = 0
	res, err := run(t.Context(), cfg, store.dial)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res)
	if res.Writes == 0 || res.Errors["Unavailable"] == 0 || res.Errors["no-leader"] == 0 {
		t.Errorf("writes %d errors %v, want some of each", res.Writes, res.Errors)
	}
	if len(res.Errors) != 2 {
		t.Errorf("errors %v, want only Unavailable and no-leader", res.Errors)
	}
	if res.LastTransportError == "" {
		t.Error("no last error")
	}
}

func TestRunPutsStraddlingTheEndAreNotCounted(t *testing.T) {
	store := newFakeStore()
	store.delay = 300 * time.Millisecond
	cfg := validConfig()
	cfg.Warmup = 0
	cfg.Duration = 100 * time.Millisecond
	res, err := run(t.Context(), cfg, store.dial)
	if err != nil {
		t.Fatal(err)
	}
	if res.Writes != 0 || res.ErrorCount() != 0 {
		t.Errorf("writes %d errors %v, want none", res.Writes, res.Errors)
	}
	if len(store.keys) != cfg.Clients {
		t.Errorf("store holds %d keys, want one per client", len(store.keys))
	}
}

func TestRunCancelled(t *testing.T) {
	store := newFakeStore()
	store.delay = time.Millisecond
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(50*time.Millisecond, cancel)
	cfg := validConfig()
	cfg.Duration = time.Hour
	_, err := run(ctx, cfg, store.dial)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("run = %v, want context.Canceled", err)
	}
	if store.closed.Load() != int64(cfg.Clients) {
		t.Errorf("closed %d clients, want %d", store.closed.Load(), cfg.Clients)
	}
}

func TestRunDialError(t *testing.T) {
	store := newFakeStore()
	var n atomic.Int64
	dial := func(e string, d *atomic.Int64) (putter, error) {
		if n.Add(1) == 3 {
			return nil, errors.New("boom")
		}
		return store.dial(e, d)
	}
	_, err := run(t.Context(), validConfig(), dial)
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("run = %v, want the dial error", err)
	}
	if store.closed.Load() != 2 {
		t.Errorf("closed %d clients, want the 2 made before the error", store.closed.Load())
	}
}

func TestErrorCause(t *testing.T) {
	for err, want := range map[error]string{
		rpctypes.ErrTimeout:                              "request-timed-out",
		status.Error(codes.Unavailable, "x"):             "Unavailable",
		fmt.Errorf("put: %w", context.DeadlineExceeded):  "DeadlineExceeded",
		context.Canceled:                                 "Canceled",
		errors.New("plain"):                              "Unknown",
		status.Error(codes.ResourceExhausted, "too big"): "ResourceExhausted",
	} {
		if got := errorCause(err); got != want {
			t.Errorf("errorCause(%v) = %q, want %q", err, got, want)
		}
	}
}

func TestWorkload(t *testing.T) {
	if Workload(100) != "writes-100B" || Workload(1024) != "writes-1024B" {
		t.Errorf("Workload = %q %q", Workload(100), Workload(1024))
	}
}
