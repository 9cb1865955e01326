package evm

import (
	"bytes"
	"encoding/binary"
	"math/big"
	"testing"

	"github.com/cocoledger/coco/kv"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/rlp"
	"github.com/ethereum/go-ethereum/trie"
)

// commitWS applies ws at the next version and commits it, telling x of it
// first, in the node's order: observers hear of a commit before the
// committed state is published.
func commitWS(t *testing.T, store *kv.Store, x *hashIndex, ws *kv.WriteSet) {
	t.Helper()
	v := store.Version() + 1
	if err := store.Apply(v, ws); err != nil {
		t.Fatal(err)
	}
	x.add(ws)
	if err := store.MarkCommitted(v); err != nil {
		t.Fatal(err)
	}
}

func TestHashIndex(t *testing.T) {
	key := testKey(t, 1)
	from := crypto.PubkeyToAddress(key.PublicKey)
	store := kv.NewStore()
	x := newHashIndex()
	tx := store.Begin()
	if err := WriteGenesis(tx, Genesis{ChainID: testChainID, Alloc: types.GenesisAlloc{from: {Balance: big.NewInt(1e18)}}}); err != nil {
		t.Fatal(err)
	}
	commitWS(t, store, x, tx.WriteSet())
	genesis, _, err := readHead(store.BeginReadOnly())
	if err != nil {
		t.Fatal(err)
	}

	// Three transfers in one write set, blocks 1-3.
	exec := NewExecutor(testChainID)
	tx = store.Begin()
	s := NewStateDB(tx)
	var receipts []*Receipt
	for i := range 3 {
		to := common.BigToAddress(big.NewInt(int64(100 + i)))
		st, err := types.SignNewTx(key, exec.Signer(), &types.DynamicFeeTx{ChainID: big.NewInt(testChainID), Nonce: uint64(i), To: &to, Value: big.NewInt(1), Gas: 21000, GasFeeCap: new(big.Int), GasTipCap: new(big.Int)})
		if err != nil {
			t.Fatal(err)
		}
		r, err := exec.Apply(tx, s, st, from, 1)
		if err != nil {
			t.Fatal(err)
		}
		receipts = append(receipts, r)
	}
	ws := tx.WriteSet()
	before := store.BeginReadOnly()
	if err := store.Apply(store.Version()+1, ws); err != nil {
		t.Fatal(err)
	}
	x.add(ws)

	// The index knows the blocks before the committed state holds them: a
	// snapshot without them must not find them.
	for _, r := range receipts {
		if n, ok := x.blockNumber(before, r.BlockHash); ok {
			t.Errorf("block %s found at %d in a snapshot that does not hold it", r.BlockHash, n)
		}
		if rec, ok, err := x.readTx(before, r.TxHash); ok || err != nil {
			t.Errorf("transaction %s found (%v, %v) in a snapshot that does not hold it", r.TxHash, rec, err)
		}
	}
	if err := store.MarkCommitted(store.Version()); err != nil {
		t.Fatal(err)
	}
	after := store.BeginReadOnly()
	if n, ok := x.blockNumber(after, genesis.Hash); !ok || n != 0 {
		t.Errorf("genesis block: %d, %v; want 0, true", n, ok)
	}
	for i, r := range receipts {
		want := uint64(i + 1)
		if n, ok := x.blockNumber(after, r.BlockHash); !ok || n != want {
			t.Errorf("block %s: %d, %v; want %d, true", r.BlockHash, n, ok, want)
		}
		rec, ok, err := x.readTx(after, r.TxHash)
		if err != nil || !ok {
			t.Fatalf("transaction %s: %v, %v", r.TxHash, ok, err)
		}
		if rec.Block != want || rec.From != from {
			t.Errorf("transaction %s: block %d from %s; want %d from %s", r.TxHash, rec.Block, rec.From, want, from)
		}
		var st types.Transaction
		if err := st.UnmarshalBinary(rec.Raw); err != nil || st.Hash() != r.TxHash {
			t.Errorf("transaction %s: stored transaction hashes to %s (%v)", r.TxHash, st.Hash(), err)
		}
	}
	// Unknown hashes, and the zero hash genesis has for its transaction.
	for _, h := range []common.Hash{{}, common.HexToHash("0x01")} {
		if n, ok := x.blockNumber(after, h); ok {
			t.Errorf("block %s found at %d", h, n)
		}
		if _, ok, err := x.readTx(after, h); ok || err != nil {
			t.Errorf("transaction %s found (%v)", h, err)
		}
	}
}

// A ledger written before 2026-12-06 keyed blocks' and transactions'
// hashes in the store; they are still found.
func TestHashIndexReadsLegacyMaps(t *testing.T) {
	store := kv.NewStore()
	x := newHashIndex()
	blockHash, txHash := common.HexToHash("0xb1"), common.HexToHash("0x71")
	rec, err := rlp.EncodeToBytes(&txRecord{Raw: []byte{1}, From: common.HexToAddress("0xf0"), Block: 7})
	if err != nil {
		t.Fatal(err)
	}
	var num [8]byte
	binary.BigEndian.PutUint64(num[:], 7)
	tx := store.Begin()
	if err := tx.Put(legacyBlockHashesMap, string(blockHash[:]), num[:]); err != nil {
		t.Fatal(err)
	}
	if err := tx.Put(TxsMap, string(txHash[:]), rec); err != nil {
		t.Fatal(err)
	}
	commitWS(t, store, x, tx.WriteSet())
	snap := store.BeginReadOnly()
	if n, ok := x.blockNumber(snap, blockHash); !ok || n != 7 {
		t.Errorf("legacy block: %d, %v; want 7, true", n, ok)
	}
	got, ok, err := x.readTx(snap, txHash)
	if err != nil || !ok || got.Block != 7 {
		t.Errorf("legacy transaction: %+v, %v, %v", got, ok, err)
	}
	if got, ok, err := readTxAt(snap, 7, txHash); err != nil || !ok || got.Block != 7 {
		t.Errorf("legacy transaction of block 7: %+v, %v, %v", got, ok, err)
	}
}

// Writes the chain never makes are ignored, not indexed and not a crash.
func TestHashIndexIgnoresMalformedWrites(t *testing.T) {
	x := newHashIndex()
	val := make([]byte, 64)
	val[0], val[63] = 1, 2
	x.add(nil)
	x.add(&kv.WriteSet{Maps: []kv.MapWrites{{Name: HashesMap, Writes: []kv.Write{
		{Key: "short", Value: val},
		{Key: blockKey(1), Value: val[:63]},
		{Key: blockKey(2), Deleted: true},
	}}}})
	if len(x.blocks) != 0 || len(x.txs) != 0 {
		t.Errorf("index holds %d blocks and %d transactions, want none", len(x.blocks), len(x.txs))
	}
}

// rawList is a one-item types.DerivableList of any encoding.
type rawList []byte

func (l rawList) Len() int                           { return 1 }
func (l rawList) EncodeIndex(_ int, w *bytes.Buffer) { w.Write(l) }

func TestSingleItemRoot(t *testing.T) {
	key := testKey(t, 1)
	signer := types.LatestSignerForChainID(big.NewInt(testChainID))
	to := common.HexToAddress("0x1234")
	log := &types.Log{Address: to, Topics: []common.Hash{common.HexToHash("0xaa"), common.HexToHash("0xbb")}, Data: []byte("log data")}
	st := trie.NewStackTrie(nil)
	for i, inner := range []types.TxData{
		&types.LegacyTx{Nonce: 1, GasPrice: new(big.Int), Gas: 21000, To: &to, Value: big.NewInt(1)},
		&types.AccessListTx{ChainID: big.NewInt(testChainID), Nonce: 2, GasPrice: new(big.Int), Gas: 50000, To: &to, AccessList: types.AccessList{{Address: to, StorageKeys: []common.Hash{{1}}}}},
		&types.DynamicFeeTx{ChainID: big.NewInt(testChainID), Nonce: 3, GasTipCap: new(big.Int), GasFeeCap: new(big.Int), Gas: 3_000_000, Data: bytes.Repeat([]byte{0x60}, 5000)},
	} {
		tx, err := types.SignNewTx(key, signer, inner)
		if err != nil {
			t.Fatal(err)
		}
		enc, err := tx.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if got, want := singleItemRoot(enc), types.DeriveSha(types.Transactions{tx}, st); got != want {
			t.Errorf("transaction %d (type %d): root %s, DeriveSha %s", i, tx.Type(), got, want)
		}
		for _, r := range []*types.Receipt{
			{Type: tx.Type(), Status: 1, CumulativeGasUsed: 21000},
			{Type: tx.Type(), Status: 0, CumulativeGasUsed: 1 << 40, Logs: []*types.Log{log, log}},
		} {
			r.Bloom = types.CreateBloom(r)
			enc, err := r.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if got, want := singleItemRoot(enc), types.DeriveSha(types.Receipts{r}, st); got != want {
				t.Errorf("receipt of type %d with %d logs: root %s, DeriveSha %s", r.Type, len(r.Logs), got, want)
			}
		}
	}
	// Encodings of every size class: a single byte, short and long strings,
	// nodes under and over 32 bytes. (An empty one stores nothing in a
	// trie; no transaction or receipt encodes to nothing.)
	for _, n := range []int{1, 2, 20, 27, 28, 29, 30, 55, 56, 57, 255, 256, 70000} {
		for _, fill := range []byte{0x00, 0x7f, 0x80, 0xff} {
			enc := bytes.Repeat([]byte{fill}, n)
			if got, want := singleItemRoot(enc), types.DeriveSha(rawList(enc), st); got != want {
				t.Errorf("%d bytes of %#x: root %s, DeriveSha %s", n, fill, got, want)
			}
		}
	}
}
