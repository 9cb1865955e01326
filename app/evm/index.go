package evm

import (
	"encoding/binary"
	"sync"

	"github.com/cocoledger/coco/kv"
	"github.com/ethereum/go-ethereum/common"
)

// hashIndex maps block and transaction hashes to block numbers, for the
// methods that name a block or a transaction by hash.
//
// It is derived state, kept in memory and never replicated: every node
// builds it from the committed writes to HashesMap (App.Committed, called
// during the start-up replay too), so it is a function of the committed
// state alone. It is kept out of the kv store because hashes are random
// keys: inserting a random key into a copy-on-write tree copies a leaf and
// its path, on every node, for every block, which was most of the cost of
// applying an ERC-20 batch (see docs/performance.md). Here it is a map
// insert.
//
// The index learns of a block just before the committed state that holds
// it is published, so a reader's snapshot may not have a block the index
// names: lookup checks the number against the reader's own snapshot.
type hashIndex struct {
	mu     sync.RWMutex
	blocks map[common.Hash]uint64
	txs    map[common.Hash]uint64
}

func newHashIndex() *hashIndex {
	return &hashIndex{blocks: map[common.Hash]uint64{}, txs: map[common.Hash]uint64{}}
}

// add records the HashesMap writes of a committed write set.
func (x *hashIndex) add(ws *kv.WriteSet) {
	if ws == nil {
		return
	}
	for _, mw := range ws.Maps {
		if mw.Name != HashesMap {
			continue
		}
		x.mu.Lock()
		for _, w := range mw.Writes {
			if w.Deleted || len(w.Key) != 8 || len(w.Value) != 64 {
				continue // never written so
			}
			n := binary.BigEndian.Uint64([]byte(w.Key))
			x.blocks[common.BytesToHash(w.Value[:32])] = n
			if th := common.BytesToHash(w.Value[32:]); th != (common.Hash{}) {
				x.txs[th] = n
			}
		}
		x.mu.Unlock()
	}
}

// lookup returns the number of the block, in tx's snapshot, whose block
// hash (tx false) or transaction hash (tx true) is hash.
func (x *hashIndex) lookup(tx *kv.Tx, hash common.Hash, isTx bool) (uint64, bool) {
	m, at := x.blocks, 0
	if isTx {
		m, at = x.txs, 32
	}
	x.mu.RLock()
	n, ok := m[hash]
	x.mu.RUnlock()
	if !ok {
		return 0, false
	}
	b, ok := tx.Get(HashesMap, blockKey(n))
	if !ok || len(b) != 64 || common.BytesToHash(b[at:at+32]) != hash {
		return 0, false // not in this snapshot yet
	}
	return n, true
}

// blockNumber returns the number of the block whose hash is hash.
func (x *hashIndex) blockNumber(tx *kv.Tx, hash common.Hash) (uint64, bool) {
	if n, ok := x.lookup(tx, hash, false); ok {
		return n, true
	}
	// A block of a ledger written before 2026-12-06.
	b, ok := tx.Get(legacyBlockHashesMap, string(hash[:]))
	if !ok || len(b) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(b), true
}

// readTx returns the record of the transaction whose hash is hash.
func (x *hashIndex) readTx(tx *kv.Tx, hash common.Hash) (*txRecord, bool, error) {
	if n, ok := x.lookup(tx, hash, true); ok {
		return readTxAt(tx, n, hash)
	}
	// A transaction of a ledger written before 2026-12-06, keyed by hash
	// (blockKey(0) is never a transaction's block).
	return readTxAt(tx, 0, hash)
}
