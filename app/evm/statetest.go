package evm

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"

	"github.com/cocoledger/coco/kv"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/common/math"
	"github.com/ethereum/go-ethereum/consensus/misc/eip4844"
	"github.com/ethereum/go-ethereum/core"
	"github.com/ethereum/go-ethereum/core/tracing"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/core/vm"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/params"
	"github.com/ethereum/go-ethereum/rlp"
	"github.com/holiman/uint256"
)

// StateTest is one test of Ethereum's GeneralStateTests format: a
// pre-state, an environment, a transaction template, and the expected
// post-state root and logs hash per fork and per choice of data, gas limit
// and value.
type StateTest struct {
	Env  stEnv               `json:"env"`
	Pre  types.GenesisAlloc  `json:"pre"`
	Tx   stTransaction       `json:"transaction"`
	Post map[string][]stPost `json:"post"`
}

type stEnv struct {
	Coinbase      common.Address        `json:"currentCoinbase"`
	Difficulty    *math.HexOrDecimal256 `json:"currentDifficulty"`
	Random        *math.HexOrDecimal256 `json:"currentRandom"`
	GasLimit      math.HexOrDecimal64   `json:"currentGasLimit"`
	Number        math.HexOrDecimal64   `json:"currentNumber"`
	Timestamp     math.HexOrDecimal64   `json:"currentTimestamp"`
	BaseFee       *math.HexOrDecimal256 `json:"currentBaseFee"`
	ExcessBlobGas *math.HexOrDecimal64  `json:"currentExcessBlobGas"`
}

type stTransaction struct {
	GasPrice             *math.HexOrDecimal256 `json:"gasPrice"`
	MaxFeePerGas         *math.HexOrDecimal256 `json:"maxFeePerGas"`
	MaxPriorityFeePerGas *math.HexOrDecimal256 `json:"maxPriorityFeePerGas"`
	Nonce                math.HexOrDecimal64   `json:"nonce"`
	To                   string                `json:"to"`
	Data                 []string              `json:"data"`
	AccessLists          []*types.AccessList   `json:"accessLists"`
	GasLimit             []math.HexOrDecimal64 `json:"gasLimit"`
	Value                []string              `json:"value"`
	SecretKey            hexutil.Bytes         `json:"secretKey"`
	Sender               *common.Address       `json:"sender"`
	// Blob and set-code transactions, which coco does not run: such tests
	// are skipped.
	BlobVersionedHashes json.RawMessage `json:"blobVersionedHashes"`
	AuthorizationList   json.RawMessage `json:"authorizationList"`
}

// unsupported says why coco cannot run the transaction, or "".
func (tx *stTransaction) unsupported() string {
	switch {
	case len(tx.BlobVersionedHashes) > 0 && string(tx.BlobVersionedHashes) != "null":
		return "blob transaction (type 3), which coco does not run"
	case len(tx.AuthorizationList) > 0 && string(tx.AuthorizationList) != "null":
		return "set-code transaction (type 4), which coco does not run"
	}
	return ""
}

type stPost struct {
	Root            common.UnprefixedHash `json:"hash"`
	Logs            common.UnprefixedHash `json:"logs"`
	ExpectException string                `json:"expectException"`
	Indexes         struct {
		Data  int `json:"data"`
		Gas   int `json:"gas"`
		Value int `json:"value"`
	} `json:"indexes"`
}

// StateTestResult is the outcome of one post-state of one test.
type StateTestResult struct {
	Name  string
	Fork  string
	Index int
	Pass  bool
	// Skipped: the fork is not one coco runs (see StateTestForks).
	Skipped bool
	// Detail says what differed, or the expected error.
	Detail string
}

func (r StateTestResult) String() string {
	status := "PASS"
	switch {
	case r.Skipped:
		status = "SKIP"
	case !r.Pass:
		status = "FAIL"
	}
	s := fmt.Sprintf("%s %s/%s/%d", status, r.Name, r.Fork, r.Index)
	if r.Detail != "" {
		s += ": " + r.Detail
	}
	return s
}

// StateTestForks are the forks state tests can be run under: Osaka, the
// fork coco runs, and the two before it.
var StateTestForks = []string{"Cancun", "Prague", Fork}

// forkConfig is the chain configuration of fork: coco's, with the forks
// after it disabled.
func forkConfig(fork string) (*params.ChainConfig, bool) {
	cfg := ChainConfig(1)
	switch fork {
	case "Cancun":
		cfg.PragueTime, cfg.OsakaTime = nil, nil
	case "Prague":
		cfg.OsakaTime = nil
	case Fork:
	default:
		return nil, false
	}
	return cfg, true
}

// RunStateTests runs every post-state of the tests in a state-test JSON
// document (a map from test name to test) through coco's StateDB, and
// compares the state root (computed by StateRoot) and the logs hash with
// the expected ones.
func RunStateTests(doc []byte) ([]StateTestResult, error) {
	var tests map[string]*StateTest
	if err := json.Unmarshal(doc, &tests); err != nil {
		return nil, fmt.Errorf("evm: not a state test file: %w", err)
	}
	var out []StateTestResult
	names := make([]string, 0, len(tests))
	for n := range tests {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		t := tests[name]
		forks := make([]string, 0, len(t.Post))
		for f := range t.Post {
			forks = append(forks, f)
		}
		slices.Sort(forks)
		for _, fork := range forks {
			for i, post := range t.Post[fork] {
				r := StateTestResult{Name: name, Fork: fork, Index: i}
				cfg, ok := forkConfig(fork)
				if !ok {
					r.Skipped, r.Detail = true, "fork not supported (coco runs "+strings.Join(StateTestForks, ", ")+")"
					out = append(out, r)
					continue
				}
				if why := t.Tx.unsupported(); why != "" {
					r.Skipped, r.Detail = true, why
					out = append(out, r)
					continue
				}
				root, logs, err := t.run(cfg, post)
				switch {
				case post.ExpectException != "" && err != nil:
					r.Pass, r.Detail = true, fmt.Sprintf("refused as expected (%s): %v", post.ExpectException, err)
				case post.ExpectException != "":
					r.Detail = "expected exception " + post.ExpectException + ", but the transaction ran"
				case err != nil:
					r.Detail = err.Error()
				case root != common.Hash(post.Root):
					r.Detail = fmt.Sprintf("state root %s, want %s", root, common.Hash(post.Root))
				case logs != common.Hash(post.Logs):
					r.Detail = fmt.Sprintf("logs hash %s, want %s", logs, common.Hash(post.Logs))
				default:
					r.Pass = true
				}
				out = append(out, r)
			}
		}
	}
	return out, nil
}

// run executes one post-state's transaction on the pre-state and returns
// the state root and the logs hash. An error means the transaction is
// invalid (no state change).
func (t *StateTest) run(cfg *params.ChainConfig, post stPost) (common.Hash, common.Hash, error) {
	store := kv.NewStore()
	tx := store.Begin()
	for addr, acc := range t.Pre {
		if err := putAccount(tx, addr, acc); err != nil {
			return common.Hash{}, common.Hash{}, err
		}
	}
	number, time := uint64(t.Env.Number), uint64(t.Env.Timestamp)
	merge := t.Env.Random != nil
	rules := cfg.Rules(new(big.Int).SetUint64(number), merge, time)
	baseFee := big.NewInt(0x0a) // what the reference runner assumes when absent
	if t.Env.BaseFee != nil {
		baseFee = (*big.Int)(t.Env.BaseFee)
	}
	msg, err := t.Tx.message(post, baseFee)
	if err != nil {
		return common.Hash{}, common.Hash{}, err
	}
	ctx := vm.BlockContext{
		CanTransfer: core.CanTransfer,
		Transfer:    core.Transfer,
		GetHash: func(n uint64) common.Hash {
			return common.BytesToHash(crypto.Keccak256([]byte(new(big.Int).SetUint64(n).String())))
		},
		Coinbase:    t.Env.Coinbase,
		GasLimit:    uint64(t.Env.GasLimit),
		BlockNumber: new(big.Int).SetUint64(number),
		Time:        time,
		Difficulty:  new(big.Int),
		BaseFee:     baseFee,
	}
	if t.Env.Difficulty != nil {
		ctx.Difficulty = new(big.Int).Set((*big.Int)(t.Env.Difficulty))
	}
	if merge {
		rnd := common.BigToHash((*big.Int)(t.Env.Random))
		ctx.Random, ctx.Difficulty = &rnd, new(big.Int)
	}
	if rules.IsCancun && t.Env.ExcessBlobGas != nil {
		excess := uint64(*t.Env.ExcessBlobGas)
		ctx.BlobBaseFee = eip4844.CalcBlobFee(cfg, &types.Header{Time: time, ExcessBlobGas: &excess})
	}
	s := NewStateDB(tx)
	evm := vm.NewEVM(ctx, s, cfg, vm.Config{})
	defer evm.Release()
	snap := s.Snapshot()
	if _, err := core.ApplyMessage(evm, msg, core.NewGasPool(uint64(t.Env.GasLimit))); err != nil {
		s.RevertToSnapshot(snap)
		return common.Hash{}, common.Hash{}, err
	}
	logs := s.Logs()
	// As the reference runner: a zero reward touches the coinbase.
	s.AddBalance(t.Env.Coinbase, new(uint256.Int), tracing.BalanceChangeUnspecified)
	s.Finalise(rules)
	if err := s.Err(); err != nil {
		return common.Hash{}, common.Hash{}, err
	}
	root, err := StateRoot(tx)
	if err != nil {
		return common.Hash{}, common.Hash{}, err
	}
	enc, err := rlp.EncodeToBytes(logs)
	if err != nil {
		return common.Hash{}, common.Hash{}, err
	}
	return root, crypto.Keccak256Hash(enc), nil
}

// message is the transaction of one post-state, as the reference runner
// builds it (an effective gas price under the base fee).
func (tx *stTransaction) message(post stPost, baseFee *big.Int) (*core.Message, error) {
	var from common.Address
	switch {
	case tx.Sender != nil:
		from = *tx.Sender
	case len(tx.SecretKey) > 0:
		key, err := crypto.ToECDSA(tx.SecretKey)
		if err != nil {
			return nil, fmt.Errorf("invalid secretKey: %w", err)
		}
		from = crypto.PubkeyToAddress(key.PublicKey)
	default:
		return nil, errors.New("the transaction has neither sender nor secretKey")
	}
	var to *common.Address
	if tx.To != "" {
		to = new(common.Address)
		if err := to.UnmarshalText([]byte(tx.To)); err != nil {
			return nil, fmt.Errorf("invalid to: %w", err)
		}
	}
	ix := post.Indexes
	if ix.Data < 0 || ix.Data >= len(tx.Data) || ix.Gas < 0 || ix.Gas >= len(tx.GasLimit) || ix.Value < 0 || ix.Value >= len(tx.Value) {
		return nil, fmt.Errorf("indexes %+v out of range", ix)
	}
	value := new(big.Int)
	if v := tx.Value[ix.Value]; v != "0x" {
		var ok bool
		if value, ok = math.ParseBig256(v); !ok {
			return nil, fmt.Errorf("invalid value %q", v)
		}
	}
	data, err := hex.DecodeString(strings.TrimPrefix(tx.Data[ix.Data], "0x"))
	if err != nil {
		return nil, fmt.Errorf("invalid data %q", tx.Data[ix.Data])
	}
	var al types.AccessList
	if ix.Data < len(tx.AccessLists) && tx.AccessLists[ix.Data] != nil {
		al = *tx.AccessLists[ix.Data]
	}
	feeCap, tip := (*big.Int)(tx.MaxFeePerGas), (*big.Int)(tx.MaxPriorityFeePerGas)
	if feeCap == nil {
		feeCap = (*big.Int)(tx.GasPrice)
	}
	if feeCap == nil {
		return nil, errors.New("no gas price provided")
	}
	if tip == nil {
		tip = feeCap
	}
	gasPrice := new(big.Int).Add(tip, baseFee)
	if gasPrice.Cmp(feeCap) > 0 {
		gasPrice = feeCap
	}
	u := func(b *big.Int) *uint256.Int { v, _ := uint256.FromBig(b); return v }
	if value.Sign() < 0 || value.BitLen() > 256 || feeCap.BitLen() > 256 || tip.BitLen() > 256 {
		return nil, errors.New("value or fee out of range")
	}
	return &core.Message{
		From: from, To: to, Nonce: uint64(tx.Nonce), Value: u(value),
		GasLimit: uint64(tx.GasLimit[ix.Gas]), GasPrice: u(gasPrice), GasFeeCap: u(feeCap), GasTipCap: u(tip),
		Data: data, AccessList: al,
	}, nil
}

// putAccount writes acc as addr's stored state, as given: unlike the
// StateDB, it keeps empty accounts (genesis and state-test pre-states may
// hold them).
func putAccount(tx *kv.Tx, addr common.Address, acc types.Account) error {
	balance := new(uint256.Int)
	if acc.Balance != nil {
		var overflow bool
		if balance, overflow = uint256.FromBig(acc.Balance); overflow || acc.Balance.Sign() < 0 {
			return fmt.Errorf("evm: balance of %s is out of range", addr)
		}
	}
	codeHash := types.EmptyCodeHash
	if len(acc.Code) > 0 {
		codeHash = crypto.Keccak256Hash(acc.Code)
		if err := tx.Put(CodeMap, string(codeHash[:]), acc.Code); err != nil {
			return err
		}
	}
	if err := tx.Put(AccountsMap, string(addr[:]), encodeAccount(acc.Nonce, balance, codeHash)); err != nil {
		return err
	}
	for k, v := range acc.Storage {
		if v == (common.Hash{}) {
			continue
		}
		if err := tx.Put(StorageMap, storageKey(addr, k), v[:]); err != nil {
			return err
		}
	}
	return nil
}
