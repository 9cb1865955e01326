package constitution

import (
	"embed"
	"strings"
)

//go:embed js/*.js
var jsFiles embed.FS

// defaultFiles is the order in which the default constitution's files are
// joined. Declarations come before their users for the reader; the code
// itself only runs at call time, when every binding exists.
var defaultFiles = []string{"maps.js", "actions.js", "validate.js", "resolve.js", "apply.js"}

// Default returns the source of the default constitution: js/*.js joined
// into one module, which is what set_constitution stores and what a node
// starts with.
func Default() string {
	var b strings.Builder
	for _, name := range defaultFiles {
		src, err := jsFiles.ReadFile("js/" + name)
		if err != nil {
			// The files are embedded at build time; a missing one is a
			// build mistake a test catches, not a runtime condition.
			panic("constitution: embedded " + name + ": " + err.Error())
		}
		b.WriteString("// ---- " + name + " ----\n")
		b.Write(src)
		b.WriteString("\n")
	}
	return b.String()
}
