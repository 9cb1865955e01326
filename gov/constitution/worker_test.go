package constitution

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cocoledger/coco/kv"
)

// TestMain lets this test binary be its own worker (Limits.Worker).
func TestMain(m *testing.M) {
	ServeWorker()
	os.Exit(m.Run())
}

func workerLimits(t *testing.T) Limits {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return Limits{Worker: exe}
}

// A built-in that goja cannot interrupt used to run on in the caller's
// process after its timeout, allocating gigabytes. In a worker it is
// stopped by the worker's heap watch, or by its timeout.
func TestWorkerBoundsMemoryAndTime(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		timeout    time.Duration
		want       error
	}{
		{"fill a huge array", `new Array(3e7).fill(0).length > 0`, 30 * time.Second, ErrMemory},
		{"array-like fill", `Array.prototype.fill.call({length: 5e7}, 1) !== null`, 30 * time.Second, ErrMemory},
		{"grow in a loop", `(() => { const a = []; for (;;) a.push("xxxxxxxxxxxxxxxx" + a.length) })()`, 30 * time.Second, ErrMemory},
		{"stuck in a built-in", `new Array(3e7).fill(0).length > 0`, 200 * time.Millisecond, ErrTimeout},
		{"plain loop", `(() => { for (;;) {} })()`, 200 * time.Millisecond, ErrTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := workerLimits(t)
			l.Timeout = tc.timeout
			l.MaxMemoryBytes = 32 << 20
			if tc.want == ErrTimeout {
				l.MaxMemoryBytes = 8 << 30 // so that only time can stop it
			}
			start := time.Now()
			_, err := EvalBallot(t.Context(), "export function vote() { return "+tc.body+" }", "{}", "m1", l)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if d := time.Since(start); d > l.HardTimeout()+workerStartAllowance {
				t.Errorf("took %v", d)
			}
		})
	}
}

// The same calls give the same answers in a worker as in process,
// kv reads and apply's buffered writes included.
func TestWorkerMatchesInProcess(t *testing.T) {
	src := `
export function validate(input) {
	const p = JSON.parse(input);
	return { valid: p.actions.length > 0, description: p.actions.length > 0 ? "" : "no actions" };
}
export function resolve(proposal, proposerId, votes) {
	let n = 0;
	ccf.kv["public:ccf.gov.members.info"].forEach(() => { n++; });
	const yes = votes.filter((v) => v.vote).length;
	return yes * 2 > n ? "Accepted" : "Open";
}
export function apply(proposal, proposalId) {
	const m = ccf.kv["public:ccf.gov.test"];
	const prev = m.get(ccf.strToBuf("count"));
	const n = prev === undefined ? 0 : Number(ccf.bufToStr(prev));
	m.set(ccf.strToBuf("count"), ccf.strToBuf(String(n + 1)));
	m.set(ccf.strToBuf("last"), ccf.strToBuf(proposalId));
	m.delete(ccf.strToBuf("gone"));
	if (JSON.parse(proposal).actions[0].name === "throw") throw new Error("no");
}`
	base := mustParse(t, src)
	inBothModes(t, func(t *testing.T, l Limits) {
		c := base.WithLimits(l)
		ctx := t.Context()
		if v, d, err := c.Validate(ctx, `{"actions":[]}`); err != nil || v || d != "no actions" {
			t.Fatalf("validate: %v %q %v", v, d, err)
		}
		tx := kv.NewStore().Begin()
		for _, m := range []string{"m1", "m2", "m3"} {
			_ = tx.Put("public:ccf.gov.members.info", m, []byte("{}"))
		}
		_ = tx.Put("public:ccf.gov.test", "gone", []byte("x"))
		votes := []Vote{{"m1", true}, {"m2", true}}
		if s, err := c.Resolve(ctx, `{"actions":[{"name":"a"}]}`, "m1", votes, tx); err != nil || s != StateAccepted {
			t.Fatalf("resolve: %q %v", s, err)
		}
		if err := c.Apply(ctx, `{"actions":[{"name":"a"}]}`, "p1", tx); err != nil {
			t.Fatalf("apply: %v", err)
		}
		if v, _ := tx.Get("public:ccf.gov.test", "count"); string(v) != "1" {
			t.Errorf("count = %q", v)
		}
		if _, ok := tx.Get("public:ccf.gov.test", "gone"); ok {
			t.Error("gone was not deleted")
		}
		// A throwing apply leaves the kv as it was.
		if err := c.Apply(ctx, `{"actions":[{"name":"throw"}]}`, "p2", tx); !errors.Is(err, ErrScript) {
			t.Fatalf("throwing apply: %v, want ErrScript", err)
		}
		if v, _ := tx.Get("public:ccf.gov.test", "last"); string(v) != "p1" {
			t.Errorf("a throwing apply wrote: last = %q", v)
		}
		// The write limit holds in both.
		small := base.WithLimits(Limits{Worker: l.Worker, Timeout: l.Timeout, MaxWriteBytes: 8})
		if err := small.Apply(ctx, `{"actions":[{"name":"a"}]}`, "p3", tx); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("apply past the write limit: %v, want ErrTooLarge", err)
		}
		// Ballots.
		if v, err := EvalBallot(ctx, `export function vote(p, id) { return id === "m9" }`, "{}", "m9", l); err != nil || !v {
			t.Fatalf("ballot: %v %v", v, err)
		}
		if _, err := EvalBallot(ctx, `export function vote() { return 1 }`, "{}", "m9", l); !errors.Is(err, ErrBadResult) {
			t.Fatalf("ballot returning 1: %v, want ErrBadResult", err)
		}
	})
}

// inBothModes runs test in process and in a worker process. The time
// limit is generous: these tests compare results, and a loaded machine
// (the race detector, other packages' tests) must not turn one into a
// timeout.
func inBothModes(t *testing.T, test func(t *testing.T, l Limits)) {
	t.Run("in process", func(t *testing.T) { test(t, Limits{Timeout: 10 * time.Second}) })
	t.Run("worker", func(t *testing.T) {
		l := workerLimits(t)
		l.Timeout = 10 * time.Second
		test(t, l)
	})
}

func TestWorkerCancel(t *testing.T) {
	l := workerLimits(t)
	l.Timeout = 10 * time.Second
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := EvalBallot(ctx, "export function vote() { for (;;) {} }", "{}", "m1", l)
	if err == nil || !strings.Contains(err.Error(), "deadline") {
		t.Fatalf("err = %v, want the context's deadline", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("cancel took %v", d)
	}
}

func TestWorkerMissing(t *testing.T) {
	_, err := EvalBallot(t.Context(), "export function vote() { return true }", "{}", "m1", Limits{Worker: "/nonexistent/coco"})
	if !errors.Is(err, ErrInternal) {
		t.Fatalf("err = %v, want ErrInternal", err)
	}
}

// Keys that are not UTF-8 (the logging app's public map has binary ids)
// reach a worker's script and come back byte for byte, as in process.
func TestWorkerBinaryKeys(t *testing.T) {
	src := `
export function validate() { return { valid: true } }
export function resolve() {
	const m = ccf.kv["public:records"];
	let found = 0, seen = 0;
	m.forEach((v, k) => { seen++; if (m.get(k) !== undefined && m.has(k)) found++; });
	return seen === 2 && found === 2 ? "Accepted" : "Rejected";
}
export function apply() {}`
	base := mustParse(t, src)
	inBothModes(t, func(t *testing.T, l Limits) {
		tx := kv.NewStore().Begin()
		_ = tx.Put("public:records", "\xff\xfe\x00\x01", []byte("\x80binary"))
		_ = tx.Put("public:records", "plain", []byte("x"))
		s, err := base.WithLimits(l).Resolve(t.Context(), `{"actions":[]}`, "m1", nil, tx)
		if err != nil || s != StateAccepted {
			t.Fatalf("resolve: %q %v", s, err)
		}
	})
}
