package constitution

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestTransformModule(t *testing.T) {
	tests := []struct {
		name    string
		src     string
		exports []string
		wantErr string // substring; "" means success
	}{
		{"function", "export function vote(p, id) { return true }", []string{"vote"}, ""},
		{"const arrow", "export const vote = (p) => true;", []string{"vote"}, ""},
		{"let var class async", "export let a = 1\nexport var b = 2\nexport class C {}\nexport async function f() {}",
			[]string{"a", "b", "C", "f"}, ""},
		{"not exported helper", "function helper() {}\nexport function vote() { return helper() }", []string{"vote"}, ""},
		{"export in strings and comments", "// export default x\n/* export { y } */\nconst s = \"export {\", t = 'export default';\n" +
			"const u = `export ${ {a: 'export'}.a } {`;\nexport function vote() { return s + t + u }", []string{"vote"}, ""},
		{"export in regex", "const r = /export {/;\nexport function vote() { return r.test('x') }", []string{"vote"}, ""},
		{"property named export", "const o = { export: 1 };\nexport function vote() { return o.export === 1 }", []string{"vote"}, ""},
		{"division after paren", "const x = (4) / 2; const y = 1 / 2 / 3;\nexport function vote() { return x > y }", []string{"vote"}, ""},
		{"export default", "export default function () {}", nil, "line 1: only `export function"},
		{"export list", "function vote() {}\nexport { vote }", nil, "line 2: only `export function"},
		{"import", "import x from 'y';\nexport function vote() {}", nil, "line 1: import is not supported"},
		{"syntax error keeps line", "export function vote() {\n  return 1 +;\n}", nil, "Line 2:"},
		{"unterminated string", "export function vote() { return 'x }", nil, "line 1: unterminated string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ex, err := transformModule("ballot.js", tt.src)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				if !errors.Is(err, ErrSyntax) {
					t.Fatalf("err = %v, want ErrSyntax", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(ex.names) != len(tt.exports) {
				t.Fatalf("exports = %v, want %v", ex.names, tt.exports)
			}
			for _, n := range tt.exports {
				if !ex.names[n] {
					t.Fatalf("exports = %v, missing %q", ex.names, n)
				}
			}
			if len(ex.script) != len(tt.src) {
				t.Fatalf("transform changed the length (%d -> %d): positions would shift", len(tt.src), len(ex.script))
			}
		})
	}
}

// FuzzTransformModule: the lexer terminates quickly on any input and never
// changes the length (so positions in errors stay right).
func FuzzTransformModule(f *testing.F) {
	for _, s := range []string{
		"export function vote() { return true }", "`${`${'}'}`}`", "/[/]/", "a\n/b/g",
		"export const a = 1; const o = { export: 2 }; export let r = /x/g.test('export')",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		done := make(chan *exported, 1)
		go func() {
			ex, _ := transformModule("f.js", src)
			done <- ex
		}()
		select {
		case ex := <-done:
			if ex != nil && len(ex.script) != len(src) {
				t.Fatalf("length changed")
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("transformModule hangs on %q", src)
		}
	})
}
