package evm

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/cocoledger/coco/app"
	"github.com/cocoledger/coco/gov"
	"github.com/cocoledger/coco/kv"
	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/core/vm"
	"github.com/ethereum/go-ethereum/core/vm/program"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/holiman/uint256"
)

// fakeHost orders and commits a transaction at once on a kv store, like a
// one-node service, and tells observer of each commit as the node does.
type fakeHost struct {
	store     *kv.Store
	observer  app.CommitObserver
	mu        sync.Mutex
	primary   bool
	committed map[uint64]*kv.WriteSet // the "ledger"
}

func (h *fakeHost) CommittedWrites(seqno uint64) (*kv.WriteSet, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ws, ok := h.committed[seqno]
	if !ok {
		return nil, fmt.Errorf("no committed transaction %d", seqno)
	}
	return ws, nil
}

func (h *fakeHost) Begin() *kv.Tx { return h.store.Begin() }

func (h *fakeHost) IsPrimary() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.primary
}

func (h *fakeHost) Submit(_ context.Context, tx *kv.Tx, ordered func()) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.primary {
		return app.ErrNotPrimary
	}
	if err := h.store.Validate(tx); err != nil {
		return err
	}
	v := h.store.Version() + 1
	ws := tx.WriteSet()
	if err := h.store.Apply(v, ws); err != nil {
		return err
	}
	if ordered != nil {
		ordered()
	}
	if h.committed == nil {
		h.committed = map[uint64]*kv.WriteSet{}
	}
	h.committed[v] = ws
	if h.observer != nil {
		h.observer.Committed(v, ws)
	}
	return h.store.MarkCommitted(v)
}

type user struct {
	id   string
	key  *ecdsa.PrivateKey
	addr common.Address
}

type rpcFixture struct {
	app   *App
	host  *fakeHost
	users []user // users[0..2] have addresses; users[3] has none
	nonce map[string]uint64
}

func newRPCFixture(t *testing.T) *rpcFixture {
	t.Helper()
	return newRPCFixtureConfig(t, Config{})
}

// newRPCFixtureConfig is newRPCFixture with cfg (its chain id and
// allocation are the fixture's).
func newRPCFixtureConfig(t *testing.T, cfg Config) *rpcFixture {
	t.Helper()
	store := kv.NewStore()
	f := &rpcFixture{host: &fakeHost{store: store, primary: true}, nonce: map[string]uint64{}}
	alloc := types.GenesisAlloc{}
	tx := store.Begin()
	for i := range 4 {
		k := testKey(t, byte(10+i))
		u := user{id: "user" + string(rune('0'+i)), key: k, addr: crypto.PubkeyToAddress(k.PublicKey)}
		f.users = append(f.users, u)
		alloc[u.addr] = types.Account{Balance: big.NewInt(1e18)}
		if i < 3 {
			info, _ := json.Marshal(map[string]any{"user_data": map[string]any{"eth_address": u.addr.Hex()}})
			if err := tx.Put(gov.UsersInfo, u.id, info); err != nil {
				t.Fatal(err)
			}
		}
	}
	cfg.ChainID, cfg.Alloc = testChainID, alloc
	f.app = New(cfg)
	f.host.observer = f.app
	if err := f.app.WriteGenesis(tx); err != nil {
		t.Fatal(err)
	}
	if err := f.host.Submit(context.Background(), tx, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = f.app.Run(ctx, f.host)
	}()
	t.Cleanup(func() { cancel(); <-done })
	f.app.host.set(f.host) // as Run does first thing, so no call races it
	return f
}

// raw sends a raw JSON-RPC body as user u and returns the decoded answer.
func (f *rpcFixture) raw(t *testing.T, u int, body string) (json.RawMessage, error) {
	t.Helper()
	c := &app.Context{
		Request: httptest.NewRequest("POST", "/app/eth", strings.NewReader(body)),
		Body:    []byte(body),
		Caller:  app.Caller{Kind: "user", ID: f.users[u].id},
		Tx:      f.host.store.BeginReadOnly(),
	}
	resp, err := f.app.serveRPC(c)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b, nil
}

type rpcAnswer struct {
	ID     json.RawMessage `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Data    string `json:"data"`
	} `json:"error"`
}

// call runs one method as user u.
func (f *rpcFixture) call(t *testing.T, u int, method string, params ...any) rpcAnswer {
	t.Helper()
	if params == nil {
		params = []any{}
	}
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 7, "method": method, "params": params})
	b, err := f.raw(t, u, string(body))
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	var a rpcAnswer
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatalf("%s: %s: %v", method, b, err)
	}
	return a
}

// ok runs a method that must succeed and decodes its result into v.
func (f *rpcFixture) ok(t *testing.T, u int, v any, method string, params ...any) {
	t.Helper()
	a := f.call(t, u, method, params...)
	if a.Error != nil {
		t.Fatalf("%s: error %d %s", method, a.Error.Code, a.Error.Message)
	}
	if v != nil {
		if err := json.Unmarshal(a.Result, v); err != nil {
			t.Fatalf("%s: result %s: %v", method, a.Result, err)
		}
	}
}

// fails runs a method that must fail with code and a message holding msg.
func (f *rpcFixture) fails(t *testing.T, u int, code int, msg, method string, params ...any) rpcAnswer {
	t.Helper()
	a := f.call(t, u, method, params...)
	if a.Error == nil || a.Error.Code != code || !strings.Contains(a.Error.Message, msg) {
		t.Fatalf("%s: got %s / %+v, want error %d containing %q", method, a.Result, a.Error, code, msg)
	}
	return a
}

// sign signs a transaction from user u with its next nonce (unless the
// data sets one).
func (f *rpcFixture) sign(t *testing.T, u int, inner types.TxData) *types.Transaction {
	t.Helper()
	tx, err := types.SignNewTx(f.users[u].key, types.LatestSignerForChainID(big.NewInt(testChainID)), inner)
	if err != nil {
		t.Fatal(err)
	}
	return tx
}

func (f *rpcFixture) dynTx(u int, to *common.Address, value int64, gas uint64, data []byte) *types.DynamicFeeTx {
	n := f.nonce[f.users[u].id]
	return &types.DynamicFeeTx{ChainID: big.NewInt(testChainID), Nonce: n, To: to, Value: big.NewInt(value), Gas: gas, GasFeeCap: new(big.Int), GasTipCap: new(big.Int), Data: data}
}

// send sends a transaction that must be included, and returns its receipt.
func (f *rpcFixture) send(t *testing.T, u int, to *common.Address, value int64, gas uint64, data []byte) map[string]any {
	t.Helper()
	tx := f.sign(t, u, f.dynTx(u, to, value, gas, data))
	var hash common.Hash
	f.ok(t, u, &hash, "eth_sendRawTransaction", hexutil.Bytes(mustBinary(t, tx)))
	if hash != tx.Hash() {
		t.Fatalf("sendRawTransaction returned %s, want %s", hash, tx.Hash())
	}
	f.nonce[f.users[u].id]++
	var r map[string]any
	f.ok(t, u, &r, "eth_getTransactionReceipt", hash)
	if r == nil {
		t.Fatal("no receipt right after eth_sendRawTransaction returned")
	}
	return r
}

func mustBinary(t *testing.T, tx *types.Transaction) []byte {
	t.Helper()
	b, err := tx.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRPCInfoMethods(t *testing.T) {
	f := newRPCFixture(t)
	for _, c := range []struct {
		method string
		params []any
		want   string
	}{
		{"eth_chainId", nil, `"0x539"`},
		{"net_version", nil, `"1337"`},
		{"eth_gasPrice", nil, `"0x0"`},
		{"eth_maxPriorityFeePerGas", nil, `"0x0"`},
		{"eth_blockNumber", nil, `"0x0"`},
		{"eth_syncing", nil, `false`},
		{"eth_accounts", nil, `[]`},
	} {
		a := f.call(t, 0, c.method, c.params...)
		if a.Error != nil || string(a.Result) != c.want {
			t.Errorf("%s = %s %+v, want %s", c.method, a.Result, a.Error, c.want)
		}
	}
	var v string
	f.ok(t, 0, &v, "web3_clientVersion")
	if !strings.HasPrefix(v, "coco/") {
		t.Errorf("web3_clientVersion = %q", v)
	}
	var fh struct {
		OldestBlock   hexutil.Uint64   `json:"oldestBlock"`
		BaseFeePerGas []*hexutil.Big   `json:"baseFeePerGas"`
		GasUsedRatio  []float64        `json:"gasUsedRatio"`
		Reward        [][]*hexutil.Big `json:"reward"`
	}
	f.ok(t, 0, &fh, "eth_feeHistory", "0x4", "latest", []float64{50})
	if fh.OldestBlock != 0 || len(fh.BaseFeePerGas) != 2 || len(fh.GasUsedRatio) != 1 || len(fh.Reward) != 1 {
		t.Errorf("eth_feeHistory on a one-block chain = %+v", fh)
	}
}

func TestRPCTransferAndBlocks(t *testing.T) {
	f := newRPCFixture(t)
	to := f.users[1].addr
	r := f.send(t, 0, &to, 1000, 21000, nil)
	if r["status"] != "0x1" || r["gasUsed"] != "0x5208" || r["blockNumber"] != "0x1" || r["transactionIndex"] != "0x0" {
		t.Fatalf("receipt = %v", r)
	}
	var n hexutil.Uint64
	f.ok(t, 0, &n, "eth_blockNumber")
	if n != 1 {
		t.Fatalf("eth_blockNumber = %d, want 1", n)
	}
	var bal hexutil.Big
	f.ok(t, 1, &bal, "eth_getBalance", to, "latest")
	if bal.ToInt().Cmp(big.NewInt(1e18+1000)) != 0 {
		t.Errorf("recipient balance %s", bal.ToInt())
	}
	var cnt hexutil.Uint64
	f.ok(t, 0, &cnt, "eth_getTransactionCount", f.users[0].addr, "pending")
	if cnt != 1 {
		t.Errorf("nonce %d, want 1", cnt)
	}
	// The block by number and by hash, with hashes and with full
	// transactions, all agree with the receipt.
	var byNum, byHash map[string]any
	f.ok(t, 0, &byNum, "eth_getBlockByNumber", "0x1", false)
	f.ok(t, 0, &byHash, "eth_getBlockByHash", r["blockHash"], true)
	if byNum["hash"] != r["blockHash"] || byHash["number"] != "0x1" {
		t.Fatalf("blocks %v / %v, receipt %v", byNum, byHash, r)
	}
	if txs := byNum["transactions"].([]any); len(txs) != 1 || txs[0] != r["transactionHash"] {
		t.Errorf("block transactions = %v", txs)
	}
	if txs := byHash["transactions"].([]any); len(txs) != 1 || txs[0].(map[string]any)["hash"] != r["transactionHash"] {
		t.Errorf("full block transactions = %v", txs)
	}
	var genesis map[string]any
	f.ok(t, 0, &genesis, "eth_getBlockByNumber", "earliest", false)
	f.ok(t, 1, nil, "eth_getBalance", to, byNum["hash"]) // the head, by hash
	if byNum["parentHash"] != genesis["hash"] {
		t.Errorf("block 1's parent %v is not block 0 %v", byNum["parentHash"], genesis["hash"])
	}
	var tx map[string]any
	f.ok(t, 0, &tx, "eth_getTransactionByHash", r["transactionHash"])
	if tx["blockHash"] != r["blockHash"] || tx["from"] != strings.ToLower(f.users[0].addr.Hex()) && tx["from"] != f.users[0].addr.Hex() {
		t.Errorf("transaction = %v", tx)
	}
	for _, m := range []struct {
		method string
		params []any
	}{
		{"eth_getBlockByNumber", []any{"0x99", false}},
		{"eth_getBlockByHash", []any{common.Hash{1}, false}},
		{"eth_getTransactionByHash", []any{common.Hash{1}}},
		{"eth_getTransactionReceipt", []any{common.Hash{1}}},
	} {
		if a := f.call(t, 0, m.method, m.params...); a.Error != nil || string(a.Result) != "null" {
			t.Errorf("%s of something absent = %s %+v, want null", m.method, a.Result, a.Error)
		}
	}
}

// revertData is the ABI encoding of Error(reason).
func revertData(t *testing.T, reason string) []byte {
	t.Helper()
	str, _ := abi.NewType("string", "", nil)
	args, err := abi.Arguments{{Type: str}}.Pack(reason)
	if err != nil {
		t.Fatal(err)
	}
	return append(crypto.Keccak256([]byte("Error(string)"))[:4], args...)
}

// deploy deploys runtime code from user u and returns its address.
func (f *rpcFixture) deploy(t *testing.T, u int, runtime []byte) common.Address {
	t.Helper()
	r := f.send(t, u, nil, 0, 1_000_000, program.New().ReturnData(runtime).Bytes())
	if r["status"] != "0x1" || r["contractAddress"] == nil {
		t.Fatalf("deploy receipt %v", r)
	}
	return common.HexToAddress(r["contractAddress"].(string))
}

func TestRPCContracts(t *testing.T) {
	f := newRPCFixture(t)
	// Returns CALLER (so eth_call's from is visible), or reverts with a
	// reason when called with any data.
	rd := revertData(t, "nope")
	revert := program.New().Mstore(rd, 0).Push(len(rd)).Push(0).Op(vm.REVERT)
	// CALLDATASIZE ISZERO PUSH2 ok JUMPI <revert> ok: JUMPDEST <return caller>
	ok := 0
	for range 2 { // the push's width depends on the destination
		ok = program.New().Op(vm.CALLDATASIZE).Op(vm.ISZERO).Push(ok).Op(vm.JUMPI).Size() + revert.Size()
	}
	p := program.New().Op(vm.CALLDATASIZE).Op(vm.ISZERO).Push(ok).Op(vm.JUMPI)
	p.Append(revert.Bytes())
	p.Op(vm.JUMPDEST).Op(vm.CALLER).Push(0).Op(vm.MSTORE).Return(0, 32)
	contract := f.deploy(t, 0, p.Bytes())

	var out hexutil.Bytes
	f.ok(t, 1, &out, "eth_call", map[string]any{"to": contract}, "latest")
	if common.BytesToAddress(out) != f.users[1].addr {
		t.Errorf("eth_call saw caller %x, want the calling user's address %s", out, f.users[1].addr)
	}
	f.fails(t, 1, codeServer, "your own registered address", "eth_call", map[string]any{"to": contract, "from": f.users[0].addr})
	// go-ethereum's ethclient sends the zero address for "no from".
	out = nil
	f.ok(t, 1, &out, "eth_call", map[string]any{"to": contract, "from": common.Address{}}, "latest")
	if common.BytesToAddress(out) != f.users[1].addr {
		t.Errorf("eth_call with the zero from saw caller %x, want the calling user's address %s", out, f.users[1].addr)
	}
	a := f.fails(t, 0, codeReverted, "execution reverted: nope", "eth_call", map[string]any{"to": contract, "data": "0x01"})
	if a.Error.Data != hexutil.Encode(rd) {
		t.Errorf("revert data %s, want %x", a.Error.Data, rd)
	}
	f.fails(t, 0, codeReverted, "execution reverted: nope", "eth_estimateGas", map[string]any{"to": contract, "data": "0x01"})
	var gas hexutil.Uint64
	f.ok(t, 0, &gas, "eth_estimateGas", map[string]any{"to": contract})
	// The estimate is the least gas that succeeds.
	for _, c := range []struct {
		gas    uint64
		status string
	}{{uint64(gas), "0x1"}, {uint64(gas) - 1, "0x0"}} {
		if r := f.send(t, 0, &contract, 0, c.gas, nil); r["status"] != c.status {
			t.Errorf("with gas %d: status %v, want %s", c.gas, r["status"], c.status)
		}
	}
	// A reverting transaction is included with status 0.
	if r := f.send(t, 0, &contract, 0, 100_000, []byte{1}); r["status"] != "0x0" {
		t.Errorf("reverting transaction: %v", r)
	}
	var got hexutil.Bytes
	f.ok(t, 2, &got, "eth_getCode", contract, "latest")
	if string(got) != string(p.Bytes()) {
		t.Errorf("eth_getCode = %x", got)
	}
}

func TestRPCSendRawTransactionErrors(t *testing.T) {
	f := newRPCFixture(t)
	to := f.users[1].addr
	signer := types.LatestSignerForChainID(big.NewInt(testChainID))
	other := types.LatestSignerForChainID(big.NewInt(testChainID + 1))
	enc := func(tx *types.Transaction) hexutil.Bytes { return mustBinary(t, tx) }
	signed := func(s types.Signer, u int, d types.TxData) *types.Transaction {
		tx, err := types.SignNewTx(f.users[u].key, s, d)
		if err != nil {
			t.Fatal(err)
		}
		return tx
	}
	f.send(t, 0, &to, 1, 21000, nil) // nonce 0 used
	unprotected, err := types.SignTx(types.NewTx(&types.LegacyTx{Nonce: 1, To: &to, Gas: 21000, GasPrice: new(big.Int), Value: new(big.Int)}), types.HomesteadSigner{}, f.users[0].key)
	if err != nil {
		t.Fatal(err)
	}
	setCode := signed(signer, 0, &types.SetCodeTx{ChainID: uint256.NewInt(testChainID), Nonce: 1, To: to, Gas: 50000, GasFeeCap: new(uint256.Int), GasTipCap: new(uint256.Int), Value: new(uint256.Int)})
	for _, c := range []struct {
		name string
		user int
		raw  any
		code int
		msg  string
	}{
		{"not hex", 0, "zz", codeInvalidParams, "invalid argument 0"},
		{"not a transaction", 0, "0x1234", codeInvalidParams, "malformed transaction"},
		{"wrong chain id", 0, enc(signed(other, 0, &types.DynamicFeeTx{ChainID: big.NewInt(testChainID + 1), Nonce: 1, To: &to, Gas: 21000, GasFeeCap: new(big.Int), GasTipCap: new(big.Int)})), codeServer, "invalid chain id"},
		{"not replay-protected", 0, enc(unprotected), codeServer, "replay-protected"},
		{"unsupported type", 0, enc(setCode), codeServer, "not supported"},
		{"someone else's transaction", 1, enc(signed(signer, 0, f.dynTx(0, &to, 1, 21000, nil))), codeServer, "your registered address"},
		{"user without an address", 3, enc(signed(signer, 3, f.dynTx(3, &to, 1, 21000, nil))), codeServer, "no user_data.eth_address"},
		{"nonce too low", 0, enc(signed(signer, 0, &types.DynamicFeeTx{ChainID: big.NewInt(testChainID), Nonce: 0, To: &to, Gas: 21000, GasFeeCap: new(big.Int), GasTipCap: new(big.Int)})), codeServer, "nonce too low"},
		{"nonce too high", 0, enc(signed(signer, 0, &types.DynamicFeeTx{ChainID: big.NewInt(testChainID), Nonce: 9, To: &to, Gas: 21000, GasFeeCap: new(big.Int), GasTipCap: new(big.Int)})), codeServer, "nonce too high"},
		{"insufficient funds", 0, enc(signed(signer, 0, f.dynTx(0, &to, 2e18, 21000, nil))), codeServer, "insufficient funds"},
		{"intrinsic gas too low", 0, enc(signed(signer, 0, f.dynTx(0, &to, 1, 20000, nil))), codeServer, "intrinsic gas too low"},
		{"missing param", 0, nil, codeInvalidParams, "missing value"},
		{"non-zero gas price", 0, enc(signed(signer, 0, &types.LegacyTx{Nonce: 1, To: &to, Gas: 21000, GasPrice: big.NewInt(1), Value: new(big.Int)})), codeServer, "priced at zero"},
		{"non-zero tip", 0, enc(signed(signer, 0, &types.DynamicFeeTx{ChainID: big.NewInt(testChainID), Nonce: 1, To: &to, Gas: 21000, GasFeeCap: big.NewInt(5), GasTipCap: big.NewInt(1)})), codeServer, "priced at zero"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var params []any
			if c.raw != nil {
				params = []any{c.raw}
			}
			f.fails(t, c.user, c.code, c.msg, "eth_sendRawTransaction", params...)
		})
	}
	// None of them changed anything.
	var n hexutil.Uint64
	f.ok(t, 0, &n, "eth_blockNumber")
	if n != 1 {
		t.Errorf("block number %d after refused transactions, want 1", n)
	}
}

func TestRPCMalformedRequests(t *testing.T) {
	f := newRPCFixture(t)
	for _, c := range []struct {
		name, body string
		code       int
	}{
		{"empty body", "", codeParse},
		{"not JSON", "{", codeParse},
		{"empty batch", "[]", codeInvalidRequest},
		{"no jsonrpc", `{"id":1,"method":"eth_chainId"}`, codeInvalidRequest},
		{"no method", `{"jsonrpc":"2.0","id":1}`, codeInvalidRequest},
		{"params not an array", `{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":{"a":1}}`, codeInvalidParams},
		{"unknown method", `{"jsonrpc":"2.0","id":1,"method":"eth_mine"}`, codeMethodNotFound},
		{"too many params", `{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}` + "", 0},
		{"bad address", `{"jsonrpc":"2.0","id":1,"method":"eth_getCode","params":["0x12","latest"]}`, codeInvalidParams},
		{"bad block tag", `{"jsonrpc":"2.0","id":1,"method":"eth_getBlockByNumber","params":["newest",false]}`, codeInvalidParams},
		{"old state", `{"jsonrpc":"2.0","id":1,"method":"eth_getCode","params":["0x0000000000000000000000000000000000000001","0x5"]}`, codeServer},
		{"storage is confidential", `{"jsonrpc":"2.0","id":1,"method":"eth_getStorageAt","params":["0x0000000000000000000000000000000000000001","0x0","latest"]}`, codeServer},
		{"bad topics", `{"jsonrpc":"2.0","id":1,"method":"eth_getLogs","params":[{"topics":["0x12"]}]}`, codeInvalidParams},
		{"too many percentiles", `{"jsonrpc":"2.0","id":1,"method":"eth_feeHistory","params":["0x1","latest",[` + strings.Repeat("1,", 100) + `1]]}`, codeInvalidParams},
		{"descending percentiles", `{"jsonrpc":"2.0","id":1,"method":"eth_feeHistory","params":["0x1","latest",[50,10]]}`, codeInvalidParams},
		{"zero block count", `{"jsonrpc":"2.0","id":1,"method":"eth_feeHistory","params":["0x0","latest"]}`, codeInvalidParams},
		{"state of another block hash", `{"jsonrpc":"2.0","id":1,"method":"eth_getCode","params":["0x0000000000000000000000000000000000000001","0x0000000000000000000000000000000000000000000000000000000000000001"]}`, codeServer},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, err := f.raw(t, 0, c.body)
			if err != nil {
				t.Fatal(err)
			}
			var a rpcAnswer
			if err := json.Unmarshal(b, &a); err != nil {
				t.Fatalf("%s: %v", b, err)
			}
			if c.code == 0 {
				if a.Error != nil {
					t.Fatalf("unexpected error %+v", a.Error)
				}
				return
			}
			if a.Error == nil || a.Error.Code != c.code {
				t.Fatalf("answer %s, want error code %d", b, c.code)
			}
		})
	}
	// A batch answers each call in order, errors included.
	b, err := f.raw(t, 0, `[{"jsonrpc":"2.0","id":1,"method":"eth_chainId"},{"jsonrpc":"2.0","id":2,"method":"nope"},{"jsonrpc":"2.0","id":3,"method":"eth_blockNumber"}]`)
	if err != nil {
		t.Fatal(err)
	}
	var batch []rpcAnswer
	if err := json.Unmarshal(b, &batch); err != nil || len(batch) != 3 {
		t.Fatalf("batch answer %s (%v)", b, err)
	}
	if string(batch[0].ID) != "1" || batch[0].Error != nil || batch[1].Error == nil || batch[1].Error.Code != codeMethodNotFound || string(batch[2].Result) != `"0x0"` {
		t.Errorf("batch answer %s", b)
	}
}

// TestRPCBatchWithMalformedCalls: calls that are not request objects
// (decoded one by one, not in the batch's single pass) each get their own
// error, in place, and the well-formed ones are answered.
func TestRPCBatchWithMalformedCalls(t *testing.T) {
	f := newRPCFixture(t)
	b, err := f.raw(t, 0, `[{"jsonrpc":"2.0","id":1,"method":"eth_chainId"},5,{"jsonrpc":"2.0","id":3,"method":7},null,{"jsonrpc":"2.0","id":5,"method":"eth_blockNumber"}]`)
	if err != nil {
		t.Fatal(err)
	}
	var batch []rpcAnswer
	if err := json.Unmarshal(b, &batch); err != nil || len(batch) != 5 {
		t.Fatalf("batch answer %s (%v)", b, err)
	}
	if batch[0].Error != nil || string(batch[0].ID) != "1" || string(batch[4].Result) != `"0x0"` || string(batch[4].ID) != "5" {
		t.Errorf("well-formed calls: %s", b)
	}
	for _, i := range []int{1, 2, 3} {
		if batch[i].Error == nil || batch[i].Error.Code != codeInvalidRequest {
			t.Errorf("call %d: %s, want an invalid-request error", i, b)
		}
	}
}

// TestRPCBatchOfTransactions: a JSON-RPC batch of transactions is queued
// whole before its answers are awaited; each call gets its own answer.
func TestRPCBatchOfTransactions(t *testing.T) {
	f := newRPCFixture(t)
	to := f.users[1].addr
	var calls []string
	var hashes []common.Hash
	for n := range uint64(5) {
		d := f.dynTx(0, &to, 1, 21000, nil)
		d.Nonce = n
		tx := f.sign(t, 0, d)
		hashes = append(hashes, tx.Hash())
		body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": n, "method": "eth_sendRawTransaction", "params": []any{hexutil.Bytes(mustBinary(t, tx))}})
		calls = append(calls, string(body))
	}
	// A nonce far ahead is refused on its own; the others commit.
	d := f.dynTx(0, &to, 1, 21000, nil)
	d.Nonce = 9
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 5, "method": "eth_sendRawTransaction", "params": []any{hexutil.Bytes(mustBinary(t, f.sign(t, 0, d)))}})
	calls = append(calls, string(body))
	b, err := f.raw(t, 0, "["+strings.Join(calls, ",")+"]")
	if err != nil {
		t.Fatal(err)
	}
	var answers []rpcAnswer
	if err := json.Unmarshal(b, &answers); err != nil || len(answers) != 6 {
		t.Fatalf("batch answer %s (%v)", b, err)
	}
	for i, a := range answers[:5] {
		var h common.Hash
		if a.Error != nil || json.Unmarshal(a.Result, &h) != nil || h != hashes[i] || string(a.ID) != strconv.Itoa(i) {
			t.Errorf("answer %d: %+v, want hash %s", i, a, hashes[i])
		}
	}
	if a := answers[5]; a.Error == nil || a.Error.Code != codeServer || !strings.Contains(a.Error.Message, "nonce too high") {
		t.Errorf("answer to the nonce-9 transaction: %+v, want nonce too high", a)
	}
	var n hexutil.Uint64
	f.ok(t, 0, &n, "eth_getTransactionCount", f.users[0].addr, "latest")
	if n != 5 {
		t.Errorf("nonce after the batch: %d, want 5", n)
	}
	for _, h := range hashes {
		var r map[string]any
		f.ok(t, 0, &r, "eth_getTransactionReceipt", h)
		if r == nil || r["status"] != "0x1" {
			t.Errorf("receipt of %s: %v", h, r)
		}
	}
}

// TestRPCBackupForwardsWrites: on a backup, eth_sendRawTransaction asks
// the framework to forward the request (app.ErrNotPrimary); reads are
// answered locally.
func TestRPCBackupForwardsWrites(t *testing.T) {
	f := newRPCFixture(t)
	f.host.mu.Lock()
	f.host.primary = false
	f.host.mu.Unlock()
	to := f.users[1].addr
	tx := f.sign(t, 0, f.dynTx(0, &to, 1, 21000, nil))
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransaction", "params": []any{hexutil.Bytes(mustBinary(t, tx))}})
	if _, err := f.raw(t, 0, string(body)); !errors.Is(err, app.ErrNotPrimary) {
		t.Fatalf("sendRawTransaction on a backup: %v, want app.ErrNotPrimary", err)
	}
	for _, batch := range []string{
		`[{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"},` + string(body) + `]`,
		// A malformed call beside it: the batch is decoded call by call.
		`[5,` + string(body) + `]`,
	} {
		if _, err := f.raw(t, 0, batch); !errors.Is(err, app.ErrNotPrimary) {
			t.Fatalf("a batch with a transaction on a backup: %v, want app.ErrNotPrimary before anything runs", err)
		}
	}
	f.ok(t, 0, nil, "eth_blockNumber")
}

// TestVisibility checks who sees a transaction: its sender, its
// recipient and the addresses in its logs' topics; nobody else sees it
// through any method.
func TestVisibility(t *testing.T) {
	f := newRPCFixture(t)
	// Logs LOG2(sig, topic) with topic = the address in calldata.
	logger := program.New().Push(0).Op(vm.CALLDATALOAD).Push(0xabc).Push(0).Push(0).Op(vm.LOG2).Op(vm.STOP).Bytes()
	contract := f.deploy(t, 0, logger)
	mentioned := common.LeftPadBytes(f.users[1].addr.Bytes(), 32)
	r := f.send(t, 0, &contract, 0, 100_000, mentioned)
	hash := r["transactionHash"]
	block := r["blockNumber"]
	sees := func(u int) bool {
		var tx, rec map[string]any
		f.ok(t, u, &tx, "eth_getTransactionByHash", hash)
		f.ok(t, u, &rec, "eth_getTransactionReceipt", hash)
		var logs []map[string]any
		f.ok(t, u, &logs, "eth_getLogs", map[string]any{"fromBlock": "earliest", "toBlock": "latest", "address": contract})
		var b map[string]any
		f.ok(t, u, &b, "eth_getBlockByNumber", block, true)
		inBlock := len(b["transactions"].([]any)) == 1
		if (tx != nil) != (rec != nil) || (tx != nil) != (len(logs) == 1) || (tx != nil) != inBlock {
			t.Fatalf("user %d: inconsistent views: tx %v receipt %v logs %v block %v", u, tx != nil, rec != nil, len(logs), inBlock)
		}
		if !inBlock && (b["gasUsed"] != "0x0" || b["logsBloom"] != hexutil.Encode(make([]byte, 256))) {
			t.Errorf("user %d: a hidden block still shows gas %v or a bloom", u, b["gasUsed"])
		}
		return tx != nil
	}
	for u, want := range []bool{true, true, false, false} {
		if got := sees(u); got != want {
			t.Errorf("user %d sees the transaction: %v, want %v", u, got, want)
		}
	}
	f.fails(t, 2, codeServer, "confidential", "eth_getBalance", f.users[0].addr, "latest")
	f.fails(t, 2, codeServer, "confidential", "eth_getTransactionCount", f.users[0].addr, "latest")
}
