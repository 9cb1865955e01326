package evm

import (
	"math/big"
	"testing"

	"github.com/cocoledger/coco/kv"
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
