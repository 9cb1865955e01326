package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEVMStateTest(t *testing.T) {
	vectors := filepath.Join("..", "..", "app", "evm", "testdata", "statetests", "coco_vectors.json")
	code, stdout, stderr := runCLI(t, "evm", "statetest", vectors)
	if code != 0 || !strings.Contains(stdout, "PASS transfer/Osaka/0") || !strings.Contains(stdout, " 0 failed") {
		t.Fatalf("statetest on the vectors: exit %d\n%s\n%s", code, stdout, stderr)
	}
	doc, err := os.ReadFile(vectors)
	if err != nil {
		t.Fatal(err)
	}
	// The same file with one expected root changed fails.
	var tests map[string]map[string]any
	if err := json.Unmarshal(doc, &tests); err != nil {
		t.Fatal(err)
	}
	tests["transfer"]["post"].(map[string]any)["Osaka"].([]any)[0].(map[string]any)["hash"] = "0x" + strings.Repeat("11", 32)
	bad, err := json.Marshal(tests)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(path, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, _ = runCLI(t, "evm", "statetest", path)
	if code == 0 || !strings.Contains(stdout, "FAIL transfer/Osaka/0: state root") {
		t.Fatalf("statetest with a wrong root: exit %d\n%s", code, stdout)
	}
	if code, _, _ := runCLI(t, "evm", "statetest", filepath.Join(t.TempDir(), "missing.json")); code == 0 {
		t.Error("statetest on a missing file exited 0")
	}
}
