package smallbank

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"

	"github.com/cocoledger/coco/app"
	"github.com/cocoledger/coco/kv"
)

// bank runs the application's handlers on a kv store the way a one-node
// service does: read-only handlers on the committed state, read-write ones
// on the latest state, their writes committed at once when they succeed.
type bank struct {
	store *kv.Store
	eps   map[string]app.Endpoint
}

func newBank(t *testing.T) *bank {
	t.Helper()
	b := &bank{store: kv.NewStore(), eps: map[string]app.Endpoint{}}
	for _, ep := range (App{}).Endpoints() {
		name := strings.TrimPrefix(ep.Path, PathPrefix)
		if ep.Method != http.MethodPost || ep.Auth != app.AuthUser || name == ep.Path {
			t.Fatalf("endpoint %s %s (auth %d) is not a user POST under %s", ep.Method, ep.Path, ep.Auth, PathPrefix)
		}
		b.eps[name] = ep
	}
	return b
}

// result is what the node would answer: a status, and either the JSON body
// or the error code.
type result struct {
	status int
	code   string
	body   string
}

func (b *bank) call(t *testing.T, name, body string) result {
	t.Helper()
	ep, ok := b.eps[name]
	if !ok {
		t.Fatalf("no endpoint %q", name)
	}
	c := &app.Context{Body: []byte(body), Caller: app.Caller{Kind: "user", ID: "u"}}
	if ep.Mode == app.ReadOnly {
		c.Tx = b.store.BeginReadOnly()
	} else {
		c.Tx = b.store.Begin()
	}
	resp, err := ep.Handler(c)
	if err != nil {
		if c.Tx.HasWrites() && ep.Mode == app.ReadOnly {
			t.Errorf("%s wrote in a read-only transaction", name)
		}
		var ae *app.Error
		if !errors.As(err, &ae) {
			return result{status: http.StatusInternalServerError, code: "InternalError", body: err.Error()}
		}
		return result{status: ae.Status, code: ae.Code, body: ae.Message}
	}
	if ep.Mode == app.ReadWrite && c.Tx.HasWrites() {
		if err := b.store.Validate(c.Tx); err != nil {
			t.Fatal(err)
		}
		v := b.store.Version() + 1
		if err := b.store.Apply(v, c.Tx.WriteSet()); err != nil {
			t.Fatal(err)
		}
		if err := b.store.MarkCommitted(v); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := json.Marshal(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	status := resp.Status
	if status == 0 {
		status = http.StatusOK
	}
	return result{status: status, body: string(raw)}
}

// seed creates accounts 1 (checking 100, savings 50), 2 (10, 0) and
// 3 (0, 0).
func (b *bank) seed(t *testing.T) {
	t.Helper()
	r := b.call(t, "account/batch", `{"accounts":[{"id":1,"checking":100,"savings":50},{"id":2,"checking":10,"savings":0},{"id":3,"checking":0,"savings":0}]}`)
	if r.status != http.StatusOK || r.body != `{"created":3}` {
		t.Fatalf("seed: %+v", r)
	}
}

// balances reads an account through the balance endpoint.
func (b *bank) balances(t *testing.T, id uint64) (checking, savings int64) {
	t.Helper()
	r := b.call(t, "balance", fmt.Sprintf(`{"id":%d}`, id))
	if r.status != http.StatusOK {
		t.Fatalf("balance of %d: %+v", id, r)
	}
	var got BalanceResponse
	if err := json.Unmarshal([]byte(r.body), &got); err != nil {
		t.Fatal(err)
	}
	if got.Balance != got.Checking+got.Savings || got.ID != id {
		t.Fatalf("balance of %d: %s", id, r.body)
	}
	return got.Checking, got.Savings
}

// TestEndpoints runs every endpoint, good and bad input, each case on a
// fresh bank seeded with accounts 1 (100, 50), 2 (10, 0) and 3 (0, 0), and
// checks the answer and the balances after it.
func TestEndpoints(t *testing.T) {
	type bal struct{ checking, savings int64 }
	seeded := map[uint64]bal{1: {100, 50}, 2: {10, 0}, 3: {0, 0}}
	tests := []struct {
		name     string
		endpoint string
		body     string
		status   int
		code     string         // error code, for errors
		want     string         // exact JSON answer, for successes
		after    map[uint64]bal // balances that changed
	}{
		// account
		{"create", "account", `{"id":7,"checking":5,"savings":6}`, 200, "", `{"id":7,"checking":5,"savings":6}`, map[uint64]bal{7: {5, 6}}},
		{"create zero balances", "account", `{"id":0,"checking":0,"savings":0}`, 200, "", `{"id":0,"checking":0,"savings":0}`, map[uint64]bal{0: {0, 0}}},
		{"create existing", "account", `{"id":1,"checking":5,"savings":6}`, 409, CodeAccountAlreadyExists, "", nil},
		{"create negative checking", "account", `{"id":7,"checking":-1,"savings":6}`, 400, "InvalidInput", "", nil},
		{"create negative savings", "account", `{"id":7,"checking":1,"savings":-6}`, 400, "InvalidInput", "", nil},
		{"create too rich", "account", fmt.Sprintf(`{"id":7,"checking":%d,"savings":0}`, MaxAmount+1), 400, "InvalidInput", "", nil},
		{"create without savings", "account", `{"id":7,"checking":1}`, 400, "InvalidInput", "", nil},
		{"create negative id", "account", `{"id":-7,"checking":1,"savings":1}`, 400, "InvalidInput", "", nil},
		{"create fractional amount", "account", `{"id":7,"checking":1.5,"savings":1}`, 400, "InvalidInput", "", nil},
		{"create unknown field", "account", `{"id":7,"checking":1,"savings":1,"name":"x"}`, 400, "InvalidInput", "", nil},
		{"create malformed", "account", `{"id":7,`, 400, "InvalidInput", "", nil},
		{"create empty body", "account", ``, 400, "InvalidInput", "", nil},
		{"create trailing data", "account", `{"id":7,"checking":1,"savings":1} {}`, 400, "InvalidInput", "", nil},
		// account/batch
		{"batch", "account/batch", `{"accounts":[{"id":8,"checking":1,"savings":2},{"id":9,"checking":3,"savings":4}]}`, 200, "", `{"created":2}`, map[uint64]bal{8: {1, 2}, 9: {3, 4}}},
		{"batch empty", "account/batch", `{"accounts":[]}`, 400, "InvalidInput", "", nil},
		{"batch missing", "account/batch", `{}`, 400, "InvalidInput", "", nil},
		{"batch duplicate", "account/batch", `{"accounts":[{"id":8,"checking":1,"savings":2},{"id":8,"checking":3,"savings":4}]}`, 400, "InvalidInput", "", nil},
		{"batch existing", "account/batch", `{"accounts":[{"id":8,"checking":1,"savings":2},{"id":2,"checking":3,"savings":4}]}`, 409, CodeAccountAlreadyExists, "", nil},
		{"batch bad entry", "account/batch", `{"accounts":[{"id":8,"checking":1,"savings":2},{"id":9,"checking":3}]}`, 400, "InvalidInput", "", nil},
		{"batch too large", "account/batch", `{"accounts":[` + strings.Repeat(`{"id":1,"checking":1,"savings":1},`, MaxBatch) + `{"id":1,"checking":1,"savings":1}]}`, 400, "InvalidInput", "", nil},
		// balance
		{"balance", "balance", `{"id":1}`, 200, "", `{"id":1,"checking":100,"savings":50,"balance":150}`, nil},
		{"balance unknown", "balance", `{"id":42}`, 404, CodeAccountNotFound, "", nil},
		{"balance no id", "balance", `{}`, 400, "InvalidInput", "", nil},
		{"balance id string", "balance", `{"id":"1"}`, 400, "InvalidInput", "", nil},
		// transact_savings
		{"savings deposit", "transact_savings", `{"id":1,"amount":25}`, 200, "", `{"id":1,"checking":100,"savings":75}`, map[uint64]bal{1: {100, 75}}},
		{"savings withdrawal", "transact_savings", `{"id":1,"amount":-50}`, 200, "", `{"id":1,"checking":100,"savings":0}`, map[uint64]bal{1: {100, 0}}},
		{"savings overdrawn", "transact_savings", `{"id":1,"amount":-51}`, 422, CodeInsufficientFunds, "", nil},
		{"savings zero", "transact_savings", `{"id":1,"amount":0}`, 400, "InvalidInput", "", nil},
		{"savings huge", "transact_savings", fmt.Sprintf(`{"id":1,"amount":%d}`, int64(math.MaxInt64)), 400, "InvalidInput", "", nil},
		{"savings no amount", "transact_savings", `{"id":1}`, 400, "InvalidInput", "", nil},
		{"savings unknown", "transact_savings", `{"id":42,"amount":1}`, 404, CodeAccountNotFound, "", nil},
		// deposit_checking
		{"deposit", "deposit_checking", `{"id":3,"amount":7}`, 200, "", `{"id":3,"checking":7,"savings":0}`, map[uint64]bal{3: {7, 0}}},
		{"deposit negative", "deposit_checking", `{"id":3,"amount":-7}`, 400, "InvalidInput", "", nil},
		{"deposit zero", "deposit_checking", `{"id":3,"amount":0}`, 400, "InvalidInput", "", nil},
		{"deposit too much", "deposit_checking", fmt.Sprintf(`{"id":3,"amount":%d}`, MaxAmount+1), 400, "InvalidInput", "", nil},
		{"deposit unknown", "deposit_checking", `{"id":42,"amount":7}`, 404, CodeAccountNotFound, "", nil},
		{"deposit no id", "deposit_checking", `{"amount":7}`, 400, "InvalidInput", "", nil},
		// amalgamate
		{"amalgamate", "amalgamate", `{"from":1,"to":2}`, 200, "", `{"from":{"id":1,"checking":0,"savings":0},"to":{"id":2,"checking":160,"savings":0}}`, map[uint64]bal{1: {0, 0}, 2: {160, 0}}},
		{"amalgamate empty account", "amalgamate", `{"from":3,"to":2}`, 200, "", `{"from":{"id":3,"checking":0,"savings":0},"to":{"id":2,"checking":10,"savings":0}}`, nil},
		{"amalgamate same", "amalgamate", `{"from":1,"to":1}`, 400, "InvalidInput", "", nil},
		{"amalgamate with amount", "amalgamate", `{"from":1,"to":2,"amount":3}`, 400, "InvalidInput", "", nil},
		{"amalgamate unknown source", "amalgamate", `{"from":42,"to":2}`, 404, CodeAccountNotFound, "", nil},
		{"amalgamate unknown destination", "amalgamate", `{"from":1,"to":42}`, 404, CodeAccountNotFound, "", nil},
		{"amalgamate no destination", "amalgamate", `{"from":1}`, 400, "InvalidInput", "", nil},
		// write_check
		{"check covered", "write_check", `{"id":1,"amount":120}`, 200, "", `{"id":1,"checking":-20,"savings":50,"charged":120}`, map[uint64]bal{1: {-20, 50}}},
		{"check exactly covered", "write_check", `{"id":1,"amount":150}`, 200, "", `{"id":1,"checking":-50,"savings":50,"charged":150}`, map[uint64]bal{1: {-50, 50}}},
		{"check bounced", "write_check", `{"id":1,"amount":151}`, 200, "", `{"id":1,"checking":-52,"savings":50,"charged":152}`, map[uint64]bal{1: {-52, 50}}},
		{"check zero", "write_check", `{"id":1,"amount":0}`, 400, "InvalidInput", "", nil},
		{"check negative", "write_check", `{"id":1,"amount":-1}`, 400, "InvalidInput", "", nil},
		{"check unknown", "write_check", `{"id":42,"amount":1}`, 404, CodeAccountNotFound, "", nil},
		// send_payment
		{"payment", "send_payment", `{"from":1,"to":3,"amount":100}`, 200, "", `{"from":{"id":1,"checking":0,"savings":50},"to":{"id":3,"checking":100,"savings":0}}`, map[uint64]bal{1: {0, 50}, 3: {100, 0}}},
		{"payment overdrawn", "send_payment", `{"from":1,"to":3,"amount":101}`, 422, CodeInsufficientFunds, "", nil},
		{"payment zero", "send_payment", `{"from":1,"to":3,"amount":0}`, 400, "InvalidInput", "", nil},
		{"payment negative", "send_payment", `{"from":1,"to":3,"amount":-5}`, 400, "InvalidInput", "", nil},
		{"payment no amount", "send_payment", `{"from":1,"to":3}`, 400, "InvalidInput", "", nil},
		{"payment same", "send_payment", `{"from":1,"to":1,"amount":1}`, 400, "InvalidInput", "", nil},
		{"payment unknown payer", "send_payment", `{"from":42,"to":1,"amount":1}`, 404, CodeAccountNotFound, "", nil},
		{"payment unknown payee", "send_payment", `{"from":1,"to":42,"amount":1}`, 404, CodeAccountNotFound, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBank(t)
			b.seed(t)
			got := b.call(t, tt.endpoint, tt.body)
			if got.status != tt.status || got.code != tt.code {
				t.Fatalf("got %d %s (%s), want %d %s", got.status, got.code, got.body, tt.status, tt.code)
			}
			if tt.code == "" && got.body != tt.want {
				t.Errorf("answer %s, want %s", got.body, tt.want)
			}
			if tt.code != "" && got.body == "" {
				t.Errorf("error %s has no message", tt.code)
			}
			want := map[uint64]bal{}
			for id, v := range seeded {
				want[id] = v
			}
			for id, v := range tt.after {
				want[id] = v
			}
			for id, w := range want {
				if c, s := b.balances(t, id); c != w.checking || s != w.savings {
					t.Errorf("account %d holds (%d, %d) after, want (%d, %d)", id, c, s, w.checking, w.savings)
				}
			}
			// A refused transaction leaves no trace: the accounts a
			// failed create named do not exist.
			if tt.code != "" && (tt.endpoint == "account" || tt.endpoint == "account/batch") {
				for _, id := range []uint64{7, 8, 9} {
					if r := b.call(t, "balance", fmt.Sprintf(`{"id":%d}`, id)); r.status != http.StatusNotFound {
						t.Errorf("account %d exists after a refused create: %+v", id, r)
					}
				}
			}
		})
	}
}

func TestOverflowIsRefused(t *testing.T) {
	b := newBank(t)
	if r := b.call(t, "account", fmt.Sprintf(`{"id":1,"checking":%d,"savings":%d}`, MaxAmount, MaxAmount)); r.status != 200 {
		t.Fatal(r)
	}
	// Deposits of MaxAmount until checking would leave int64.
	refused := false
	for range 10_000 {
		r := b.call(t, "deposit_checking", fmt.Sprintf(`{"id":1,"amount":%d}`, MaxAmount))
		if r.status == 200 {
			continue
		}
		if r.status != http.StatusUnprocessableEntity || r.code != CodeBalanceOutOfRange {
			t.Fatalf("got %+v, want 422 %s", r, CodeBalanceOutOfRange)
		}
		refused = true
		break
	}
	if !refused {
		t.Fatal("checking never overflowed")
	}
	// Checking is now within MaxAmount of the top: with savings of
	// MaxAmount, every sum of the two is out of range, and said so
	// instead of wrapping around.
	if r := b.call(t, "account", `{"id":2,"checking":0,"savings":0}`); r.status != 200 {
		t.Fatal(r)
	}
	for _, c := range []struct{ endpoint, body string }{
		{"balance", `{"id":1}`},
		{"write_check", `{"id":1,"amount":1}`},
		{"amalgamate", `{"from":1,"to":2}`},
		{"deposit_checking", `{"id":1,"amount":1000000000000000}`},
	} {
		if r := b.call(t, c.endpoint, c.body); r.status != http.StatusUnprocessableEntity || r.code != CodeBalanceOutOfRange {
			t.Errorf("%s %s: got %+v, want 422 %s", c.endpoint, c.body, r, CodeBalanceOutOfRange)
		}
	}
	// Moving money out still works.
	if r := b.call(t, "send_payment", `{"from":1,"to":2,"amount":5}`); r.status != 200 {
		t.Errorf("send_payment from a full account: %+v", r)
	}
}

func TestMapsArePrivate(t *testing.T) {
	for _, m := range []string{CheckingMap, SavingsMap} {
		if kv.IsPublic(m) {
			t.Errorf("map %s is public: balances would be in clear in the ledger", m)
		}
	}
}

// TestMoneyIsConserved runs a deterministic sequence of every transaction
// and checks that the total held moves only by deposits and withdrawals.
func TestMoneyIsConserved(t *testing.T) {
	b := newBank(t)
	b.seed(t)
	total := func() int64 {
		var sum int64
		for id := uint64(1); id <= 3; id++ {
			c, s := b.balances(t, id)
			sum += c + s
		}
		return sum
	}
	want := total()
	for i := range 200 {
		from, to := uint64(i%3+1), uint64((i+1)%3+1)
		amount := int64(i%17 + 1)
		var r result
		switch i % 5 {
		case 0:
			r = b.call(t, "deposit_checking", fmt.Sprintf(`{"id":%d,"amount":%d}`, from, amount))
			if r.status == 200 {
				want += amount
			}
		case 1:
			v := amount - 9
			if v == 0 {
				v = 1
			}
			r = b.call(t, "transact_savings", fmt.Sprintf(`{"id":%d,"amount":%d}`, from, v))
			if r.status == 200 {
				want += v
			}
		case 2:
			r = b.call(t, "write_check", fmt.Sprintf(`{"id":%d,"amount":%d}`, from, amount))
			var w WriteCheckResponse
			if err := json.Unmarshal([]byte(r.body), &w); err != nil {
				t.Fatal(err)
			}
			want -= w.Charged
		case 3:
			r = b.call(t, "send_payment", fmt.Sprintf(`{"from":%d,"to":%d,"amount":%d}`, from, to, amount))
		case 4:
			if i%20 == 4 {
				r = b.call(t, "amalgamate", fmt.Sprintf(`{"from":%d,"to":%d}`, from, to))
			}
		}
		if r.status != 0 && r.status != 200 && r.code != CodeInsufficientFunds {
			t.Fatalf("step %d: %+v", i, r)
		}
		if got := total(); got != want {
			t.Fatalf("step %d: total %d, want %d", i, got, want)
		}
	}
}
