package evm

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/cocoledger/coco/kv"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/rlp"
)

// chainIndex is what a node knows about the chain's history beyond its kv
// store: which block each block or transaction hash names, and which
// committed coco transaction (ledger entry) holds each block.
//
// It is derived state, kept in memory and never replicated: every node
// builds it from the committed writes to BlocksMap and HashesMap
// (App.Committed, called during the start-up replay too), so it is a
// function of the committed ledger alone.
//
//   - Hashes are random keys. Kept in the replicated copy-on-write kv maps,
//     each cost every node a tree leaf and path copy per block, most of
//     the cost of applying an ERC-20 batch (see docs/performance.md). Here
//     each is a map insert.
//   - The chain's records of blocks older than the newest RecentBlocks are
//     deleted from the kv store by the builder (so its memory stays
//     bounded) and read back from the ledger entry that committed them;
//     entries records, for each such entry, the first block it holds.
//
// The index learns of a block just before the committed state that holds
// it is published, so lookups take the head of the reader's own snapshot
// and ignore blocks above it.
type chainIndex struct {
	mu     sync.RWMutex
	blocks map[common.Hash]uint64
	txs    map[common.Hash]uint64
	// entries: first block number and seqno of each committed coco
	// transaction that wrote blocks, ascending (blocks are committed in
	// order, each transaction holding a contiguous run).
	entries []blockEntry
}

type blockEntry struct{ first, seqno uint64 }

func newChainIndex() *chainIndex {
	return &chainIndex{blocks: map[common.Hash]uint64{}, txs: map[common.Hash]uint64{}}
}

// add records the chain writes of the committed transaction at seqno.
func (x *chainIndex) add(seqno uint64, ws *kv.WriteSet) {
	if ws == nil {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, mw := range ws.Maps {
		switch mw.Name {
		case BlocksMap:
			// Writes are sorted by key: the first put is the lowest block.
			for _, w := range mw.Writes {
				if w.Deleted || len(w.Key) != 8 {
					continue // a pruned block, or never written so
				}
				e := blockEntry{first: binary.BigEndian.Uint64([]byte(w.Key)), seqno: seqno}
				i, found := slices.BinarySearchFunc(x.entries, e.first, func(be blockEntry, n uint64) int { return cmp.Compare(be.first, n) })
				if found {
					x.entries[i] = e
				} else {
					x.entries = slices.Insert(x.entries, i, e)
				}
				break
			}
		case HashesMap:
			for _, w := range mw.Writes {
				if w.Deleted || len(w.Key) != 8 || len(w.Value) != 64 {
					continue
				}
				n := binary.BigEndian.Uint64([]byte(w.Key))
				x.blocks[common.BytesToHash(w.Value[:32])] = n
				if th := common.BytesToHash(w.Value[32:]); th != (common.Hash{}) {
					x.txs[th] = n
				}
			}
		}
	}
}

// lookup returns the number of the block, at most head, whose block hash
// (isTx false) or transaction hash (isTx true) is hash.
func (x *chainIndex) lookup(hash common.Hash, isTx bool, head uint64) (uint64, bool) {
	m := x.blocks
	if isTx {
		m = x.txs
	}
	x.mu.RLock()
	n, ok := m[hash]
	x.mu.RUnlock()
	return n, ok && n <= head
}

// entryOf returns the seqno of the committed transaction that wrote block n.
func (x *chainIndex) entryOf(n uint64) (uint64, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	i, found := slices.BinarySearchFunc(x.entries, n, func(be blockEntry, n uint64) int { return cmp.Compare(be.first, n) })
	if !found {
		if i == 0 {
			return 0, false
		}
		i--
	}
	return x.entries[i].seqno, true
}

// errNoHost: a block older than the kv store keeps was asked for before
// the node gave the application its host (it has not started serving).
var errNoHost = errors.New("evm: the ledger cannot be read yet")

// chainRecord returns the value of block n's key in mapName (BlocksMap,
// TxsMap or HashesMap) as c's snapshot has it: from the kv store for
// recent blocks, from the ledger for older ones. n must be at most the
// snapshot's head.
func (a *App) chainRecord(c *call, mapName string, n uint64) ([]byte, bool, error) {
	if b, ok := c.tx.Get(mapName, blockKey(n)); ok {
		return b, true, nil
	}
	return a.ledgerRecord(c, mapName, n)
}

// ledgerRecord is chainRecord's second step: the value from the ledger
// entry that wrote block n.
func (a *App) ledgerRecord(c *call, mapName string, n uint64) ([]byte, bool, error) {
	seqno, ok := a.index.entryOf(n)
	if !ok {
		return nil, false, nil
	}
	ws := c.entry.ws
	if ws == nil || c.entry.seqno != seqno {
		h := a.host.get()
		if h == nil {
			return nil, false, errNoHost
		}
		var err error
		if ws, err = h.CommittedWrites(seqno); err != nil {
			return nil, false, fmt.Errorf("evm: block %d: %w", n, err)
		}
		c.entry.seqno, c.entry.ws = seqno, ws // consecutive blocks share entries
	}
	if w, ok := ws.Find(mapName, blockKey(n)); ok && !w.Deleted {
		return w.Value, true, nil
	}
	return nil, false, nil
}

// block returns block n, or ok false if c's snapshot has no such block.
func (a *App) block(c *call, n uint64) (*blockRecord, bool, error) {
	head, err := a.head(c)
	if err != nil || n > head.Number {
		return nil, false, err
	}
	b, ok, err := a.chainRecord(c, BlocksMap, n)
	if err != nil || !ok {
		return nil, false, err
	}
	var r blockRecord
	if err := rlp.DecodeBytes(b, &r); err != nil {
		return nil, false, fmt.Errorf("evm: block %d: %w", n, err)
	}
	return &r, true, nil
}

// txAt returns the record of transaction hash, the one of block n.
func (a *App) txAt(c *call, n uint64, hash common.Hash) (*txRecord, bool, error) {
	b, ok := c.tx.Get(TxsMap, blockKey(n))
	if !ok {
		// A record of a ledger written before 2026-12-06, keyed by hash.
		b, ok = c.tx.Get(TxsMap, string(hash[:]))
	}
	if !ok {
		var err error
		if b, ok, err = a.ledgerRecord(c, TxsMap, n); err != nil || !ok {
			return nil, false, err
		}
	}
	return decodeTxRecord(b, hash)
}

func decodeTxRecord(b []byte, hash common.Hash) (*txRecord, bool, error) {
	var r txRecord
	if err := rlp.DecodeBytes(b, &r); err != nil {
		return nil, false, fmt.Errorf("evm: transaction %s: %w", hash, err)
	}
	return &r, true, nil
}

// txRecordByHash returns the record of the transaction whose hash is hash.
func (a *App) txRecordByHash(c *call, hash common.Hash) (*txRecord, bool, error) {
	head, err := a.head(c)
	if err != nil {
		return nil, false, err
	}
	if n, ok := a.index.lookup(hash, true, head.Number); ok {
		return a.txAt(c, n, hash)
	}
	// A transaction of a ledger written before 2026-12-06, keyed by hash.
	b, ok := c.tx.Get(TxsMap, string(hash[:]))
	if !ok {
		return nil, false, nil
	}
	return decodeTxRecord(b, hash)
}

// numberOfBlock returns the number of the block whose hash is hash.
func (a *App) numberOfBlock(c *call, hash common.Hash) (uint64, bool, error) {
	head, err := a.head(c)
	if err != nil {
		return 0, false, err
	}
	if n, ok := a.index.lookup(hash, false, head.Number); ok {
		return n, true, nil
	}
	// A block of a ledger written before 2026-12-06.
	b, ok := c.tx.Get(legacyBlockHashesMap, string(hash[:]))
	if !ok || len(b) != 8 {
		return 0, false, nil
	}
	return binary.BigEndian.Uint64(b), true, nil
}
