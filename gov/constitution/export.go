package constitution

import (
	"fmt"
	"strings"

	"github.com/dop251/goja"
	"github.com/dop251/goja/ast"
)

// goja (as of the version in go.mod) runs scripts, not ES modules: it has no
// module loader and its parser rejects `export`. CCF constitutions and
// ballots are modules whose only module feature is `export` in front of
// top-level declarations, so we accept exactly that and nothing else.
//
// The transform blanks the `export` keyword with spaces (same length, so
// the line:column of every later error still points at the author's text)
// and then checks, on goja's own AST of the result, that every blanked
// keyword stood directly in front of a top-level declaration. A lexer slip
// (say, `export` inside an odd regular expression literal) therefore cannot
// silently change the program: it fails that check and Parse reports it.

// exported is the result of transforming a module into a script.
type exported struct {
	script string          // the source with every `export` blanked
	ast    *ast.Program    // goja's AST of script
	names  map[string]bool // names declared by export declarations
}

// declKeywords may follow `export`: the declaration forms the transform
// supports (`export default`, `export {a}`, re-exports are refused).
var declKeywords = map[string]bool{
	"function": true, "async": true, "class": true,
	"const": true, "let": true, "var": true,
}

// transformModule turns module source into a script and reports which names
// it exports. name labels errors (it is the file name goja prints).
func transformModule(name, src string) (*exported, error) {
	sites, err := findExports(name, src)
	if err != nil {
		return nil, err
	}
	b := []byte(src)
	for _, s := range sites {
		copy(b[s.export:s.export+len("export")], "      ")
	}
	script := string(b)
	prg, err := goja.Parse(name, script)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSyntax, err)
	}
	names := make(map[string]bool)
	starts := make(map[int]ast.Statement, len(prg.Body))
	for _, st := range prg.Body {
		starts[int(st.Idx0())-1] = st // file.Idx is 1-based
	}
	for _, s := range sites {
		st, ok := starts[s.decl]
		if !ok {
			return nil, fmt.Errorf("%w: %s: line %d: export must precede a top-level declaration",
				ErrSyntax, name, lineOf(src, s.export))
		}
		for _, n := range declaredNames(st) {
			names[n] = true
		}
	}
	return &exported{script: script, ast: prg, names: names}, nil
}

// declaredNames returns the binding names of a top-level declaration. Only
// plain identifiers count: destructuring exports are not callable entry
// points anyway.
func declaredNames(st ast.Statement) []string {
	var out []string
	addBindings := func(list []*ast.Binding) {
		for _, b := range list {
			if id, ok := b.Target.(*ast.Identifier); ok {
				out = append(out, string(id.Name))
			}
		}
	}
	switch d := st.(type) {
	case *ast.FunctionDeclaration:
		if d.Function != nil && d.Function.Name != nil {
			out = append(out, string(d.Function.Name.Name))
		}
	case *ast.ClassDeclaration:
		if d.Class != nil && d.Class.Name != nil {
			out = append(out, string(d.Class.Name.Name))
		}
	case *ast.LexicalDeclaration:
		addBindings(d.List)
	case *ast.VariableStatement:
		addBindings(d.List)
	}
	return out
}

// exportSite is one `export` keyword: its offset and the offset of the
// declaration keyword that follows it.
type exportSite struct{ export, decl int }

// Parser bounds. goja's parser (and compiler) recurse once per nesting
// level with no limit of their own, so deeply nested source overflows the
// Go stack, which is a fatal error that no recover can catch; and compile
// time grows quadratically with nested functions. findExports, which every
// source passes before goja sees it, refuses source beyond these bounds.
const (
	// MaxNestingDepth bounds ( [ { and ${ nesting.
	MaxNestingDepth = 256
	// MaxFunctions bounds the `function` keywords and `=>` arrows in one
	// source (the default constitution has about 20).
	MaxFunctions = 1024
)

// findExports scans src as a JavaScript token stream just well enough to
// find `export` keywords at the top level: it skips comments, string and
// template literals (with nested ${...}) and regular expression literals,
// and tracks bracket depth. It also enforces MaxNestingDepth and
// MaxFunctions, so it must run before any source reaches goja's parser.
func findExports(name, src string) ([]exportSite, error) {
	var (
		sites     []exportSite
		depth     int    // ( [ { nesting, template substitutions included
		templates []int  // depth at which each open ${ started
		prev      string // previous significant token, for the regex rule
		funcs     int    // function keywords and arrows seen
	)
	fail := func(at int, format string, args ...any) error {
		return fmt.Errorf("%w: %s: line %d: %s", ErrSyntax, name, lineOf(src, at), fmt.Sprintf(format, args...))
	}
	i := 0
	// template skips template text from just after src[at] (a backquote, or
	// the brace closing a substitution) to the closing backquote or the next
	// ${, which it enters.
	template := func(at int) error {
		j, open, err := skipTemplate(src, at+1)
		if err != nil {
			return fail(at, "%v", err)
		}
		if open {
			templates = append(templates, depth)
			depth++
			if depth > MaxNestingDepth {
				return fail(at, "nested more than %d levels deep", MaxNestingDepth)
			}
		}
		i, prev = j, "str"
		return nil
	}
	for i < len(src) {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
		case strings.HasPrefix(src[i:], "//"):
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case strings.HasPrefix(src[i:], "/*"):
			end := strings.Index(src[i+2:], "*/")
			if end < 0 {
				return nil, fail(i, "unterminated comment")
			}
			i += 2 + end + 2
		case c == '"' || c == '\'':
			j, err := skipString(src, i)
			if err != nil {
				return nil, fail(i, "%v", err)
			}
			i, prev = j, "str"
		case c == '`':
			if err := template(i); err != nil {
				return nil, err
			}
		case c == '}' && len(templates) > 0 && depth-1 == templates[len(templates)-1]:
			// End of a ${...} substitution: back inside the template.
			templates = templates[:len(templates)-1]
			depth--
			if err := template(i); err != nil {
				return nil, err
			}
		case c == '/' && regexAllowed(prev):
			j, err := skipRegex(src, i)
			if err != nil {
				return nil, fail(i, "%v", err)
			}
			i, prev = j, "regex"
		case isIdentStart(c):
			j := i
			for j < len(src) && isIdentPart(src[j]) {
				j++
			}
			word := src[i:j]
			if word == "function" {
				if funcs++; funcs > MaxFunctions {
					return nil, fail(i, "more than %d functions", MaxFunctions)
				}
			}
			if depth == 0 && prev != "." && prev != "?." {
				switch word {
				case "export":
					k := skipSpaceAndComments(src, j)
					e := k
					for e < len(src) && isIdentPart(src[e]) {
						e++
					}
					if !declKeywords[src[k:e]] {
						return nil, fail(i, "only `export function|const|let|var|class` declarations are supported (not export default, export {...} or re-exports)")
					}
					sites = append(sites, exportSite{export: i, decl: k})
				case "import":
					return nil, fail(i, "import is not supported: a constitution is a single module")
				}
			}
			i, prev = j, word
		case c >= '0' && c <= '9':
			for i < len(src) && (isIdentPart(src[i]) || src[i] == '.') {
				i++
			}
			prev = "num"
		default:
			switch c {
			case '(', '[', '{':
				if depth++; depth > MaxNestingDepth {
					return nil, fail(i, "nested more than %d levels deep", MaxNestingDepth)
				}
			case '=':
				if strings.HasPrefix(src[i:], "=>") {
					if funcs++; funcs > MaxFunctions {
						return nil, fail(i, "more than %d functions", MaxFunctions)
					}
				}
			case ')', ']', '}':
				if depth == 0 {
					return nil, fail(i, "unbalanced %q", c)
				}
				depth--
			}
			prev = string(c)
			if strings.HasPrefix(src[i:], "?.") {
				prev = "?."
				i++
			}
			i++
		}
	}
	return sites, nil
}

// regexAllowed applies the usual rule: a slash starts a regular expression
// unless the previous token ends an expression. `}` counts as a statement
// end, which is the common case at the top level.
func regexAllowed(prev string) bool {
	switch prev {
	case "", "(", ",", "=", ":", "[", "!", "&", "|", "?", "{", "}", ";", "+", "-", "*", "%", "<", ">", "~", "^",
		"return", "typeof", "instanceof", "in", "of", "new", "delete", "void", "throw", "case", "do", "else", "yield", "await":
		return true
	case ")", "]", "num", "str", "regex", ".", "?.":
		return false
	}
	return !isIdentStart(prev[0]) // other identifiers end an expression
}

func skipString(src string, i int) (int, error) {
	q := src[i]
	for j := i + 1; j < len(src); j++ {
		switch src[j] {
		case '\\':
			j++
		case q:
			return j + 1, nil
		case '\n':
			return 0, fmt.Errorf("unterminated string")
		}
	}
	return 0, fmt.Errorf("unterminated string")
}

// skipTemplate scans template text from i (just after ` or }) and returns
// where it stopped and whether it stopped at an opening ${.
func skipTemplate(src string, i int) (int, bool, error) {
	for j := i; j < len(src); j++ {
		switch {
		case src[j] == '\\':
			j++
		case src[j] == '`':
			return j + 1, false, nil
		case src[j] == '$' && j+1 < len(src) && src[j+1] == '{':
			return j + 2, true, nil
		}
	}
	return 0, false, fmt.Errorf("unterminated template literal")
}

func skipRegex(src string, i int) (int, error) {
	inClass := false
	for j := i + 1; j < len(src); j++ {
		switch src[j] {
		case '\\':
			j++
		case '[':
			inClass = true
		case ']':
			inClass = false
		case '\n':
			return 0, fmt.Errorf("unterminated regular expression")
		case '/':
			if !inClass {
				j++
				for j < len(src) && isIdentPart(src[j]) { // flags
					j++
				}
				return j, nil
			}
		}
	}
	return 0, fmt.Errorf("unterminated regular expression")
}

func skipSpaceAndComments(src string, i int) int {
	for i < len(src) {
		switch {
		case src[i] == ' ' || src[i] == '\t' || src[i] == '\n' || src[i] == '\r':
			i++
		case strings.HasPrefix(src[i:], "//"):
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case strings.HasPrefix(src[i:], "/*"):
			end := strings.Index(src[i+2:], "*/")
			if end < 0 {
				return len(src)
			}
			i += 2 + end + 2
		default:
			return i
		}
	}
	return i
}

// Bytes >= 0x80 are treated as identifier characters: non-ASCII only occurs
// in identifiers outside literals and comments, which are skipped whole.
func isIdentStart(c byte) bool {
	return c == '_' || c == '$' || c >= 0x80 || (c|0x20) >= 'a' && (c|0x20) <= 'z'
}

func isIdentPart(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }

func lineOf(src string, off int) int { return strings.Count(src[:off], "\n") + 1 }
