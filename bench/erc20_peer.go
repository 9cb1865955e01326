package bench

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	ethcrypto "github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/ethclient"
	"github.com/ethereum/go-ethereum/params"
	"github.com/ethereum/go-ethereum/rpc"
)

// ethTarget is an eth JSON-RPC endpoint and how to reach it: coco's, over
// TLS 1.3 with the account's client certificate and the service
// certificate as the only root, or a peer chain's (a geth dev chain,
// ganache) over plain HTTP, with no client identity.
//
// The two differ in what an answer to eth_sendRawTransaction means: coco
// answers once the transaction committed; a peer answers once its pool
// accepted it, and the transaction commits when a block includes it, which
// a blockWatcher observes.
type ethTarget struct {
	url         *url.URL
	serviceCert *x509.Certificate // nil for a peer
}

func cocoTarget(serviceCert *x509.Certificate, addr string) ethTarget {
	return ethTarget{url: &url.URL{Scheme: "https", Host: addr, Path: EthPath}, serviceCert: serviceCert}
}

// peerTarget parses a peer chain's JSON-RPC URL.
func peerTarget(raw string) (ethTarget, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return ethTarget{}, fmt.Errorf("peer URL %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return ethTarget{}, fmt.Errorf("peer URL %q: scheme must be http or https", raw)
	}
	if _, _, err := net.SplitHostPort(u.Host); err != nil {
		return ethTarget{}, fmt.Errorf("peer URL %q: %w", raw, err)
	}
	return ethTarget{url: u}, nil
}

func (t ethTarget) peer() bool { return t.serviceCert == nil }

// transport is a net/http transport of acc's with one connection.
func (t ethTarget) transport(acc ERC20Account) *http.Transport {
	if t.peer() {
		return newTransport(nil, false, 1, nil)
	}
	return newTransport(userTLS(t.serviceCert, acc.Cert), false, 1, nil)
}

// loadTransport is a closed-loop client transport of acc's (see
// h1Transport).
func (t ethTarget) loadTransport(acc ERC20Account) roundTripper {
	switch {
	case !t.peer():
		return newH1Transport(userTLS(t.serviceCert, acc.Cert), nil)
	case t.url.Scheme == "https":
		return newH1Transport(&tls.Config{MinVersion: tls.VersionTLS12}, nil)
	default:
		return newH1Transport(nil, nil)
	}
}

// dial returns a go-ethereum RPC client of t, authenticated as acc on coco.
func (t ethTarget) dial(ctx context.Context, acc ERC20Account) (*rpc.Client, error) {
	hc := &http.Client{Transport: t.transport(acc), Timeout: time.Minute}
	c, err := rpc.DialOptions(ctx, t.url.String(), rpc.WithHTTPClient(hc))
	if err != nil {
		return nil, fmt.Errorf("bench: eth JSON-RPC client of %s: %w", t.url.Host, err)
	}
	return c, nil
}

// Fees a peer chain's transactions offer: a 1 wei tip (geth's pool admits
// nothing less) under a fee cap well above the base fees of a dev chain.
// coco's transactions offer nothing: its gas is priced at zero.
var (
	peerTip    = big.NewInt(1)
	peerFeeCap = big.NewInt(10 * params.GWei)
	// peerEther is what each account gets to pay for its gas on a peer:
	// enough for a million transfers at peerFeeCap.
	peerEther = new(big.Int).Mul(big.NewInt(1000), big.NewInt(params.Ether))
)

// SetupERC20Peer prepares an ERC-20 run on a peer chain at url: devKey's
// account must hold ether (the chain's genesis funds it). It creates
// accounts fresh Ethereum keys, deploys Token from devKey's account and
// gives every account ether for gas and its token funding, and waits until
// all of it is in a block. evmVersion picks the token's bytecode: "" for
// the one coco runs, "shanghai" for a chain that knows no newer fork.
func SetupERC20Peer(ctx context.Context, rawURL string, devKey *ecdsa.PrivateKey, accounts int, evmVersion string) (*ERC20Env, error) {
	if accounts <= 0 {
		return nil, fmt.Errorf("%w: accounts must be positive, got %d", ErrInvalidConfig, accounts)
	}
	if devKey == nil {
		return nil, fmt.Errorf("%w: no funded key for the peer chain", ErrInvalidConfig)
	}
	target, err := peerTarget(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	env := &ERC20Env{
		Deployer:  ERC20Account{Key: devKey, Address: ethcrypto.PubkeyToAddress(devKey.PublicKey)},
		Funding:   new(big.Int).Set(fundingPerAccount),
		GasTipCap: peerTip,
		GasFeeCap: peerFeeCap,
		Ether:     peerEther,
	}
	code, err := tokenCode(evmVersion)
	if err != nil {
		return nil, err
	}
	env.Accounts = make([]ERC20Account, accounts)
	for i := range env.Accounts {
		k, err := ethcrypto.GenerateKey()
		if err != nil {
			return nil, fmt.Errorf("bench: ethereum key: %w", err)
		}
		env.Accounts[i] = ERC20Account{Key: k, Address: ethcrypto.PubkeyToAddress(k.PublicKey)}
	}
	if err := env.deploy(ctx, target, code); err != nil {
		return nil, err
	}
	return env, nil
}

// ParseDevKey reads a hex secp256k1 private key (with or without 0x).
func ParseDevKey(s string) (*ecdsa.PrivateKey, error) {
	k, err := ethcrypto.HexToECDSA(trim0x(s))
	if err != nil {
		return nil, fmt.Errorf("%w: dev key: %w", ErrInvalidConfig, err)
	}
	return k, nil
}

func trim0x(s string) string {
	if len(s) >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
		return s[2:]
	}
	return s
}

// receiptPoll is how often waitReceipt asks, and receiptWait how long it
// waits in all.
const (
	receiptPoll = 20 * time.Millisecond
	receiptWait = time.Minute
)

// waitReceipt waits until a block includes the transaction hash and
// returns its receipt. coco has it at once.
func waitReceipt(ctx context.Context, ec *ethclient.Client, hash common.Hash) (*types.Receipt, error) {
	ctx, cancel := context.WithTimeout(ctx, receiptWait)
	defer cancel()
	for {
		r, err := ec.TransactionReceipt(ctx, hash)
		if err == nil {
			return r, nil
		}
		if !errors.Is(err, ethereum.NotFound) && !stillIndexing(err) {
			return nil, fmt.Errorf("bench: receipt of %s: %w", hash, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("bench: no block included %s: %w", hash, ctx.Err())
		case <-time.After(receiptPoll):
		}
	}
}

// stillIndexing reports geth's answer to a receipt query while it indexes
// its transactions after a start on a data dir: ask again later.
func stillIndexing(err error) bool {
	return strings.Contains(err.Error(), "transaction indexing is in progress")
}

// watchPoll is how often a blockWatcher asks for the head block number.
const watchPoll = 5 * time.Millisecond

// blockWatcher observes which transactions a peer chain's blocks include,
// for the requests waiting for them: one goroutine polls the head block
// number and reads every new block's transaction hashes.
type blockWatcher struct {
	rc *rpc.Client

	mu      sync.Mutex
	waiting map[common.Hash]*inclusion
	err     error // why the watcher stopped, if it did
}

// inclusion is one request's wait: done is closed, and at set, when its
// last transaction was seen in a block, or when the watcher stopped (err).
type inclusion struct {
	left int
	done chan struct{}
	at   time.Time
	err  error
}

func newBlockWatcher(rc *rpc.Client) *blockWatcher {
	return &blockWatcher{rc: rc, waiting: map[common.Hash]*inclusion{}}
}

// expect registers a wait for hashes. Call it before sending them, so a
// block that includes them before the answer arrives is not missed.
func (w *blockWatcher) expect(hashes []common.Hash) *inclusion {
	in := &inclusion{left: len(hashes), done: make(chan struct{})}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		in.err = w.err
		close(in.done)
		return in
	}
	for _, h := range hashes {
		w.waiting[h] = in
	}
	return in
}

// forget drops the waits for hashes (their request failed).
func (w *blockWatcher) forget(hashes []common.Hash) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, h := range hashes {
		delete(w.waiting, h)
	}
}

// included marks hashes as included at time at.
func (w *blockWatcher) included(hashes []common.Hash, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, h := range hashes {
		in, ok := w.waiting[h]
		if !ok {
			continue
		}
		delete(w.waiting, h)
		if in.left--; in.left == 0 {
			in.at = at
			close(in.done)
		}
	}
}

// stop ends every wait with err.
func (w *blockWatcher) stop(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.err = err
	for h, in := range w.waiting {
		delete(w.waiting, h)
		if in.err == nil {
			in.err = err
			close(in.done)
		}
	}
}

// head is the chain's current block number.
func (w *blockWatcher) head(ctx context.Context) (uint64, error) {
	var n hexutil.Uint64
	if err := w.rc.CallContext(ctx, &n, "eth_blockNumber"); err != nil {
		return 0, fmt.Errorf("bench: eth_blockNumber: %w", err)
	}
	return uint64(n), nil
}

// run reads every block after from until ctx ends, then stops the waits
// still open.
func (w *blockWatcher) run(ctx context.Context, from uint64) {
	next := from + 1
	err := func() error {
		for {
			head, err := w.head(ctx)
			if err != nil {
				return err
			}
			for ; next <= head; next++ {
				var b struct {
					Transactions []common.Hash `json:"transactions"`
				}
				if err := w.rc.CallContext(ctx, &b, "eth_getBlockByNumber", hexutil.Uint64(next), false); err != nil {
					return fmt.Errorf("bench: block %d: %w", next, err)
				}
				w.included(b.Transactions, time.Now())
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(watchPoll):
			}
		}
	}()
	w.stop(fmt.Errorf("bench: block watcher stopped: %w", err))
}
