package evm

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/cocoledger/coco/kv"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/state"
	"github.com/ethereum/go-ethereum/core/stateless"
	"github.com/ethereum/go-ethereum/core/tracing"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/core/types/bal"
	"github.com/ethereum/go-ethereum/core/vm"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/params"
	"github.com/holiman/uint256"
)

// The private maps that hold the EVM world state. Keys are raw bytes.
const (
	// AccountsMap: address (20 bytes) -> nonce (8, big-endian) | balance
	// (32) | code hash (32).
	AccountsMap = "eth.accounts"
	// StorageMap: address (20) | slot (32) -> value (32); zero values are
	// absent.
	StorageMap = "eth.storage"
	// CodeMap: code hash (32) -> code.
	CodeMap = "eth.code"
)

const accountLen = 8 + 32 + 32

// encodeAccount is an AccountsMap value.
func encodeAccount(nonce uint64, balance *uint256.Int, codeHash common.Hash) []byte {
	b := make([]byte, accountLen)
	binary.BigEndian.PutUint64(b[:8], nonce)
	balance.PutUint256(b[8:40])
	copy(b[40:], codeHash[:])
	return b
}

// decodeAccount reads an AccountsMap value; ok is false if it is malformed.
func decodeAccount(b []byte) (nonce uint64, balance *uint256.Int, codeHash common.Hash, ok bool) {
	if len(b) != accountLen {
		return 0, nil, common.Hash{}, false
	}
	return binary.BigEndian.Uint64(b[:8]), new(uint256.Int).SetBytes(b[8:40]), common.BytesToHash(b[40:]), true
}

// account is one account as the current transaction sees it.
type account struct {
	nonce    uint64
	balance  uint256.Int
	codeHash common.Hash
	code     []byte // loaded on demand; nil with codeLoaded false
	// codeLoaded: code holds the code of codeHash.
	codeLoaded bool
	codeDirty  bool

	// storage holds this transaction's writes; a slot it does not hold
	// has its value at the start of the transaction (origin, then kv).
	storage map[common.Hash]common.Hash
	origin  map[common.Hash]common.Hash // cache of values at the start of the transaction
	// fresh: created in this transaction, so its storage starts empty.
	fresh bool
	// wipe: created over an account kv holds, whose stored slots Finalise
	// must delete.
	wipe           bool
	selfDestructed bool
	newContract    bool
}

func (a *account) empty() bool {
	return a.nonce == 0 && a.balance.IsZero() && (a.codeHash == types.EmptyCodeHash || a.codeHash == common.Hash{})
}

// StateDB is go-ethereum's vm.StateDB over a coco kv transaction. Changes
// stay in memory, journalled for Snapshot/RevertToSnapshot, until Finalise
// writes the transaction's surviving changes to the kv transaction, so
// several Ethereum transactions can run one after another in one kv
// transaction. A StateDB over a read-only kv transaction serves calls that
// are never finalised (eth_call). Errors from kv (a write to a read-only
// transaction) are kept and returned by Err.
type StateDB struct {
	tx *kv.Tx

	accounts map[common.Address]*account // nil value: known not to exist
	// dirty counts, per address, the journal entries that changed it;
	// Finalise writes (or deletes) those with a positive count.
	dirty map[common.Address]int

	journal   []journalEntry
	revisions []revision
	nextRevID int

	refund     uint64
	logs       []*types.Log
	thash      common.Hash
	txIndex    int
	accessList accessList
	transient  map[common.Address]map[common.Hash]common.Hash

	err error
}

// journalEntry undoes one change; addr is the account it touched, if any.
type journalEntry struct {
	addr *common.Address
	undo func()
}

type revision struct{ id, index int }

var _ vm.StateDB = (*StateDB)(nil)

// NewStateDB returns a StateDB over tx.
func NewStateDB(tx *kv.Tx) *StateDB {
	return &StateDB{
		tx:        tx,
		accounts:  map[common.Address]*account{},
		dirty:     map[common.Address]int{},
		transient: map[common.Address]map[common.Hash]common.Hash{},
	}
}

// Err returns the first kv error the StateDB met, if any.
func (s *StateDB) Err() error { return s.err }

func (s *StateDB) setErr(err error) {
	if s.err == nil {
		s.err = err
	}
}

func (s *StateDB) record(addr *common.Address, undo func()) {
	s.journal = append(s.journal, journalEntry{addr: addr, undo: undo})
	if addr != nil {
		s.dirty[*addr]++
	}
}

// load returns addr's account, or nil if it does not exist.
func (s *StateDB) load(addr common.Address) *account {
	if a, ok := s.accounts[addr]; ok {
		return a
	}
	var a *account
	if b, ok := s.tx.Get(AccountsMap, string(addr[:])); ok {
		if nonce, balance, codeHash, ok := decodeAccount(b); !ok {
			s.setErr(fmt.Errorf("evm: account %s: stored record has %d bytes, want %d", addr, len(b), accountLen))
		} else {
			a = &account{nonce: nonce, balance: *balance, codeHash: codeHash}
		}
	}
	s.accounts[addr] = a
	return a
}

// loadOrCreate returns addr's account, creating it (journalled) if absent.
func (s *StateDB) loadOrCreate(addr common.Address) *account {
	if a := s.load(addr); a != nil {
		return a
	}
	return s.create(addr)
}

// create replaces whatever addr holds with a new empty account.
func (s *StateDB) create(addr common.Address) *account {
	prev := s.load(addr)
	a := &account{codeHash: types.EmptyCodeHash, fresh: true, codeLoaded: true, wipe: prev != nil}
	s.accounts[addr] = a
	s.record(&addr, func() { s.accounts[addr] = prev })
	return a
}

// CreateAccount implements vm.StateDB.
func (s *StateDB) CreateAccount(addr common.Address) { s.create(addr) }

// CreateContract implements vm.StateDB.
func (s *StateDB) CreateContract(addr common.Address) {
	a := s.load(addr)
	if a == nil || a.newContract {
		return
	}
	a.newContract = true
	s.record(&addr, func() { a.newContract = false })
}

// SubBalance implements vm.StateDB.
func (s *StateDB) SubBalance(addr common.Address, amount *uint256.Int, _ tracing.BalanceChangeReason) uint256.Int {
	a := s.loadOrCreate(addr)
	prev := a.balance
	if amount.IsZero() {
		return prev
	}
	s.setBalance(addr, a, new(uint256.Int).Sub(&prev, amount))
	return prev
}

// AddBalance implements vm.StateDB.
func (s *StateDB) AddBalance(addr common.Address, amount *uint256.Int, _ tracing.BalanceChangeReason) uint256.Int {
	a := s.loadOrCreate(addr)
	prev := a.balance
	if amount.IsZero() {
		// EIP-161: touching an empty account makes it a candidate for
		// removal at the end of the transaction.
		if a.empty() {
			s.record(&addr, func() {})
		}
		return prev
	}
	s.setBalance(addr, a, new(uint256.Int).Add(&prev, amount))
	return prev
}

func (s *StateDB) setBalance(addr common.Address, a *account, v *uint256.Int) {
	prev := a.balance
	a.balance = *v
	s.record(&addr, func() { a.balance = prev })
}

// GetBalance implements vm.StateDB.
func (s *StateDB) GetBalance(addr common.Address) *uint256.Int {
	if a := s.load(addr); a != nil {
		return new(uint256.Int).Set(&a.balance)
	}
	return new(uint256.Int)
}

// GetNonce implements vm.StateDB.
func (s *StateDB) GetNonce(addr common.Address) uint64 {
	if a := s.load(addr); a != nil {
		return a.nonce
	}
	return 0
}

// SetNonce implements vm.StateDB.
func (s *StateDB) SetNonce(addr common.Address, nonce uint64, _ tracing.NonceChangeReason) {
	a := s.loadOrCreate(addr)
	prev := a.nonce
	a.nonce = nonce
	s.record(&addr, func() { a.nonce = prev })
}

// GetCodeHash implements vm.StateDB.
func (s *StateDB) GetCodeHash(addr common.Address) common.Hash {
	if a := s.load(addr); a != nil {
		return a.codeHash
	}
	return common.Hash{}
}

func (s *StateDB) code(a *account) []byte {
	if !a.codeLoaded {
		a.codeLoaded = true
		if a.codeHash != types.EmptyCodeHash && a.codeHash != (common.Hash{}) {
			c, ok := s.tx.Get(CodeMap, string(a.codeHash[:]))
			if !ok {
				s.setErr(fmt.Errorf("evm: code %s is missing", a.codeHash))
			}
			a.code = c
		}
	}
	return a.code
}

// GetCode implements vm.StateDB.
func (s *StateDB) GetCode(addr common.Address) []byte {
	if a := s.load(addr); a != nil {
		return s.code(a)
	}
	return nil
}

// GetCodeSize implements vm.StateDB.
func (s *StateDB) GetCodeSize(addr common.Address) int { return len(s.GetCode(addr)) }

// SetCode implements vm.StateDB.
func (s *StateDB) SetCode(addr common.Address, code []byte, _ tracing.CodeChangeReason) []byte {
	a := s.loadOrCreate(addr)
	prevCode, prevHash, prevLoaded, prevDirty := s.code(a), a.codeHash, a.codeLoaded, a.codeDirty
	a.code, a.codeHash, a.codeLoaded, a.codeDirty = code, crypto.Keccak256Hash(code), true, true
	s.record(&addr, func() { a.code, a.codeHash, a.codeLoaded, a.codeDirty = prevCode, prevHash, prevLoaded, prevDirty })
	return prevCode
}

// AddRefund implements vm.StateDB.
func (s *StateDB) AddRefund(gas uint64) {
	prev := s.refund
	s.refund += gas
	s.record(nil, func() { s.refund = prev })
}

// SubRefund implements vm.StateDB. A refund below zero is an EVM bug; it
// is kept as the StateDB's error rather than a panic.
func (s *StateDB) SubRefund(gas uint64) {
	prev := s.refund
	if gas > s.refund {
		s.setErr(fmt.Errorf("evm: refund counter below zero (gas %d > refund %d)", gas, s.refund))
		gas = s.refund
	}
	s.refund -= gas
	s.record(nil, func() { s.refund = prev })
}

// GetRefund implements vm.StateDB.
func (s *StateDB) GetRefund() uint64 { return s.refund }

func storageKey(addr common.Address, slot common.Hash) string {
	var k [common.AddressLength + common.HashLength]byte
	copy(k[:], addr[:])
	copy(k[common.AddressLength:], slot[:])
	return string(k[:])
}

// originState is slot's value at the start of the transaction.
func (s *StateDB) originState(addr common.Address, a *account, slot common.Hash) common.Hash {
	if a.fresh {
		return common.Hash{}
	}
	if v, ok := a.origin[slot]; ok {
		return v
	}
	var v common.Hash
	if b, ok := s.tx.Get(StorageMap, storageKey(addr, slot)); ok {
		v = common.BytesToHash(b)
	}
	if a.origin == nil {
		a.origin = map[common.Hash]common.Hash{}
	}
	a.origin[slot] = v
	return v
}

// GetStateAndCommittedState implements vm.StateDB: the slot's current
// value and its value at the start of the transaction.
func (s *StateDB) GetStateAndCommittedState(addr common.Address, slot common.Hash) (common.Hash, common.Hash) {
	a := s.load(addr)
	if a == nil {
		return common.Hash{}, common.Hash{}
	}
	origin := s.originState(addr, a, slot)
	if v, ok := a.storage[slot]; ok {
		return v, origin
	}
	return origin, origin
}

// GetState implements vm.StateDB.
func (s *StateDB) GetState(addr common.Address, slot common.Hash) common.Hash {
	v, _ := s.GetStateAndCommittedState(addr, slot)
	return v
}

// SetState implements vm.StateDB.
func (s *StateDB) SetState(addr common.Address, slot, value common.Hash) common.Hash {
	a := s.loadOrCreate(addr)
	prev := s.GetState(addr, slot)
	if prev == value {
		return prev
	}
	old, had := a.storage[slot]
	if a.storage == nil {
		a.storage = map[common.Hash]common.Hash{}
	}
	a.storage[slot] = value
	s.record(&addr, func() {
		if had {
			a.storage[slot] = old
		} else {
			delete(a.storage, slot)
		}
	})
	return prev
}

// GetTransientState implements vm.StateDB.
func (s *StateDB) GetTransientState(addr common.Address, key common.Hash) common.Hash {
	return s.transient[addr][key]
}

// SetTransientState implements vm.StateDB.
func (s *StateDB) SetTransientState(addr common.Address, key, value common.Hash) {
	prev := s.GetTransientState(addr, key)
	if prev == value {
		return
	}
	s.setTransient(addr, key, value)
	s.record(nil, func() { s.setTransient(addr, key, prev) })
}

func (s *StateDB) setTransient(addr common.Address, key, value common.Hash) {
	if s.transient == nil {
		s.transient = map[common.Address]map[common.Hash]common.Hash{}
	}
	m := s.transient[addr]
	if m == nil {
		m = map[common.Hash]common.Hash{}
		s.transient[addr] = m
	}
	if value == (common.Hash{}) {
		delete(m, key)
	} else {
		m[key] = value
	}
}

// SelfDestruct implements vm.StateDB: the account is deleted by Finalise.
func (s *StateDB) SelfDestruct(addr common.Address) {
	a := s.load(addr)
	if a == nil || a.selfDestructed {
		return
	}
	a.selfDestructed = true
	s.record(&addr, func() { a.selfDestructed = false })
}

// HasSelfDestructed implements vm.StateDB.
func (s *StateDB) HasSelfDestructed(addr common.Address) bool {
	a := s.load(addr)
	return a != nil && a.selfDestructed
}

// Exist implements vm.StateDB.
func (s *StateDB) Exist(addr common.Address) bool { return s.load(addr) != nil }

// Touch implements vm.StateDB.
func (s *StateDB) Touch(addr common.Address) { s.load(addr) }

// IsNewContract implements vm.StateDB.
func (s *StateDB) IsNewContract(addr common.Address) bool {
	a := s.load(addr)
	return a != nil && a.newContract
}

// Empty implements vm.StateDB.
func (s *StateDB) Empty(addr common.Address) bool {
	a := s.load(addr)
	return a == nil || a.empty()
}

// AddressInAccessList implements vm.StateDB.
func (s *StateDB) AddressInAccessList(addr common.Address) bool {
	_, ok := s.accessList.addresses[addr]
	return ok
}

// SlotInAccessList implements vm.StateDB.
func (s *StateDB) SlotInAccessList(addr common.Address, slot common.Hash) (bool, bool) {
	slots, ok := s.accessList.addresses[addr]
	if !ok {
		return false, false
	}
	_, slotOK := slots[slot]
	return true, slotOK
}

// AddAddressToAccessList implements vm.StateDB.
func (s *StateDB) AddAddressToAccessList(addr common.Address) {
	if s.accessList.addAddress(addr) {
		s.record(nil, func() { delete(s.accessList.addresses, addr) })
	}
}

// AddSlotToAccessList implements vm.StateDB.
func (s *StateDB) AddSlotToAccessList(addr common.Address, slot common.Hash) {
	if s.accessList.addAddress(addr) {
		s.record(nil, func() { delete(s.accessList.addresses, addr) })
	}
	slots := s.accessList.addresses[addr]
	if _, ok := slots[slot]; ok {
		return
	}
	if slots == nil {
		slots = map[common.Hash]struct{}{}
		s.accessList.addresses[addr] = slots
	}
	slots[slot] = struct{}{}
	s.record(nil, func() { delete(s.accessList.addresses[addr], slot) })
}

// accessList is EIP-2929's set of warm addresses and slots.
type accessList struct {
	addresses map[common.Address]map[common.Hash]struct{}
}

// reset empties the list. It keeps the address map for the next
// transaction, which warms some twenty addresses again (its sender and
// destination, and the precompiles), unless one transaction made it big.
func (al *accessList) reset() {
	if len(al.addresses) > 64 {
		al.addresses = nil
	} else {
		clear(al.addresses)
	}
}

func (al *accessList) addAddress(addr common.Address) bool {
	if al.addresses == nil {
		al.addresses = map[common.Address]map[common.Hash]struct{}{}
	}
	if _, ok := al.addresses[addr]; ok {
		return false
	}
	al.addresses[addr] = nil
	return true
}

// Prepare implements vm.StateDB: it resets the access list (warming the
// sender, destination, precompiles, the transaction's access list and,
// from Shanghai, the coinbase) and transient storage.
func (s *StateDB) Prepare(rules params.Rules, sender, coinbase common.Address, dst *common.Address, precompiles []common.Address, list types.AccessList) {
	if rules.IsEIP2929 {
		s.accessList.reset()
		s.accessList.addAddress(sender)
		if dst != nil {
			s.accessList.addAddress(*dst)
		}
		for _, p := range precompiles {
			s.accessList.addAddress(p)
		}
		for _, el := range list {
			s.accessList.addAddress(el.Address)
			for _, k := range el.StorageKeys {
				slots := s.accessList.addresses[el.Address]
				if slots == nil {
					slots = map[common.Hash]struct{}{}
					s.accessList.addresses[el.Address] = slots
				}
				slots[k] = struct{}{}
			}
		}
		if rules.IsShanghai {
			s.accessList.addAddress(coinbase)
		}
	}
	s.transient = nil // made by the first SetTransientState
}

// RevertToSnapshot implements vm.StateDB.
func (s *StateDB) RevertToSnapshot(id int) {
	i := len(s.revisions) - 1
	for i >= 0 && s.revisions[i].id != id {
		i--
	}
	if i < 0 {
		s.setErr(fmt.Errorf("evm: revert to unknown snapshot %d", id))
		return
	}
	for j := len(s.journal) - 1; j >= s.revisions[i].index; j-- {
		e := s.journal[j]
		e.undo()
		if e.addr != nil {
			if s.dirty[*e.addr]--; s.dirty[*e.addr] == 0 {
				delete(s.dirty, *e.addr)
			}
		}
	}
	s.journal = s.journal[:s.revisions[i].index]
	s.revisions = s.revisions[:i]
}

// Snapshot implements vm.StateDB.
func (s *StateDB) Snapshot() int {
	id := s.nextRevID
	s.nextRevID++
	s.revisions = append(s.revisions, revision{id: id, index: len(s.journal)})
	return id
}

// AddLog implements vm.StateDB.
func (s *StateDB) AddLog(l *types.Log) {
	l.TxHash = s.thash
	l.TxIndex = uint(s.txIndex)
	l.Index = uint(len(s.logs))
	s.logs = append(s.logs, l)
	s.record(nil, func() { s.logs = s.logs[:len(s.logs)-1] })
}

// Logs returns the logs of the current transaction.
func (s *StateDB) Logs() []*types.Log { return s.logs }

// AddPreimage implements vm.StateDB; coco keeps no preimages.
func (s *StateDB) AddPreimage(common.Hash, []byte) {}

// Witness implements vm.StateDB; coco builds no stateless witness.
func (s *StateDB) Witness() *stateless.Witness { return nil }

// AccessEvents implements vm.StateDB; they are a Verkle (EIP-4762)
// feature, which coco's fork does not enable.
func (s *StateDB) AccessEvents() *state.AccessEvents { return nil }

// SetTxContext implements vm.StateDB: it starts a new transaction's logs.
func (s *StateDB) SetTxContext(thash common.Hash, ti int, _ uint32) {
	s.thash, s.txIndex = thash, ti
	s.logs = nil
}

// Finalise implements vm.StateDB: it writes the transaction's changes to
// the kv transaction, deleting self-destructed accounts and (EIP-158)
// touched empty ones with their storage, and clears the journal, refund
// and access list for the next transaction.
func (s *StateDB) Finalise(rules params.Rules) *bal.ConstructionBlockAccessList {
	for addr := range s.dirty {
		a := s.accounts[addr]
		switch {
		case a == nil:
			// Created and reverted: nothing to write.
		case a.selfDestructed || (rules.IsEIP158 && a.empty()):
			s.deleteAccount(addr)
			s.accounts[addr] = nil
		default:
			s.writeAccount(addr, a)
		}
	}
	clear(s.dirty)
	s.journal = s.journal[:0]
	s.revisions = s.revisions[:0]
	s.refund = 0
	s.accessList.reset()
	return nil
}

func (s *StateDB) put(mapName, key string, value []byte) {
	if err := s.tx.Put(mapName, key, value); err != nil {
		s.setErr(err)
	}
}

func (s *StateDB) del(mapName, key string) {
	if err := s.tx.Delete(mapName, key); err != nil {
		s.setErr(err)
	}
}

func (s *StateDB) writeAccount(addr common.Address, a *account) {
	if a.wipe {
		// A new account over a stored one: the stored slots belong to
		// the one it replaced.
		s.deleteStorage(addr)
	}
	s.put(AccountsMap, string(addr[:]), encodeAccount(a.nonce, &a.balance, a.codeHash))
	if a.codeDirty && len(a.code) > 0 {
		s.put(CodeMap, string(a.codeHash[:]), a.code)
	}
	for slot, v := range a.storage {
		if v == (common.Hash{}) {
			s.del(StorageMap, storageKey(addr, slot))
		} else {
			s.put(StorageMap, storageKey(addr, slot), v[:])
		}
		if a.origin == nil {
			a.origin = map[common.Hash]common.Hash{}
		}
		a.origin[slot] = v
	}
	a.storage = nil
	a.fresh, a.wipe, a.selfDestructed, a.newContract, a.codeDirty = false, false, false, false, false
}

// deleteAccount removes addr and its stored slots. An account kv does not
// hold has no stored slots: they are deleted with the account.
func (s *StateDB) deleteAccount(addr common.Address) {
	if _, ok := s.tx.Get(AccountsMap, string(addr[:])); ok {
		s.del(AccountsMap, string(addr[:]))
		s.deleteStorage(addr)
	}
}

// deleteStorage removes every stored slot of addr.
func (s *StateDB) deleteStorage(addr common.Address) {
	prefix := string(addr[:])
	var keys []string
	s.tx.RangeFrom(StorageMap, prefix, func(k string, _ []byte) bool {
		if !strings.HasPrefix(k, prefix) {
			return false
		}
		keys = append(keys, k)
		return true
	})
	for _, k := range keys {
		s.del(StorageMap, k)
	}
}
