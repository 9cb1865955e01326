package evm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/cocoledger/coco/app"
	"github.com/cocoledger/coco/kv"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
)

// JSON-RPC error codes (JSON-RPC 2.0 and Ethereum's conventions).
const (
	codeParse          = -32700
	codeInvalidRequest = -32600
	codeMethodNotFound = -32601
	codeInvalidParams  = -32602
	codeInternal       = -32603
	codeServer         = -32000 // Ethereum's catch-all: nonce, funds, unavailable
	codeReverted       = 3      // execution reverted; data holds the revert data
)

// maxBatchRequests bounds the calls in one JSON-RPC batch.
const maxBatchRequests = 1000

type rpcRequest struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params"`
}

type rpcResponse struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  any             `json:"result,omitempty"`
	Error   *rpcError       `json:"error,omitempty"`
}

// rpcError is a JSON-RPC error object.
type rpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    any    `json:"data,omitempty"`
}

func (e *rpcError) Error() string { return e.Message }

func errorf(code int, format string, args ...any) *rpcError {
	return &rpcError{Code: code, Message: fmt.Sprintf(format, args...)}
}

func invalidParams(format string, args ...any) *rpcError {
	return errorf(codeInvalidParams, format, args...)
}

// hostRef holds the framework's Host once Run has started.
type hostRef struct{ p atomic.Pointer[app.Host] }

func (r *hostRef) set(h app.Host) { r.p.Store(&h) }

func (r *hostRef) get() app.Host {
	if h := r.p.Load(); h != nil {
		return *h
	}
	return nil
}

// call is one JSON-RPC call's context: the committed state and the caller.
type call struct {
	a      *App
	exec   *Executor
	c      *app.Context
	tx     *kv.Tx
	addr   common.Address // the caller's registered address, if hasAddr
	has    bool
	noAddr string // why the caller has no address

	head   Head // the snapshot's head, once read (headOK)
	headOK bool
	// entry is the last ledger entry read for an older block's records.
	entry struct {
		seqno uint64
		ws    *kv.WriteSet
	}
}

// needAddr returns the caller's address, or the error saying it has none.
func (c *call) needAddr() (common.Address, *rpcError) {
	if !c.has {
		return common.Address{}, errorf(codeServer, "%s", c.noAddr)
	}
	return c.addr, nil
}

type method func(c *call, params []json.RawMessage) (any, error)

func (a *App) methods() map[string]method {
	return map[string]method{
		"web3_clientVersion":        a.clientVersion,
		"net_version":               a.netVersion,
		"net_listening":             func(*call, []json.RawMessage) (any, error) { return true, nil },
		"eth_chainId":               a.chainID,
		"eth_syncing":               func(*call, []json.RawMessage) (any, error) { return false, nil },
		"eth_accounts":              func(*call, []json.RawMessage) (any, error) { return []common.Address{}, nil },
		"eth_blockNumber":           a.blockNumber,
		"eth_gasPrice":              zeroQuantity,
		"eth_maxPriorityFeePerGas":  zeroQuantity,
		"eth_feeHistory":            a.feeHistory,
		"eth_getBalance":            a.getBalance,
		"eth_getTransactionCount":   a.getTransactionCount,
		"eth_getCode":               a.getCode,
		"eth_getStorageAt":          a.getStorageAt,
		"eth_call":                  a.ethCall,
		"eth_estimateGas":           a.estimateGas,
		"eth_sendRawTransaction":    a.sendRawTransaction,
		"eth_getTransactionByHash":  a.getTransactionByHash,
		"eth_getTransactionReceipt": a.getTransactionReceipt,
		"eth_getBlockByNumber":      a.getBlockByNumber,
		"eth_getBlockByHash":        a.getBlockByHash,
		"eth_getLogs":               a.getLogs,
	}
}

// serveRPC answers one JSON-RPC request or batch. JSON-RPC errors are
// answered with 200, as Ethereum clients expect; only a request that
// needs the primary on a backup returns an error (app.ErrNotPrimary), for
// the framework to forward it.
func (a *App) serveRPC(c *app.Context) (*app.Response, error) {
	body := bytes.TrimSpace(c.Body)
	if len(body) == 0 {
		return app.JSON(rpcResponse{JSONRPC: "2.0", ID: json.RawMessage("null"), Error: errorf(codeParse, "empty request body")}), nil
	}
	cl := &call{a: a, c: c, tx: c.Tx}
	var err error
	if cl.exec, err = a.executor(c.Tx); err != nil {
		return nil, err
	}
	cl.addr, cl.has, cl.noAddr = callerAddress(c.Tx, c.Caller.ID)
	if body[0] != '[' {
		resp, err := a.serveOne(cl, body)
		if err == nil {
			err = a.settle(c.Request.Context(), &resp)
		}
		if err != nil {
			return nil, err
		}
		return app.JSON(resp), nil
	}
	reqs, err := decodeBatch(body)
	if err != nil {
		return app.JSON(rpcResponse{JSONRPC: "2.0", ID: json.RawMessage("null"), Error: errorf(codeParse, "parse error: %v", err)}), nil
	}
	// A batch that sends transactions goes to the primary whole, before
	// any of it runs here, so no call is answered twice.
	if h := a.host.get(); (h == nil || !h.IsPrimary()) && sendsTransactions(reqs) {
		return nil, app.ErrNotPrimary
	}
	if len(reqs) == 0 {
		return app.JSON(rpcResponse{JSONRPC: "2.0", ID: json.RawMessage("null"), Error: errorf(codeInvalidRequest, "empty batch")}), nil
	}
	if len(reqs) > maxBatchRequests {
		return app.JSON(rpcResponse{JSONRPC: "2.0", ID: json.RawMessage("null"), Error: errorf(codeInvalidRequest, "a batch holds at most %d calls", maxBatchRequests)}), nil
	}
	out := make([]rpcResponse, 0, len(reqs))
	for _, r := range reqs {
		var resp rpcResponse
		var err error
		if r.raw != nil {
			resp, err = a.serveOne(cl, r.raw)
		} else {
			resp, err = a.serveRequest(cl, r.req)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, resp)
	}
	// Every transaction of the batch is queued by now; wait for them.
	for i := range out {
		if err := a.settle(c.Request.Context(), &out[i]); errors.Is(err, app.ErrNotPrimary) {
			// Too late to forward the batch: other calls of it may have
			// committed here.
			out[i].Result, out[i].Error = nil, errorf(codeServer, "transaction not ordered: this node stopped being the primary; send it again")
		} else if err != nil {
			return nil, err
		}
	}
	return app.JSON(out), nil
}

// settle waits for the transaction of an eth_sendRawTransaction answer
// (a queued result) to commit and puts the call's outcome in resp. It
// returns app.ErrNotPrimary when the transaction was not ordered because
// this node is not the primary any more.
func (a *App) settle(ctx context.Context, resp *rpcResponse) error {
	q, ok := resp.Result.(*queued)
	if !ok {
		return nil
	}
	result, err := q.await(ctx)
	var re *rpcError
	switch {
	case errors.Is(err, app.ErrNotPrimary):
		return err
	case errors.As(err, &re):
		resp.Result, resp.Error = nil, re
	case err != nil:
		return err
	default:
		resp.Result = result
	}
	return nil
}

func (a *App) serveOne(cl *call, raw json.RawMessage) (rpcResponse, error) {
	var req rpcRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return rpcResponse{JSONRPC: "2.0", ID: json.RawMessage("null"), Error: errorf(codeParse, "parse error: %v", err)}, nil
		}
		return rpcResponse{JSONRPC: "2.0", ID: json.RawMessage("null"), Error: errorf(codeInvalidRequest, "invalid request: %v", err)}, nil
	}
	return a.serveRequest(cl, req)
}

// serveRequest answers one decoded call.
func (a *App) serveRequest(cl *call, req rpcRequest) (rpcResponse, error) {
	resp := rpcResponse{JSONRPC: "2.0", ID: req.ID}
	if len(resp.ID) == 0 {
		resp.ID = json.RawMessage("null")
	}
	if req.JSONRPC != "2.0" || req.Method == "" {
		resp.Error = errorf(codeInvalidRequest, `invalid request: "jsonrpc" must be "2.0" and "method" a non-empty string`)
		return resp, nil
	}
	m, ok := a.methodTable[req.Method]
	if !ok {
		resp.Error = errorf(codeMethodNotFound, "the method %s does not exist/is not available", req.Method)
		return resp, nil
	}
	var params []json.RawMessage
	if p := bytes.TrimSpace(req.Params); len(p) > 0 && string(p) != "null" {
		if err := json.Unmarshal(p, &params); err != nil {
			resp.Error = invalidParams("params must be an array: %v", err)
			return resp, nil
		}
	}
	result, err := m(cl, params)
	if errors.Is(err, app.ErrNotPrimary) {
		return resp, err
	}
	var re *rpcError
	switch {
	case errors.As(err, &re):
		resp.Error = re
	case err != nil:
		a.log.Error("eth JSON-RPC call failed", "method", req.Method, "err", err)
		resp.Error = errorf(codeInternal, "internal error")
	default:
		resp.Result = result
		if result == nil {
			resp.Result = json.RawMessage("null")
		}
	}
	return resp, nil
}

// param decodes params[i] into v; a missing optional param leaves v.
func param(params []json.RawMessage, i int, name string, required bool, v any) error {
	if i >= len(params) || string(bytes.TrimSpace(params[i])) == "null" {
		if required {
			return invalidParams("missing value for required argument %d (%s)", i, name)
		}
		return nil
	}
	var err error
	if u, ok := v.(json.Unmarshaler); ok {
		// What json.Unmarshal would do after validating params[i], which
		// was validated with the request it came from. Saves two passes
		// over a signed transaction's hex per call.
		err = u.UnmarshalJSON(params[i])
	} else {
		err = json.Unmarshal(params[i], v)
	}
	if err != nil {
		return invalidParams("invalid argument %d (%s): %v", i, name, err)
	}
	return nil
}

func maxParams(params []json.RawMessage, n int) error {
	if len(params) > n {
		return invalidParams("too many arguments, want at most %d", n)
	}
	return nil
}

func zeroQuantity(_ *call, params []json.RawMessage) (any, error) {
	if err := maxParams(params, 0); err != nil {
		return nil, err
	}
	return (*hexutil.Big)(common.Big0), nil
}

func (a *App) clientVersion(*call, []json.RawMessage) (any, error) {
	return "coco/" + a.cfg.Version + "/evm-" + strings.ToLower(Fork), nil
}

func (a *App) netVersion(c *call, _ []json.RawMessage) (any, error) {
	return c.exec.ChainID().String(), nil
}

func (a *App) chainID(c *call, _ []json.RawMessage) (any, error) {
	return (*hexutil.Big)(c.exec.ChainID()), nil
}

// batchCall is one call of a batch: decoded, or raw when it has to be
// decoded on its own to be answered (see decodeBatch).
type batchCall struct {
	req rpcRequest
	raw json.RawMessage
}

// decodeBatch decodes a batch in one pass when every call in it is an
// object of the right shape, which is what clients send; otherwise it
// splits the batch into raw calls, so that each malformed one gets its own
// error answer. An error means the batch itself is not a JSON array.
func decodeBatch(body []byte) ([]batchCall, error) {
	var reqs []rpcRequest
	if json.Unmarshal(body, &reqs) == nil {
		calls := make([]batchCall, len(reqs))
		for i, r := range reqs {
			calls[i].req = r
		}
		return calls, nil
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(body, &raws); err != nil {
		return nil, err
	}
	calls := make([]batchCall, len(raws))
	for i, r := range raws {
		calls[i].raw = r
	}
	return calls, nil
}

// sendsTransactions reports whether a batch calls eth_sendRawTransaction.
func sendsTransactions(calls []batchCall) bool {
	for _, c := range calls {
		method := c.req.Method
		if c.raw != nil {
			var m struct {
				Method string `json:"method"`
			}
			if json.Unmarshal(c.raw, &m) != nil {
				continue
			}
			method = m.Method
		}
		if method == "eth_sendRawTransaction" {
			return true
		}
	}
	return false
}
