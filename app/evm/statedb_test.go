package evm

import (
	"bytes"
	"crypto/ecdsa"
	"errors"
	"math/big"
	"testing"

	"github.com/cocoledger/coco/kv"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core"
	"github.com/ethereum/go-ethereum/core/state"
	"github.com/ethereum/go-ethereum/core/tracing"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/core/vm"
	"github.com/ethereum/go-ethereum/core/vm/program"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/params"
	"github.com/holiman/uint256"
)

const testChainID = 1337

func testKey(t testing.TB, seed byte) *ecdsa.PrivateKey {
	t.Helper()
	k, err := crypto.ToECDSA(bytes.Repeat([]byte{seed}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Fixed addresses of the test contracts.
var (
	addrStore    = common.HexToAddress("0x00000000000000000000000000000000000000aa")
	addrReverter = common.HexToAddress("0x00000000000000000000000000000000000000bb")
	addrCaller   = common.HexToAddress("0x00000000000000000000000000000000000000cc")
	addrFactory  = common.HexToAddress("0x00000000000000000000000000000000000000dd")
	addrHasher   = common.HexToAddress("0x00000000000000000000000000000000000000ee")
	addrOldSD    = common.HexToAddress("0x00000000000000000000000000000000000000ff")
)

// testContracts are the contracts both StateDBs start with, and the slots
// they start with.
func testContracts() []struct {
	addr    common.Address
	code    []byte
	storage map[common.Hash]common.Hash
	balance uint64
} {
	// Stores CALLVALUE+1 in slot 0 and CALLER in slot 1, clears slot 2
	// (a refund), logs CALLER as an indexed topic, sets transient slot 0.
	store := program.New().
		Op(vm.CALLVALUE).Push(1).Op(vm.ADD).Push(0).Op(vm.SSTORE).
		Op(vm.CALLER).Push(1).Op(vm.SSTORE).
		Sstore(2, 0).
		Mstore([]byte("hello"), 0).
		Op(vm.CALLER).Push(0xfeed).Push(5).Push(0).Op(vm.LOG2).
		Tstore(0, 7).
		Op(vm.STOP).Bytes()
	// Writes slot 0, logs, then reverts with "nope".
	reverter := program.New().
		Sstore(0, 1).
		Push(0).Push(0).Op(vm.LOG0).
		Mstore([]byte("nope"), 0).Push(4).Push(0).Op(vm.REVERT).Bytes()
	// Calls the reverter (its failure ignored), writes slot 3, round-trips
	// transient storage into slot 4, stores CLZ(1) (Osaka) in slot 5 and
	// the transient slot the previous transaction set (0 by now) in slot 6.
	caller := program.New().
		Call(nil, addrReverter, 0, 0, 0, 0, 0).Op(vm.POP).
		Sstore(3, 1).
		Tstore(1, 9).Push(1).Op(vm.TLOAD).Push(4).Op(vm.SSTORE).
		Push(1).Op(vm.CLZ).Push(5).Op(vm.SSTORE).
		Push(0).Op(vm.TLOAD).Push(6).Op(vm.SSTORE).
		Op(vm.STOP).Bytes()
	// Creates a child with CREATE2 and calls it; the child self-destructs
	// in the transaction that created it (EIP-6780: it is deleted).
	child := program.New().Op(vm.ADDRESS).Op(vm.SELFDESTRUCT).Bytes()
	factory := program.New().Create2ThenCall(program.New().ReturnData(child).Bytes(), 1).Op(vm.STOP).Bytes()
	// Hashes 32 bytes with the SHA-256 precompile and stores the digest;
	// calls P256VERIFY with a bad input and stores its return size.
	hasher := program.New().
		Mstore(bytes.Repeat([]byte{7}, 32), 0).
		StaticCall(nil, common.BytesToAddress([]byte{2}), 0, 32, 32, 32).Op(vm.POP).
		Push(32).Op(vm.MLOAD).Push(0).Op(vm.SSTORE).
		StaticCall(nil, common.BytesToAddress([]byte{1, 0}), 0, 160, 0, 32).Op(vm.POP).
		Op(vm.RETURNDATASIZE).Push(1).Op(vm.SSTORE).
		Op(vm.STOP).Bytes()
	// An old contract that self-destructs: after Cancun it only sends its
	// balance away and stays.
	oldSD := program.New().Push(addrStore.Bytes()).Op(vm.SELFDESTRUCT).Bytes()
	return []struct {
		addr    common.Address
		code    []byte
		storage map[common.Hash]common.Hash
		balance uint64
	}{
		{addrStore, store, map[common.Hash]common.Hash{{31: 2}: {31: 5}}, 0},
		{addrReverter, reverter, nil, 0},
		{addrCaller, caller, nil, 0},
		{addrFactory, factory, nil, 0},
		{addrHasher, hasher, nil, 0},
		{addrOldSD, oldSD, map[common.Hash]common.Hash{{1}: {1}}, 1000},
	}
}

// setUp gives db the test world: two funded senders and the contracts.
func setUp(db vm.StateDB, senders []common.Address, rules params.Rules) {
	for _, s := range senders {
		db.CreateAccount(s)
		db.AddBalance(s, uint256.NewInt(1e18), tracing.BalanceChangeUnspecified)
	}
	for _, c := range testContracts() {
		db.CreateAccount(c.addr)
		db.SetNonce(c.addr, 1, tracing.NonceChangeUnspecified)
		db.SetCode(c.addr, c.code, tracing.CodeChangeUnspecified)
		db.AddBalance(c.addr, uint256.NewInt(c.balance), tracing.BalanceChangeUnspecified)
		for k, v := range c.storage {
			db.SetState(c.addr, k, v)
		}
	}
	db.Finalise(rules)
}

type txSpec struct {
	name    string
	key     int     // index into the senders
	nonce   *uint64 // nil: the sender's next nonce
	to      *common.Address
	value   int64
	gas     uint64
	data    []byte
	access  types.AccessList
	legacy  bool
	wantErr error // an invalid transaction: ApplyMessage's error
	failed  bool  // a transaction that is included but fails
}

func ptr(a common.Address) *common.Address { return &a }

func u64(n uint64) *uint64 { return &n }

// TestStateDBMatchesGeth runs the same transactions through coco's
// StateDB over kv and go-ethereum's own StateDB, and compares each
// outcome (error, gas used, return data, logs) and, after each, the state
// root.
func TestStateDBMatchesGeth(t *testing.T) {
	keys := []*ecdsa.PrivateKey{testKey(t, 1), testKey(t, 2)}
	senders := []common.Address{crypto.PubkeyToAddress(keys[0].PublicKey), crypto.PubkeyToAddress(keys[1].PublicKey)}
	cfg := ChainConfig(testChainID)
	signer := types.LatestSignerForChainID(cfg.ChainID)
	rules := cfg.Rules(big.NewInt(1), true, 1)

	gdb, err := state.New(types.EmptyRootHash, state.NewDatabaseForTesting())
	if err != nil {
		t.Fatal(err)
	}
	store := kv.NewStore()
	ktx := store.Begin()
	cdb := NewStateDB(ktx)
	setUp(gdb, senders, rules)
	setUp(cdb, senders, rules)
	compareRoots(t, "set-up", gdb, ktx, rules)

	deploy := program.New().Sstore(0, 42).ReturnData(testContracts()[2].code).Bytes()
	fresh := common.HexToAddress("0x1234000000000000000000000000000000005678")
	specs := []txSpec{
		{name: "transfer to a new account", to: ptr(fresh), value: 1000, gas: 21000},
		{name: "zero-value call to a missing account", to: ptr(common.HexToAddress("0x99")), gas: 21000},
		{name: "storage, refund, log and transient", to: ptr(addrStore), value: 3, gas: 200000},
		{name: "revert with data", to: ptr(addrReverter), gas: 100000, failed: true},
		{name: "inner revert, outer succeeds", to: ptr(addrCaller), gas: 300000},
		{name: "CREATE2 and self-destruct in one transaction", to: ptr(addrFactory), gas: 300000},
		{name: "precompiles", to: ptr(addrHasher), gas: 300000},
		{name: "old contract self-destructs", to: ptr(addrOldSD), gas: 100000},
		{name: "deploy", gas: 500000, data: deploy},
		{name: "out of gas", to: ptr(addrStore), gas: 25000, failed: true},
		{name: "access list", to: ptr(addrStore), gas: 200000, access: types.AccessList{{Address: addrStore, StorageKeys: []common.Hash{{0}, {1}}}}},
		{name: "legacy transaction", key: 1, to: ptr(addrCaller), gas: 300000, legacy: true},
		{name: "nonce too high", key: 1, nonce: u64(7), to: ptr(fresh), gas: 21000, wantErr: core.ErrNonceTooHigh},
		{name: "nonce too low", key: 1, nonce: u64(0), to: ptr(fresh), gas: 21000, wantErr: core.ErrNonceTooLow},
		{name: "insufficient funds", key: 1, to: ptr(fresh), value: 2e18, gas: 21000, wantErr: core.ErrInsufficientFunds},
		{name: "intrinsic gas too low", to: ptr(fresh), gas: 20000, wantErr: core.ErrIntrinsicGas},
		{name: "gas limit above the Osaka cap", to: ptr(fresh), gas: params.MaxTxGas + 1, wantErr: core.ErrGasLimitTooHigh},
	}
	nonces := map[common.Address]uint64{}
	for i, sp := range specs {
		from := senders[sp.key]
		nonce := nonces[from]
		if sp.nonce != nil {
			nonce = *sp.nonce
		}
		var inner types.TxData
		if sp.legacy {
			inner = &types.LegacyTx{Nonce: nonce, To: sp.to, Value: big.NewInt(sp.value), Gas: sp.gas, GasPrice: new(big.Int), Data: sp.data}
		} else {
			inner = &types.DynamicFeeTx{ChainID: cfg.ChainID, Nonce: nonce, To: sp.to, Value: big.NewInt(sp.value), Gas: sp.gas, GasFeeCap: new(big.Int), GasTipCap: new(big.Int), Data: sp.data, AccessList: sp.access}
		}
		tx, err := types.SignNewTx(keys[sp.key], signer, inner)
		if err != nil {
			t.Fatal(err)
		}
		msg, err := core.TransactionToMessage(tx, signer, common.Big0)
		if err != nil {
			t.Fatal(err)
		}
		gres, gerr := applyTo(gdb, tx, i, msg, cfg)
		cres, cerr := applyTo(cdb, tx, i, msg, cfg)
		if !errors.Is(gerr, sp.wantErr) || !errors.Is(cerr, sp.wantErr) || (sp.wantErr == nil && (gerr != nil || cerr != nil)) {
			t.Fatalf("%s: errors: geth %v, coco %v, want %v", sp.name, gerr, cerr, sp.wantErr)
		}
		if gerr == nil {
			nonces[from]++
			if gres.UsedGas != cres.UsedGas || gres.Failed() != cres.Failed() || !bytes.Equal(gres.ReturnData, cres.ReturnData) || !errors.Is(cres.Err, gres.Err) {
				t.Fatalf("%s: geth gas %d failed %v ret %x err %v; coco gas %d failed %v ret %x err %v", sp.name,
					gres.UsedGas, gres.Failed(), gres.ReturnData, gres.Err, cres.UsedGas, cres.Failed(), cres.ReturnData, cres.Err)
			}
			if gres.Failed() != sp.failed {
				t.Errorf("%s: failed = %v, want %v (%v)", sp.name, gres.Failed(), sp.failed, gres.Err)
			}
			glogs, clogs := gdb.GetLogs(tx.Hash(), 0, common.Hash{}, 0), cdb.Logs()
			if len(glogs) != len(clogs) {
				t.Fatalf("%s: geth %d logs, coco %d", sp.name, len(glogs), len(clogs))
			}
			// Log indexes differ on purpose: geth counts them across the
			// block, and each coco block holds one transaction.
			for j := range glogs {
				g, c := glogs[j], clogs[j]
				if g.Address != c.Address || !bytes.Equal(g.Data, c.Data) || len(g.Topics) != len(c.Topics) || g.TxHash != c.TxHash {
					t.Fatalf("%s: log %d: geth %+v, coco %+v", sp.name, j, g, c)
				}
			}
			gdb.Finalise(rules)
			cdb.Finalise(rules)
		}
		if err := cdb.Err(); err != nil {
			t.Fatalf("%s: coco StateDB error: %v", sp.name, err)
		}
		compareRoots(t, sp.name, gdb, ktx, rules)
	}
	// Spot checks that the transactions did what they were written for.
	for _, c := range []struct {
		name string
		got  common.Hash
		want common.Hash
	}{
		{"slot 0 = value+1 (the last call sent 0)", cdb.GetState(addrStore, common.Hash{}), common.Hash{31: 1}},
		{"slot 1 = caller", cdb.GetState(addrStore, common.Hash{31: 1}), common.BytesToHash(senders[0].Bytes())},
		{"slot 2 cleared", cdb.GetState(addrStore, common.Hash{31: 2}), common.Hash{}},
		{"reverted write undone", cdb.GetState(addrReverter, common.Hash{0}), common.Hash{}},
		{"transient round trip", cdb.GetState(addrCaller, common.Hash{31: 4}), common.Hash{31: 9}},
		{"CLZ(1)", cdb.GetState(addrCaller, common.Hash{31: 5}), common.Hash{31: 255}},
		{"transient cleared between transactions", cdb.GetState(addrCaller, common.Hash{31: 6}), common.Hash{}},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %x, want %x", c.name, c.got, c.want)
		}
	}
	if cdb.Exist(common.HexToAddress("0x99")) {
		t.Error("a zero-value call created an empty account (EIP-158)")
	}
	if !cdb.Exist(addrOldSD) || cdb.GetBalance(addrOldSD).Sign() != 0 {
		t.Errorf("old self-destructed contract: exists %v balance %v, want kept with 0", cdb.Exist(addrOldSD), cdb.GetBalance(addrOldSD))
	}
}

func applyTo(db vm.StateDB, tx *types.Transaction, i int, msg *core.Message, cfg *params.ChainConfig) (*core.ExecutionResult, error) {
	ctx := vm.BlockContext{
		CanTransfer: core.CanTransfer, Transfer: core.Transfer,
		GetHash:  func(uint64) common.Hash { return common.Hash{} },
		GasLimit: DefaultGasLimit, BlockNumber: big.NewInt(1), Time: 1,
		Difficulty: new(big.Int), BaseFee: new(big.Int), BlobBaseFee: new(big.Int), Random: &common.Hash{},
	}
	db.SetTxContext(tx.Hash(), i, 0)
	snap := db.Snapshot()
	res, err := core.ApplyMessage(vm.NewEVM(ctx, db, cfg, vm.Config{}), msg, core.NewGasPool(DefaultGasLimit))
	if err != nil {
		db.RevertToSnapshot(snap)
	}
	return res, err
}

func compareRoots(t *testing.T, step string, gdb *state.StateDB, ktx *kv.Tx, rules params.Rules) {
	t.Helper()
	want := gdb.IntermediateRoot(rules)
	got, err := StateRoot(ktx)
	if err != nil {
		t.Fatalf("%s: %v", step, err)
	}
	if got != want {
		t.Fatalf("%s: state root: coco %s, geth %s", step, got, want)
	}
}
