package bench

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"math/rand/v2"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/ethclient"
)

// ERC20Config describes an ERC-20 transfer workload on a token set up by
// SetupERC20.
type ERC20Config struct {
	// Targets are coco's RPC addresses (host:port) requests rotate over,
	// and ServiceCert its service certificate.
	Targets     []string
	ServiceCert *x509.Certificate
	// Peer, instead of Targets, is the JSON-RPC URL of a peer chain (a
	// geth dev chain, ganache) set up by SetupERC20Peer: plain HTTP, and
	// a transfer counts once a block includes it.
	Peer string
	Env  *ERC20Env
	// Batch is the number of transfers per HTTP request: 1 sends plain
	// JSON-RPC requests, more sends JSON-RPC batches (as ethers'
	// JsonRpcProvider does by default).
	Batch int
	// Duration is the measured window; Warmup precedes it and is not counted.
	Duration time.Duration
	Warmup   time.Duration
	// MaxRate is the highest rate (transfers/s over all accounts) the run
	// can sustain: every account signs enough transfers for it before the
	// run starts, so that signing costs the measured window nothing. An
	// account that runs out stops, and the result says so.
	MaxRate int
	// Seed picks the transfers' recipients.
	Seed uint64
}

func (c *ERC20Config) normalise() error {
	var errs []error
	if c.Peer != "" {
		if len(c.Targets) > 0 || c.ServiceCert != nil {
			errs = append(errs, errors.New("a peer URL or coco targets, not both"))
		}
		if _, err := peerTarget(c.Peer); err != nil {
			errs = append(errs, err)
		}
		errs = append(errs, checkWindow(c.Duration, c.Warmup)...)
	} else {
		errs = checkRun(c.Targets, c.ServiceCert, c.Duration, c.Warmup)
	}
	if c.Env == nil || len(c.Env.Accounts) == 0 || c.Env.ChainID == nil {
		errs = append(errs, errors.New("no token environment with accounts"))
	}
	if c.Batch <= 0 || c.Batch > 1000 {
		errs = append(errs, fmt.Errorf("batch must be in [1, 1000], got %d", c.Batch))
	}
	if c.MaxRate <= 0 {
		errs = append(errs, fmt.Errorf("max rate must be positive, got %d", c.MaxRate))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

// targets are where requests go, in rotation (after normalise).
func (c *ERC20Config) targets() []ethTarget {
	if c.Peer != "" {
		t, _ := peerTarget(c.Peer) // checked by normalise
		return []ethTarget{t}
	}
	ts := make([]ethTarget, len(c.Targets))
	for i, addr := range c.Targets {
		ts[i] = cocoTarget(c.ServiceCert, addr)
	}
	return ts
}

// perAccount is the number of transfers each account signs: enough for
// MaxRate over the whole run, in whole batches.
func (c *ERC20Config) perAccount() int {
	total := float64(c.MaxRate) * (c.Warmup + c.Duration).Seconds()
	n := int(total/float64(len(c.Env.Accounts))) + 1
	return (n + c.Batch - 1) / c.Batch * c.Batch
}

// ERC20Result summarises one RunERC20 run. Only the measured window counts
// for the rates and latencies; Sent and Acked cover the whole run, for the
// balance check.
type ERC20Result struct {
	Target   string
	Accounts int
	Batch    int
	// Transfers is the number of transfers acknowledged as committed in the
	// window; a transfer's latency is that of its request.
	Transfers uint64
	Elapsed   time.Duration
	// Throughput is committed transfers per second; P50..Max their latency.
	latencyStats
	// Errors counts failed transfers by cause: an HTTP status ("503"),
	// a JSON-RPC error code ("rpc-32000"), or "transport".
	Errors map[string]int
	// LastError is the last error message seen, if any.
	LastError string
	// Exhausted is the number of accounts that sent every transfer they
	// had signed before the run ended (MaxRate was too low).
	Exhausted int

	accounts []*erc20Client
}

// ErrorCount is the total number of failed transfers.
func (r *ERC20Result) ErrorCount() int { return sumCounts(r.Errors) }

// ERC20MarkdownHeader is the table header matching ERC20Result.Markdown.
const ERC20MarkdownHeader = "| target | accounts | batch | committed transfers/s | p50 | p99 | errors |\n|---|---:|---:|---:|---:|---:|---|"

// Markdown renders r as one row of the ERC20MarkdownHeader table.
func (r *ERC20Result) Markdown() string {
	return fmt.Sprintf("| %s | %d | %d | %.1f | %s | %s | %s |",
		r.Target, r.Accounts, r.Batch, r.Throughput, fmtLatency(r.P50), fmtLatency(r.P99), summariseErrors(r.Errors))
}

// RunERC20 signs cfg.MaxRate's worth of token transfers for every account,
// then has each account send its transfers in order, one request (of
// cfg.Batch transfers) at a time, to cfg.Targets in rotation, for
// cfg.Warmup then cfg.Duration. coco answers eth_sendRawTransaction once
// the transaction committed, so every acknowledged transfer is a committed
// one. An account stops at its first failed transfer (the nonces after it
// would be refused). Cancelling ctx stops the run early with ctx's error.
func RunERC20(ctx context.Context, cfg ERC20Config) (*ERC20Result, error) {
	if err := cfg.normalise(); err != nil {
		return nil, err
	}
	clients, err := presign(cfg)
	if err != nil {
		return nil, err
	}
	targets := cfg.targets()
	urls := make([]*url.URL, len(targets))
	for i, t := range targets {
		urls[i] = t.url
	}
	var watcher *blockWatcher
	if targets[0].peer() {
		rc, err := targets[0].dial(ctx, ERC20Account{})
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		watcher = newBlockWatcher(rc)
		head, err := watcher.head(ctx)
		if err != nil {
			return nil, err
		}
		watchCtx, stopWatching := context.WithCancel(ctx)
		watching := make(chan struct{})
		go func() {
			defer close(watching)
			watcher.run(watchCtx, head)
		}()
		defer func() {
			stopWatching()
			<-watching
		}()
	}

	err = runWindowed(ctx, cfg.Warmup, cfg.Duration, len(clients), func(ctx context.Context, i int, window, end time.Time) {
		c := clients[i]
		c.urls, c.next = urls, i%len(urls)
		c.window, c.end = window, end
		c.watcher = watcher
		c.http = targets[0].loadTransport(c.acc)
		c.run(ctx)
		c.http.CloseIdleConnections()
	})
	if err != nil {
		return nil, err
	}

	target := strings.Join(cfg.Targets, ",")
	if cfg.Peer != "" {
		target = cfg.Peer
	}
	res := &ERC20Result{
		Target:   target,
		Accounts: len(clients),
		Batch:    cfg.Batch,
		Elapsed:  cfg.Duration,
		Errors:   map[string]int{},
		accounts: clients,
	}
	var h histogram
	for _, c := range clients {
		h.merge(&c.hist)
		for k, v := range c.errors {
			res.Errors[k] += v
		}
		if c.lastErr != "" {
			res.LastError = c.lastErr
		}
		if c.exhausted {
			res.Exhausted++
		}
	}
	res.Transfers = h.n
	res.latencyStats = h.stats(cfg.Duration)
	return res, nil
}

// erc20Client is one account's closed loop. It is owned by its goroutine
// until run returns.
type erc20Client struct {
	acc    ERC20Account
	hashes []common.Hash // of each pre-signed transfer, in nonce order
	to     []int         // recipient (account index) of each transfer
	bodies [][]byte      // one request per batch of transfers
	batch  int

	urls   []*url.URL
	next   int
	window time.Time
	end    time.Time
	http   roundTripper
	// watcher, on a peer chain, says when blocks include transfers.
	watcher *blockWatcher

	// acked transfers are hashes[:acked]; unsure ones (the rest of the
	// request that failed) may or may not have committed.
	acked     int
	unsure    []common.Hash
	exhausted bool
	hist      histogram
	errors    map[string]int
	lastErr   string
}

// presign signs every account's transfers, in parallel, and encodes their
// requests.
func presign(cfg ERC20Config) ([]*erc20Client, error) {
	tok, err := parseTokenABI()
	if err != nil {
		return nil, err
	}
	env := cfg.Env
	n := cfg.perAccount()
	signer := types.LatestSignerForChainID(env.ChainID)
	one := big.NewInt(1)
	clients := make([]*erc20Client, len(env.Accounts))
	errs := make([]error, len(clients))
	work := make(chan int)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for i := range work {
				clients[i], errs[i] = presignAccount(cfg, tok, signer, i, n, one)
			}
		})
	}
	for i := range clients {
		work <- i
	}
	close(work)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return clients, nil
}

func presignAccount(cfg ERC20Config, tok erc20ABI, signer types.Signer, i, n int, value *big.Int) (*erc20Client, error) {
	accs := cfg.Env.Accounts
	rng := rand.New(rand.NewPCG(cfg.Seed, uint64(i)))
	c := &erc20Client{acc: accs[i], batch: cfg.Batch, errors: map[string]int{}}
	// Only hashes and encoded requests are kept: a long run pre-signs
	// millions of transfers, and as *types.Transaction values (a dozen
	// heap objects each) they made the load generator's garbage
	// collector mark them all on every cycle.
	c.hashes = make([]common.Hash, n)
	c.to = make([]int, n)
	txs := make([]*types.Transaction, cfg.Batch)
	for j := 0; j < n; j += cfg.Batch {
		for k := range cfg.Batch {
			to := i
			if len(accs) > 1 {
				to = (i + 1 + rng.IntN(len(accs)-1)) % len(accs)
			}
			data, err := tok.Pack("transfer", accs[to].Address, value)
			if err != nil {
				return nil, fmt.Errorf("bench: transfer call: %w", err)
			}
			if txs[k], err = cfg.Env.sign(signer, accs[i].Key, &types.DynamicFeeTx{Nonce: uint64(j + k), Gas: transferGas, To: &cfg.Env.Token, Data: data}); err != nil {
				return nil, err
			}
			c.hashes[j+k], c.to[j+k] = txs[k].Hash(), to
		}
		body, err := sendRawBody(txs, cfg.Batch > 1)
		if err != nil {
			return nil, err
		}
		c.bodies = append(c.bodies, body)
	}
	return c, nil
}

// sendRawBody encodes eth_sendRawTransaction requests for txs, with ids
// 0, 1, ..., as a JSON-RPC batch or, when batch is false, as the one
// plain request for txs[0].
func sendRawBody(txs []*types.Transaction, batch bool) ([]byte, error) {
	var b bytes.Buffer
	if batch {
		b.WriteByte('[')
	}
	for k, t := range txs {
		raw, err := t.MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("bench: encode a transaction: %w", err)
		}
		if k > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"jsonrpc":"2.0","id":%d,"method":"eth_sendRawTransaction","params":["%s"]}`, k, hexutil.Encode(raw))
		if !batch {
			break
		}
	}
	if batch {
		b.WriteByte(']')
	}
	return b.Bytes(), nil
}

func (c *erc20Client) run(ctx context.Context) {
	for k, body := range c.bodies {
		if ctx.Err() != nil {
			return
		}
		sent := time.Now()
		if !sent.Before(c.end) {
			return
		}
		first := k * c.batch
		hashes := c.hashes[first : first+c.batch : first+c.batch]
		var in *inclusion
		if c.watcher != nil {
			in = c.watcher.expect(hashes)
		}
		outs, cause, err := c.post(ctx, body, len(hashes))
		done := time.Now()
		// ok transfers, a prefix of txs, were acknowledged.
		ok := 0
		if err == nil {
			for ok < len(outs) && outs[ok] == "" {
				ok++
			}
			if ok < len(outs) {
				cause, err = "rpc"+rpcCode(outs[ok]), errors.New(outs[ok])
			}
		}
		if in != nil {
			if err == nil {
				// The pool has them; they commit when a block has them.
				select {
				case <-in.done:
					if in.err != nil {
						cause, err = "not-included", in.err
					} else {
						done = later(done, in.at)
					}
				case <-ctx.Done():
					cause, err = "not-included", fmt.Errorf("no block included a request's transfers: %w", ctx.Err())
				}
			}
			if err != nil {
				// None of them is known to have committed.
				c.watcher.forget(hashes)
				ok = 0
			}
		}
		c.acked += ok
		if !sent.Before(c.window) && !done.After(c.end) {
			for range ok {
				c.hist.record(done.Sub(sent))
			}
		}
		if err != nil {
			// What was not acknowledged may still have committed (the
			// request may have timed out after its commit): the balance
			// check asks for receipts.
			c.unsure = hashes[ok:]
			c.errors[cause]++
			c.lastErr = err.Error()
			return
		}
	}
	c.exhausted = true
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// post sends one request and returns, for each of its n transfers, ""
// when it was acknowledged or its JSON-RPC error as "code: message".
// A request that failed as a whole returns a cause ("transport", an HTTP
// status) and an error.
func (c *erc20Client) post(ctx context.Context, body []byte, n int) (outs []string, cause string, err error) {
	u := c.urls[c.next]
	c.next = (c.next + 1) % len(c.urls)
	req := newPost(ctx, u, http.Header{"Content-Type": {"application/json"}}, body)
	resp, err := c.http.RoundTrip(req)
	if err != nil {
		return nil, "transport", err
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if cerr := resp.Body.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, "transport", fmt.Errorf("read response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, strconv.Itoa(resp.StatusCode), fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(raw))
	}
	outs, err = parseSendRawAnswers(raw, n, c.batch > 1)
	if err != nil {
		return nil, "malformed", err
	}
	return outs, "", nil
}

type rpcAnswer struct {
	ID     json.RawMessage `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// parseSendRawAnswers reads the answers to n eth_sendRawTransaction
// requests with ids 0..n-1 (a batch, or one plain answer when batch is
// false), in id order: "" for a transaction hash, "code: message" for an
// error.
func parseSendRawAnswers(raw []byte, n int, batch bool) ([]string, error) {
	var answers []rpcAnswer
	if batch {
		if err := json.Unmarshal(raw, &answers); err != nil {
			return nil, fmt.Errorf("malformed JSON-RPC batch answer: %w", err)
		}
	} else {
		var a rpcAnswer
		if err := json.Unmarshal(raw, &a); err != nil {
			return nil, fmt.Errorf("malformed JSON-RPC answer: %w", err)
		}
		if a.Error != nil && string(a.ID) == "null" {
			// The request as a whole was refused.
			a.ID = json.RawMessage("0")
		}
		answers = []rpcAnswer{a}
	}
	if len(answers) != n {
		return nil, fmt.Errorf("%d answers to %d requests", len(answers), n)
	}
	outs := make([]string, n)
	seen := make([]bool, n)
	for _, a := range answers {
		id, err := strconv.Atoi(string(a.ID))
		if err != nil || id < 0 || id >= n || seen[id] {
			return nil, fmt.Errorf("answer with unexpected id %s", a.ID)
		}
		seen[id] = true
		switch {
		case a.Error != nil:
			outs[id] = fmt.Sprintf("%d: %s", a.Error.Code, a.Error.Message)
		case len(a.Result) == 0 || string(a.Result) == "null":
			return nil, fmt.Errorf("answer %d has neither result nor error", id)
		}
	}
	return outs, nil
}

// rpcCode is the code of an answer rendered "code: message".
func rpcCode(out string) string {
	code, _, _ := strings.Cut(out, ":")
	return code
}

// VerifyERC20 checks the token after a run: every account's balance must
// be its funding, less what it sent, plus what it received, counting every
// acknowledged transfer and those of a failed request that have a
// successful receipt; and every account's nonce must count the
// transactions it got in. It returns the number of transfers it counted.
func VerifyERC20(ctx context.Context, cfg ERC20Config, res *ERC20Result) (int, error) {
	env := cfg.Env
	tok, err := parseTokenABI()
	if err != nil {
		return 0, err
	}
	if err := cfg.normalise(); err != nil {
		return 0, err
	}
	target := cfg.targets()[0]
	want := make([]*big.Int, len(env.Accounts))
	for i := range want {
		want[i] = new(big.Int).Set(env.Funding)
	}
	if err := settle(ctx, target, env, res, settleQuiet, settlePoll); err != nil {
		return 0, err
	}
	counted := 0
	for i, c := range res.accounts {
		included, moved := c.acked, c.acked
		if len(c.unsure) > 0 {
			if included, moved, err = resolveUnsure(ctx, target, c); err != nil {
				return 0, err
			}
		}
		for j := range moved {
			want[i].Sub(want[i], big.NewInt(1))
			want[c.to[j]].Add(want[c.to[j]], big.NewInt(1))
		}
		counted += moved
		nonce, err := nonceOf(ctx, target, c.acc)
		if err != nil {
			return 0, err
		}
		if nonce != uint64(included) {
			return 0, fmt.Errorf("bench: account %d (%s) has nonce %d, but %d of its transactions were committed", i, c.acc.Address, nonce, included)
		}
	}
	rc, err := target.dial(ctx, env.Deployer)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	ec := ethclient.NewClient(rc)
	var bad []string
	for i, a := range env.Accounts {
		got, err := balanceOf(ctx, ec, tok, env.Token, a.Address)
		if err != nil {
			return 0, err
		}
		if got.Cmp(want[i]) != 0 {
			bad = append(bad, fmt.Sprintf("account %d (%s) holds %s, want %s", i, a.Address, got, want[i]))
		}
	}
	if len(bad) > 0 {
		return 0, fmt.Errorf("bench: %d of %d balances are wrong: %s", len(bad), len(env.Accounts), strings.Join(bad[:min(len(bad), 5)], "; "))
	}
	return counted, nil
}

// settleQuiet is how long a peer chain's nonces must stay unchanged, and
// settlePoll how often settle reads them.
const (
	settleQuiet = 3 * time.Second
	settlePoll  = 200 * time.Millisecond
)

// settle waits, on a peer chain after a run in which requests failed,
// until no account's nonce has changed for quiet (reading them every
// poll). A request that timed out may still be queued in the peer
// (ganache answers its connections unevenly), and its transfers would land
// after the check read their receipts as missing. coco answers only once
// committed, so it needs no wait.
func settle(ctx context.Context, target ethTarget, env *ERC20Env, res *ERC20Result, quiet, poll time.Duration) error {
	if !target.peer() || !slices.ContainsFunc(res.accounts, func(c *erc20Client) bool { return len(c.unsure) > 0 }) {
		return nil
	}
	rc, err := target.dial(ctx, env.Deployer)
	if err != nil {
		return err
	}
	defer rc.Close()
	ctx, cancel := context.WithTimeout(ctx, receiptWait)
	defer cancel()
	last := make([]hexutil.Uint64, len(env.Accounts))
	changed := time.Now()
	for round := 0; ; round++ {
		for i, a := range env.Accounts {
			var n hexutil.Uint64
			if err := rc.CallContext(ctx, &n, "eth_getTransactionCount", a.Address, "latest"); err != nil {
				return fmt.Errorf("bench: nonce of %s: %w", a.Address, err)
			}
			if round > 0 && n != last[i] {
				changed = time.Now()
			}
			last[i] = n
		}
		if time.Since(changed) >= quiet {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bench: the peer was still taking in transactions %v after the run: %w", receiptWait, ctx.Err())
		case <-time.After(poll):
		}
	}
}

// resolveUnsure asks for the receipts of c's unsure transfers: it returns
// how many of c's transactions are on the chain (a prefix: nonces are
// consecutive) and how many of them moved a token (all but a trailing
// failed one).
func resolveUnsure(ctx context.Context, target ethTarget, c *erc20Client) (included, moved int, err error) {
	rc, err := target.dial(ctx, c.acc)
	if err != nil {
		return 0, 0, err
	}
	defer rc.Close()
	ec := ethclient.NewClient(rc)
	included, moved = c.acked, c.acked
	for _, h := range c.unsure {
		r, err := ec.TransactionReceipt(ctx, h)
		if errors.Is(err, ethereum.NotFound) {
			break
		}
		if err != nil {
			return 0, 0, fmt.Errorf("bench: receipt of %s: %w", h, err)
		}
		included++
		if r.Status == types.ReceiptStatusSuccessful && moved == included-1 {
			moved++
		}
	}
	if moved != included {
		return 0, 0, fmt.Errorf("bench: account %s: a transfer failed on chain", c.acc.Address)
	}
	return included, moved, nil
}

// nonceOf asks for acc's nonce as acc (on coco, only an account's owner
// may). On a peer chain it first waits until the pool holds none of acc's
// transactions (its pending nonce is its latest), so that the nonce is
// final.
func nonceOf(ctx context.Context, target ethTarget, acc ERC20Account) (uint64, error) {
	rc, err := target.dial(ctx, acc)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	ctx, cancel := context.WithTimeout(ctx, receiptWait)
	defer cancel()
	for {
		var latest, pending hexutil.Uint64
		if err := rc.CallContext(ctx, &latest, "eth_getTransactionCount", acc.Address, "latest"); err != nil {
			return 0, fmt.Errorf("bench: nonce of %s: %w", acc.Address, err)
		}
		if !target.peer() {
			return uint64(latest), nil
		}
		if err := rc.CallContext(ctx, &pending, "eth_getTransactionCount", acc.Address, "pending"); err != nil {
			return 0, fmt.Errorf("bench: pending nonce of %s: %w", acc.Address, err)
		}
		if pending == latest {
			return uint64(latest), nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("bench: %s still has transactions in the pool: %w", acc.Address, ctx.Err())
		case <-time.After(receiptPoll):
		}
	}
}
