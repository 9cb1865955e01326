package constitution

import (
	"errors"
	"strings"
	"testing"
)

// Deeply nested source used to overflow goja's recursive parser, a fatal
// error no recover catches; many nested functions made compile time
// quadratic. Both are refused before goja sees the source.
func TestNestingAndFunctionBounds(t *testing.T) {
	nested := func(n int) string { return strings.Repeat("(", n) + "1" + strings.Repeat(")", n) }
	for name, src := range map[string]string{
		"parens":       "export function vote() { return " + nested(MaxNestingDepth+1) + " }",
		"unbalanced":   "export function vote() { return " + strings.Repeat("(", 3000) + " }",
		"brackets":     "export function vote() { return " + strings.Repeat("[", MaxNestingDepth+1) + strings.Repeat("]", MaxNestingDepth+1) + " }",
		"templates":    "export function vote() { return " + strings.Repeat("`${", MaxNestingDepth+1) + "1" + strings.Repeat("}`", MaxNestingDepth+1) + " }",
		"arrows":       "export function vote() { return " + strings.Repeat("x=>", MaxFunctions+1) + "1 }",
		"functions":    "export function vote() { return 1 }" + strings.Repeat("function f(){}", MaxFunctions),
		"nested funcs": "export function vote() { return 1 }" + strings.Repeat("function f(){", 200) + strings.Repeat("}", 200) + strings.Repeat("x=>", MaxFunctions),
	} {
		t.Run(name, func(t *testing.T) {
			if len(src) <= MaxBallotBytes {
				if err := CheckBallot(src); !errors.Is(err, ErrSyntax) {
					t.Errorf("CheckBallot: %v, want ErrSyntax", err)
				}
				if _, err := EvalBallot(t.Context(), src, "{}", "m1", Limits{}); !errors.Is(err, ErrSyntax) {
					t.Errorf("EvalBallot: %v, want ErrSyntax", err)
				}
			}
			if _, err := Parse(src); !errors.Is(err, ErrSyntax) {
				t.Errorf("Parse: %v, want ErrSyntax", err)
			}
		})
	}
	// At the bounds, source still compiles.
	ok := "export function vote() { return " + nested(MaxNestingDepth-10) + " === 1 }"
	if got, err := EvalBallot(t.Context(), ok, "{}", "m1", Limits{}); err != nil || !got {
		t.Fatalf("EvalBallot at the nesting bound: %v, %v", got, err)
	}
	// The reviewer's 64 KiB ballot of x=>x=>...: too large now, at once.
	if err := CheckBallot("export const vote = " + strings.Repeat("x=>", 64<<10/3)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("CheckBallot of 64 KiB: %v, want ErrTooLarge", err)
	}
}

// The reviewer's crashes: ccf.checkConstitution of deeply nested source
// from a ballot, and a set_constitution proposal with deeply nested source
// validated by the default constitution.
func TestCheckConstitutionDeepNesting(t *testing.T) {
	ballot := `export function vote() {
		const err = ccf.checkConstitution("(".repeat(400000));
		return err.includes("syntax error") && err.includes("nested");
	}`
	got, err := EvalBallot(t.Context(), ballot, "{}", "m1", Limits{})
	if err != nil || !got {
		t.Fatalf("EvalBallot: %v, %v", got, err)
	}
	c := defaultConstitution(t)
	deep := "export function validate(){} export function resolve(){} export function apply(){}\n" +
		strings.Repeat("(", 200000) + "1" + strings.Repeat(")", 200000)
	prop := proposal(t, action{"set_constitution", map[string]any{"constitution": deep}})
	valid, desc, err := c.Validate(t.Context(), prop)
	if err != nil || valid || !strings.Contains(desc, "nested") {
		t.Fatalf("Validate = %v, %q, %v; want invalid, naming the nesting", valid, desc, err)
	}
}

// Scripts cannot reach goja's parser at run time (eval, Function and its
// async and generator variants), nor nest JSON.parse input without bound.
func TestNoRuntimeCompilation(t *testing.T) {
	deep := `"(".repeat(400000)`
	for _, expr := range []string{
		`eval(` + deep + `)`,
		`eval("1")`,
		`globalThis.eval(` + deep + `)`,
		`Function(` + deep + `)`,
		`new Function("return 1")`,
		`(() => 1).constructor(` + deep + `)`,
		`(function () {}).constructor("return 1")`,
		`Object.getPrototypeOf(async function () {}).constructor("return 1")`,
		`Object.getPrototypeOf(function* () {}).constructor("return 1")`,
		`JSON.parse("[".repeat(100000))`,
		`JSON.parse("[".repeat(1025) + "]".repeat(1025))`,
	} {
		ballot := "export function vote() { " + expr + "; return true }"
		if _, err := EvalBallot(t.Context(), ballot, "{}", "m1", Limits{}); !errors.Is(err, ErrScript) {
			t.Errorf("%s: %v, want ErrScript", expr, err)
		}
	}
	ok := `export function vote(p) { return JSON.parse('[{"a":"]]]]"}]')[0].a === "]]]]" && JSON.parse(p).x === 1 }`
	if got, err := EvalBallot(t.Context(), ok, `{"x":1}`, "m1", Limits{}); err != nil || !got {
		t.Fatalf("JSON.parse of ordinary input: %v, %v", got, err)
	}
}
