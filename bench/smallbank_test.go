package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cocoledger/coco/app"
	"github.com/cocoledger/coco/app/smallbank"
	"github.com/cocoledger/coco/kv"
)

func TestSmallBankConfigValidation(t *testing.T) {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	valid := func() SmallBankConfig {
		return SmallBankConfig{Targets: []string{"127.0.0.1:1"}, ServiceCert: srv.Certificate(), Clients: 1, Duration: time.Second}
	}
	tests := []struct {
		name  string
		edit  func(*SmallBankConfig)
		error string // "" when valid
	}{
		{"valid", func(*SmallBankConfig) {}, ""},
		{"no targets", func(c *SmallBankConfig) { c.Targets = nil }, "no targets"},
		{"bad target", func(c *SmallBankConfig) { c.Targets = []string{"nohost"} }, "nohost"},
		{"no service cert", func(c *SmallBankConfig) { c.ServiceCert = nil }, "no service certificate"},
		{"no duration", func(c *SmallBankConfig) { c.Duration = 0 }, "duration must be positive"},
		{"negative warmup", func(c *SmallBankConfig) { c.Warmup = -time.Second }, "warmup must not be negative"},
		{"no clients", func(c *SmallBankConfig) { c.Clients = 0 }, "clients must be positive"},
		{"one account", func(c *SmallBankConfig) { c.Accounts = 1 }, "accounts must be in [2"},
		{"negative accounts", func(c *SmallBankConfig) { c.Accounts = -5 }, "accounts must be in [2"},
		{"ids overflow", func(c *SmallBankConfig) { c.Accounts, c.FirstID = 10, 1<<64-5 }, "no room for 10 accounts"},
		{"negative balance", func(c *SmallBankConfig) { c.InitialBalance = -1 }, "initial balance"},
		{"huge balance", func(c *SmallBankConfig) { c.InitialBalance = smallbank.MaxAmount + 1 }, "initial balance"},
		{"negative weight", func(c *SmallBankConfig) { c.Mix = SmallBankMix{Balance: 10, WriteCheck: -1} }, "write_check must not be negative"},
		{"only reads", func(c *SmallBankConfig) { c.Mix = SmallBankMix{Balance: 1} }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.edit(&c)
			err := c.normalise()
			if tt.error == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.error) {
				t.Fatalf("err = %v, want ErrInvalidConfig mentioning %q", err, tt.error)
			}
		})
	}
	// Defaults.
	c := valid()
	if err := c.normalise(); err != nil {
		t.Fatal(err)
	}
	if c.Accounts != DefaultSmallBankAccounts || c.InitialBalance != DefaultSmallBankBalance || c.Mix != DefaultSmallBankMix() || c.FirstID == 0 {
		t.Errorf("defaults: %+v", c)
	}
	// Ids from the clock stay exact in a JavaScript number.
	if c.FirstID+uint64(c.Accounts) > 1<<53 {
		t.Errorf("first id %d is above 2^53", c.FirstID)
	}
}

func TestSmallBankMix(t *testing.T) {
	m := DefaultSmallBankMix()
	if err := m.validate(); err != nil {
		t.Fatal(err)
	}
	w := m.weights()
	sum := 0
	for _, x := range w {
		sum += x
	}
	if sum != 100 || w[sbSendPayment] != 25 || w[sbBalance] != 15 {
		t.Errorf("default mix %v", w)
	}
	if got := m.String(); got != "balance 15%, deposit_checking 15%, transact_savings 15%, amalgamate 15%, write_check 15%, send_payment 25%" {
		t.Errorf("String() = %q", got)
	}

	// Draws follow the weights (within 1% of 200000 draws) and never
	// pick a zero weight.
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 200_000
	var counts [sbTxTypes]int
	for range n {
		counts[m.pick(rng)]++
	}
	for tx, c := range counts {
		if want := float64(w[tx]) / 100; abs(float64(c)/n-want) > 0.01 {
			t.Errorf("%s drawn %.3f of the time, want %.2f", sbTx(tx), float64(c)/n, want)
		}
	}
	only := SmallBankMix{Amalgamate: 3, SendPayment: 1}
	counts = [sbTxTypes]int{}
	for range 10_000 {
		counts[only.pick(rng)]++
	}
	if counts[sbAmalgamate]+counts[sbSendPayment] != 10_000 || counts[sbAmalgamate] < 7000 || counts[sbAmalgamate] > 8000 {
		t.Errorf("mix %v drew %v", only, counts)
	}

	// The same seed draws the same transactions.
	draw := func() string {
		c := &sbClient{cfg: &SmallBankConfig{Accounts: 10, FirstID: 100, Mix: m}, rng: rand.New(rand.NewPCG(7, 0))}
		var b strings.Builder
		for range 50 {
			tx, amount, body := c.request()
			fmt.Fprintf(&b, "%s %d %s\n", tx, amount, body)
		}
		return b.String()
	}
	first := draw()
	if first != draw() {
		t.Error("one seed drew two sequences")
	}
	t.Log(first[:200])
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// TestSmallBankRequests checks every drawn request against the
// application's rules: ids in range, two different accounts, amounts in
// range and the right fields.
func TestSmallBankRequests(t *testing.T) {
	c := &sbClient{cfg: &SmallBankConfig{Accounts: 3, FirstID: 50, Mix: DefaultSmallBankMix()}, rng: rand.New(rand.NewPCG(3, 4))}
	seen := map[sbTx]bool{}
	negative := false
	for range 2000 {
		tx, amount, body := c.request()
		seen[tx] = true
		var r map[string]int64
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatalf("%s body %s: %v", tx, body, err)
		}
		inRange := func(k string) {
			if v, ok := r[k]; !ok || v < 50 || v > 52 {
				t.Fatalf("%s body %s: %s out of range", tx, body, k)
			}
		}
		switch tx {
		case sbAmalgamate, sbSendPayment:
			inRange("from")
			inRange("to")
			if r["from"] == r["to"] {
				t.Fatalf("%s body %s: one account on both sides", tx, body)
			}
		default:
			inRange("id")
		}
		_, hasAmount := r["amount"]
		if hasAmount != (tx != sbBalance && tx != sbAmalgamate) || r["amount"] != amount {
			t.Fatalf("%s body %s, amount %d", tx, body, amount)
		}
		if amount < 0 {
			negative = true
			if tx != sbTransactSavings {
				t.Fatalf("%s with a negative amount", tx)
			}
		}
		if amount > smallBankMaxAmount || amount < -smallBankMaxAmount {
			t.Fatalf("%s amount %d", tx, amount)
		}
	}
	if len(seen) != int(sbTxTypes) || !negative {
		t.Errorf("2000 draws saw %v (withdrawals: %v)", seen, negative)
	}
}

func TestParseSmallBankAnswer(t *testing.T) {
	tests := []struct {
		name    string
		tx      sbTx
		status  int
		body    string
		out     sbOutcome
		cause   string
		charged int64
	}{
		{"deposit", sbDepositChecking, 200, `{"id":1,"checking":5,"savings":0}`, sbDone, "", 0},
		{"balance", sbBalance, 200, `{"id":1,"checking":5,"savings":0,"balance":5}`, sbDone, "", 0},
		{"check", sbWriteCheck, 200, `{"id":1,"checking":-6,"savings":0,"charged":11}`, sbDone, "", 11},
		{"check without charge", sbWriteCheck, 200, `{"id":1,"checking":-6,"savings":0}`, sbUncertain, "malformed", 0},
		{"check not JSON", sbWriteCheck, 200, `<html>`, sbUncertain, "malformed", 0},
		{"insufficient funds", sbSendPayment, 422, `{"error":{"code":"InsufficientFunds","message":"m"}}`, sbAborted, "422/InsufficientFunds", 0},
		{"out of range", sbDepositChecking, 422, `{"error":{"code":"BalanceOutOfRange","message":"m"}}`, sbFailed, "422/BalanceOutOfRange", 0},
		{"unknown account", sbAmalgamate, 404, `{"error":{"code":"AccountNotFound","message":"m"}}`, sbFailed, "404/AccountNotFound", 0},
		{"conflict", sbTransactSavings, 409, `{"error":{"code":"TransactionConflict","message":"m"}}`, sbFailed, "409/TransactionConflict", 0},
		{"not JSON 404", sbTransactSavings, 404, `404 page not found`, sbFailed, "404", 0},
		{"cancelled write", sbDepositChecking, 503, `{"error":{"code":"RequestCancelled","message":"m"}}`, sbUncertain, "503/RequestCancelled", 0},
		{"internal error", sbWriteCheck, 500, `{"error":{"code":"InternalError","message":"m"}}`, sbUncertain, "500/InternalError", 0},
		{"failed read", sbBalance, 503, `{"error":{"code":"ServiceUnavailable","message":"m"}}`, sbFailed, "503/ServiceUnavailable", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, cause, charged := parseSmallBankAnswer(tt.tx, tt.status, []byte(tt.body))
			if out != tt.out || cause != tt.cause || charged != tt.charged {
				t.Errorf("got (%d, %q, %d), want (%d, %q, %d)", out, cause, charged, tt.out, tt.cause, tt.charged)
			}
		})
	}
}

func TestSmallBankUnsureBounds(t *testing.T) {
	tests := []struct {
		u      sbUnsure
		lo, hi int64
	}{
		{sbUnsure{tx: sbDepositChecking, amount: 7}, 0, 7},
		{sbUnsure{tx: sbDepositChecking, amount: 7, committed: true}, 7, 7},
		{sbUnsure{tx: sbTransactSavings, amount: -7}, -7, 0},
		{sbUnsure{tx: sbTransactSavings, amount: 7}, 0, 7},
		{sbUnsure{tx: sbWriteCheck, amount: 7}, -8, 0},
		{sbUnsure{tx: sbWriteCheck, amount: 7, committed: true}, -8, -7},
		{sbUnsure{tx: sbSendPayment, amount: 7}, 0, 0},
		{sbUnsure{tx: sbAmalgamate}, 0, 0},
	}
	for _, tt := range tests {
		if lo, hi := tt.u.bounds(); lo != tt.lo || hi != tt.hi {
			t.Errorf("%+v: [%d, %d], want [%d, %d]", tt.u, lo, hi, tt.lo, tt.hi)
		}
	}
}

// fakeBank serves the smallbank application over HTTPS from a kv store,
// one transaction at a time, answering like a node (JSON errors, a
// transaction id on every committed write, /node/tx). Its faults make it
// answer some committed writes with a 503 (with or without their
// transaction id), or commit some deposits twice (a bug the check must
// catch).
type fakeBank struct {
	mu        sync.Mutex
	store     *kv.Store
	eps       map[string]app.Endpoint
	writes    int
	cancelled int // every cancelled-th committed write is answered 503
	dropTxID  bool
	double    int // every double-th deposit is applied twice
	deposits  int
	*httptest.Server
}

func startFakeBank(t *testing.T, configure func(*fakeBank)) *fakeBank {
	t.Helper()
	f := &fakeBank{store: kv.NewStore(), eps: map[string]app.Endpoint{}}
	for _, ep := range (smallbank.App{}).Endpoints() {
		f.eps[ep.Path] = ep
	}
	if configure != nil {
		configure(f)
	}
	f.Server = httptest.NewTLSServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeBank) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	writeJSON := func(status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	fail := func(status int, code, msg string) {
		writeJSON(status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
	}
	if r.URL.Path == "/node/tx" {
		var seq int
		if _, err := fmt.Sscanf(r.URL.Query().Get("transaction_id"), "1.%d", &seq); err != nil || seq < 1 || seq > f.writes {
			writeJSON(200, map[string]string{"status": "Unknown"})
			return
		}
		writeJSON(200, map[string]string{"status": "Committed"})
		return
	}
	ep, ok := f.eps[r.URL.Path]
	if !ok {
		fail(404, "ResourceNotFound", r.URL.Path)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		fail(400, "InvalidInput", err.Error())
		return
	}
	times := 1
	if f.double > 0 && strings.HasSuffix(r.URL.Path, "/deposit_checking") {
		f.deposits++
		if f.deposits%f.double == 0 {
			times = 2
		}
	}
	var resp *app.Response
	for range times {
		c := &app.Context{Request: r, Body: body}
		if ep.Mode == app.ReadOnly {
			c.Tx = f.store.BeginReadOnly()
		} else {
			c.Tx = f.store.Begin()
		}
		var err error
		if resp, err = ep.Handler(c); err != nil {
			var ae *app.Error
			if errors.As(err, &ae) {
				fail(ae.Status, ae.Code, ae.Message)
			} else {
				fail(500, "InternalError", err.Error())
			}
			return
		}
		if ep.Mode == app.ReadWrite && c.Tx.HasWrites() {
			v := f.store.Version() + 1
			if err := f.store.Apply(v, c.Tx.WriteSet()); err != nil {
				fail(500, "InternalError", err.Error())
				return
			}
			if err := f.store.MarkCommitted(v); err != nil {
				fail(500, "InternalError", err.Error())
				return
			}
		}
	}
	if ep.Mode == app.ReadWrite {
		f.writes++
		txid := fmt.Sprintf("1.%d", f.writes)
		if f.cancelled > 0 && f.writes%f.cancelled == 0 {
			if !f.dropTxID {
				w.Header().Set(txIDHeader, txid)
			}
			fail(503, "RequestCancelled", "the request was cancelled before its transaction committed")
			return
		}
		w.Header().Set(txIDHeader, txid)
	}
	writeJSON(200, resp.Body)
}

func runFakeBank(t *testing.T, f *fakeBank, accounts int) (*SmallBankResult, *SmallBankCheck, error) {
	t.Helper()
	cfg := clientCert(t)
	res, err := RunSmallBank(t.Context(), SmallBankConfig{
		Targets: []string{f.Listener.Addr().String()}, ServiceCert: f.Certificate(), ClientCert: cfg.ClientCert,
		Clients: 4, Duration: 400 * time.Millisecond, Warmup: 100 * time.Millisecond,
		Accounts: accounts, FirstID: 1000, InitialBalance: 50, Seed: 9,
	})
	if err != nil {
		t.Fatalf("RunSmallBank: %v", err)
	}
	t.Log(res)
	check, err := VerifySmallBank(t.Context(), res)
	if check != nil {
		t.Log(check)
	}
	return res, check, err
}

func TestRunSmallBank(t *testing.T) {
	f := startFakeBank(t, nil)
	// Few accounts with little money: refusals and overdrafts happen.
	res, check, err := runFakeBank(t, f, 1500)
	if err != nil {
		t.Fatalf("VerifySmallBank: %v", err)
	}
	if res.Transactions == 0 || res.ErrorCount() != 0 || res.Accounts != 1500 || res.Clients != 4 {
		t.Errorf("result %+v", res)
	}
	if res.Connections != 4 {
		t.Errorf("%d connections dialed, want one per client", res.Connections)
	}
	var byType uint64
	for _, name := range sbNames {
		if res.Committed[name] == 0 {
			t.Errorf("no %s committed: %v", name, res.Committed)
		}
		byType += res.Committed[name]
	}
	if byType != res.Transactions {
		t.Errorf("committed by type %v sum to %d, not %d", res.Committed, byType, res.Transactions)
	}
	if !check.Exact() || check.Total != check.Initial+check.Net || check.Initial != 1500*2*50 || check.Net == 0 {
		t.Errorf("check %+v", check)
	}
	row := res.Markdown()
	if !strings.HasPrefix(row, "| "+f.Listener.Addr().String()+" | 4 | 1500 | ") || !strings.HasSuffix(row, " | 0 |") {
		t.Errorf("Markdown() = %q", row)
	}
	fig := res.Figure("coco-1")
	if fig.Workload != "smallbank" || fig.System != "coco-1" || fig.Clients != 4 || fig.PerSec != res.Throughput || fig.Errors != 0 {
		t.Errorf("Figure = %+v", fig)
	}

	// A second run on the same ids is refused by the setup.
	cfg := res.cfg
	if _, err := RunSmallBank(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "AccountAlreadyExists") {
		t.Errorf("a second setup of the same accounts: %v", err)
	}
}

func TestRunSmallBankResolvesCancelledWrites(t *testing.T) {
	f := startFakeBank(t, func(f *fakeBank) { f.cancelled = 7 })
	res, check, err := runFakeBank(t, f, 100)
	if err != nil {
		t.Fatalf("VerifySmallBank: %v", err)
	}
	if res.Errors["503/RequestCancelled"] == 0 || check.Resolved == 0 {
		t.Fatalf("errors %v, %d resolved", res.Errors, check.Resolved)
	}
	// Committed write_checks charged the amount or one more.
	if check.High-check.Low > int64(check.Unsure) || check.Low > check.Total || check.Total > check.High {
		t.Errorf("check %+v", check)
	}
}

func TestRunSmallBankBoundsUnknownWrites(t *testing.T) {
	f := startFakeBank(t, func(f *fakeBank) { f.cancelled, f.dropTxID = 5, true })
	_, check, err := runFakeBank(t, f, 100)
	if err != nil {
		t.Fatalf("VerifySmallBank: %v", err)
	}
	if check.Exact() || check.Unsure == 0 || check.Resolved != 0 {
		t.Errorf("check %+v, want a range", check)
	}
}

func TestRunSmallBankCatchesLostMoney(t *testing.T) {
	f := startFakeBank(t, func(f *fakeBank) { f.double = 3 })
	_, _, err := runFakeBank(t, f, 100)
	if !errors.Is(err, ErrConservation) {
		t.Fatalf("VerifySmallBank of a bank that doubles deposits: %v, want ErrConservation", err)
	}
}
