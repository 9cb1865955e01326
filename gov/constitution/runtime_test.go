package constitution

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cocoledger/coco/kv"
)

// stub is a constitution whose functions are given as bodies.
func stub(validate, resolve, apply string) string {
	return "export function validate(input) {" + validate + "}\n" +
		"export function resolve(proposal, proposerId, votes) {" + resolve + "}\n" +
		"export function apply(proposal, proposalId) {" + apply + "}\n"
}

const okValidate = `return {valid: true, description: "ok"}`

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want error
		msg  string
	}{
		{"syntax error", "export function validate(input) {\n  return {valid: true,,};\n}\nexport function resolve() {}\nexport function apply() {}", ErrSyntax, "Line 2:"},
		{"missing apply", "export function validate() {}\nexport function resolve() {}", ErrMissingExport, "must export apply"},
		{"defined but not exported", "export function validate() {}\nexport function resolve() {}\nfunction apply() {}", ErrMissingExport, "apply"},
		{"export not a function", "export function validate() {}\nexport function resolve() {}\nexport const apply = 1;", ErrMissingExport, "not a function"},
		{"top level throws", "throw new Error('boom at load');\n" + stub("", "", ""), ErrScript, "boom at load"},
		{"top level loops", "while (true) {}\n" + stub("", "", ""), ErrTimeout, "load"},
		{"too large", strings.Repeat(" ", MaxConstitutionBytes+1), ErrTooLarge, "limit"},
		{"empty", "", ErrMissingExport, "validate, resolve, apply"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.src)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err = %v, want %v containing %q", err, tt.want, tt.msg)
			}
		})
	}
}

func TestBallots(t *testing.T) {
	ctx := t.Context()
	prop := `{"actions":[{"name":"set_recovery_threshold","args":{"recovery_threshold":2}}]}`
	tests := []struct {
		name, ballot string
		want         bool
		wantErr      error
	}{
		{"true", "export function vote (proposal, proposerId) { return true }", true, nil},
		{"false", "export function vote (proposal, proposerId) { return false }", false, nil},
		{"on content yes", `export function vote (rawProposal, proposerId) {
			const p = JSON.parse(rawProposal);
			return p.actions.every(a => a.name === "set_recovery_threshold" && a.args.recovery_threshold <= 3);
		}`, true, nil},
		{"on content no", `export function vote (rawProposal) {
			return JSON.parse(rawProposal).actions[0].args.recovery_threshold > 2;
		}`, false, nil},
		{"on proposer", `export function vote (p, proposerId) { return proposerId === "m1" }`, true, nil},
		{"not boolean", "export function vote () { return 1 }", false, ErrBadResult},
		{"undefined", "export function vote () {}", false, ErrBadResult},
		{"throws", "export function vote () { throw new Error('nope') }", false, ErrScript},
		{"no vote", "export function ballot () { return true }", false, ErrMissingExport},
		{"syntax", "export function vote () { return tru e }", false, ErrSyntax},
		{"infinite loop", "export function vote () { while (true) {} }", false, ErrTimeout},
		{"recursion", "function f(n) { return f(n + 1) + 1 }\nexport function vote () { return f(0) > 0 }", false, ErrScript},
		{"no kv", `export function vote () { return ccf.kv["public:ccf.gov.members.info"].has("x") }`, false, ErrScript},
		{"huge repeat", `export function vote () { return "x".repeat(1 << 30).length > 0 }`, false, ErrScript},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := EvalBallot(ctx, tt.ballot, prop, "m1", Limits{})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("EvalBallot = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
	if err := CheckBallot("export function vote () { return true }"); err != nil {
		t.Fatal(err)
	}
	if err := CheckBallot("export function vote () {"); !errors.Is(err, ErrSyntax) {
		t.Fatalf("CheckBallot of a broken ballot: %v", err)
	}
	if _, err := EvalBallot(ctx, strings.Repeat(" ", MaxBallotBytes+1), prop, "m1", Limits{}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized ballot: %v", err)
	}
}

// TestTimeouts: an infinite loop anywhere returns ErrTimeout promptly, and
// the next call on the same Constitution works.
func TestTimeouts(t *testing.T) {
	ctx := t.Context()
	const loop = "while (true) {}"
	timeout := 50 * time.Millisecond
	limits := Limits{Timeout: timeout}
	prop := `{"actions":[]}`
	// A loop that only runs for one proposal, so the following call works.
	body := `if (JSON.parse(proposal).loop) { ` + loop + ` }`
	c := mustParse(t, stub(`if (JSON.parse(input).loop) { `+loop+` } `+okValidate,
		body+` return "Accepted"`,
		body+` ccf.kv["public:ccf.gov.x"].set("k", "v")`)).WithLimits(limits)
	looping := `{"loop":true}`
	store := kv.NewStore()
	// The follow-up calls share c's compiled program but get a generous
	// budget: they check that nothing of the interrupted call lingers, not
	// how fast a loaded machine runs the module.
	next := c.WithLimits(DefaultLimits())
	nextLimits := DefaultLimits()

	check := func(t *testing.T, err error, start time.Time) {
		t.Helper()
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("err = %v, want ErrTimeout", err)
		}
		if d := time.Since(start); d > limits.HardTimeout()+5*time.Second {
			t.Fatalf("took %v", d)
		}
	}
	t.Run("validate", func(t *testing.T) {
		start := time.Now()
		_, _, err := c.Validate(ctx, looping)
		check(t, err, start)
		if ok, _, err := next.Validate(ctx, prop); err != nil || !ok {
			t.Fatalf("next Validate = %v, %v", ok, err)
		}
	})
	t.Run("resolve", func(t *testing.T) {
		start := time.Now()
		_, err := c.Resolve(ctx, looping, "m", nil, store.Begin())
		check(t, err, start)
		if s, err := next.Resolve(ctx, prop, "m", nil, store.Begin()); err != nil || s != StateAccepted {
			t.Fatalf("next Resolve = %v, %v", s, err)
		}
	})
	t.Run("apply", func(t *testing.T) {
		tx := store.Begin()
		start := time.Now()
		check(t, c.Apply(ctx, looping, "p1", tx), start)
		if tx.HasWrites() {
			t.Fatal("a timed-out apply wrote to the tx")
		}
		if err := next.Apply(ctx, prop, "p2", tx); err != nil {
			t.Fatal(err)
		}
		if v, ok := tx.Get("public:ccf.gov.x", "k"); !ok || string(v) != "v" {
			t.Fatalf("after apply: %q %v", v, ok)
		}
	})
	t.Run("ballot", func(t *testing.T) {
		start := time.Now()
		_, err := EvalBallot(ctx, "export function vote() { "+loop+" }", prop, "m", limits)
		check(t, err, start)
		if ok, err := EvalBallot(ctx, "export function vote() { return true }", prop, "m", nextLimits); err != nil || !ok {
			t.Fatalf("next ballot = %v, %v", ok, err)
		}
	})
	t.Run("loop in kv forEach callback", func(t *testing.T) {
		tx := store.Begin()
		if err := tx.Put(MembersInfo, "a", []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		c := mustParse(t, stub(okValidate, `ccf.kv["`+MembersInfo+`"].forEach(() => { `+loop+` }); return "Open"`, "")).WithLimits(limits)
		start := time.Now()
		_, err := c.Resolve(ctx, prop, "m", nil, tx)
		check(t, err, start)
	})
	t.Run("uncatchable", func(t *testing.T) {
		c := mustParse(t, stub(okValidate, `try { `+loop+` } catch (e) {} return "Accepted"`, "")).WithLimits(limits)
		start := time.Now()
		_, err := c.Resolve(ctx, prop, "m", nil, store.Begin())
		check(t, err, start)
	})
}

// TestUninterruptibleBuiltin: goja cannot interrupt a built-in, so the call
// is abandoned at HardTimeout and the caller carries on; the abandoned
// script can no longer reach the caller's tx.
func TestUninterruptibleBuiltin(t *testing.T) {
	if testing.Short() {
		t.Skip("burns a CPU for a while in the background")
	}
	limits := Limits{Timeout: 20 * time.Millisecond}
	c := mustParse(t, stub(okValidate, `return "Open"`,
		`const a = new Array(2e6).fill(0); ccf.kv["public:ccf.gov.x"].set("k", String(a.length));`)).WithLimits(limits)
	tx := kv.NewStore().Begin()
	start := time.Now()
	err := c.Apply(t.Context(), `{}`, "p", tx)
	if errors.Is(err, ErrTimeout) {
		if d := time.Since(start); d > limits.HardTimeout()+5*time.Second {
			t.Fatalf("took %v", d)
		}
	} else if err != nil {
		t.Fatal(err)
	} else {
		t.Log("the machine filled the array within the timeout; nothing abandoned")
	}
	if err != nil && tx.HasWrites() {
		t.Fatal("abandoned apply wrote to the tx")
	}
}

func TestContextCancel(t *testing.T) {
	c := mustParse(t, stub(`while (true) {}`, "", "")).WithLimits(Limits{Timeout: time.Minute})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Millisecond)
	defer cancel()
	_, _, err := c.Validate(ctx, "{}")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	canceled, cancel2 := context.WithCancel(t.Context())
	cancel2()
	if _, _, err := c.Validate(canceled, "{}"); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want Canceled", err)
	}
}

// TestNoStateLeaks: globals and patched built-ins from one call are gone in
// the next.
func TestNoStateLeaks(t *testing.T) {
	ctx := t.Context()
	c := mustParse(t, `
		let counter = 0;
		export function validate(input) {
			counter++;
			const seen = typeof globalThis.leak !== "undefined" || Array.prototype.leak !== undefined;
			globalThis.leak = "set";
			Array.prototype.leak = 1;
			return {valid: !seen && counter === 1, description: String(counter)};
		}
		export function resolve() { return "Open" }
		export function apply() {}`)
	for i := range 3 {
		ok, desc, err := c.Validate(ctx, "{}")
		if err != nil || !ok {
			t.Fatalf("call %d: valid=%v desc=%q err=%v: state leaked between calls", i, ok, desc, err)
		}
	}
	if ok, err := EvalBallot(ctx, "globalThis.x = 1; export function vote() { return true }", "{}", "m", Limits{}); err != nil || !ok {
		t.Fatal(ok, err)
	}
	if ok, err := EvalBallot(ctx, "export function vote() { return typeof x === 'undefined' }", "{}", "m", Limits{}); err != nil || !ok {
		t.Fatalf("ballot global leaked: %v %v", ok, err)
	}
}

func TestBadResults(t *testing.T) {
	ctx := t.Context()
	tx := kv.NewStore().Begin()
	for _, tt := range []struct{ name, validate, resolve string }{
		{"validate returns bool", "return true", `return "Open"`},
		{"validate valid not bool", `return {valid: "yes"}`, `return "Open"`},
		{"validate getter throws", `return {get valid() { throw new Error("g") }}`, `return "Open"`},
		{"resolve unknown state", okValidate, `return "Withdrawn"`},
		{"resolve not string", okValidate, `return true`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := mustParse(t, stub(tt.validate, tt.resolve, ""))
			_, _, verr := c.Validate(ctx, "{}")
			_, rerr := c.Resolve(ctx, "{}", "m", nil, tx)
			if verr == nil && rerr == nil {
				t.Fatal("no error")
			}
			for _, err := range []error{verr, rerr} {
				if err != nil && !errors.Is(err, ErrBadResult) && !errors.Is(err, ErrScript) {
					t.Fatalf("err = %v", err)
				}
			}
		})
	}
}

func TestKVPolicy(t *testing.T) {
	ctx := t.Context()
	store := kv.NewStore()
	tests := []struct {
		name, apply, wantMsg string
	}{
		{"private map", `ccf.kv["secrets"].get("k")`, "not public"},
		{"app map write", `ccf.kv["public:app.data"].set("k", "v")`, "not a governance map"},
		{"non-string value", `ccf.kv["public:ccf.gov.x"].set("k", 5)`, "must be a string or an ArrayBuffer"},
		{"throws after write", `ccf.kv["public:ccf.gov.x"].set("k", "v"); throw new Error("later")`, "later"},
		{"write limit caught", `try { ccf.kv["public:ccf.gov.x"].set("k", "x".repeat(2048)) } catch (e) {}`, "writes more than 1024 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustParse(t, stub(okValidate, `return "Open"`, tt.apply)).WithLimits(Limits{MaxWriteBytes: 1024})
			tx := store.Begin()
			err := c.Apply(ctx, "{}", "p", tx)
			if err == nil || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("err = %v, want %q", err, tt.wantMsg)
			}
			if tx.HasWrites() {
				t.Fatal("failed apply wrote to the tx")
			}
		})
	}
	t.Run("resolve is read-only", func(t *testing.T) {
		c := mustParse(t, stub(okValidate, `ccf.kv["public:ccf.gov.x"].set("k", "v"); return "Open"`, ""))
		tx := store.Begin()
		if _, err := c.Resolve(ctx, "{}", "m", nil, tx); err == nil || !strings.Contains(err.Error(), "read-only") {
			t.Fatalf("err = %v", err)
		}
		if tx.HasWrites() {
			t.Fatal("resolve wrote")
		}
	})
	t.Run("CCF-style buffers and read-your-writes", func(t *testing.T) {
		tx := store.Begin()
		if err := tx.Put("public:ccf.gov.x", "a", []byte("1")); err != nil {
			t.Fatal(err)
		}
		c := mustParse(t, stub(okValidate, `return "Open"`, `
			const m = ccf.kv["public:ccf.gov.x"];
			m.set(ccf.strToBuf("b"), ccf.jsonCompatibleToBuf({n: 2}));
			if (ccf.bufToJsonCompatible(m.get("b")).n !== 2) throw new Error("b");
			if (!m.delete("a") || m.has("a")) throw new Error("a");
			const seen = [];
			m.forEach((v, k) => { seen.push(k + "=" + v); m.set("c" + k, v); });
			if (seen.join(",") !== 'b={"n":2}') throw new Error(seen.join(","));
		`))
		if err := c.Apply(ctx, "{}", "p", tx); err != nil {
			t.Fatal(err)
		}
		if _, ok := tx.Get("public:ccf.gov.x", "a"); ok {
			t.Fatal("a not deleted")
		}
		if v, _ := tx.Get("public:ccf.gov.x", "cb"); string(v) != `{"n":2}` {
			t.Fatalf("cb = %q", v)
		}
	})
}

func TestArgumentLimits(t *testing.T) {
	c := mustParse(t, stub(okValidate, `return "Open"`, "")).WithLimits(Limits{MaxArgBytes: 100, MaxVotes: 2})
	if _, _, err := c.Validate(t.Context(), strings.Repeat("x", 101)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v", err)
	}
	votes := []Vote{{"a", true}, {"b", true}, {"c", true}}
	if _, err := c.Resolve(t.Context(), "{}", "m", votes, kv.NewStore().Begin()); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v", err)
	}
}

// TestConcurrentCalls: a Constitution is shared by concurrent calls.
func TestConcurrentCalls(t *testing.T) {
	c := defaultConstitution(t)
	prop := proposal(t, action{Name: "transition_service_to_open"})
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			ok, desc, err := c.Validate(t.Context(), prop)
			if err == nil && !ok {
				err = errors.New(desc)
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
