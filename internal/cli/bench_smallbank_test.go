package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cocoledger/coco/app/smallbank"
	"github.com/cocoledger/coco/bench"
	"github.com/cocoledger/coco/internal/testproc"
	"github.com/cocoledger/coco/sandbox"
)

// TestBenchSmallBankCmd runs `bench smallbank` against a real node (in this
// process) hosting the smallbank app, described by a sandbox.json.
func TestBenchSmallBankCmd(t *testing.T) {
	dir := t.TempDir()
	n, _, user := testproc.StartOpenNode(t, dir, smallbank.App{})
	info := sandbox.Info{
		ServiceCert: n.ServiceCertPath(),
		Nodes:       []sandbox.NodeInfo{{RPCAddress: n.Addr(), DataDir: dir, Args: []string{"coco"}}},
		Users:       []sandbox.UserInfo{{Name: "user0", Cert: user.CertPath, Key: user.KeyPath}},
	}
	b, err := json.Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sandbox.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	figures := filepath.Join(dir, "figures.jsonl")

	args := []string{"bench", "smallbank", "--sandbox", dir, "--accounts", "50", "--clients", "4", "--duration", "500ms", "--warmup", "100ms", "--json", figures}
	for run := range 2 { // a second run on the same service makes new accounts
		code, stdout, stderr := runCLI(t, args...)
		if code != 0 {
			t.Fatalf("run %d: exit %d: %s%s", run, code, stdout, stderr)
		}
		t.Log(stdout)
		lines := strings.Split(strings.TrimSpace(stdout), "\n")
		if len(lines) < 4 || lines[0] != strings.Split(bench.SmallBankMarkdownHeader, "\n")[0] {
			t.Fatalf("want header, separator, a row and the check, got:\n%s", stdout)
		}
		if !strings.HasPrefix(lines[2], "| "+n.Addr()+" | 4 | 50 | ") {
			t.Errorf("row %q", lines[2])
		}
		if last := lines[len(lines)-1]; !strings.Contains(last, "the 50 accounts hold") || !strings.Contains(last, "exactly") {
			t.Errorf("check line %q", last)
		}
	}
	raw, err := os.ReadFile(figures)
	if err != nil {
		t.Fatal(err)
	}
	figs, err := bench.ReadFigures(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	if len(figs) != 2 || figs[0].Workload != "smallbank" || figs[0].System != "coco-1" || figs[0].Clients != 4 || figs[0].PerSec <= 0 {
		t.Errorf("figures %+v", figs)
	}

	// Bad flags are refused before anything runs.
	code, _, stderr := runCLI(t, "bench", "smallbank", "--sandbox", dir, "--accounts", "1", "--duration", "100ms")
	if code == 0 || !strings.Contains(stderr, "accounts must be in [2") {
		t.Errorf("--accounts 1: exit %d: %s", code, stderr)
	}
	code, _, stderr = runCLI(t, "bench", "smallbank", "--sandbox", filepath.Join(dir, "missing"))
	if code == 0 || !strings.Contains(stderr, "sandbox") {
		t.Errorf("missing sandbox: exit %d: %s", code, stderr)
	}
}
