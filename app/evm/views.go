package evm

import (
	"math/big"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
)

// txView is a transaction in JSON-RPC form.
type txView struct {
	BlockHash        common.Hash       `json:"blockHash"`
	BlockNumber      hexutil.Uint64    `json:"blockNumber"`
	BlockTimestamp   hexutil.Uint64    `json:"blockTimestamp"`
	From             common.Address    `json:"from"`
	Gas              hexutil.Uint64    `json:"gas"`
	GasPrice         *hexutil.Big      `json:"gasPrice"`
	GasFeeCap        *hexutil.Big      `json:"maxFeePerGas,omitempty"`
	GasTipCap        *hexutil.Big      `json:"maxPriorityFeePerGas,omitempty"`
	Hash             common.Hash       `json:"hash"`
	Input            hexutil.Bytes     `json:"input"`
	Nonce            hexutil.Uint64    `json:"nonce"`
	To               *common.Address   `json:"to"`
	TransactionIndex hexutil.Uint64    `json:"transactionIndex"`
	Value            *hexutil.Big      `json:"value"`
	Type             hexutil.Uint64    `json:"type"`
	Accesses         *types.AccessList `json:"accessList,omitempty"`
	ChainID          *hexutil.Big      `json:"chainId,omitempty"`
	V                *hexutil.Big      `json:"v"`
	R                *hexutil.Big      `json:"r"`
	S                *hexutil.Big      `json:"s"`
	YParity          *hexutil.Uint64   `json:"yParity,omitempty"`
}

// effectiveGasPrice is what the transaction paid per gas with coco's zero
// base fee.
func effectiveGasPrice(t *types.Transaction) *big.Int {
	if t.Type() == types.LegacyTxType || t.Type() == types.AccessListTxType {
		return t.GasPrice()
	}
	return t.EffectiveGasTipValue(common.Big0)
}

func newTxView(t *types.Transaction, rec *txRecord, h *types.Header) *txView {
	v, r, s := t.RawSignatureValues()
	out := &txView{
		BlockHash:      h.Hash(),
		BlockNumber:    hexutil.Uint64(rec.Block),
		BlockTimestamp: hexutil.Uint64(h.Time),
		From:           rec.From,
		Gas:            hexutil.Uint64(t.Gas()),
		GasPrice:       (*hexutil.Big)(effectiveGasPrice(t)),
		Hash:           t.Hash(),
		Input:          t.Data(),
		Nonce:          hexutil.Uint64(t.Nonce()),
		To:             t.To(),
		Value:          (*hexutil.Big)(t.Value()),
		Type:           hexutil.Uint64(t.Type()),
		V:              (*hexutil.Big)(v),
		R:              (*hexutil.Big)(r),
		S:              (*hexutil.Big)(s),
	}
	if t.Type() != types.LegacyTxType {
		al := t.AccessList()
		yparity := hexutil.Uint64(v.Sign())
		out.Accesses, out.ChainID, out.YParity = &al, (*hexutil.Big)(t.ChainId()), &yparity
	} else if t.Protected() {
		out.ChainID = (*hexutil.Big)(t.ChainId())
	}
	if t.Type() == types.DynamicFeeTxType {
		out.GasFeeCap, out.GasTipCap = (*hexutil.Big)(t.GasFeeCap()), (*hexutil.Big)(t.GasTipCap())
	}
	return out
}

// fillLog returns a stored log (address, topics, data) with its position:
// block, transaction and index.
func fillLog(l *types.Log, h *types.Header, tx common.Hash, i int) *types.Log {
	out := *l
	out.BlockNumber, out.BlockHash, out.BlockTimestamp = h.Number.Uint64(), h.Hash(), h.Time
	out.TxHash, out.TxIndex, out.Index = tx, 0, uint(i)
	return &out
}

// receiptView is a receipt in JSON-RPC form.
type receiptView struct {
	TxHash            common.Hash     `json:"transactionHash"`
	TransactionIndex  hexutil.Uint64  `json:"transactionIndex"`
	BlockHash         common.Hash     `json:"blockHash"`
	BlockNumber       hexutil.Uint64  `json:"blockNumber"`
	From              common.Address  `json:"from"`
	To                *common.Address `json:"to"`
	CumulativeGasUsed hexutil.Uint64  `json:"cumulativeGasUsed"`
	GasUsed           hexutil.Uint64  `json:"gasUsed"`
	EffectiveGasPrice *hexutil.Big    `json:"effectiveGasPrice"`
	ContractAddress   *common.Address `json:"contractAddress"`
	Logs              []*types.Log    `json:"logs"`
	LogsBloom         types.Bloom     `json:"logsBloom"`
	Type              hexutil.Uint64  `json:"type"`
	Status            hexutil.Uint64  `json:"status"`
}

func newReceiptView(t *types.Transaction, rec *txRecord, h *types.Header) *receiptView {
	out := &receiptView{
		TxHash:            t.Hash(),
		BlockHash:         h.Hash(),
		BlockNumber:       hexutil.Uint64(rec.Block),
		From:              rec.From,
		To:                t.To(),
		CumulativeGasUsed: hexutil.Uint64(rec.GasUsed),
		GasUsed:           hexutil.Uint64(rec.GasUsed),
		EffectiveGasPrice: (*hexutil.Big)(effectiveGasPrice(t)),
		Logs:              make([]*types.Log, len(rec.Logs)),
		LogsBloom:         h.Bloom,
		Type:              hexutil.Uint64(t.Type()),
		Status:            hexutil.Uint64(rec.Status),
	}
	if len(rec.Contract) == common.AddressLength {
		addr := common.BytesToAddress(rec.Contract)
		out.ContractAddress = &addr
	}
	for i, l := range rec.Logs {
		out.Logs[i] = fillLog(l, h, t.Hash(), i)
	}
	return out
}

// newBlockView is a block in JSON-RPC form. t and rec are its transaction
// when the caller may see it; otherwise the block is shown without it,
// and the header fields that summarise it (gas used, logs bloom,
// transaction and receipt roots) as those of an empty block. The hash
// stays the block's.
func newBlockView(h *types.Header, t *types.Transaction, rec *txRecord, full bool) map[string]any {
	hash := h.Hash()
	shown := *h
	var txs []any
	body := types.Body{}
	if t != nil {
		body.Transactions = types.Transactions{t}
		if full {
			txs = []any{newTxView(t, rec, h)}
		} else {
			txs = []any{t.Hash()}
		}
	} else {
		shown.GasUsed, shown.Bloom, shown.TxHash, shown.ReceiptHash = 0, types.Bloom{}, types.EmptyTxsHash, types.EmptyReceiptsHash
		txs = []any{}
	}
	size := types.NewBlockWithHeader(&shown).WithBody(body).Size()
	return map[string]any{
		"number":                hexutil.Uint64(h.Number.Uint64()),
		"hash":                  hash,
		"parentHash":            h.ParentHash,
		"nonce":                 h.Nonce,
		"mixHash":               h.MixDigest,
		"sha3Uncles":            h.UncleHash,
		"logsBloom":             shown.Bloom,
		"stateRoot":             h.Root,
		"miner":                 h.Coinbase,
		"difficulty":            (*hexutil.Big)(h.Difficulty),
		"totalDifficulty":       (*hexutil.Big)(new(big.Int)),
		"extraData":             hexutil.Bytes(h.Extra),
		"size":                  hexutil.Uint64(size),
		"gasLimit":              hexutil.Uint64(h.GasLimit),
		"gasUsed":               hexutil.Uint64(shown.GasUsed),
		"timestamp":             hexutil.Uint64(h.Time),
		"transactionsRoot":      shown.TxHash,
		"receiptsRoot":          shown.ReceiptHash,
		"baseFeePerGas":         (*hexutil.Big)(h.BaseFee),
		"withdrawalsRoot":       h.WithdrawalsHash,
		"withdrawals":           []any{},
		"blobGasUsed":           hexutil.Uint64(0),
		"excessBlobGas":         hexutil.Uint64(0),
		"parentBeaconBlockRoot": h.ParentBeaconRoot,
		"requestsHash":          h.RequestsHash,
		"transactions":          txs,
		"uncles":                []any{},
	}
}
