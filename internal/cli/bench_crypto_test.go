package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cocoledger/coco/bench"
)

// runBenchCrypto runs `coco bench crypto args...`.
func runBenchCrypto(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newBenchCryptoCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(t.Context())
	return out.String(), err
}

func TestBenchCryptoCmd(t *testing.T) {
	jsonPath := filepath.Join(t.TempDir(), "figures.jsonl")
	out, err := runBenchCrypto(t, "--duration", "20ms", "--json", jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || lines[0] != strings.Split(bench.CryptoMarkdownHeader, "\n")[0] ||
		!strings.HasPrefix(lines[2], "| ecrecover |") || !strings.HasPrefix(lines[3], "| p256-verify |") {
		t.Fatalf("want header, separator and two rows, got:\n%s", out)
	}
	f, err := os.Open(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	figs, err := bench.ReadFigures(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(figs) != 2 || figs[0].Workload != "ecrecover" || figs[1].Workload != "p256-verify" ||
		figs[0].System != "1core" || figs[0].PerSec <= 0 || figs[1].PerSec <= 0 {
		t.Errorf("figures %+v", figs)
	}
}

func TestBenchCryptoCmdBadDuration(t *testing.T) {
	if _, err := runBenchCrypto(t, "--duration", "0s"); err == nil || !strings.Contains(err.Error(), "duration must be positive") {
		t.Errorf("error %v, want one that explains", err)
	}
}
