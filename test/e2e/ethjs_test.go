package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestEthersJS runs the ethers.js tests in test/ethjs (an ERC-20 and the
// purchase-order contract, compiled by solc-js, with the confidentiality
// checks) against a 3-node sandbox, through the standard JSON-RPC. Their
// npm packages must be installed (`make test` runs npm ci first).
func TestEthersJS(t *testing.T) {
	dir, err := filepath.Abs("../ethjs")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "ethers")); err != nil {
		t.Fatalf("test/ethjs has no node_modules (%v): run `npm ci --prefix test/ethjs` (make test does)", err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node (Node.js) is needed for the ethers.js tests: %v", err)
	}
	s := startSandbox(t, filepath.Join(t.TempDir(), "sandbox"), "--nodes", "3")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "--test-concurrency=1")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "COCO_SANDBOX="+filepath.Join(s.dir, "sandbox.json"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test in test/ethjs: %v\n%s", err, out)
	}
	t.Logf("node --test in test/ethjs passed:\n%s", tailBytes(out, 12))

	// `coco bench erc20` end to end on the same sandbox: it registers its
	// accounts through governance, deploys and funds the token, and checks
	// every balance and nonce afterwards (a mismatch exits non-zero).
	bout, code := runCoco(t, "bench", "erc20", "--sandbox", s.dir, "--accounts", "6", "--batch", "3",
		"--duration", "1s", "--warmup", "200ms", "--max-rate", "3000")
	if code != 0 || !strings.Contains(bout, "balances and nonces of 6 accounts match") {
		t.Fatalf("coco bench erc20: exit %d\n%s", code, bout)
	}
	t.Logf("coco bench erc20:\n%s", bout)
}

// tailBytes is the last n lines of b.
func tailBytes(b []byte, n int) string {
	lines := 0
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == '\n' {
			if lines++; lines > n {
				return string(b[i+1:])
			}
		}
	}
	return string(b)
}
