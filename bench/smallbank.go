package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cocoledger/coco/app/smallbank"
)

// Defaults applied by RunSmallBank to zero SmallBankConfig fields.
const (
	DefaultSmallBankAccounts = 10_000
	// DefaultSmallBankBalance is every account's initial checking balance,
	// and its initial savings balance.
	DefaultSmallBankBalance = 10_000
)

const (
	// smallBankSetupBatch is the number of accounts per batch create.
	smallBankSetupBatch = 1000
	// smallBankMaxAmount bounds the amounts clients send: amounts are
	// uniform in [1, smallBankMaxAmount] (transact_savings: either sign),
	// small beside the initial balances so that refusals stay rare.
	smallBankMaxAmount = 100
	// smallBankAnswerLimit bounds how much of an answer a client reads.
	smallBankAnswerLimit = 64 << 10
	// readConsistencyHeader asks a node for a local read (see
	// docs/api.md, Read consistency).
	readConsistencyHeader = "x-coco-read-consistency"
	// txIDHeader carries the transaction id of a write, also on errors.
	txIDHeader = "x-ms-ccf-transaction-id"
)

// ErrConservation is wrapped by VerifySmallBank when the money held by the
// accounts is not what the acknowledged transactions say.
var ErrConservation = errors.New("smallbank: money is not conserved")

// sbTx is a SmallBank transaction type.
type sbTx int

const (
	sbBalance sbTx = iota
	sbDepositChecking
	sbTransactSavings
	sbAmalgamate
	sbWriteCheck
	sbSendPayment
	sbTxTypes
)

// sbNames are the transaction types' endpoint names (under
// smallbank.PathPrefix), in sbTx order.
var sbNames = [sbTxTypes]string{"balance", "deposit_checking", "transact_savings", "amalgamate", "write_check", "send_payment"}

func (t sbTx) String() string { return sbNames[t] }

// SmallBankMix weighs the transaction types: a client picks each with
// probability weight / sum of weights.
type SmallBankMix struct {
	Balance, DepositChecking, TransactSavings, Amalgamate, WriteCheck, SendPayment int
}

// DefaultSmallBankMix is SmallBank's standard mix, as H-Store and
// OLTPBench run it: 25% send_payment, 15% each of the other five (balance,
// the only read, included).
func DefaultSmallBankMix() SmallBankMix {
	return SmallBankMix{Balance: 15, DepositChecking: 15, TransactSavings: 15, Amalgamate: 15, WriteCheck: 15, SendPayment: 25}
}

func (m SmallBankMix) weights() [sbTxTypes]int {
	return [sbTxTypes]int{m.Balance, m.DepositChecking, m.TransactSavings, m.Amalgamate, m.WriteCheck, m.SendPayment}
}

func (m SmallBankMix) validate() error {
	sum := 0
	for t, w := range m.weights() {
		if w < 0 {
			return fmt.Errorf("mix weight of %s must not be negative, got %d", sbTx(t), w)
		}
		if w > 1_000_000 {
			return fmt.Errorf("mix weight of %s must be at most 1000000, got %d", sbTx(t), w)
		}
		sum += w
	}
	if sum == 0 {
		return errors.New("mix weights are all zero")
	}
	return nil
}

// pick draws a transaction type.
func (m SmallBankMix) pick(rng *rand.Rand) sbTx {
	w := m.weights()
	sum := 0
	for _, x := range w {
		sum += x
	}
	r := rng.IntN(sum)
	for t, x := range w {
		if r < x {
			return sbTx(t)
		}
		r -= x
	}
	return sbTxTypes - 1 // unreachable: r < sum
}

// String renders the mix as percentages, e.g. "balance 15%, ...".
func (m SmallBankMix) String() string {
	w := m.weights()
	sum := 0
	for _, x := range w {
		sum += x
	}
	parts := make([]string, 0, sbTxTypes)
	for t, x := range w {
		if x > 0 && sum > 0 {
			parts = append(parts, fmt.Sprintf("%s %.4g%%", sbTx(t), 100*float64(x)/float64(sum)))
		}
	}
	return strings.Join(parts, ", ")
}

// SmallBankConfig describes a SmallBank workload on coco's smallbank app.
type SmallBankConfig struct {
	// Targets are the RPC addresses (host:port) requests rotate over; the
	// setup and the verification use the first.
	Targets []string
	// ServiceCert is the only CA trusted for the servers' certificates.
	ServiceCert *x509.Certificate
	// ClientCert authenticates the user (TLS client certificate).
	ClientCert tls.Certificate
	// Clients is the number of concurrent closed-loop clients, each on
	// its own kept-alive connection to every target.
	Clients int
	// Duration is the measured window; Warmup precedes it and is not counted.
	Duration time.Duration
	Warmup   time.Duration
	// Accounts is the number of accounts created by the setup (at least
	// 2); 0 means DefaultSmallBankAccounts. Their ids are FirstID,
	// FirstID+1, ...; FirstID 0 picks the clock's Unix time in
	// microseconds, so that runs on one service do not collide (a run
	// lasts longer than a microsecond per account) and ids stay below
	// 2^53, exact in JavaScript.
	Accounts int
	FirstID  uint64
	// InitialBalance is every account's initial checking balance and its
	// initial savings balance; 0 means DefaultSmallBankBalance.
	InitialBalance int64
	// Mix weighs the transaction types; the zero value means
	// DefaultSmallBankMix.
	Mix SmallBankMix
	// Seed seeds the clients' choices: client i draws from PCG(Seed, i).
	Seed uint64
	// LocalReads asks for local (not linearizable) balance reads.
	LocalReads bool
}

func (c *SmallBankConfig) normalise() error {
	errs := checkRun(c.Targets, c.ServiceCert, c.Duration, c.Warmup)
	if c.Clients <= 0 {
		errs = append(errs, fmt.Errorf("clients must be positive, got %d", c.Clients))
	}
	if c.Accounts == 0 {
		c.Accounts = DefaultSmallBankAccounts
	}
	if c.Accounts < 2 || c.Accounts > 100_000_000 {
		errs = append(errs, fmt.Errorf("accounts must be in [2, 100000000], got %d", c.Accounts))
	}
	if c.FirstID == 0 {
		c.FirstID = uint64(time.Now().UnixMicro())
	}
	if c.Accounts > 0 && c.FirstID > math.MaxUint64-uint64(c.Accounts) {
		errs = append(errs, fmt.Errorf("first id %d leaves no room for %d accounts", c.FirstID, c.Accounts))
	}
	if c.InitialBalance == 0 {
		c.InitialBalance = DefaultSmallBankBalance
	}
	if c.InitialBalance < 0 || c.InitialBalance > smallbank.MaxAmount {
		errs = append(errs, fmt.Errorf("initial balance must be in [1, %d], got %d", int64(smallbank.MaxAmount), c.InitialBalance))
	}
	if c.Mix == (SmallBankMix{}) {
		c.Mix = DefaultSmallBankMix()
	}
	if err := c.Mix.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

// SmallBankResult summarises one RunSmallBank run. Only the measured window
// counts for the rates, latencies, refusals and errors; the money every
// acknowledged write moved is tracked over the whole run, warmup included,
// for VerifySmallBank.
type SmallBankResult struct {
	// Target names what was measured (the addresses, joined by commas).
	Target   string
	Clients  int
	Accounts int
	Mix      SmallBankMix
	// Transactions is the number of committed writes (200) and successful
	// balance reads (200); Committed splits it by transaction type.
	Transactions uint64
	Committed    map[string]uint64
	// Aborted counts transactions the application refused by its rules
	// (422 InsufficientFunds), by type: SmallBank's user aborts, neither
	// committed nor errors.
	Aborted map[string]int
	// Errors counts failed requests by cause: "status/Code" for an error
	// answer ("409/TransactionConflict"), "transport" for no answer,
	// "malformed" for a 200 whose body made no sense.
	Errors map[string]int
	// LastError is the last error seen, if any.
	LastError string
	// Connections is the number of TCP connections dialed during the run.
	Connections int64
	Elapsed     time.Duration
	// Throughput is Transactions per second; P50..Max their latency.
	latencyStats

	cfg    SmallBankConfig
	net    int64      // money injected by acknowledged writes, whole run
	unsure []sbUnsure // writes with an unknown outcome, whole run
}

// ErrorCount is the total number of failed requests.
func (r *SmallBankResult) ErrorCount() int { return sumCounts(r.Errors) }

// AbortCount is the total number of refused transactions.
func (r *SmallBankResult) AbortCount() int { return sumCounts(r.Aborted) }

// SmallBankMarkdownHeader is the table header matching
// SmallBankResult.Markdown rows.
const SmallBankMarkdownHeader = "| target | clients | accounts | committed tx/s | p50 | p99 | aborted | errors |\n|---|---:|---:|---:|---:|---:|---:|---|"

// Markdown renders r as one row of the SmallBankMarkdownHeader table.
func (r *SmallBankResult) Markdown() string {
	return fmt.Sprintf("| %s | %d | %d | %.1f | %s | %s | %d | %s |",
		r.Target, r.Clients, r.Accounts, r.Throughput, fmtLatency(r.P50), fmtLatency(r.P99), r.AbortCount(), summariseErrors(r.Errors))
}

// String is a one-line human summary.
func (r *SmallBankResult) String() string {
	return fmt.Sprintf("%s clients=%d accounts=%d tx=%d in %s = %.1f tx/s p50=%s p90=%s p99=%s max=%s aborted=%d errors=%s",
		r.Target, r.Clients, r.Accounts, r.Transactions, r.Elapsed, r.Throughput,
		fmtLatency(r.P50), fmtLatency(r.P90), fmtLatency(r.P99), fmtLatency(r.Max), r.AbortCount(), summariseErrors(r.Errors))
}

// Figure is r as a row of a comparison.
func (r *SmallBankResult) Figure(system string) Figure {
	return Figure{Workload: "smallbank", System: system, Clients: r.Clients, PerSec: r.Throughput,
		P50Ms: ms(r.P50), P99Ms: ms(r.P99), Errors: r.ErrorCount(),
		Note: fmt.Sprintf("%d accounts; %d aborted", r.Accounts, r.AbortCount())}
}

// RunSmallBank creates cfg.Accounts accounts holding cfg.InitialBalance
// in checking and in savings (in batches, on cfg.Targets[0]), then runs
// cfg.Clients closed-loop clients, each drawing transactions from cfg.Mix
// on uniformly random accounts (two different ones for amalgamate and
// send_payment), against cfg.Targets in rotation, for cfg.Warmup then
// cfg.Duration. Errors during the run are counted, not returned; a failed
// setup is returned. Cancelling ctx stops the run with ctx's error.
// VerifySmallBank checks the result against the service.
func RunSmallBank(ctx context.Context, cfg SmallBankConfig) (*SmallBankResult, error) {
	if err := cfg.normalise(); err != nil {
		return nil, err
	}
	tlsConf := userTLS(cfg.ServiceCert, cfg.ClientCert)
	if err := setupSmallBank(ctx, cfg, tlsConf); err != nil {
		return nil, err
	}
	// urls[target][type], parsed once and shared read-only.
	urls := make([][sbTxTypes]*url.URL, len(cfg.Targets))
	for i, t := range cfg.Targets {
		for tx := range sbTxTypes {
			urls[i][tx] = &url.URL{Scheme: "https", Host: t, Path: smallbank.PathPrefix + sbNames[tx]}
		}
	}
	writeHeader := http.Header{"Content-Type": {"application/json"}}
	readHeader := writeHeader
	if cfg.LocalReads {
		readHeader = http.Header{"Content-Type": {"application/json"}, readConsistencyHeader: {"local"}}
	}

	var dials atomic.Int64
	clients := make([]*sbClient, cfg.Clients)
	err := runWindowed(ctx, cfg.Warmup, cfg.Duration, cfg.Clients, func(ctx context.Context, i int, window, end time.Time) {
		c := &sbClient{
			cfg:         &cfg,
			urls:        urls,
			next:        i % len(urls),
			rng:         rand.New(rand.NewPCG(cfg.Seed, uint64(i))),
			writeHeader: writeHeader,
			readHeader:  readHeader,
			window:      window,
			end:         end,
			errors:      map[string]int{},
			http:        loadTransport(tlsConf, false, len(urls), &dials),
		}
		clients[i] = c
		c.run(ctx)
		c.http.CloseIdleConnections()
	})
	if err != nil {
		return nil, err
	}

	res := &SmallBankResult{
		Target:      strings.Join(cfg.Targets, ","),
		Clients:     cfg.Clients,
		Accounts:    cfg.Accounts,
		Mix:         cfg.Mix,
		Committed:   map[string]uint64{},
		Aborted:     map[string]int{},
		Errors:      map[string]int{},
		Connections: dials.Load(),
		Elapsed:     cfg.Duration,
		cfg:         cfg,
	}
	var h histogram
	for _, c := range clients {
		h.merge(&c.hist)
		for t := range sbTxTypes {
			if c.committed[t] > 0 {
				res.Committed[sbNames[t]] += c.committed[t]
			}
			if c.aborted[t] > 0 {
				res.Aborted[sbNames[t]] += c.aborted[t]
			}
		}
		for k, v := range c.errors {
			res.Errors[k] += v
		}
		if c.lastErr != "" {
			res.LastError = c.lastErr
		}
		res.net += c.net
		res.unsure = append(res.unsure, c.unsure...)
	}
	res.Transactions = h.n
	res.latencyStats = h.stats(cfg.Duration)
	return res, nil
}

// setupSmallBank creates the accounts, smallBankSetupBatch per request.
func setupSmallBank(ctx context.Context, cfg SmallBankConfig, tlsConf *tls.Config) error {
	tr := newTransport(tlsConf, false, 1, nil)
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: time.Minute}
	u := "https://" + cfg.Targets[0] + smallbank.PathPrefix + "account/batch"
	for first := 0; first < cfg.Accounts; first += smallBankSetupBatch {
		var b bytes.Buffer
		b.WriteString(`{"accounts":[`)
		for i := first; i < min(first+smallBankSetupBatch, cfg.Accounts); i++ {
			if i > first {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"id":%d,"checking":%d,"savings":%d}`, cfg.FirstID+uint64(i), cfg.InitialBalance, cfg.InitialBalance)
		}
		b.WriteString(`]}`)
		status, body, err := postJSON(ctx, hc, u, b.Bytes())
		if err != nil {
			return fmt.Errorf("bench: create smallbank accounts: %w", err)
		}
		if status != http.StatusOK {
			return fmt.Errorf("bench: create smallbank accounts %d..%d on %s: HTTP %d: %s", cfg.FirstID+uint64(first), cfg.FirstID+uint64(min(first+smallBankSetupBatch, cfg.Accounts))-1, cfg.Targets[0], status, bytes.TrimSpace(body))
		}
	}
	return nil
}

// postJSON POSTs body to u and reads the answer.
func postJSON(ctx context.Context, hc *http.Client, u string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, smallBankAnswerLimit))
	if cerr := resp.Body.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, nil, fmt.Errorf("read answer: %w", err)
	}
	return resp.StatusCode, raw, nil
}

// sbUnsure is a write whose outcome the client does not know: it got no
// answer, or a 5xx that may have come after its commit (or, for
// write_check, a 200 whose charge it could not read).
type sbUnsure struct {
	tx     sbTx
	amount int64
	// txid is the transaction id the answer carried, if any: its status
	// then tells whether it committed.
	txid      string
	target    string
	committed bool // known to have committed, by its amount unknown
}

// moneyRange is the least and the most money tx can have injected if it
// committed (the charge of a write_check is its amount, or one more).
func moneyRange(tx sbTx, amount int64) (lo, hi int64) {
	switch tx {
	case sbDepositChecking, sbTransactSavings:
		return amount, amount
	case sbWriteCheck:
		return -amount - 1, -amount
	}
	return 0, 0
}

// bounds is the range of money u may have injected.
func (u sbUnsure) bounds() (lo, hi int64) {
	lo, hi = moneyRange(u.tx, u.amount)
	if !u.committed {
		lo, hi = min(lo, 0), max(hi, 0)
	}
	return lo, hi
}

// sbOutcome classifies an answer.
type sbOutcome int

const (
	sbDone      sbOutcome = iota // 200: committed (or read)
	sbAborted                    // refused by the application's rules
	sbFailed                     // refused: nothing was written
	sbUncertain                  // may or may not have committed
)

// parseSmallBankAnswer classifies the answer (status and body) to a
// transaction of type tx: its outcome, the cause to count it under when
// it failed, and for a committed write_check the amount charged. A 4xx
// means the transaction wrote nothing (the node answers errors of handlers
// and refused commits that way); a 5xx may come after the commit (a
// request cancelled while waiting for it); a 200 write_check must say
// what it charged.
func parseSmallBankAnswer(tx sbTx, status int, body []byte) (out sbOutcome, cause string, charged int64) {
	if status == http.StatusOK {
		if tx != sbWriteCheck {
			return sbDone, "", 0
		}
		var a struct {
			Charged *int64 `json:"charged"`
		}
		if err := json.Unmarshal(body, &a); err != nil || a.Charged == nil {
			return sbUncertain, "malformed", 0
		}
		return sbDone, "", *a.Charged
	}
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	cause = strconv.Itoa(status)
	if json.Unmarshal(body, &e) == nil && e.Error.Code != "" {
		cause += "/" + e.Error.Code
	}
	switch {
	case status == http.StatusUnprocessableEntity && e.Error.Code == smallbank.CodeInsufficientFunds:
		return sbAborted, cause, 0
	case status >= 400 && status < 500:
		return sbFailed, cause, 0
	case tx == sbBalance:
		return sbFailed, cause, 0 // a read moves no money either way
	}
	return sbUncertain, cause, 0
}

// sbClient is one closed-loop client. It is owned by its goroutine until
// run returns, so its counters need no locking.
type sbClient struct {
	cfg         *SmallBankConfig
	urls        [][sbTxTypes]*url.URL
	next        int
	rng         *rand.Rand
	writeHeader http.Header // shared by requests, which only read them
	readHeader  http.Header
	window, end time.Time
	http        roundTripper
	answer      bytes.Buffer

	hist      histogram
	committed [sbTxTypes]uint64
	aborted   [sbTxTypes]int
	errors    map[string]int
	lastErr   string
	net       int64
	unsure    []sbUnsure
}

// account draws an account id.
func (c *sbClient) account() uint64 { return c.cfg.FirstID + uint64(c.rng.IntN(c.cfg.Accounts)) }

// request draws a transaction and encodes its body.
func (c *sbClient) request() (tx sbTx, amount int64, body []byte) {
	tx = c.cfg.Mix.pick(c.rng)
	body = make([]byte, 0, 64)
	switch tx {
	case sbAmalgamate, sbSendPayment:
		from := c.rng.IntN(c.cfg.Accounts)
		to := (from + 1 + c.rng.IntN(c.cfg.Accounts-1)) % c.cfg.Accounts
		body = append(body, `{"from":`...)
		body = strconv.AppendUint(body, c.cfg.FirstID+uint64(from), 10)
		body = append(body, `,"to":`...)
		body = strconv.AppendUint(body, c.cfg.FirstID+uint64(to), 10)
		if tx == sbSendPayment {
			amount = 1 + c.rng.Int64N(smallBankMaxAmount)
			body = append(body, `,"amount":`...)
			body = strconv.AppendInt(body, amount, 10)
		}
		return tx, amount, append(body, '}')
	}
	body = append(body, `{"id":`...)
	body = strconv.AppendUint(body, c.account(), 10)
	if tx != sbBalance {
		amount = 1 + c.rng.Int64N(smallBankMaxAmount)
		if tx == sbTransactSavings && c.rng.IntN(2) == 0 {
			amount = -amount
		}
		body = append(body, `,"amount":`...)
		body = strconv.AppendInt(body, amount, 10)
	}
	return tx, amount, append(body, '}')
}

func (c *sbClient) run(ctx context.Context) {
	for ctx.Err() == nil {
		sent := time.Now()
		if !sent.Before(c.end) {
			return
		}
		tx, amount, body := c.request()
		target := c.next
		status, txid, err := c.post(ctx, tx, body)
		done := time.Now()
		inWindow := !sent.Before(c.window) && !done.After(c.end)
		if err != nil {
			if tx != sbBalance {
				c.unsure = append(c.unsure, sbUnsure{tx: tx, amount: amount, target: c.cfg.Targets[target]})
			}
			if inWindow {
				c.errors["transport"]++
				c.lastErr = err.Error()
			}
			SleepCtx(ctx, transportBackoff)
			continue
		}
		out, cause, charged := parseSmallBankAnswer(tx, status, c.answer.Bytes())
		switch out {
		case sbDone:
			lo, _ := moneyRange(tx, amount)
			if tx == sbWriteCheck {
				lo = -charged
			}
			c.net += lo
			if inWindow {
				c.hist.record(done.Sub(sent))
				c.committed[tx]++
			}
			continue
		case sbAborted:
			if inWindow {
				c.aborted[tx]++
			}
			continue
		case sbUncertain:
			c.unsure = append(c.unsure, sbUnsure{tx: tx, amount: amount, txid: txid, target: c.cfg.Targets[target], committed: status == http.StatusOK})
		}
		if inWindow {
			c.errors[cause]++
			c.lastErr = fmt.Sprintf("%s: HTTP %d: %s", tx, status, bytes.TrimSpace(c.answer.Bytes()))
		}
	}
}

// post sends one transaction to the next target and reads its answer into
// c.answer (the rest is drained so the connection is reused). It returns
// the status and the transaction id header.
func (c *sbClient) post(ctx context.Context, tx sbTx, body []byte) (int, string, error) {
	u := c.urls[c.next][tx]
	c.next = (c.next + 1) % len(c.urls)
	hdr := c.writeHeader
	if tx == sbBalance {
		hdr = c.readHeader
	}
	resp, err := c.http.RoundTrip(newPost(ctx, u, hdr, body))
	if err != nil {
		return 0, "", err
	}
	c.answer.Reset()
	_, err = c.answer.ReadFrom(io.LimitReader(resp.Body, smallBankAnswerLimit))
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
	}
	if cerr := resp.Body.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, "", fmt.Errorf("read answer: %w", err)
	}
	return resp.StatusCode, resp.Header.Get(txIDHeader), nil
}

// SmallBankCheck is what VerifySmallBank found.
type SmallBankCheck struct {
	Accounts int
	// Total is the money the accounts hold after the run (checking plus
	// savings, summed); Initial what the setup gave them.
	Total   int64
	Initial int64
	// Net is the money the acknowledged writes injected: deposits and
	// savings transactions, less checks charged.
	Net int64
	// Total must be in [Low, High]: Initial + Net, widened by what the
	// Unsure writes (no answer, or a 5xx after which /node/tx could not
	// tell) may have injected. Low == High in a run without such writes:
	// the check is then exact.
	Low, High int64
	Unsure    int
	// Resolved is the number of writes with an unknown outcome whose
	// commit status /node/tx told.
	Resolved int
}

// Exact reports whether the check allowed a single total.
func (c *SmallBankCheck) Exact() bool { return c.Low == c.High }

// String is a one-line summary.
func (c *SmallBankCheck) String() string {
	resolved := ""
	if c.Resolved > 0 {
		resolved = fmt.Sprintf("; %d writes of unknown outcome resolved through /node/tx", c.Resolved)
	}
	if c.Exact() {
		return fmt.Sprintf("the %d accounts hold %d = %d initial %+d acknowledged, exactly%s", c.Accounts, c.Total, c.Initial, c.Net, resolved)
	}
	return fmt.Sprintf("the %d accounts hold %d, within [%d, %d] = %d initial %+d acknowledged, widened by %d writes whose effect is not known exactly%s",
		c.Accounts, c.Total, c.Low, c.High, c.Initial, c.Net, c.Unsure, resolved)
}

// VerifySmallBank checks, after RunSmallBank, that the accounts of res
// hold exactly the initial money plus what the acknowledged writes
// injected (amalgamate and send_payment only move money). Writes of
// unknown outcome that carried a transaction id are resolved through
// /node/tx; the rest widen the check to a range. A mismatch wraps
// ErrConservation.
func VerifySmallBank(ctx context.Context, res *SmallBankResult) (*SmallBankCheck, error) {
	cfg := res.cfg
	if len(cfg.Targets) == 0 || cfg.Accounts == 0 {
		return nil, errors.New("bench: VerifySmallBank needs a result of RunSmallBank")
	}
	tlsConf := userTLS(cfg.ServiceCert, cfg.ClientCert)
	chk := &SmallBankCheck{Accounts: cfg.Accounts, Initial: 2 * cfg.InitialBalance * int64(cfg.Accounts), Net: res.net}
	unsure, resolved, err := resolveSmallBank(ctx, tlsConf, res.unsure)
	if err != nil {
		return nil, err
	}
	chk.Resolved = resolved
	chk.Low, chk.High = chk.Initial+chk.Net, chk.Initial+chk.Net
	for _, u := range unsure {
		lo, hi := u.bounds()
		chk.Low += lo
		chk.High += hi
		if lo != hi {
			chk.Unsure++
		}
	}
	if chk.Total, err = sumSmallBank(ctx, cfg, tlsConf); err != nil {
		return nil, err
	}
	if chk.Total < chk.Low || chk.Total > chk.High {
		return chk, fmt.Errorf("%w: %s", ErrConservation, chk)
	}
	return chk, nil
}

// resolveSmallBank asks /node/tx about the unsure writes that carried a
// transaction id, waiting (up to 10 s in all) for pending ones to settle.
// It returns the writes still unsure (or committed with an unknown
// charge) and how many it resolved.
func resolveSmallBank(ctx context.Context, tlsConf *tls.Config, unsure []sbUnsure) ([]sbUnsure, int, error) {
	tr := newTransport(tlsConf, false, 1, nil)
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	deadline := time.Now().Add(10 * time.Second)
	var rest []sbUnsure
	resolved := 0
	for _, u := range unsure {
		if u.txid == "" || u.committed {
			rest = append(rest, u)
			continue
		}
		for {
			st, err := txStatus(ctx, hc, u.target, u.txid)
			if err != nil {
				return nil, 0, err
			}
			if st == "Committed" {
				// Its money counts in full (a write_check's charge
				// still within one).
				u.committed = true
				resolved++
				rest = append(rest, u)
				break
			}
			if st == "Invalid" {
				resolved++
				break
			}
			if time.Now().After(deadline) {
				rest = append(rest, u)
				break
			}
			SleepCtx(ctx, 20*time.Millisecond)
			if ctx.Err() != nil {
				return nil, 0, fmt.Errorf("bench: resolve transaction %s: %w", u.txid, ctx.Err())
			}
		}
	}
	return rest, resolved, nil
}

func txStatus(ctx context.Context, hc *http.Client, target, txid string) (string, error) {
	u := "https://" + target + "/node/tx?transaction_id=" + url.QueryEscape(txid)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("bench: status of transaction %s: %w", txid, err)
	}
	defer resp.Body.Close()
	var st struct {
		Status string `json:"status"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, smallBankAnswerLimit)).Decode(&st); err != nil || resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("bench: status of transaction %s: HTTP %d (%v)", txid, resp.StatusCode, err)
	}
	return st.Status, nil
}

// sumSmallBank reads every account's balance on cfg.Targets[0], from a
// few connections at once, and returns their sum.
func sumSmallBank(ctx context.Context, cfg SmallBankConfig, tlsConf *tls.Config) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	workers := min(16, cfg.Accounts)
	u := "https://" + cfg.Targets[0] + smallbank.PathPrefix + "balance"
	ids := make(chan uint64)
	sums := make([]int64, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			tr := newTransport(tlsConf, false, 1, nil)
			defer tr.CloseIdleConnections()
			hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
			for id := range ids {
				if errs[w] != nil {
					continue // drain
				}
				status, body, err := postJSON(ctx, hc, u, []byte(`{"id":`+strconv.FormatUint(id, 10)+`}`))
				if err == nil && status != http.StatusOK {
					err = fmt.Errorf("HTTP %d: %s", status, bytes.TrimSpace(body))
				}
				var b smallbank.BalanceResponse
				if err == nil {
					err = json.Unmarshal(body, &b)
				}
				if err == nil && b.ID != id {
					err = fmt.Errorf("answer for account %d", b.ID)
				}
				if err != nil {
					errs[w] = fmt.Errorf("bench: balance of account %d: %w", id, err)
					cancel()
					continue
				}
				sums[w] += b.Balance
			}
		})
	}
	for i := range cfg.Accounts {
		select {
		case ids <- cfg.FirstID + uint64(i):
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(ids)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("bench: read balances: %w", err)
	}
	var total int64
	for _, s := range sums {
		total += s
	}
	return total, nil
}
