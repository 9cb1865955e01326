package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBenchSmallBank runs a short `coco bench smallbank` against a sandbox:
// the run commits transactions, and afterwards the accounts hold exactly
// the initial money plus what the acknowledged deposits and withdrawals
// moved (the command checks it and exits non-zero otherwise).
func TestBenchSmallBank(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	s := startSandbox(t, filepath.Join(tmp, "sb"), "--nodes", "1", "--members", "1", "--users", "1")
	figures := filepath.Join(tmp, "figures.jsonl")
	out, code := runCoco(t, "bench", "smallbank", "--sandbox", s.dir, "--accounts", "200", "--clients", "8",
		"--duration", "1s", "--warmup", "200ms", "--seed", "3", "--json", figures)
	t.Log(out)
	if code != 0 {
		t.Fatalf("coco bench smallbank exited %d", code)
	}
	if !strings.Contains(out, "| 8 | 200 |") || !strings.Contains(out, "the 200 accounts hold") || !strings.Contains(out, "exactly") {
		t.Errorf("output lacks the row or the exact conservation check")
	}
	raw, err := os.ReadFile(figures)
	if err != nil {
		t.Fatal(err)
	}
	var fig struct {
		Workload string  `json:"workload"`
		System   string  `json:"system"`
		PerSec   float64 `json:"per_sec"`
	}
	if err := json.Unmarshal(raw, &fig); err != nil || fig.Workload != "smallbank" || fig.System != "coco-1" || fig.PerSec <= 0 {
		t.Errorf("figure %s: %+v, %v", raw, fig, err)
	}

	// The app answers users only, with JSON errors.
	c := s.client(t, 0)
	expectError(t, c.do("POST", "/app/smallbank/balance", map[string]any{"id": 1}), http.StatusNotFound, "AccountNotFound")
	expectError(t, c.do("POST", "/app/smallbank/deposit_checking", map[string]any{"id": 1, "amount": -1}), http.StatusBadRequest, "InvalidInput")
	expectError(t, s.anon(t).do("POST", "/app/smallbank/balance", map[string]any{"id": 1}), http.StatusUnauthorized, "InvalidAuthenticationInfo")
}
