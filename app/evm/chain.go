package evm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"

	"github.com/cocoledger/coco/kv"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/core/vm"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/params"
	"github.com/ethereum/go-ethereum/rlp"
)

// The private maps of the chain: blocks, their hashes, transactions with
// their receipts, and the head. The chain's maps are keyed by block number,
// so each block appends to them; lookups by hash go through chainIndex,
// which every node derives from HashesMap.
const (
	// BlocksMap: number (8 bytes, big-endian) -> blockRecord (RLP).
	BlocksMap = "eth.blocks"
	// HashesMap: number (8) -> block hash (32) | transaction hash (32,
	// zero for the genesis block).
	HashesMap = "eth.hashes"
	// TxsMap: number of the transaction's block (8) -> txRecord (RLP).
	// Ledgers written before 2026-12-06 also hold records keyed by
	// transaction hash (32 bytes), which are still read.
	TxsMap = "eth.txs"
	// legacyBlockHashesMap: block hash (32) -> number (8), written before
	// 2026-12-06 instead of HashesMap; still read.
	legacyBlockHashesMap = "eth.block_hashes"
	// MetaMap: "head" -> number (8) | hash (32) | time (8); "chain_id" ->
	// chain id (8, big-endian), written at genesis; "pruned" (prunedKey).
	MetaMap    = "eth.meta"
	headKey    = "head"
	chainIDKey = "chain_id"
	// prunedKey: the lowest block (8, big-endian) whose records may still
	// be in the kv store; absent means 0. See Executor.Prune.
	prunedKey = "pruned"
)

// Fork is the Ethereum fork coco runs: the newest go-ethereum enables on
// mainnet. Every block is executed with its rules.
const Fork = "Osaka"

// DefaultGasLimit is the gas limit of every block (each block holds one
// transaction; Osaka also caps a transaction at 2^24 gas, EIP-7825).
const DefaultGasLimit = 60_000_000

// ChainConfig returns the go-ethereum chain configuration of a coco chain:
// every fork up to and including Osaka active from genesis, post-merge.
func ChainConfig(chainID uint64) *params.ChainConfig {
	zero := uint64(0)
	return &params.ChainConfig{
		ChainID:                 new(big.Int).SetUint64(chainID),
		HomesteadBlock:          big.NewInt(0),
		EIP150Block:             big.NewInt(0),
		EIP155Block:             big.NewInt(0),
		EIP158Block:             big.NewInt(0),
		ByzantiumBlock:          big.NewInt(0),
		ConstantinopleBlock:     big.NewInt(0),
		PetersburgBlock:         big.NewInt(0),
		IstanbulBlock:           big.NewInt(0),
		MuirGlacierBlock:        big.NewInt(0),
		BerlinBlock:             big.NewInt(0),
		LondonBlock:             big.NewInt(0),
		ArrowGlacierBlock:       big.NewInt(0),
		GrayGlacierBlock:        big.NewInt(0),
		MergeNetsplitBlock:      big.NewInt(0),
		ShanghaiTime:            &zero,
		CancunTime:              &zero,
		PragueTime:              &zero,
		OsakaTime:               &zero,
		TerminalTotalDifficulty: big.NewInt(0),
		BlobScheduleConfig: &params.BlobScheduleConfig{
			Cancun: params.DefaultCancunBlobConfig,
			Prague: params.DefaultPragueBlobConfig,
		},
	}
}

// blockRecord is one stored block: its header and its one transaction
// (none for the genesis block).
type blockRecord struct {
	Header *types.Header
	Tx     common.Hash
}

// txRecord is one stored transaction with its receipt.
type txRecord struct {
	Raw      []byte // the signed transaction (MarshalBinary)
	From     common.Address
	Block    uint64
	Status   uint64
	GasUsed  uint64
	Contract []byte // the created contract's address, if any
	Logs     []*types.Log
}

func blockKey(n uint64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], n)
	return string(b[:])
}

// Head is the latest block.
type Head struct {
	Number uint64
	Hash   common.Hash
	// Time is the block's timestamp; 0 when the head was stored without it
	// (by a version before the head record carried it).
	Time uint64
}

// readHead returns the latest block; ok is false before genesis.
func readHead(tx *kv.Tx) (Head, bool, error) {
	b, ok := tx.Get(MetaMap, headKey)
	if !ok {
		return Head{}, false, nil
	}
	// number (8) | hash (32) [| time (8)]
	if len(b) != 40 && len(b) != 48 {
		return Head{}, false, fmt.Errorf("evm: stored head has %d bytes", len(b))
	}
	h := Head{Number: binary.BigEndian.Uint64(b[:8]), Hash: common.BytesToHash(b[8:40])}
	if len(b) == 48 {
		h.Time = binary.BigEndian.Uint64(b[40:])
	}
	return h, true, nil
}

func readBlock(tx *kv.Tx, n uint64) (*blockRecord, bool, error) {
	b, ok := tx.Get(BlocksMap, blockKey(n))
	if !ok {
		return nil, false, nil
	}
	var r blockRecord
	if err := rlp.DecodeBytes(b, &r); err != nil {
		return nil, false, fmt.Errorf("evm: block %d: %w", n, err)
	}
	return &r, true, nil
}

// writeBlock stores b, whose header hashes to hash, as the new head.
func writeBlock(tx *kv.Tx, b *blockRecord, hash common.Hash) error {
	enc, err := rlp.EncodeToBytes(b)
	if err != nil {
		return err
	}
	n := b.Header.Number.Uint64()
	var head [48]byte
	binary.BigEndian.PutUint64(head[:8], n)
	copy(head[8:40], hash[:])
	binary.BigEndian.PutUint64(head[40:], b.Header.Time)
	var hashes [64]byte
	copy(hashes[:32], hash[:])
	copy(hashes[32:], b.Tx[:])
	return errors.Join(
		tx.Put(BlocksMap, blockKey(n), enc),
		tx.Put(HashesMap, blockKey(n), hashes[:]),
		tx.Put(MetaMap, headKey, head[:]),
	)
}

// newHeader is a header with coco's constant fields: no coinbase, no
// difficulty, zero base fee, no withdrawals, blobs or requests, and no
// state root (coco's state is not a Merkle Patricia trie).
func newHeader(parent common.Hash, number, time, gasLimit uint64) *types.Header {
	zero := uint64(0)
	return &types.Header{
		ParentHash:       parent,
		UncleHash:        types.EmptyUncleHash,
		TxHash:           types.EmptyTxsHash,
		ReceiptHash:      types.EmptyReceiptsHash,
		Difficulty:       new(big.Int),
		Number:           new(big.Int).SetUint64(number),
		GasLimit:         gasLimit,
		Time:             time,
		BaseFee:          new(big.Int),
		WithdrawalsHash:  &types.EmptyWithdrawalsHash,
		BlobGasUsed:      &zero,
		ExcessBlobGas:    &zero,
		ParentBeaconRoot: &common.Hash{},
		RequestsHash:     &types.EmptyRequestsHash,
	}
}

// singleItemRoot is types.DeriveSha of a list of one item whose encoding
// (what the list's EncodeIndex writes, MarshalBinary for transactions and
// receipts) is enc, which is never empty: the root of a Merkle Patricia
// trie holding enc at the key rlp(0) = 0x80. That trie is one leaf node,
// [path, enc], whose path is the hex-prefix encoding of the key's nibbles
// 8, 0 as a leaf (0x20 0x80), and the root is the Keccak-256 of the node's
// RLP. Every coco block holds one transaction; a StackTrie took ~7 us per
// root for what this does in ~1 (TestSingleItemRoot checks it against
// DeriveSha).
func singleItemRoot(enc []byte) common.Hash {
	w := rlp.NewEncoderBuffer(nil)
	l := w.List()
	w.WriteBytes([]byte{0x20, 0x80})
	w.WriteBytes(enc)
	w.ListEnd(l)
	h := crypto.Keccak256Hash(w.ToBytes())
	w.Flush()
	return h
}

// Genesis is the initial state of a chain.
type Genesis struct {
	ChainID uint64
	// Alloc is the initial accounts (go-ethereum's genesis "alloc"
	// format: balance, and optionally nonce, code and storage).
	Alloc types.GenesisAlloc
	Time  uint64
}

// WriteGenesis writes block 0, the chain id and the allocation into tx.
// It fails if the chain already has a genesis block.
func WriteGenesis(tx *kv.Tx, g Genesis) error {
	if _, ok, err := readHead(tx); err != nil || ok {
		if err == nil {
			err = errors.New("evm: the chain already has a genesis block")
		}
		return err
	}
	for addr, acc := range g.Alloc {
		if err := putAccount(tx, addr, acc); err != nil {
			return err
		}
	}
	var id [8]byte
	binary.BigEndian.PutUint64(id[:], g.ChainID)
	if err := tx.Put(MetaMap, chainIDKey, id[:]); err != nil {
		return err
	}
	h := newHeader(common.Hash{}, 0, g.Time, DefaultGasLimit)
	return writeBlock(tx, &blockRecord{Header: h}, h.Hash())
}

// readChainID returns the chain id recorded at genesis.
func readChainID(tx *kv.Tx) (uint64, error) {
	b, ok := tx.Get(MetaMap, chainIDKey)
	if !ok {
		return 0, errors.New("evm: the chain has no genesis block")
	}
	if len(b) != 8 {
		return 0, fmt.Errorf("evm: stored chain id has %d bytes", len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

// Executor runs signed transactions against the state in a kv
// transaction, one block per transaction.
type Executor struct {
	config   *params.ChainConfig
	signer   types.Signer
	gasLimit uint64
	recent   uint64 // see DefaultRecentBlocks
}

// DefaultRecentBlocks is how many of the newest blocks keep their records
// (block, transaction and receipt, hashes) in the kv store. After each
// batch the builder deletes older blocks' records from it (Prune), a
// replicated write like any other; their committed values stay in the
// ledger, where the RPC methods read them (chainIndex). It keeps a node's
// memory from growing with the chain's history. At least
// MinRecentBlocks: the EVM's BLOCKHASH reads the last 256 blocks.
const (
	DefaultRecentBlocks = 8192
	MinRecentBlocks     = 257
)

// NewExecutor returns an Executor for chain id.
func NewExecutor(chainID uint64) *Executor {
	cfg := ChainConfig(chainID)
	return &Executor{config: cfg, signer: types.LatestSignerForChainID(cfg.ChainID), gasLimit: DefaultGasLimit, recent: DefaultRecentBlocks}
}

// Signer is the chain's transaction signer.
func (e *Executor) Signer() types.Signer { return e.signer }

// ChainID is the chain's id.
func (e *Executor) ChainID() *big.Int { return e.config.ChainID }

// blockContext is the EVM's view of block number, at time.
func (e *Executor) blockContext(tx *kv.Tx, number, time uint64) vm.BlockContext {
	return vm.BlockContext{
		CanTransfer: core.CanTransfer,
		Transfer:    core.Transfer,
		GetHash: func(n uint64) common.Hash {
			if b, ok, err := readBlock(tx, n); err == nil && ok {
				return b.Header.Hash()
			}
			return common.Hash{}
		},
		GasLimit:    e.gasLimit,
		BlockNumber: new(big.Int).SetUint64(number),
		Time:        time,
		Difficulty:  new(big.Int),
		BaseFee:     new(big.Int),
		BlobBaseFee: new(big.Int),
		Random:      &common.Hash{},
	}
}

// Receipt is the outcome of one executed transaction.
type Receipt struct {
	TxHash    common.Hash
	Block     uint64
	BlockHash common.Hash
	Status    uint64
	GasUsed   uint64
	Logs      []*types.Log
	Contract  *common.Address
	// Revert is the revert data of a failed transaction.
	Revert []byte
	// VMErr is the EVM error of a failed transaction.
	VMErr error
}

// ErrInvalidTx wraps why a transaction cannot be included at all (nonce,
// funds, gas limit, type): it leaves no block and no state change.
var ErrInvalidTx = errors.New("invalid transaction")

// Apply executes t, signed by from, as a new block on top of the head in
// tx, at time (seconds; the block's time is at least its parent's), and
// stores the block and the transaction with its receipt. s must be a
// StateDB over tx; it may be shared by consecutive Apply calls on tx. An
// invalid transaction returns an error wrapping ErrInvalidTx and changes
// nothing.
func (e *Executor) Apply(tx *kv.Tx, s *StateDB, t *types.Transaction, from common.Address, time uint64) (*Receipt, error) {
	head, ok, err := readHead(tx)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errors.New("evm: the chain has no genesis block")
	}
	parentTime := head.Time
	if parentTime == 0 {
		// A head stored without its time (or a genesis at time 0).
		parent, ok, err := readBlock(tx, head.Number)
		if err != nil || !ok {
			return nil, fmt.Errorf("evm: head block %d: missing or unreadable (%v)", head.Number, err)
		}
		parentTime = parent.Header.Time
	}
	if t.Type() == types.BlobTxType || t.Type() == types.SetCodeTxType {
		return nil, fmt.Errorf("%w: transaction type %d is not supported (legacy, EIP-2930 and EIP-1559 are)", ErrInvalidTx, t.Type())
	}
	time = max(time, parentTime)
	number := head.Number + 1
	msg, err := core.TransactionToMessage(t, e.signer, common.Big0)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidTx, err)
	}
	if msg.From != from {
		return nil, fmt.Errorf("%w: signed by %s, not %s", ErrInvalidTx, msg.From, from)
	}
	evm := vm.NewEVM(e.blockContext(tx, number, time), s, e.config, vm.Config{})
	defer evm.Release() // its stack arena back to go-ethereum's pool
	s.SetTxContext(t.Hash(), 0, 0)
	snap := s.Snapshot()
	res, err := core.ApplyMessage(evm, msg, core.NewGasPool(e.gasLimit))
	if err != nil {
		s.RevertToSnapshot(snap)
		return nil, fmt.Errorf("%w: %w", ErrInvalidTx, err)
	}
	logs := s.Logs()
	s.Finalise(evm.GetRules())
	if err := s.Err(); err != nil {
		return nil, err
	}
	r := &Receipt{TxHash: t.Hash(), Block: number, GasUsed: res.UsedGas, Logs: logs, Status: types.ReceiptStatusSuccessful}
	if res.Failed() {
		r.Status = types.ReceiptStatusFailed
		r.Revert = res.Revert()
		r.VMErr = res.Err
	}
	rec := &txRecord{From: from, Block: number, Status: r.Status, GasUsed: r.GasUsed, Logs: logs}
	if t.To() == nil {
		addr := crypto.CreateAddress(from, t.Nonce())
		r.Contract = &addr
		rec.Contract = addr.Bytes()
	}
	if rec.Raw, err = t.MarshalBinary(); err != nil {
		return nil, err
	}

	h := newHeader(head.Hash, number, time, e.gasLimit)
	h.GasUsed = r.GasUsed
	receipt := &types.Receipt{Type: t.Type(), Status: r.Status, CumulativeGasUsed: r.GasUsed, Logs: logs, TxHash: r.TxHash, GasUsed: r.GasUsed}
	receipt.Bloom = types.CreateBloom(receipt)
	h.Bloom = receipt.Bloom
	encReceipt, err := receipt.MarshalBinary()
	if err != nil {
		return nil, err
	}
	h.TxHash = singleItemRoot(rec.Raw)
	h.ReceiptHash = singleItemRoot(encReceipt)
	r.BlockHash = h.Hash()
	for i, l := range logs {
		l.BlockNumber, l.BlockHash, l.BlockTimestamp, l.Index, l.TxIndex = number, r.BlockHash, time, uint(i), 0
	}
	enc, err := rlp.EncodeToBytes(rec)
	if err != nil {
		return nil, err
	}
	if err := errors.Join(tx.Put(TxsMap, blockKey(number), enc), writeBlock(tx, &blockRecord{Header: h, Tx: r.TxHash}, r.BlockHash)); err != nil {
		return nil, err
	}
	return r, nil
}

// maxPrune bounds the blocks one Prune deletes, so that a chain with a
// long history in memory (one written before pruning existed) sheds it
// over many batches instead of in one huge write set.
const maxPrune = 4096

// Prune deletes from tx the records of blocks more than e.recent blocks
// below the head, but none of those from first on: first is the lowest
// block the batch in tx wrote, whose records would otherwise never reach
// the ledger (a write and a delete of one key in one transaction leave
// only the delete). MetaMap's prunedKey remembers where the next Prune
// starts, so blocks a smaller batch or another primary's setting left
// behind are deleted later. The builder calls it once per batch.
func (e *Executor) Prune(tx *kv.Tx, first uint64) error {
	head, ok, err := readHead(tx)
	if err != nil || !ok || head.Number < e.recent || first == 0 {
		return err
	}
	from, err := readPruned(tx)
	if err != nil {
		return err
	}
	upto := min(head.Number-e.recent, first-1)
	if from > upto {
		return nil
	}
	upto = min(upto, from+maxPrune-1)
	for n := from; n <= upto; n++ {
		k := blockKey(n)
		if err := errors.Join(tx.Delete(BlocksMap, k), tx.Delete(TxsMap, k), tx.Delete(HashesMap, k)); err != nil {
			return err
		}
	}
	var next [8]byte
	binary.BigEndian.PutUint64(next[:], upto+1)
	return tx.Put(MetaMap, prunedKey, next[:])
}

// readPruned returns the lowest block whose records may still be in the
// kv store.
func readPruned(tx *kv.Tx) (uint64, error) {
	b, ok := tx.Get(MetaMap, prunedKey)
	if !ok {
		return 0, nil
	}
	if len(b) != 8 {
		return 0, fmt.Errorf("evm: stored pruning mark has %d bytes", len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}
