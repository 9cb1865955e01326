package e2e

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// ledgerChunks lists the ledger files of a data dir, in name order.
func ledgerChunks(t *testing.T, dataDir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dataDir, "ledger", "ledger_*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no ledger chunks in %s (%v)", dataDir, err)
	}
	sort.Strings(files)
	return files
}

// TestTornTailAndCorruptLedger restarts a node on a ledger whose last record
// is torn (as after a crash mid-write: the node must start and lose nothing
// acknowledged) and then on one with a flipped byte in the middle (the node
// must refuse to start with an error naming the file, not crash).
func TestTornTailAndCorruptLedger(t *testing.T) {
	t.Parallel()
	n := startNode(t, t.TempDir())
	c := n.userClient(t)
	for i := range uint64(20) {
		c.write("private", i, "value")
	}
	if code := n.stop(stopTimeout); code != 0 {
		t.Fatalf("coco node exited %d after SIGTERM", code)
	}

	chunks := ledgerChunks(t, n.dataDir)
	last := chunks[len(chunks)-1]
	f, err := os.OpenFile(last, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// A length prefix promising more bytes than follow: a torn final record.
	if _, err := f.Write([]byte{0, 0, 1, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	n.restart(t)
	c = n.userClient(t)
	for i := range uint64(20) {
		if got, ok := c.read("private", i); !ok || got != "value" {
			t.Errorf("after a torn tail, private id %d = %q, %v", i, got, ok)
		}
	}
	c.write("private", 100, "after the torn tail")
	if code := n.stop(stopTimeout); code != 0 {
		t.Fatalf("coco node exited %d after SIGTERM", code)
	}

	chunks = ledgerChunks(t, n.dataDir)
	chunk := chunks[0]
	b, err := os.ReadFile(chunk)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/3] ^= 0x40
	writeFile(t, chunk, b)
	out, code := runCoco(t, n.args...)
	if code == 0 {
		t.Fatalf("coco node started on a ledger with a flipped byte in %s:\n%s", chunk, out)
	}
	if strings.Contains(out, "panic") || strings.Contains(out, "goroutine ") {
		t.Errorf("coco node crashed on a corrupt ledger instead of reporting it:\n%s", out)
	}
	if !strings.Contains(out, filepath.Base(chunk)) {
		t.Errorf("coco node refused a corrupt ledger without naming %s:\n%s", filepath.Base(chunk), out)
	}
}
