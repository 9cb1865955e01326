package bench

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/rpc"
)

// fakeChain serves eth_blockNumber and eth_getBlockByNumber over HTTP
// JSON-RPC from blocks of transaction hashes that a test appends.
type fakeChain struct {
	mu     sync.Mutex
	blocks [][]common.Hash // blocks[0] is genesis
	// nonce, when set, answers eth_getTransactionCount (its calls counted
	// in nonceCalls).
	nonce      func(call int) uint64
	nonceCalls int
}

func (f *fakeChain) add(hashes ...common.Hash) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.blocks = append(f.blocks, hashes)
}

func (f *fakeChain) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req struct {
		ID     json.RawMessage   `json:"id"`
		Method string            `json:"method"`
		Params []json.RawMessage `json:"params"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var result any
	switch req.Method {
	case "eth_blockNumber":
		result = hexutil.Uint64(len(f.blocks) - 1)
	case "eth_getBlockByNumber":
		var n hexutil.Uint64
		if err := json.Unmarshal(req.Params[0], &n); err != nil || int(n) >= len(f.blocks) {
			result = nil
			break
		}
		hs := f.blocks[n]
		if hs == nil {
			hs = []common.Hash{}
		}
		result = map[string]any{"number": n, "transactions": hs}
	case "eth_getTransactionCount":
		if f.nonce == nil {
			http.Error(w, "unknown method", http.StatusBadRequest)
			return
		}
		result = hexutil.Uint64(f.nonce(f.nonceCalls))
		f.nonceCalls++
	default:
		http.Error(w, "unknown method", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"jsonrpc": "2.0", "id": req.ID, "result": result})
}

func TestBlockWatcher(t *testing.T) {
	chain := &fakeChain{}
	chain.add()                      // genesis
	chain.add(common.Hash{0xee})     // before the watcher starts: never reported
	srv := httptest.NewServer(chain) // plain HTTP, as a peer chain
	defer srv.Close()
	rc, err := rpc.Dial(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	w := newBlockWatcher(rc)
	ctx, cancel := context.WithCancel(context.Background())
	head, err := w.head(ctx)
	if err != nil || head != 1 {
		t.Fatalf("head = %d, %v; want 1", head, err)
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		w.run(ctx, head)
	}()

	a, b, c := common.Hash{1}, common.Hash{2}, common.Hash{3}
	both := w.expect([]common.Hash{a, b})
	gone := w.expect([]common.Hash{c})
	w.forget([]common.Hash{c})
	old := w.expect([]common.Hash{{0xee}})

	chain.add(a)
	select {
	case <-both.done:
		t.Fatal("a request finished with one of its two transactions included")
	case <-time.After(50 * time.Millisecond):
	}
	chain.add(c, b)
	select {
	case <-both.done:
		if both.err != nil || both.at.IsZero() {
			t.Fatalf("inclusion = %+v", both)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the request was not reported included")
	}

	cancel()
	<-stopped
	for name, in := range map[string]*inclusion{"forgotten": gone, "included before the start": old} {
		select {
		case <-in.done:
			if in.err == nil || !errors.Is(in.err, context.Canceled) {
				t.Errorf("%s: err = %v, want the watcher's stop", name, in.err)
			}
		default:
			if name == "included before the start" {
				t.Errorf("%s: still waiting after the watcher stopped", name)
			}
		}
	}
	late := w.expect([]common.Hash{{9}})
	select {
	case <-late.done:
		if late.err == nil {
			t.Error("a wait registered after the stop has no error")
		}
	default:
		t.Error("a wait registered after the stop is not finished")
	}
}

func TestERC20ConfigPeer(t *testing.T) {
	env := &ERC20Env{Accounts: []ERC20Account{{}}, ChainID: common.Big1}
	cases := []struct {
		name string
		cfg  ERC20Config
		err  string
	}{
		{"peer", ERC20Config{Peer: "http://127.0.0.1:8545"}, ""},
		{"peer and targets", ERC20Config{Peer: "http://127.0.0.1:8545", Targets: []string{"127.0.0.1:1"}}, "not both"},
		{"no scheme", ERC20Config{Peer: "127.0.0.1:8545"}, "peer URL"},
		{"other scheme", ERC20Config{Peer: "ws://127.0.0.1:8545"}, "scheme must be"},
		{"no port", ERC20Config{Peer: "http://localhost"}, "missing port"},
		{"neither", ERC20Config{}, "no targets"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg
			cfg.Env, cfg.Batch, cfg.Duration, cfg.MaxRate = env, 1, time.Second, 1
			err := cfg.normalise()
			if c.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				if ts := cfg.targets(); len(ts) != 1 || !ts[0].peer() || ts[0].url.String() != cfg.Peer {
					t.Errorf("targets = %+v", ts)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), c.err) {
				t.Errorf("err = %v, want ErrInvalidConfig containing %q", err, c.err)
			}
		})
	}
}

func TestTokenCode(t *testing.T) {
	for _, v := range []string{"", "shanghai"} {
		if code, err := tokenCode(v); err != nil || len(code) == 0 {
			t.Errorf("tokenCode(%q) = %d bytes, %v", v, len(code), err)
		}
	}
	if _, err := tokenCode("frontier"); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("tokenCode(frontier) err = %v", err)
	}
	if _, err := ParseDevKey("0xnothex"); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("ParseDevKey err = %v", err)
	}
}

// TestSettle: after a run with failed requests, the check waits until the
// peer's nonces stop moving (transfers of a timed-out request may still
// land); without failed requests it asks nothing.
func TestSettle(t *testing.T) {
	const quiet = 150 * time.Millisecond
	var lastChange time.Time
	f := &fakeChain{nonce: func(call int) uint64 {
		n := min(call, 8) // moves for 8 calls, then stays
		if call <= 8 {
			lastChange = time.Now()
		}
		return uint64(n)
	}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	target, err := peerTarget(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	env := &ERC20Env{Accounts: make([]ERC20Account, 1)}
	ctx := context.Background()

	clean := &ERC20Result{accounts: []*erc20Client{{}}}
	if err := settle(ctx, target, env, clean, quiet, time.Millisecond); err != nil || f.nonceCalls != 0 {
		t.Fatalf("no failed request: %v after %d nonce reads", err, f.nonceCalls)
	}

	failed := &ERC20Result{accounts: []*erc20Client{{unsure: []common.Hash{{1}}}}}
	if err := settle(ctx, target, env, failed, quiet, 5*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.nonceCalls <= 9 {
		t.Fatalf("settle returned after %d nonce reads, while the nonce still moved", f.nonceCalls)
	}
	if since := time.Since(lastChange); since < quiet {
		t.Fatalf("settle returned %v after the last change, want >= %v", since, quiet)
	}
}
