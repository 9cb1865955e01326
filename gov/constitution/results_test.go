package constitution

import (
	"errors"
	"strings"
	"testing"

	"github.com/cocoledger/coco/kv"
)

// validate returning an object without valid used to panic on a nil value
// and come back as ErrInternal.
func TestValidateMissingFields(t *testing.T) {
	for _, ret := range []string{`{}`, `{ description: "x" }`, `{ valid: undefined }`, `{ valid: null }`, `{ valid: 1 }`, `Object.create(null)`} {
		c := mustParse(t, "export function validate() { return "+ret+" }\nexport function resolve() { return 'Open' }\nexport function apply() {}")
		_, _, err := c.Validate(t.Context(), "{}")
		if !errors.Is(err, ErrBadResult) {
			t.Errorf("validate returning %s: %v, want ErrBadResult", ret, err)
		}
	}
}

// Argument names are matched against the action's own spec, not its
// prototype chain.
func TestArgsNotFromPrototype(t *testing.T) {
	c := defaultConstitution(t)
	for _, extra := range []string{"constructor", "toString", "__proto__", "hasOwnProperty", "valueOf"} {
		p := `{"actions":[{"name":"remove_member","args":{"member_id":"` + hexID("a") + `","` + extra + `":1}}]}`
		valid, desc, err := c.Validate(t.Context(), p)
		if err != nil || valid || !strings.Contains(desc, "unknown argument") {
			t.Errorf("extra argument %q: valid=%v desc=%q err=%v; want refused as unknown", extra, valid, desc, err)
		}
	}
}

// Host errors reach scripts as plain JS Errors, not wrapped Go values.
func TestHostErrorsArePlainJS(t *testing.T) {
	ballot := `export function vote() {
		try {
			ccf.kv["public:ccf.gov.x"].get("k");
		} catch (e) {
			return e instanceof Error && e.constructor === Error && e.value === undefined &&
				Object.getOwnPropertyNames(e).every((n) => n === "message" || n === "stack") &&
				e.message.includes("not available");
		}
		return false;
	}`
	if got, err := EvalBallot(t.Context(), ballot, "{}", "m1", Limits{}); err != nil || !got {
		t.Fatalf("EvalBallot: %v, %v", got, err)
	}
	// Replacing the global Error does not change what the host throws.
	ballot = `export function vote() {
		const E = Error;
		globalThis.Error = function () { return { fake: true } };
		try { ccf.kv["public:ccf.gov.x"].get("k"); } catch (e) { return e instanceof E && !e.fake; }
		return false;
	}`
	if got, err := EvalBallot(t.Context(), ballot, "{}", "m1", Limits{}); err != nil || !got {
		t.Fatalf("EvalBallot with Error replaced: %v, %v", got, err)
	}
	// A write beyond MaxWriteBytes is still ErrTooLarge to the caller when
	// the script lets the (plain) error escape.
	c := mustParse(t, `export function validate() { return { valid: true } }
export function resolve() { return "Open" }
export function apply() { ccf.kv["public:ccf.gov.x"].set("k", "v".repeat(100)); }`).WithLimits(Limits{MaxWriteBytes: 10})
	if err := c.Apply(t.Context(), "{}", "p", kv.NewStore().Begin()); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Apply past MaxWriteBytes: %v, want ErrTooLarge", err)
	}
}
