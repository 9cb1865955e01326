package evm

import (
	"crypto/ecdsa"
	"math/big"
	"os"
	"strings"
	"testing"

	"github.com/cocoledger/coco/kv"
	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
)

// BenchmarkApplyTransfer executes signed ether transfers one block each in
// one kv transaction, as the builder does (sender recovery is cached in
// the transaction, as after the RPC handler checked it).
func BenchmarkApplyTransfer(b *testing.B) {
	key := testKey(b, 1)
	from := crypto.PubkeyToAddress(key.PublicKey)
	store := kv.NewStore()
	tx := store.Begin()
	if err := WriteGenesis(tx, Genesis{ChainID: testChainID, Alloc: types.GenesisAlloc{from: {Balance: big.NewInt(1e18)}}}); err != nil {
		b.Fatal(err)
	}
	exec := NewExecutor(testChainID)
	to := common.HexToAddress("0x1234")
	txs := make([]*types.Transaction, b.N)
	for i := range txs {
		t, err := types.SignNewTx(key, exec.Signer(), &types.DynamicFeeTx{ChainID: big.NewInt(testChainID), Nonce: uint64(i), To: &to, Value: big.NewInt(1), Gas: 21000, GasFeeCap: new(big.Int), GasTipCap: new(big.Int)})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := types.Sender(exec.Signer(), t); err != nil {
			b.Fatal(err)
		}
		txs[i] = t
	}
	s := NewStateDB(tx)
	b.ResetTimer()
	for i := range b.N {
		if _, err := exec.Apply(tx, s, txs[i], from, 1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRecoverSender is the signature check of eth_sendRawTransaction
// (secp256k1 public key recovery).
func BenchmarkRecoverSender(b *testing.B) {
	key := testKey(b, 1)
	exec := NewExecutor(testChainID)
	to := common.HexToAddress("0x1234")
	t, err := types.SignNewTx(key, exec.Signer(), &types.DynamicFeeTx{ChainID: big.NewInt(testChainID), To: &to, Gas: 21000, GasFeeCap: new(big.Int), GasTipCap: new(big.Int)})
	if err != nil {
		b.Fatal(err)
	}
	raw, _ := t.MarshalBinary()
	b.ResetTimer()
	for range b.N {
		var fresh types.Transaction
		if err := fresh.UnmarshalBinary(raw); err != nil {
			b.Fatal(err)
		}
		if _, err := types.Sender(exec.Signer(), &fresh); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBuildERC20Transfers is the builder's work for ERC-20 transfers
// (bench/token.bin, the token `coco bench erc20` deploys): 64 senders send
// transfers to each other, executed one block each in kv transactions of
// 1,000 that are then applied to the store as the consensus loop does.
// Sender recovery is cached in the transactions, as after the RPC handler
// checked them.
func BenchmarkBuildERC20Transfers(b *testing.B) {
	const senders, batch = 64, 1000
	code, err := os.ReadFile("../../bench/token.bin")
	if err != nil {
		b.Fatal(err)
	}
	tokABI, err := abi.JSON(strings.NewReader(`[{"type":"constructor","inputs":[{"name":"n","type":"string"},{"name":"s","type":"string"},{"name":"supply","type":"uint256"}]},{"type":"function","name":"transfer","inputs":[{"name":"to","type":"address"},{"name":"v","type":"uint256"}],"outputs":[{"type":"bool"}]}]`))
	if err != nil {
		b.Fatal(err)
	}
	exec := NewExecutor(testChainID)
	keys := make([]*ecdsa.PrivateKey, senders)
	addrs := make([]common.Address, senders)
	alloc := types.GenesisAlloc{}
	for i := range keys {
		keys[i] = testKey(b, byte(1+i))
		addrs[i] = crypto.PubkeyToAddress(keys[i].PublicKey)
		alloc[addrs[i]] = types.Account{Balance: new(big.Int)}
	}
	store := kv.NewStore()
	version := uint64(0)
	commit := func(tx *kv.Tx) {
		version++
		if err := store.Apply(version, tx.WriteSet()); err != nil {
			b.Fatal(err)
		}
		if err := store.MarkCommitted(version); err != nil {
			b.Fatal(err)
		}
	}
	sign := func(k int, nonce uint64, to *common.Address, gas uint64, data []byte) *types.Transaction {
		t, err := types.SignNewTx(keys[k], exec.Signer(), &types.DynamicFeeTx{ChainID: big.NewInt(testChainID), Nonce: nonce, To: to, Gas: gas, GasFeeCap: new(big.Int), GasTipCap: new(big.Int), Data: data})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := types.Sender(exec.Signer(), t); err != nil {
			b.Fatal(err)
		}
		return t
	}
	tx := store.Begin()
	if err := WriteGenesis(tx, Genesis{ChainID: testChainID, Alloc: alloc}); err != nil {
		b.Fatal(err)
	}
	// Sender 0 deploys the token and funds the others.
	args, _ := tokABI.Pack("", "Bench", "BNCH", big.NewInt(1e18))
	r, err := exec.Apply(tx, NewStateDB(tx), sign(0, 0, nil, 3_000_000, append(common.FromHex(strings.TrimSpace(string(code))), args...)), addrs[0], 1)
	if err != nil || r.Status != types.ReceiptStatusSuccessful || r.Contract == nil {
		b.Fatalf("deploy: %v %+v", err, r)
	}
	token := *r.Contract
	s := NewStateDB(tx)
	for i := 1; i < senders; i++ {
		data, _ := tokABI.Pack("transfer", addrs[i], big.NewInt(1e15))
		if _, err := exec.Apply(tx, s, sign(0, uint64(i), &token, 100_000, data), addrs[0], 1); err != nil {
			b.Fatal(err)
		}
	}
	commit(tx)
	nonces := make([]uint64, senders)
	nonces[0] = senders
	txs := make([]*types.Transaction, b.N)
	from := make([]common.Address, b.N)
	for i := range txs {
		k := i % senders
		data, _ := tokABI.Pack("transfer", addrs[(k+1+i/senders)%senders], big.NewInt(1))
		txs[i], from[i] = sign(k, nonces[k], &token, 100_000, data), addrs[k]
		nonces[k]++
	}
	b.ReportAllocs()
	b.ResetTimer()
	for start := 0; start < b.N; start += batch {
		tx := store.Begin()
		head, _, err := readHead(tx)
		if err != nil {
			b.Fatal(err)
		}
		s := NewStateDB(tx)
		for i := start; i < min(start+batch, b.N); i++ {
			r, err := exec.Apply(tx, s, txs[i], from[i], 1)
			if err != nil || r.Status != types.ReceiptStatusSuccessful {
				b.Fatalf("transfer %d: %v %+v", i, err, r)
			}
		}
		// As the builder does after each batch.
		if err := exec.Prune(tx, head.Number+1); err != nil {
			b.Fatal(err)
		}
		commit(tx)
	}
}
