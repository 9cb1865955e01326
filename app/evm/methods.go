package evm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/cocoledger/coco/app"
	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/core/vm"
	gethparams "github.com/ethereum/go-ethereum/params"
	"github.com/holiman/uint256"
)

// Limits of eth_getLogs and eth_feeHistory.
const (
	maxRewardPercentiles = 100
	maxLogBlockRange     = 100_000
	maxLogResults        = 10_000
)

func (a *App) head(c *call) (Head, error) {
	if c.headOK {
		return c.head, nil
	}
	h, ok, err := readHead(c.tx)
	if err != nil {
		return Head{}, err
	}
	if !ok {
		return Head{}, errorf(codeServer, "the chain has no genesis block")
	}
	c.head, c.headOK = h, true
	return h, nil
}

func (a *App) blockNumber(c *call, params []json.RawMessage) (any, error) {
	if err := maxParams(params, 0); err != nil {
		return nil, err
	}
	h, err := a.head(c)
	if err != nil {
		return nil, err
	}
	return hexutil.Uint64(h.Number), nil
}

// blockNumberArg parses a block number or tag into a number (relative to
// head); earliest is 0.
func blockNumberArg(raw json.RawMessage, head uint64) (uint64, *rpcError) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return 0, invalidParams("a block must be a hex number or one of latest, pending, safe, finalized, earliest")
	}
	switch s {
	case "latest", "pending", "safe", "finalized":
		return head, nil
	case "earliest":
		return 0, nil
	}
	n, err := hexutil.DecodeUint64(s)
	if err != nil {
		return 0, invalidParams("invalid block number %q: %v", s, err)
	}
	return n, nil
}

// latestState checks a block parameter of a state method: coco keeps only
// the latest state, so only the head (by tag, number or EIP-1898 hash or
// number object) is accepted.
func (a *App) latestState(c *call, params []json.RawMessage, i int) error {
	if i >= len(params) || string(params[i]) == "null" {
		return nil
	}
	h, err := a.head(c)
	if err != nil {
		return err
	}
	raw := params[i]
	var obj struct {
		BlockHash   *common.Hash    `json:"blockHash"`
		BlockNumber json.RawMessage `json:"blockNumber"`
	}
	if len(raw) > 0 && raw[0] == '{' {
		if err := json.Unmarshal(raw, &obj); err != nil {
			return invalidParams("invalid block argument: %v", err)
		}
		switch {
		case obj.BlockHash != nil:
			if *obj.BlockHash != h.Hash {
				return errorf(codeServer, "the state of block %s is not available: coco keeps only the latest state", obj.BlockHash)
			}
			return nil
		case obj.BlockNumber != nil:
			raw = obj.BlockNumber
		default:
			return invalidParams("a block object needs blockHash or blockNumber")
		}
	}
	var hashArg string
	if json.Unmarshal(raw, &hashArg) == nil && len(hashArg) == 66 {
		var hash common.Hash
		if err := hash.UnmarshalText([]byte(hashArg)); err != nil {
			return invalidParams("invalid block hash %q: %v", hashArg, err)
		}
		if hash != h.Hash {
			return errorf(codeServer, "the state of block %s is not available: coco keeps only the latest state", hash)
		}
		return nil
	}
	n, rerr := blockNumberArg(raw, h.Number)
	if rerr != nil {
		return rerr
	}
	if n != h.Number {
		return errorf(codeServer, "the state of block %d is not available: coco keeps only the latest state (block %d)", n, h.Number)
	}
	return nil
}

// ownAddress reads an address parameter that must be the caller's own:
// balances and nonces of other accounts are confidential.
func ownAddress(c *call, params []json.RawMessage, what string) (common.Address, error) {
	var addr common.Address
	if err := param(params, 0, "address", true, &addr); err != nil {
		return addr, err
	}
	own, rerr := c.needAddr()
	if rerr != nil {
		return addr, rerr
	}
	if addr != own {
		return addr, errorf(codeServer, "the %s of %s is confidential: users can read only their own (%s)", what, addr, own)
	}
	return addr, nil
}

func (a *App) getBalance(c *call, params []json.RawMessage) (any, error) {
	if err := maxParams(params, 2); err != nil {
		return nil, err
	}
	addr, err := ownAddress(c, params, "balance")
	if err != nil {
		return nil, err
	}
	if err := a.latestState(c, params, 1); err != nil {
		return nil, err
	}
	return (*hexutil.U256)(NewStateDB(c.tx).GetBalance(addr)), nil
}

func (a *App) getTransactionCount(c *call, params []json.RawMessage) (any, error) {
	if err := maxParams(params, 2); err != nil {
		return nil, err
	}
	addr, err := ownAddress(c, params, "transaction count")
	if err != nil {
		return nil, err
	}
	if err := a.latestState(c, params, 1); err != nil {
		return nil, err
	}
	return hexutil.Uint64(NewStateDB(c.tx).GetNonce(addr)), nil
}

func (a *App) getCode(c *call, params []json.RawMessage) (any, error) {
	if err := maxParams(params, 2); err != nil {
		return nil, err
	}
	var addr common.Address
	if err := param(params, 0, "address", true, &addr); err != nil {
		return nil, err
	}
	if err := a.latestState(c, params, 1); err != nil {
		return nil, err
	}
	s := NewStateDB(c.tx)
	code := s.GetCode(addr)
	if err := s.Err(); err != nil {
		return nil, err
	}
	return hexutil.Bytes(code), nil
}

func (a *App) getStorageAt(*call, []json.RawMessage) (any, error) {
	return nil, errorf(codeServer, "eth_getStorageAt is not available: contract storage is confidential; read it through the contract's functions (eth_call)")
}

// callArgs are eth_call's and eth_estimateGas's transaction object.
type callArgs struct {
	From                 *common.Address   `json:"from"`
	To                   *common.Address   `json:"to"`
	Gas                  *hexutil.Uint64   `json:"gas"`
	GasPrice             *hexutil.Big      `json:"gasPrice"`
	MaxFeePerGas         *hexutil.Big      `json:"maxFeePerGas"`
	MaxPriorityFeePerGas *hexutil.Big      `json:"maxPriorityFeePerGas"`
	Value                *hexutil.Big      `json:"value"`
	Nonce                *hexutil.Uint64   `json:"nonce"`
	Data                 *hexutil.Bytes    `json:"data"`
	Input                *hexutil.Bytes    `json:"input"`
	AccessList           *types.AccessList `json:"accessList"`
	ChainID              *hexutil.Big      `json:"chainId"`
	Type                 *hexutil.Uint64   `json:"type"`
}

// message turns call arguments into a message from the caller's address.
func (a *App) message(c *call, params []json.RawMessage) (*core.Message, error) {
	var args callArgs
	if err := param(params, 0, "transaction", true, &args); err != nil {
		return nil, err
	}
	from, rerr := c.needAddr()
	if rerr != nil {
		return nil, rerr
	}
	// The zero address stands for "not given": go-ethereum's ethclient
	// sends it when the caller set no From, and nobody signs for it.
	if args.From != nil && *args.From != from && *args.From != (common.Address{}) {
		return nil, errorf(codeServer, "calls run from your own registered address %s, not %s", from, args.From)
	}
	if args.ChainID != nil && args.ChainID.ToInt().Cmp(c.exec.ChainID()) != 0 {
		return nil, errorf(codeServer, "invalid chain id %s: this chain's is %s", args.ChainID.ToInt(), c.exec.ChainID())
	}
	if args.Data != nil && args.Input != nil && !bytesEqual(*args.Data, *args.Input) {
		return nil, invalidParams(`both "data" and "input" are set and differ`)
	}
	msg := &core.Message{From: from, To: args.To, GasLimit: gethparams.MaxTxGas, Value: new(uint256.Int), GasPrice: new(uint256.Int), GasFeeCap: new(uint256.Int), GasTipCap: new(uint256.Int)}
	if args.Gas != nil {
		msg.GasLimit = uint64(*args.Gas)
	}
	if args.Value != nil {
		v, overflow := uint256.FromBig(args.Value.ToInt())
		if overflow || args.Value.ToInt().Sign() < 0 {
			return nil, invalidParams("value out of range")
		}
		msg.Value = v
	}
	if args.Input != nil {
		msg.Data = *args.Input
	} else if args.Data != nil {
		msg.Data = *args.Data
	}
	if args.AccessList != nil {
		msg.AccessList = *args.AccessList
	}
	if args.Nonce != nil {
		msg.Nonce = uint64(*args.Nonce)
	}
	return msg.SkipNonceCheck(), nil
}

func bytesEqual(a, b []byte) bool { return string(a) == string(b) }

// simulate runs msg on the committed state, on top of a pending block,
// without keeping anything.
func (a *App) simulate(c *call, msg *core.Message) (*core.ExecutionResult, error) {
	h, err := a.head(c)
	if err != nil {
		return nil, err
	}
	s := NewStateDB(c.tx)
	number := h.Number + 1
	ctx := c.exec.blockContext(c.tx, number, uint64(time.Now().Unix()))
	evm := vm.NewEVM(ctx, s, c.exec.config, vm.Config{NoBaseFee: true})
	defer evm.Release()
	m := *msg
	res, err := core.ApplyMessage(evm, &m, core.NewGasPool(max(m.GasLimit, c.exec.gasLimit)))
	if serr := s.Err(); serr != nil {
		return nil, serr
	}
	if err != nil {
		return nil, errorf(codeServer, "%v", err)
	}
	return res, nil
}

// revertError is the JSON-RPC error of a reverted call: code 3, the
// reason in the message when it is an Error(string), the raw revert data
// in data.
func revertError(res *core.ExecutionResult) *rpcError {
	data := res.Revert()
	msg := "execution reverted"
	if reason, err := abi.UnpackRevert(data); err == nil {
		msg += ": " + reason
	}
	return &rpcError{Code: codeReverted, Message: msg, Data: hexutil.Bytes(data)}
}

func (a *App) ethCall(c *call, params []json.RawMessage) (any, error) {
	if err := maxParams(params, 2); err != nil {
		return nil, invalidParams("too many arguments, want at most 2 (state overrides are not supported)")
	}
	if err := a.latestState(c, params, 1); err != nil {
		return nil, err
	}
	msg, err := a.message(c, params)
	if err != nil {
		return nil, err
	}
	res, err := a.simulate(c, msg)
	if err != nil {
		return nil, err
	}
	if errors.Is(res.Err, vm.ErrExecutionReverted) {
		return nil, revertError(res)
	}
	if res.Err != nil {
		return nil, errorf(codeServer, "%v", res.Err)
	}
	return hexutil.Bytes(res.ReturnData), nil
}

func (a *App) estimateGas(c *call, params []json.RawMessage) (any, error) {
	if err := maxParams(params, 2); err != nil {
		return nil, err
	}
	if err := a.latestState(c, params, 1); err != nil {
		return nil, err
	}
	msg, err := a.message(c, params)
	if err != nil {
		return nil, err
	}
	hi := msg.GasLimit
	try := func(gas uint64) (*core.ExecutionResult, error) {
		m := *msg
		m.GasLimit = gas
		return a.simulate(c, &m)
	}
	res, err := try(hi)
	if err != nil {
		return nil, err
	}
	if res.Failed() {
		if errors.Is(res.Err, vm.ErrExecutionReverted) {
			return nil, revertError(res)
		}
		return nil, errorf(codeServer, "gas required exceeds allowance (%d): %v", hi, res.Err)
	}
	// Binary search for the least gas limit that succeeds: less than
	// UsedGas never does.
	lo := res.UsedGas - 1
	for lo+1 < hi {
		mid := lo + (hi-lo)/2
		r, err := try(mid)
		var re *rpcError
		if err != nil && !errors.As(err, &re) {
			return nil, err
		}
		if err != nil || r.Failed() {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hexutil.Uint64(hi), nil
}

func (a *App) feeHistory(c *call, params []json.RawMessage) (any, error) {
	if err := maxParams(params, 3); err != nil {
		return nil, err
	}
	var countArg json.RawMessage
	if err := param(params, 0, "blockCount", true, &countArg); err != nil {
		return nil, err
	}
	count, rerr := quantityOrNumber(countArg)
	if rerr != nil {
		return nil, rerr
	}
	h, err := a.head(c)
	if err != nil {
		return nil, err
	}
	newest := h.Number
	if len(params) > 1 {
		if newest, rerr = blockNumberArg(params[1], h.Number); rerr != nil {
			return nil, rerr
		}
		if newest > h.Number {
			return nil, errorf(codeServer, "block %d is past the head (%d)", newest, h.Number)
		}
	}
	var percentiles []float64
	if err := param(params, 2, "rewardPercentiles", false, &percentiles); err != nil {
		return nil, err
	}
	if len(percentiles) > maxRewardPercentiles {
		return nil, invalidParams("at most %d reward percentiles", maxRewardPercentiles)
	}
	for i, p := range percentiles {
		if p < 0 || p > 100 || (i > 0 && p < percentiles[i-1]) {
			return nil, invalidParams("reward percentiles must be ascending numbers between 0 and 100")
		}
	}
	if count == 0 {
		return nil, invalidParams("blockCount must be at least 1")
	}
	count = min(count, 1024, newest+1)
	// Fees are zero on coco; gas used ratios would describe other
	// parties' transactions, so they are reported as zero as well.
	out := map[string]any{
		"oldestBlock":       hexutil.Uint64(newest + 1 - count),
		"baseFeePerGas":     zeros(int(count) + 1),
		"gasUsedRatio":      make([]float64, count),
		"baseFeePerBlobGas": zeros(int(count) + 1),
		"blobGasUsedRatio":  make([]float64, count),
	}
	if percentiles != nil {
		reward := make([][]*hexutil.Big, count)
		for i := range reward {
			reward[i] = zeros(len(percentiles))
		}
		out["reward"] = reward
	}
	return out, nil
}

func zeros(n int) []*hexutil.Big {
	z := make([]*hexutil.Big, n)
	for i := range z {
		z[i] = (*hexutil.Big)(new(big.Int))
	}
	return z
}

// quantityOrNumber accepts a hex quantity or a JSON number (eth_feeHistory
// takes both).
func quantityOrNumber(raw json.RawMessage) (uint64, *rpcError) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		n, err := hexutil.DecodeUint64(s)
		if err != nil {
			return 0, invalidParams("invalid quantity %q: %v", s, err)
		}
		return n, nil
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(raw)), 10, 64)
	if err != nil {
		return 0, invalidParams("invalid quantity %s", raw)
	}
	return n, nil
}

func (a *App) sendRawTransaction(c *call, params []json.RawMessage) (any, error) {
	if err := maxParams(params, 1); err != nil {
		return nil, err
	}
	var raw hexutil.Bytes
	if err := param(params, 0, "transaction", true, &raw); err != nil {
		return nil, err
	}
	t := new(types.Transaction)
	if err := t.UnmarshalBinary(raw); err != nil {
		return nil, invalidParams("malformed transaction: %v", err)
	}
	switch t.Type() {
	case types.LegacyTxType, types.AccessListTxType, types.DynamicFeeTxType:
	default:
		return nil, errorf(codeServer, "transaction type %d not supported: coco takes legacy, EIP-2930 and EIP-1559 transactions", t.Type())
	}
	if !t.Protected() {
		return nil, errorf(codeServer, "only replay-protected (EIP-155) transactions allowed over RPC")
	}
	if t.ChainId().Cmp(c.exec.ChainID()) != 0 {
		return nil, errorf(codeServer, "invalid chain id %s: this chain's is %s", t.ChainId(), c.exec.ChainID())
	}
	if effectiveGasPrice(t).Sign() != 0 {
		return nil, errorf(codeServer, "gas is priced at zero on coco: set gasPrice (or maxPriorityFeePerGas) to 0")
	}
	from, err := types.Sender(c.exec.Signer(), t)
	if err != nil {
		return nil, errorf(codeServer, "invalid sender: %v", err)
	}
	own, rerr := c.needAddr()
	if rerr != nil {
		return nil, rerr
	}
	if from != own {
		return nil, errorf(codeServer, "the transaction is signed by %s, but your registered address is %s", from, own)
	}
	h := a.host.get()
	if h == nil || !h.IsPrimary() {
		return nil, app.ErrNotPrimary
	}
	p := &pending{tx: t, from: from, done: make(chan outcome, 1)}
	if err := a.builder.add(p); err != nil {
		return nil, errorf(codeServer, "%v", err)
	}
	// Answered once it commits, after the rest of its batch was queued too.
	return &queued{p: p}, nil
}

// queued is eth_sendRawTransaction's result until its transaction commits:
// serveRPC queues every transaction of a batch before waiting for the
// first, so a batch of transfers commits together instead of one after
// the other.
type queued struct{ p *pending }

// await waits for q's transaction to commit and returns the call's result.
func (q *queued) await(ctx context.Context) (any, error) {
	t := q.p.tx
	var o outcome
	select {
	case o = <-q.p.done:
	case <-ctx.Done():
		return nil, errorf(codeServer, "the request ended before the transaction committed; it may still commit: ask eth_getTransactionReceipt for %s", t.Hash())
	}
	switch {
	case errors.Is(o.err, ErrInvalidTx):
		return nil, errorf(codeServer, "%s", strings.TrimPrefix(o.err.Error(), ErrInvalidTx.Error()+": "))
	case errors.Is(o.err, app.ErrNotPrimary):
		// Not ordered: this node stopped being the primary first.
		return nil, o.err
	case o.err != nil:
		return nil, errorf(codeServer, "transaction %s may not have committed (%v): ask eth_getTransactionReceipt, and send it again if it has none", t.Hash(), o.err)
	}
	return t.Hash(), nil
}

// visibleTx loads a transaction the caller may see; ok is false when it
// does not exist or is not the caller's to see.
func (a *App) visibleTx(c *call, hash common.Hash) (*txRecord, *types.Transaction, bool, error) {
	rec, ok, err := a.txRecordByHash(c, hash)
	if err != nil || !ok {
		return nil, nil, false, err
	}
	return a.visible(c, rec, hash)
}

// visibleTxAt is visibleTx for the transaction of block n.
func (a *App) visibleTxAt(c *call, n uint64, hash common.Hash) (*txRecord, *types.Transaction, bool, error) {
	rec, ok, err := a.txAt(c, n, hash)
	if err != nil || !ok {
		return nil, nil, false, err
	}
	return a.visible(c, rec, hash)
}

// visible decodes rec's transaction, hash, if the caller may see it.
func (a *App) visible(c *call, rec *txRecord, hash common.Hash) (*txRecord, *types.Transaction, bool, error) {
	t := new(types.Transaction)
	if err := t.UnmarshalBinary(rec.Raw); err != nil {
		return nil, nil, false, fmt.Errorf("evm: stored transaction %s: %w", hash, err)
	}
	if !c.has || !Visible(rec.From, t.To(), rec.Logs, c.addr) {
		return nil, nil, false, nil
	}
	return rec, t, true, nil
}

func (a *App) getTransactionByHash(c *call, params []json.RawMessage) (any, error) {
	return a.txByHash(c, params, func(t *types.Transaction, rec *txRecord, h *types.Header) any { return newTxView(t, rec, h) })
}

func (a *App) getTransactionReceipt(c *call, params []json.RawMessage) (any, error) {
	return a.txByHash(c, params, func(t *types.Transaction, rec *txRecord, h *types.Header) any { return newReceiptView(t, rec, h) })
}

// txByHash answers view of the transaction named by params[0], or null
// when it does not exist or the caller may not see it.
func (a *App) txByHash(c *call, params []json.RawMessage, view func(*types.Transaction, *txRecord, *types.Header) any) (any, error) {
	if err := maxParams(params, 1); err != nil {
		return nil, err
	}
	var hash common.Hash
	if err := param(params, 0, "hash", true, &hash); err != nil {
		return nil, err
	}
	rec, t, ok, err := a.visibleTx(c, hash)
	if err != nil || !ok {
		return nil, err
	}
	b, ok, err := a.block(c, rec.Block)
	if err != nil || !ok {
		return nil, fmt.Errorf("evm: block %d of transaction %s: missing (%v)", rec.Block, hash, err)
	}
	return view(t, rec, b.Header), nil
}

func (a *App) getBlockByNumber(c *call, params []json.RawMessage) (any, error) {
	if err := maxParams(params, 2); err != nil {
		return nil, err
	}
	if len(params) == 0 {
		return nil, invalidParams("missing value for required argument 0 (block)")
	}
	h, err := a.head(c)
	if err != nil {
		return nil, err
	}
	n, rerr := blockNumberArg(params[0], h.Number)
	if rerr != nil {
		return nil, rerr
	}
	var full bool
	if err := param(params, 1, "fullTransactions", false, &full); err != nil {
		return nil, err
	}
	return a.blockView(c, n, full)
}

func (a *App) getBlockByHash(c *call, params []json.RawMessage) (any, error) {
	if err := maxParams(params, 2); err != nil {
		return nil, err
	}
	var hash common.Hash
	if err := param(params, 0, "hash", true, &hash); err != nil {
		return nil, err
	}
	var full bool
	if err := param(params, 1, "fullTransactions", false, &full); err != nil {
		return nil, err
	}
	n, ok, err := a.numberOfBlock(c, hash)
	if err != nil || !ok {
		return nil, err
	}
	return a.blockView(c, n, full)
}

// blockView is block n as the caller may see it, or nil if there is none.
func (a *App) blockView(c *call, n uint64, full bool) (any, error) {
	b, ok, err := a.block(c, n)
	if err != nil || !ok {
		return nil, err
	}
	var rec *txRecord
	var t *types.Transaction
	if b.Tx != (common.Hash{}) {
		var visible bool
		if rec, t, visible, err = a.visibleTxAt(c, n, b.Tx); err != nil {
			return nil, err
		}
		if !visible {
			rec, t = nil, nil
		}
	}
	return newBlockView(b.Header, t, rec, full), nil
}

// logFilter is eth_getLogs's filter object.
type logFilter struct {
	BlockHash *common.Hash      `json:"blockHash"`
	FromBlock json.RawMessage   `json:"fromBlock"`
	ToBlock   json.RawMessage   `json:"toBlock"`
	Address   json.RawMessage   `json:"address"`
	Topics    []json.RawMessage `json:"topics"`
}

// oneOrMany decodes a JSON value that is null, one T, or an array of T.
func oneOrMany[T any](raw json.RawMessage) ([]T, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if raw[0] == '[' {
		var many []T
		err := json.Unmarshal(raw, &many)
		return many, err
	}
	var one T
	if err := json.Unmarshal(raw, &one); err != nil {
		return nil, err
	}
	return []T{one}, nil
}

func (a *App) getLogs(c *call, params []json.RawMessage) (any, error) {
	if err := maxParams(params, 1); err != nil {
		return nil, err
	}
	var f logFilter
	if err := param(params, 0, "filter", true, &f); err != nil {
		return nil, err
	}
	addrs, err := oneOrMany[common.Address](f.Address)
	if err != nil {
		return nil, invalidParams("invalid address filter: %v", err)
	}
	if len(f.Topics) > 4 {
		return nil, invalidParams("at most 4 topic positions")
	}
	topics := make([][]common.Hash, len(f.Topics))
	for i, raw := range f.Topics {
		if topics[i], err = oneOrMany[common.Hash](raw); err != nil {
			return nil, invalidParams("invalid topic filter %d: %v", i, err)
		}
	}
	h, err := a.head(c)
	if err != nil {
		return nil, err
	}
	from, to := h.Number, h.Number
	if f.BlockHash != nil {
		if f.FromBlock != nil || f.ToBlock != nil {
			return nil, invalidParams("blockHash excludes fromBlock and toBlock")
		}
		n, ok, err := a.numberOfBlock(c, *f.BlockHash)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, errorf(codeServer, "unknown block %s", f.BlockHash)
		}
		from, to = n, n
	} else {
		var rerr *rpcError
		if f.FromBlock != nil {
			if from, rerr = blockNumberArg(f.FromBlock, h.Number); rerr != nil {
				return nil, rerr
			}
		}
		if f.ToBlock != nil {
			if to, rerr = blockNumberArg(f.ToBlock, h.Number); rerr != nil {
				return nil, rerr
			}
		}
		to = min(to, h.Number)
		if from > to {
			return []*types.Log{}, nil
		}
		if to-from >= maxLogBlockRange {
			return nil, errorf(-32005, "the block range %d-%d is more than %d blocks; narrow it", from, to, maxLogBlockRange)
		}
	}
	out := []*types.Log{}
	if !c.has {
		return out, nil // a user without an address sees no transaction
	}
	for n := from; n <= to; n++ {
		b, ok, err := a.block(c, n)
		if err != nil {
			return nil, err
		}
		if !ok || b.Tx == (common.Hash{}) || !bloomMatch(b.Header.Bloom, addrs, topics) {
			continue
		}
		rec, _, visible, err := a.visibleTxAt(c, n, b.Tx)
		if err != nil {
			return nil, err
		}
		if !visible {
			continue
		}
		for i, l := range rec.Logs {
			if !logMatch(l, addrs, topics) {
				continue
			}
			if len(out) == maxLogResults {
				return nil, errorf(-32005, "query returned more than %d results; narrow the block range", maxLogResults)
			}
			out = append(out, fillLog(l, b.Header, b.Tx, i))
		}
	}
	return out, nil
}

func bloomMatch(bloom types.Bloom, addrs []common.Address, topics [][]common.Hash) bool {
	if len(addrs) > 0 {
		found := false
		for _, a := range addrs {
			if bloom.Test(a.Bytes()) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	for _, alts := range topics {
		if len(alts) == 0 {
			continue
		}
		found := false
		for _, t := range alts {
			if bloom.Test(t.Bytes()) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func logMatch(l *types.Log, addrs []common.Address, topics [][]common.Hash) bool {
	if len(addrs) > 0 && !contains(addrs, l.Address) {
		return false
	}
	if len(topics) > len(l.Topics) {
		return false
	}
	for i, alts := range topics {
		if len(alts) > 0 && !contains(alts, l.Topics[i]) {
			return false
		}
	}
	return true
}

func contains[T comparable](xs []T, x T) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// Visible reports whether viewer may see a transaction from from to to
// (nil for a contract creation) with logs: its sender, its recipient, and
// every address that appears as an indexed topic of one of its logs (a
// topic is an address when its first 12 bytes are zero).
func Visible(from common.Address, to *common.Address, logs []*types.Log, viewer common.Address) bool {
	if viewer == from || (to != nil && viewer == *to) {
		return true
	}
	var topic common.Hash
	copy(topic[12:], viewer[:])
	for _, l := range logs {
		for _, t := range l.Topics {
			if t == topic {
				return true
			}
		}
	}
	return false
}
