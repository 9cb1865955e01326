package e2e

import (
	"encoding/json"
	"math/big"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
)

// ethCall makes one JSON-RPC call at /app/eth and returns its result
// (null included), failing the test on a JSON-RPC error.
func ethCall(t testing.TB, c *client, method string, params ...any) json.RawMessage {
	t.Helper()
	if params == nil {
		params = []any{}
	}
	r := c.do("POST", "/app/eth", map[string]any{"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
	var out struct {
		Result json.RawMessage `json:"result"`
		Error  *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	expect(t, r, http.StatusOK, &out)
	if out.Error != nil {
		t.Fatalf("%s: error %d %s", method, out.Error.Code, out.Error.Message)
	}
	return out.Result
}

// ethTransfers has sandbox user u send count transfers of 1 wei to itself
// through c, signed with its sandbox key, in JSON-RPC batches of up to
// 100, and returns the first transaction's hash and the hash of the block
// that holds it.
func ethTransfers(t testing.TB, s *sandboxRun, c *client, u, count int) (txHash, blockHash common.Hash) {
	t.Helper()
	hexKey, err := os.ReadFile(s.info.Users[u].EthKey)
	if err != nil {
		t.Fatal(err)
	}
	key, err := crypto.HexToECDSA(strings.TrimPrefix(strings.TrimSpace(string(hexKey)), "0x"))
	if err != nil {
		t.Fatal(err)
	}
	from := crypto.PubkeyToAddress(key.PublicKey)
	var nonce hexutil.Uint64
	if err := json.Unmarshal(ethCall(t, c, "eth_getTransactionCount", from, "latest"), &nonce); err != nil {
		t.Fatal(err)
	}
	chainID := new(big.Int).SetUint64(s.info.ChainID)
	signer := types.LatestSignerForChainID(chainID)
	var first common.Hash
	for sent := 0; sent < count; {
		var batch []map[string]any
		var hashes []common.Hash
		for ; sent < count && len(batch) < 100; sent++ {
			tx, err := types.SignNewTx(key, signer, &types.DynamicFeeTx{
				ChainID: chainID, Nonce: uint64(nonce) + uint64(sent), Gas: 21000, To: &from, Value: big.NewInt(1),
				GasTipCap: new(big.Int), GasFeeCap: new(big.Int),
			})
			if err != nil {
				t.Fatal(err)
			}
			raw, err := tx.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			batch = append(batch, map[string]any{"jsonrpc": "2.0", "id": sent, "method": "eth_sendRawTransaction", "params": []any{hexutil.Bytes(raw)}})
			hashes = append(hashes, tx.Hash())
		}
		var out []struct {
			Result common.Hash     `json:"result"`
			Error  json.RawMessage `json:"error"`
		}
		expect(t, c.do("POST", "/app/eth", batch), http.StatusOK, &out)
		if len(out) != len(hashes) {
			t.Fatalf("a batch of %d transactions got %d answers", len(hashes), len(out))
		}
		for i, o := range out {
			if o.Error != nil || o.Result != hashes[i] {
				t.Fatalf("transaction %d of a batch: %s %s, want %s", i, o.Result, o.Error, hashes[i])
			}
		}
		if first == (common.Hash{}) {
			first = hashes[0]
		}
	}
	rc, ok := ethReceipt(t, c, first)
	if !ok {
		t.Fatalf("no receipt for %s right after eth_sendRawTransaction answered", first)
	}
	return first, rc.BlockHash
}

type ethReceiptView struct {
	BlockHash   common.Hash    `json:"blockHash"`
	BlockNumber hexutil.Uint64 `json:"blockNumber"`
	Status      hexutil.Uint64 `json:"status"`
}

// ethReceipt reads the receipt of transaction h; ok is false for null.
func ethReceipt(t testing.TB, c *client, h common.Hash) (r ethReceiptView, ok bool) {
	t.Helper()
	res := ethCall(t, c, "eth_getTransactionReceipt", h)
	if string(res) == "null" {
		return r, false
	}
	if err := json.Unmarshal(res, &r); err != nil {
		t.Fatalf("receipt of %s: %v (%s)", h, err, res)
	}
	return r, true
}

// ethBlockTxs reads the transaction hashes of the block whose hash is h;
// ok is false for null.
func ethBlockTxs(t testing.TB, c *client, h common.Hash) (txs []common.Hash, ok bool) {
	t.Helper()
	res := ethCall(t, c, "eth_getBlockByHash", h, false)
	if string(res) == "null" {
		return nil, false
	}
	var b struct {
		Hash         common.Hash   `json:"hash"`
		Transactions []common.Hash `json:"transactions"`
	}
	if err := json.Unmarshal(res, &b); err != nil {
		t.Fatalf("block %s: %v (%s)", h, err, res)
	}
	if b.Hash != h {
		t.Fatalf("eth_getBlockByHash(%s) answered block %s", h, b.Hash)
	}
	return b.Transactions, true
}
