package evm

import (
	"fmt"

	"github.com/cocoledger/coco/kv"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/state"
	"github.com/ethereum/go-ethereum/core/tracing"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/params"
)

// StateRoot loads every account, its code and its storage from tx into a
// go-ethereum state trie and returns the trie's root: the Ethereum state
// root of coco's state, for comparison with reference results (state
// tests). It reads the whole state, so it is for tests and tools, not for
// blocks.
func StateRoot(tx *kv.Tx) (common.Hash, error) {
	sdb, err := state.New(types.EmptyRootHash, state.NewDatabaseForTesting())
	if err != nil {
		return common.Hash{}, err
	}
	var ferr error
	tx.Range(AccountsMap, func(k string, v []byte) bool {
		nonce, balance, h, ok := decodeAccount(v)
		if len(k) != common.AddressLength || !ok {
			ferr = fmt.Errorf("evm: malformed account record %x", k)
			return false
		}
		addr := common.BytesToAddress([]byte(k))
		sdb.CreateAccount(addr)
		sdb.SetNonce(addr, nonce, tracing.NonceChangeUnspecified)
		sdb.SetBalance(addr, balance, tracing.BalanceChangeUnspecified)
		if h != types.EmptyCodeHash {
			code, ok := tx.Get(CodeMap, string(h[:]))
			if !ok {
				ferr = fmt.Errorf("evm: code %s of %s is missing", h, addr)
				return false
			}
			sdb.SetCode(addr, code, tracing.CodeChangeUnspecified)
		}
		return true
	})
	if ferr != nil {
		return common.Hash{}, ferr
	}
	tx.Range(StorageMap, func(k string, v []byte) bool {
		if len(k) != common.AddressLength+common.HashLength {
			ferr = fmt.Errorf("evm: malformed storage key %x", k)
			return false
		}
		addr := common.BytesToAddress([]byte(k[:common.AddressLength]))
		if !sdb.Exist(addr) {
			ferr = fmt.Errorf("evm: storage of %s, an account that does not exist", addr)
			return false
		}
		sdb.SetState(addr, common.BytesToHash([]byte(k[common.AddressLength:])), common.BytesToHash(v))
		return true
	})
	if ferr != nil {
		return common.Hash{}, ferr
	}
	return sdb.IntermediateRoot(params.Rules{IsEIP158: true}), nil
}
