package evm

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/cocoledger/coco/kv"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/core/vm"
	"github.com/ethereum/go-ethereum/core/vm/program"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/trie"
)

// The index learns of blocks before the committed state holding them is
// published: lookups take the reader's head and ignore blocks above it.
func TestChainIndexLookup(t *testing.T) {
	x := newChainIndex()
	bh, th := common.HexToHash("0xb5"), common.HexToHash("0x75")
	x.add(7, &kv.WriteSet{Maps: []kv.MapWrites{
		{Name: BlocksMap, Writes: []kv.Write{{Key: blockKey(5), Value: []byte{1}}, {Key: blockKey(6), Value: []byte{1}}}},
		{Name: HashesMap, Writes: []kv.Write{{Key: blockKey(5), Value: append(bh.Bytes(), th.Bytes()...)}}},
	}})
	x.add(9, &kv.WriteSet{Maps: []kv.MapWrites{{Name: BlocksMap, Writes: []kv.Write{{Key: blockKey(1), Deleted: true}, {Key: blockKey(7), Value: []byte{1}}}}}})
	for _, c := range []struct {
		hash common.Hash
		isTx bool
		head uint64
		want bool
	}{
		{bh, false, 4, false}, {bh, false, 5, true}, {th, true, 4, false}, {th, true, 9, true},
		{th, false, 9, false}, {bh, true, 9, false}, {common.Hash{}, true, 9, false},
	} {
		n, ok := x.lookup(c.hash, c.isTx, c.head)
		if ok != c.want || (ok && n != 5) {
			t.Errorf("lookup(%s, tx %v, head %d) = %d, %v; want found %v", c.hash, c.isTx, c.head, n, ok, c.want)
		}
	}
	for n, want := range map[uint64]uint64{4: 0, 5: 7, 6: 7, 7: 9, 100: 9} {
		seqno, ok := x.entryOf(n)
		if ok != (want != 0) || seqno != want {
			t.Errorf("entryOf(%d) = %d, %v; want %d", n, seqno, ok, want)
		}
	}
}

// Blocks older than RecentBlocks leave the kv store and are read from the
// committed writes ("the ledger"), the same as before, also by a node
// that rebuilt its index from them (a restart).
func TestOldBlocksComeFromTheLedger(t *testing.T) {
	f := newRPCFixtureConfig(t, Config{RecentBlocks: MinRecentBlocks})
	// Block 1 deploys a contract that logs LOG2(0xabc, calldata word);
	// block 2 calls it with user 1's address as the topic.
	logger := program.New().Push(0).Op(vm.CALLDATALOAD).Push(0xabc).Push(0).Push(0).Op(vm.LOG2).Op(vm.STOP).Bytes()
	contract := f.deploy(t, 0, logger)
	r := f.send(t, 0, &contract, 0, 100_000, common.LeftPadBytes(f.users[1].addr.Bytes(), 32))
	txHash, blockHash := common.HexToHash(r["transactionHash"].(string)), common.HexToHash(r["blockHash"].(string))
	if r["blockNumber"] != "0x2" {
		t.Fatalf("logged transaction in block %v, want 0x2", r["blockNumber"])
	}
	type reads struct{ receipt, tx, byNumber, byHash, logs, others, othersBlock, othersLogs any }
	read := func(f *rpcFixture) reads {
		var v reads
		f.ok(t, 0, &v.receipt, "eth_getTransactionReceipt", txHash)
		f.ok(t, 0, &v.tx, "eth_getTransactionByHash", txHash)
		f.ok(t, 0, &v.byNumber, "eth_getBlockByNumber", "0x2", true)
		f.ok(t, 1, &v.byHash, "eth_getBlockByHash", blockHash, true)
		f.ok(t, 1, &v.logs, "eth_getLogs", map[string]any{"fromBlock": "earliest", "toBlock": "latest", "address": contract})
		// Not user 2's to see.
		f.ok(t, 2, &v.others, "eth_getTransactionReceipt", txHash)
		f.ok(t, 2, &v.othersBlock, "eth_getBlockByNumber", "0x2", true)
		f.ok(t, 2, &v.othersLogs, "eth_getLogs", map[string]any{"fromBlock": "earliest", "toBlock": "latest", "address": contract})
		return v
	}
	before := read(f)
	if before.receipt == nil || before.others != nil || len(before.logs.([]any)) != 1 || len(before.othersLogs.([]any)) != 0 {
		t.Fatalf("before pruning: receipt %v, user 2's view %v, logs %v, user 2's logs %v", before.receipt, before.others, before.logs, before.othersLogs)
	}
	if txs := before.othersBlock.(map[string]any)["transactions"].([]any); len(txs) != 0 {
		t.Fatalf("user 2 sees block 2's transactions: %v", txs)
	}
	// Blocks 3 to 300: block 2 is then 298 blocks old.
	to := f.users[1].addr
	for range 298 {
		f.send(t, 0, &to, 1, 21000, nil)
	}
	snap := f.host.store.BeginReadOnly()
	for n, want := range map[uint64]bool{2: false, 300 - MinRecentBlocks: false, 301 - MinRecentBlocks: true, 300: true} {
		for _, m := range []string{BlocksMap, TxsMap, HashesMap} {
			if _, ok := snap.Get(m, blockKey(n)); ok != want {
				t.Errorf("%s holds block %d: %v, want %v", m, n, ok, want)
			}
		}
	}
	if got := read(f); !reflect.DeepEqual(got, before) {
		t.Errorf("block 2 read from the ledger:\n%+v\nwant\n%+v", got, before)
	}

	// A node that starts again rebuilds the index from the committed
	// writes, in order.
	g := &rpcFixture{users: f.users, nonce: f.nonce, host: f.host}
	g.app = New(Config{ChainID: testChainID, RecentBlocks: MinRecentBlocks})
	for v := uint64(1); v <= f.host.store.CommittedVersion(); v++ {
		if ws, ok := f.host.committed[v]; ok {
			g.app.Committed(v, ws)
		}
	}
	g.app.host.set(f.host)
	if got := read(g); !reflect.DeepEqual(got, before) {
		t.Errorf("block 2 after a restart:\n%+v\nwant\n%+v", got, before)
	}
}

// Writes the chain never makes are ignored, not indexed and not a crash.
func TestChainIndexIgnoresMalformedWrites(t *testing.T) {
	x := newChainIndex()
	val := make([]byte, 64)
	val[0], val[63] = 1, 2
	x.add(1, nil)
	x.add(2, &kv.WriteSet{Maps: []kv.MapWrites{
		{Name: BlocksMap, Writes: []kv.Write{{Key: "short", Value: val}, {Key: blockKey(3), Deleted: true}}},
		{Name: HashesMap, Writes: []kv.Write{
			{Key: "short", Value: val},
			{Key: blockKey(1), Value: val[:63]},
			{Key: blockKey(2), Deleted: true},
		}},
	}})
	if len(x.blocks) != 0 || len(x.txs) != 0 || len(x.entries) != 0 {
		t.Errorf("index holds %d blocks, %d transactions and %d entries, want none", len(x.blocks), len(x.txs), len(x.entries))
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

// prunedBlocks lists the blocks ws deletes from BlocksMap.
func prunedBlocks(ws *kv.WriteSet) (deleted, written []uint64) {
	for _, mw := range ws.Maps {
		if mw.Name != BlocksMap {
			continue
		}
		for _, w := range mw.Writes {
			n := binary.BigEndian.Uint64([]byte(w.Key))
			if w.Deleted {
				deleted = append(deleted, n)
			} else {
				written = append(written, n)
			}
		}
	}
	return deleted, written
}

func span(from, to uint64) []uint64 {
	var s []uint64
	for n := from; n <= to; n++ {
		s = append(s, n)
	}
	return s
}

// Prune never deletes a block of its own batch (its records would never
// reach the ledger), and catches up on what earlier batches, or another
// primary's setting, left behind.
func TestPrune(t *testing.T) {
	key := testKey(t, 1)
	from := crypto.PubkeyToAddress(key.PublicKey)
	store := kv.NewStore()
	tx := store.Begin()
	if err := WriteGenesis(tx, Genesis{ChainID: testChainID, Alloc: types.GenesisAlloc{from: {Balance: big.NewInt(1e18)}}}); err != nil {
		t.Fatal(err)
	}
	if err := store.Apply(1, tx.WriteSet()); err != nil {
		t.Fatal(err)
	}
	exec := NewExecutor(testChainID)
	exec.recent = MinRecentBlocks
	to := common.HexToAddress("0x1234")
	nonce := uint64(0)
	// batch executes count transfers as one batch with recent, then
	// prunes, and returns what the batch deleted and wrote.
	batch := func(count int, recent uint64) (deleted, written []uint64) {
		t.Helper()
		exec.recent = recent
		tx := store.Begin()
		head, _, err := readHead(tx)
		if err != nil {
			t.Fatal(err)
		}
		s := NewStateDB(tx)
		for range count {
			st, err := types.SignNewTx(key, exec.Signer(), &types.DynamicFeeTx{ChainID: big.NewInt(testChainID), Nonce: nonce, To: &to, Value: big.NewInt(1), Gas: 21000, GasFeeCap: new(big.Int), GasTipCap: new(big.Int)})
			if err != nil {
				t.Fatal(err)
			}
			nonce++
			if _, err := exec.Apply(tx, s, st, from, 1); err != nil {
				t.Fatal(err)
			}
		}
		if err := exec.Prune(tx, head.Number+1); err != nil {
			t.Fatal(err)
		}
		ws := tx.WriteSet()
		if err := store.Apply(store.Version()+1, ws); err != nil {
			t.Fatal(err)
		}
		return prunedBlocks(ws)
	}
	for i, c := range []struct {
		count       int
		recent      uint64
		wantDeleted []uint64
		wantWritten []uint64
	}{
		// More blocks than recent in one batch: all of them are kept, and
		// only the genesis block, from before the batch, is pruned.
		{300, 257, []uint64{0}, span(1, 300)},
		{1, 257, span(1, 44), []uint64{301}},
		// A primary keeping more blocks deletes nothing yet; one keeping
		// fewer again resumes where pruning stopped.
		{1, 1000, nil, []uint64{302}},
		{1, 257, span(45, 46), []uint64{303}},
	} {
		deleted, written := batch(c.count, c.recent)
		if !slices.Equal(deleted, c.wantDeleted) || !slices.Equal(written, c.wantWritten) {
			t.Errorf("batch %d: deleted %v, wrote %v; want deleted %v, wrote %v", i, deleted, written, c.wantDeleted, c.wantWritten)
		}
	}
}

// A JSON-RPC batch of more transactions than RecentBlocks commits them all,
// each readable afterwards, however the builder splits them into batches
// (TestPrune checks a builder batch larger than RecentBlocks directly).
func TestBatchLargerThanRecentBlocks(t *testing.T) {
	f := newRPCFixtureConfig(t, Config{RecentBlocks: MinRecentBlocks})
	to := f.users[1].addr
	var calls []string
	var hashes []common.Hash
	for i := range 300 {
		tx := f.sign(t, 0, f.dynTx(0, &to, 1, 21000, nil))
		f.nonce[f.users[0].id]++
		hashes = append(hashes, tx.Hash())
		calls = append(calls, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"eth_sendRawTransaction","params":["%s"]}`, i, hexutil.Encode(mustBinary(t, tx))))
	}
	out, err := f.raw(t, 0, "["+strings.Join(calls, ",")+"]")
	if err != nil {
		t.Fatal(err)
	}
	var answers []struct {
		Result common.Hash     `json:"result"`
		Error  json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(out, &answers); err != nil || len(answers) != len(hashes) {
		t.Fatalf("%d answers (%v): %s", len(answers), err, out)
	}
	for i, h := range hashes {
		if answers[i].Result != h || answers[i].Error != nil {
			t.Fatalf("transaction %d: %s %s", i, answers[i].Result, answers[i].Error)
		}
	}
	// More blocks so that all 300 are old.
	for range 260 {
		f.send(t, 0, &to, 1, 21000, nil)
	}
	for i, h := range hashes {
		var r map[string]any
		f.ok(t, 0, &r, "eth_getTransactionReceipt", h)
		if r == nil || r["status"] != "0x1" {
			t.Fatalf("receipt of transaction %d (%s): %v", i, h, r)
		}
	}
}

// A chain written before 2026-12-06 kept its transactions under their
// hashes and its blocks' hashes in eth.block_hashes, and wrote no
// eth.hashes: a node starting on it finds them through those maps.
func TestLegacyChainLayout(t *testing.T) {
	f := newRPCFixture(t)
	to := f.users[1].addr
	r := f.send(t, 0, &to, 1, 21000, nil)
	txHash, blockHash := common.HexToHash(r["transactionHash"].(string)), common.HexToHash(r["blockHash"].(string))
	var before [3]any
	f.ok(t, 0, &before[0], "eth_getTransactionReceipt", txHash)
	f.ok(t, 0, &before[1], "eth_getBlockByHash", blockHash, true)
	f.ok(t, 0, &before[2], "eth_getBlockByNumber", "0x1", true)

	// Rewrite block 1's records in the old layout.
	tx := f.host.store.Begin()
	rec, ok := tx.Get(TxsMap, blockKey(1))
	if !ok {
		t.Fatal("no record of block 1")
	}
	var num [8]byte
	binary.BigEndian.PutUint64(num[:], 1)
	if err := errors.Join(
		tx.Delete(TxsMap, blockKey(1)), tx.Put(TxsMap, string(txHash[:]), rec),
		tx.Delete(HashesMap, blockKey(1)), tx.Put(legacyBlockHashesMap, string(blockHash[:]), num[:]),
	); err != nil {
		t.Fatal(err)
	}
	if err := f.host.Submit(context.Background(), tx, nil); err != nil {
		t.Fatal(err)
	}
	// A node whose index knows nothing of block 1's hashes.
	g := &rpcFixture{users: f.users, nonce: f.nonce, host: f.host}
	g.app = New(Config{ChainID: testChainID})
	g.app.host.set(f.host)
	var after [3]any
	g.ok(t, 0, &after[0], "eth_getTransactionReceipt", txHash)
	g.ok(t, 0, &after[1], "eth_getBlockByHash", blockHash, true)
	g.ok(t, 0, &after[2], "eth_getBlockByNumber", "0x1", true)
	if !reflect.DeepEqual(after, before) {
		t.Errorf("old layout reads\n%+v\nwant\n%+v", after, before)
	}
}
