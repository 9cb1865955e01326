package constitution

import (
	"errors"
	"testing"
)

// new ArrayBuffer(1e12) or new Uint8Array(4e9) used to kill the process
// with a fatal out-of-memory error within milliseconds. ArrayBuffer is now
// capped at Limits.MaxStringBytes on every path, and typed arrays, DataView
// and SharedArrayBuffer do not exist.
func TestArrayBufferBounded(t *testing.T) {
	for _, expr := range []string{
		`new ArrayBuffer(1e12)`,
		`new ArrayBuffer(4e9)`,
		`new ArrayBuffer(16 * 1024 * 1024 + 1)`,
		`new ArrayBuffer({ valueOf() { return 1e12 } })`,
		`new (ccf.strToBuf("").constructor)(1e12)`,
		`new (Object.getPrototypeOf(ccf.strToBuf("x")).constructor)(1e12)`,
		`Reflect.construct(ArrayBuffer, [1e12])`,
		`Reflect.construct(ccf.strToBuf("").constructor, [1e12])`,
		`class B extends ArrayBuffer {}; new B(1e12)`,
		`ArrayBuffer(8)`,
		`new Uint8Array(4e9)`,
		`new Float64Array(1e12)`,
		`new BigUint64Array(1e12)`,
		`new DataView(new ArrayBuffer(8))`,
		`new SharedArrayBuffer(1e12)`,
	} {
		ballot := "export function vote() { " + expr + "; return true }"
		if _, err := EvalBallot(t.Context(), ballot, "{}", "m1", Limits{}); !errors.Is(err, ErrScript) {
			t.Errorf("%s: %v, want ErrScript", expr, err)
		}
	}
	// Under a smaller limit the cap follows it.
	if _, err := EvalBallot(t.Context(), "export function vote() { new ArrayBuffer(1025); return true }", "{}", "m1",
		Limits{MaxStringBytes: 1024}); !errors.Is(err, ErrScript) {
		t.Errorf("ArrayBuffer above a 1 KiB limit: %v, want ErrScript", err)
	}
	// What stays: small buffers, the buffer helpers, instanceof and slice.
	ok := `export function vote() {
		const b = new ArrayBuffer(16);
		const s = ccf.strToBuf("héllo");
		return b.byteLength === 16 && b instanceof ArrayBuffer && s instanceof ArrayBuffer &&
			s.constructor === ArrayBuffer && ccf.bufToStr(s) === "héllo" &&
			ccf.bufToStr(s.slice(0, 1)) === "h" && !ArrayBuffer.isView(b) &&
			ccf.bufToJsonCompatible(ccf.jsonCompatibleToBuf({a: [1]})).a[0] === 1 &&
			new ArrayBuffer(16 * 1024 * 1024).byteLength === 16 * 1024 * 1024 &&
			typeof Uint8Array === "undefined" && typeof DataView === "undefined";
	}`
	if got, err := EvalBallot(t.Context(), ok, "{}", "m1", Limits{}); err != nil || !got {
		t.Fatalf("ordinary buffer use: %v, %v", got, err)
	}
}
