// Package smallbank is coco's SmallBank application, the workload of CCF's
// smallbank sample and of the SmallBank OLTP benchmark: accounts with a
// checking and a savings balance, kept in private maps (encrypted in the
// ledger), and the benchmark's five write transactions (transact_savings,
// deposit_checking, amalgamate, write_check, send_payment) plus a
// read-only balance.
//
// Amounts are signed 64-bit integers (think cents). Refusals:
//   - 400 InvalidInput: malformed JSON, a missing or unknown field, an
//     amount that is not positive (transact_savings: zero) or above
//     MaxAmount, the same account on both sides of amalgamate or
//     send_payment, an empty, oversized or self-colliding batch;
//   - 404 AccountNotFound: an account that does not exist;
//   - 409 AccountAlreadyExists: creating an account that exists;
//   - 422 InsufficientFunds: a transact_savings withdrawal larger than the
//     savings balance, or a send_payment larger than the checking balance
//     (CCF answers 400; 422 keeps a refused business rule apart from a
//     malformed request);
//   - 422 BalanceOutOfRange: a result that would not fit in 64 bits.
//
// A refused transaction writes nothing.
package smallbank

import (
	"encoding/binary"
	"fmt"
	"net/http"

	"github.com/cocoledger/coco/app"
	"github.com/cocoledger/coco/kv"
)

// The private maps holding the balances, keyed by the account id as 8
// bytes big-endian; values are int64 as 8 bytes big-endian. Two maps, as
// in SmallBank, so that a transaction on savings and one on checking of the
// same account do not conflict.
const (
	CheckingMap = "smallbank.checking"
	SavingsMap  = "smallbank.savings"
)

// Limits on input.
const (
	// MaxAmount bounds every amount and initial balance, so that no single
	// request comes near overflowing a balance.
	MaxAmount = 1_000_000_000_000_000
	// MaxBatch is the most accounts one batch create may hold.
	MaxBatch = 10_000
)

// Error codes specific to this application (with app's InvalidInput).
const (
	CodeAccountNotFound      = "AccountNotFound"
	CodeAccountAlreadyExists = "AccountAlreadyExists"
	CodeInsufficientFunds    = "InsufficientFunds"
	CodeBalanceOutOfRange    = "BalanceOutOfRange"
)

// PathPrefix is where the application's endpoints live.
const PathPrefix = "/app/smallbank/"

// App is the SmallBank application.
type App struct{}

var _ app.Application = App{}

// Name implements app.Application.
func (App) Name() string { return "smallbank" }

// IndexedMaps implements app.Application: SmallBank has no historical
// endpoints.
func (App) IndexedMaps() []string { return nil }

// Endpoints implements app.Application. Every endpoint is a POST with a
// JSON body, callable by users.
func (App) Endpoints() []app.Endpoint {
	ep := func(name string, mode app.Mode, summary string, h app.Handler) app.Endpoint {
		return app.Endpoint{Method: http.MethodPost, Path: PathPrefix + name, Auth: app.AuthUser, Mode: mode, Summary: summary, Handler: h}
	}
	return []app.Endpoint{
		ep("account", app.ReadWrite, "Create an account with checking and savings balances", create),
		ep("account/batch", app.ReadWrite, "Create many accounts in one transaction", createBatch),
		ep("balance", app.ReadOnly, "Read an account's checking and savings balances and their sum", balance),
		ep("transact_savings", app.ReadWrite, "Add a signed amount to an account's savings", transactSavings),
		ep("deposit_checking", app.ReadWrite, "Deposit a positive amount into an account's checking", depositChecking),
		ep("amalgamate", app.ReadWrite, "Move all of one account's funds into another's checking", amalgamate),
		ep("write_check", app.ReadWrite, "Debit a check from checking, with a penalty of 1 when the account holds less than it", writeCheck),
		ep("send_payment", app.ReadWrite, "Move an amount from one account's checking to another's", sendPayment),
	}
}

// Account is an account's state, as every endpoint but the batch create
// answers it.
type Account struct {
	ID       uint64 `json:"id"`
	Checking int64  `json:"checking"`
	Savings  int64  `json:"savings"`
}

// BalanceResponse answers balance.
type BalanceResponse struct {
	Account
	// Balance is Checking + Savings.
	Balance int64 `json:"balance"`
}

// WriteCheckResponse answers write_check.
type WriteCheckResponse struct {
	Account
	// Charged is what left the checking balance: the amount, plus a
	// penalty of 1 when the account held less than the amount.
	Charged int64 `json:"charged"`
}

// TransferResponse answers amalgamate and send_payment with both accounts
// after the transaction.
type TransferResponse struct {
	From Account `json:"from"`
	To   Account `json:"to"`
}

// BatchResponse answers a batch create.
type BatchResponse struct {
	Created int `json:"created"`
}

type newAccount struct {
	ID       *uint64 `json:"id"`
	Checking *int64  `json:"checking"`
	Savings  *int64  `json:"savings"`
}

type batchRequest struct {
	Accounts []newAccount `json:"accounts"`
}

type idRequest struct {
	ID *uint64 `json:"id"`
}

type amountRequest struct {
	ID     *uint64 `json:"id"`
	Amount *int64  `json:"amount"`
}

type transferRequest struct {
	From   *uint64 `json:"from"`
	To     *uint64 `json:"to"`
	Amount *int64  `json:"amount"`
}

func key(id uint64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], id)
	return string(b[:])
}

func encode(v int64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(v))
	return b[:]
}

func decode(mapName string, id uint64, b []byte) (int64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("smallbank: %s of account %d holds %d bytes, want 8", mapName, id, len(b))
	}
	return int64(binary.BigEndian.Uint64(b)), nil
}

// load reads an account; a missing account is a 404.
func load(tx *kv.Tx, id uint64) (Account, error) {
	k := key(id)
	c, okC := tx.Get(CheckingMap, k)
	s, okS := tx.Get(SavingsMap, k)
	if !okC || !okS {
		return Account{}, app.Errorf(http.StatusNotFound, CodeAccountNotFound, "no account with id %d", id)
	}
	a := Account{ID: id}
	var err error
	if a.Checking, err = decode(CheckingMap, id, c); err != nil {
		return Account{}, err
	}
	if a.Savings, err = decode(SavingsMap, id, s); err != nil {
		return Account{}, err
	}
	return a, nil
}

func putChecking(tx *kv.Tx, a Account) error {
	return tx.Put(CheckingMap, key(a.ID), encode(a.Checking))
}

func putSavings(tx *kv.Tx, a Account) error {
	return tx.Put(SavingsMap, key(a.ID), encode(a.Savings))
}

// add is a + b, or a BalanceOutOfRange error when it overflows.
func add(a, b int64, what string) (int64, error) {
	s := a + b
	if (b > 0 && s < a) || (b < 0 && s > a) {
		return 0, app.Errorf(http.StatusUnprocessableEntity, CodeBalanceOutOfRange, "%s would leave the 64-bit range", what)
	}
	return s, nil
}

func insufficient(format string, args ...any) error {
	return app.Errorf(http.StatusUnprocessableEntity, CodeInsufficientFunds, format, args...)
}

func checkBalance(name string, v int64) error {
	if v < 0 || v > MaxAmount {
		return app.BadRequest("%s must be in [0, %d], got %d", name, int64(MaxAmount), v)
	}
	return nil
}

// positive checks a required amount that must be in [1, MaxAmount].
func positive(amount *int64) (int64, error) {
	if amount == nil {
		return 0, app.BadRequest("amount is required")
	}
	if *amount <= 0 || *amount > MaxAmount {
		return 0, app.BadRequest("amount must be in [1, %d], got %d", int64(MaxAmount), *amount)
	}
	return *amount, nil
}

func (r *newAccount) check(where string) error {
	if r.ID == nil || r.Checking == nil || r.Savings == nil {
		return app.BadRequest(`%s must be {"id": <uint64>, "checking": <int64>, "savings": <int64>}`, where)
	}
	if err := checkBalance(where+" checking", *r.Checking); err != nil {
		return err
	}
	return checkBalance(where+" savings", *r.Savings)
}

func (r *newAccount) put(tx *kv.Tx) error {
	k := key(*r.ID)
	if _, ok := tx.Get(CheckingMap, k); ok {
		return app.Errorf(http.StatusConflict, CodeAccountAlreadyExists, "an account with id %d already exists", *r.ID)
	}
	if _, ok := tx.Get(SavingsMap, k); ok {
		return app.Errorf(http.StatusConflict, CodeAccountAlreadyExists, "an account with id %d already exists", *r.ID)
	}
	a := Account{ID: *r.ID, Checking: *r.Checking, Savings: *r.Savings}
	if err := putChecking(tx, a); err != nil {
		return err
	}
	return putSavings(tx, a)
}

func create(c *app.Context) (*app.Response, error) {
	var r newAccount
	if err := app.DecodeJSON(c.Body, &r); err != nil {
		return nil, err
	}
	if err := r.check("body"); err != nil {
		return nil, err
	}
	if err := r.put(c.Tx); err != nil {
		return nil, err
	}
	return app.JSON(Account{ID: *r.ID, Checking: *r.Checking, Savings: *r.Savings}), nil
}

func createBatch(c *app.Context) (*app.Response, error) {
	var r batchRequest
	if err := app.DecodeJSON(c.Body, &r); err != nil {
		return nil, err
	}
	if len(r.Accounts) == 0 || len(r.Accounts) > MaxBatch {
		return nil, app.BadRequest(`body must be {"accounts": [...]} with 1 to %d accounts, got %d`, MaxBatch, len(r.Accounts))
	}
	seen := make(map[uint64]bool, len(r.Accounts))
	for i := range r.Accounts {
		a := &r.Accounts[i]
		where := fmt.Sprintf("accounts[%d]", i)
		if err := a.check(where); err != nil {
			return nil, err
		}
		if seen[*a.ID] {
			return nil, app.BadRequest("%s: id %d appears twice in the batch", where, *a.ID)
		}
		seen[*a.ID] = true
		if err := a.put(c.Tx); err != nil {
			return nil, err
		}
	}
	return app.JSON(BatchResponse{Created: len(r.Accounts)}), nil
}

func balance(c *app.Context) (*app.Response, error) {
	var r idRequest
	if err := app.DecodeJSON(c.Body, &r); err != nil {
		return nil, err
	}
	if r.ID == nil {
		return nil, app.BadRequest(`body must be {"id": <uint64>}`)
	}
	a, err := load(c.Tx, *r.ID)
	if err != nil {
		return nil, err
	}
	total, err := add(a.Checking, a.Savings, "the balance")
	if err != nil {
		return nil, err
	}
	return app.JSON(BalanceResponse{Account: a, Balance: total}), nil
}

func decodeAmount(c *app.Context) (id uint64, amount *int64, err error) {
	var r amountRequest
	if err := app.DecodeJSON(c.Body, &r); err != nil {
		return 0, nil, err
	}
	if r.ID == nil {
		return 0, nil, app.BadRequest(`body must be {"id": <uint64>, "amount": <int64>}`)
	}
	return *r.ID, r.Amount, nil
}

// transactSavings adds a signed amount to savings; a withdrawal may not
// take savings below zero.
func transactSavings(c *app.Context) (*app.Response, error) {
	id, amount, err := decodeAmount(c)
	if err != nil {
		return nil, err
	}
	if amount == nil {
		return nil, app.BadRequest("amount is required")
	}
	v := *amount
	if v == 0 || v < -MaxAmount || v > MaxAmount {
		return nil, app.BadRequest("amount must be non-zero and in [-%d, %d], got %d", int64(MaxAmount), int64(MaxAmount), v)
	}
	a, err := load(c.Tx, id)
	if err != nil {
		return nil, err
	}
	s, err := add(a.Savings, v, "the savings balance")
	if err != nil {
		return nil, err
	}
	if s < 0 {
		return nil, insufficient("account %d holds %d in savings, cannot withdraw %d", id, a.Savings, -v)
	}
	a.Savings = s
	if err := putSavings(c.Tx, a); err != nil {
		return nil, err
	}
	return app.JSON(a), nil
}

// positiveFor decodes an {id, amount} request whose amount must be
// positive and loads the account.
func positiveFor(c *app.Context) (Account, int64, error) {
	id, amount, err := decodeAmount(c)
	if err != nil {
		return Account{}, 0, err
	}
	v, err := positive(amount)
	if err != nil {
		return Account{}, 0, err
	}
	a, err := load(c.Tx, id)
	if err != nil {
		return Account{}, 0, err
	}
	return a, v, nil
}

func depositChecking(c *app.Context) (*app.Response, error) {
	a, v, err := positiveFor(c)
	if err != nil {
		return nil, err
	}
	if a.Checking, err = add(a.Checking, v, "the checking balance"); err != nil {
		return nil, err
	}
	if err := putChecking(c.Tx, a); err != nil {
		return nil, err
	}
	return app.JSON(a), nil
}

// writeCheck debits checking by the amount, which may take it below zero
// (an overdraft); when checking and savings together hold less than the
// amount, a penalty of 1 is charged too.
func writeCheck(c *app.Context) (*app.Response, error) {
	a, v, err := positiveFor(c)
	if err != nil {
		return nil, err
	}
	total, err := add(a.Checking, a.Savings, "the balance")
	if err != nil {
		return nil, err
	}
	charged := v
	if total < v {
		charged++
	}
	if a.Checking, err = add(a.Checking, -charged, "the checking balance"); err != nil {
		return nil, err
	}
	if err := putChecking(c.Tx, a); err != nil {
		return nil, err
	}
	return app.JSON(WriteCheckResponse{Account: a, Charged: charged}), nil
}

func decodeTransfer(c *app.Context, withAmount bool) (from, to uint64, amount *int64, err error) {
	var r transferRequest
	if err := app.DecodeJSON(c.Body, &r); err != nil {
		return 0, 0, nil, err
	}
	if r.From == nil || r.To == nil {
		if withAmount {
			return 0, 0, nil, app.BadRequest(`body must be {"from": <uint64>, "to": <uint64>, "amount": <int64>}`)
		}
		return 0, 0, nil, app.BadRequest(`body must be {"from": <uint64>, "to": <uint64>}`)
	}
	if !withAmount && r.Amount != nil {
		return 0, 0, nil, app.BadRequest("amalgamate takes no amount: it moves everything")
	}
	if *r.From == *r.To {
		return 0, 0, nil, app.BadRequest("from and to must be different accounts, both are %d", *r.From)
	}
	return *r.From, *r.To, r.Amount, nil
}

// loadPair loads the two accounts of a transfer.
func loadPair(tx *kv.Tx, fromID, toID uint64) (from, to Account, err error) {
	if from, err = load(tx, fromID); err != nil {
		return Account{}, Account{}, err
	}
	if to, err = load(tx, toID); err != nil {
		return Account{}, Account{}, err
	}
	return from, to, nil
}

// amalgamate moves everything the first account holds (checking and
// savings, which are zeroed) into the second account's checking.
func amalgamate(c *app.Context) (*app.Response, error) {
	fromID, toID, _, err := decodeTransfer(c, false)
	if err != nil {
		return nil, err
	}
	from, to, err := loadPair(c.Tx, fromID, toID)
	if err != nil {
		return nil, err
	}
	total, err := add(from.Checking, from.Savings, "the source's balance")
	if err != nil {
		return nil, err
	}
	if to.Checking, err = add(to.Checking, total, "the destination's checking balance"); err != nil {
		return nil, err
	}
	from.Checking, from.Savings = 0, 0
	if err := putChecking(c.Tx, from); err != nil {
		return nil, err
	}
	if err := putSavings(c.Tx, from); err != nil {
		return nil, err
	}
	if err := putChecking(c.Tx, to); err != nil {
		return nil, err
	}
	return app.JSON(TransferResponse{From: from, To: to}), nil
}

// sendPayment moves an amount between checking balances; the payer's
// checking must hold it.
func sendPayment(c *app.Context) (*app.Response, error) {
	fromID, toID, amount, err := decodeTransfer(c, true)
	if err != nil {
		return nil, err
	}
	v, err := positive(amount)
	if err != nil {
		return nil, err
	}
	from, to, err := loadPair(c.Tx, fromID, toID)
	if err != nil {
		return nil, err
	}
	if from.Checking < v {
		return nil, insufficient("account %d holds %d in checking, cannot pay %d", fromID, from.Checking, v)
	}
	if to.Checking, err = add(to.Checking, v, "the payee's checking balance"); err != nil {
		return nil, err
	}
	from.Checking -= v
	if err := putChecking(c.Tx, from); err != nil {
		return nil, err
	}
	if err := putChecking(c.Tx, to); err != nil {
		return nil, err
	}
	return app.JSON(TransferResponse{From: from, To: to}), nil
}
