// Package evm is coco's Ethereum application: contracts run on
// go-ethereum's EVM (core/vm) over a StateDB kept in coco's private maps,
// served through the standard Ethereum JSON-RPC at POST /app/eth, with
// access rules that keep each party's transactions to itself.
//
// # Blocks
//
// Every Ethereum transaction is its own block: block n+1 holds the
// transaction executed right after block n's. The primary's builder
// executes what is queued, one block per transaction, and commits all
// those blocks as one coco transaction; eth_sendRawTransaction answers
// once that has committed. eth_blockNumber is the latest committed block.
// Block hashes are the Keccak-256 of the header's RLP as in Ethereum, but
// the header's stateRoot is zero (coco's state is not a Merkle Patricia
// trie; StateRoot computes one for tests and tools).
//
// # Access
//
// Only registered users reach /app/eth. A user's Ethereum address is the
// eth_address field of its user_data, set by governance (set_user,
// set_user_data). See Visible for who sees what.
package evm

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/cocoledger/coco/app"
	"github.com/cocoledger/coco/gov"
	"github.com/cocoledger/coco/kv"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
)

// Config configures the Ethereum application.
type Config struct {
	// ChainID is the EIP-155 chain id of a new service, recorded at
	// genesis; a node of an existing service uses the recorded one.
	ChainID uint64
	// Alloc is the accounts of a new service's genesis block.
	Alloc types.GenesisAlloc
	// MaxBatch bounds the transactions the builder commits together;
	// default 1000.
	MaxBatch int
	// QueueLength bounds the transactions waiting for the builder;
	// default 20000. Past it eth_sendRawTransaction asks to retry.
	QueueLength int
	// RecentBlocks is how many of the newest blocks keep their records in
	// memory (older ones are read from the ledger); default
	// DefaultRecentBlocks, at least MinRecentBlocks. The primary's value
	// decides what is deleted.
	RecentBlocks int
	// Version goes into web3_clientVersion.
	Version string
	Logger  *slog.Logger
}

// App is the Ethereum application.
type App struct {
	cfg     Config
	exec    atomic.Pointer[Executor] // from the chain id at genesis; see executor
	builder *builder
	index   *chainIndex
	log     *slog.Logger
	host    hostRef
	// methodTable maps JSON-RPC method names to their handlers.
	methodTable map[string]method
}

var (
	_ app.Application    = (*App)(nil)
	_ app.GenesisWriter  = (*App)(nil)
	_ app.Runner         = (*App)(nil)
	_ app.CommitObserver = (*App)(nil)
)

// DefaultChainID is the chain id of a new service unless configured.
const DefaultChainID = 1337

// New returns the Ethereum application.
func New(cfg Config) *App {
	if cfg.ChainID == 0 {
		cfg.ChainID = DefaultChainID
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 1000
	}
	if cfg.QueueLength <= 0 {
		cfg.QueueLength = 20000
	}
	if cfg.RecentBlocks <= 0 {
		cfg.RecentBlocks = DefaultRecentBlocks
	}
	cfg.RecentBlocks = max(cfg.RecentBlocks, MinRecentBlocks)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	a := &App{cfg: cfg, log: cfg.Logger, index: newChainIndex()}
	a.builder = newBuilder(a.executor, cfg.MaxBatch, cfg.QueueLength, cfg.Logger)
	a.methodTable = a.methods()
	return a
}

// executor returns the chain's executor, for the chain id recorded at
// genesis (read once: it never changes).
func (a *App) executor(tx *kv.Tx) (*Executor, error) {
	if e := a.exec.Load(); e != nil {
		return e, nil
	}
	id, err := readChainID(tx)
	if err != nil {
		return nil, err
	}
	e := NewExecutor(id)
	e.recent = uint64(a.cfg.RecentBlocks)
	a.exec.CompareAndSwap(nil, e)
	return a.exec.Load(), nil
}

// Name implements app.Application.
func (a *App) Name() string { return "evm" }

// IndexedMaps implements app.Application: the chain keeps its own history
// (blocks and receipts), so no map needs the framework's index.
func (a *App) IndexedMaps() []string { return nil }

// Committed implements app.CommitObserver: it indexes the hashes of
// committed blocks and transactions, and where each block is.
func (a *App) Committed(seqno uint64, ws *kv.WriteSet) { a.index.add(seqno, ws) }

// Endpoints implements app.Application.
func (a *App) Endpoints() []app.Endpoint {
	return []app.Endpoint{{
		Method: http.MethodPost, Path: "/app/eth", Auth: app.AuthUser, Mode: app.ReadOnly,
		Summary: "Ethereum JSON-RPC 2.0 (single and batch requests)",
		Handler: a.serveRPC,
	}}
}

// WriteGenesis implements app.GenesisWriter: block 0 and the allocation.
func (a *App) WriteGenesis(tx *kv.Tx) error {
	return WriteGenesis(tx, Genesis{ChainID: a.cfg.ChainID, Alloc: a.cfg.Alloc, Time: uint64(time.Now().Unix())})
}

// Run implements app.Runner: it builds blocks while this node is primary.
func (a *App) Run(ctx context.Context, h app.Host) error {
	a.host.set(h)
	return a.builder.run(ctx, h)
}

// UserData is the part of a user's user_data the application reads.
type UserData struct {
	EthAddress string `json:"eth_address"`
}

// callerAddress returns the caller's registered Ethereum address; ok is
// false when it has none (or an unreadable one: the reason is in msg).
func callerAddress(tx *kv.Tx, userID string) (addr common.Address, ok bool, msg string) {
	b, found := tx.Get(gov.UsersInfo, userID)
	if !found {
		return addr, false, "your user has no user_data.eth_address; the members can set one with a set_user_data proposal"
	}
	var info struct {
		UserData UserData `json:"user_data"`
	}
	if err := json.Unmarshal(b, &info); err != nil || info.UserData.EthAddress == "" {
		return addr, false, "your user has no user_data.eth_address; the members can set one with a set_user_data proposal"
	}
	if !common.IsHexAddress(info.UserData.EthAddress) {
		return addr, false, "your user_data.eth_address is not an Ethereum address"
	}
	return common.HexToAddress(info.UserData.EthAddress), true, ""
}

// LoadAlloc reads a genesis allocation file: a JSON object from address to
// account, as in go-ethereum's genesis "alloc" ({"0x...": {"balance":
// "1000000000000000000"}}, with optional "nonce", "code" and "storage").
func LoadAlloc(path string) (types.GenesisAlloc, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var alloc types.GenesisAlloc
	if err := json.Unmarshal(b, &alloc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return alloc, nil
}
