package evm

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/rawdb"
	"github.com/ethereum/go-ethereum/core/vm"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/rlp"
	"github.com/ethereum/go-ethereum/tests"
)

var updateVectors = flag.Bool("update", false, "rewrite the expected hashes in testdata/statetests from go-ethereum's state-test runner")

// TestStateTestVectors runs coco's own state tests (testdata/statetests)
// through go-ethereum's reference runner, whose post-state roots and logs
// hashes the files hold (go test -update rewrites them), and through
// coco's: both must match every post-state.
func TestStateTestVectors(t *testing.T) {
	files, err := filepath.Glob("testdata/statetests/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no vectors: %v", err)
	}
	for _, path := range files {
		doc, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var ref map[string]*tests.StateTest
		if err := json.Unmarshal(doc, &ref); err != nil {
			t.Fatal(err)
		}
		var raw map[string]map[string]any
		if err := json.Unmarshal(doc, &raw); err != nil {
			t.Fatal(err)
		}
		for name, st := range ref {
			for _, sub := range st.Subtests() {
				state, root, _, err := st.RunNoVerify(sub, vm.Config{}, false, rawdb.HashScheme)
				post := raw[name]["post"].(map[string]any)[sub.Fork].([]any)[sub.Index].(map[string]any)
				_, wantErr := post["expectException"]
				if (err != nil) != wantErr {
					t.Fatalf("%s/%s/%d: reference runner error %v, expectException %v", name, sub.Fork, sub.Index, err, wantErr)
				}
				var logsHash common.Hash
				if err == nil {
					enc, _ := rlp.EncodeToBytes(state.StateDB.Logs())
					logsHash = crypto.Keccak256Hash(enc)
				}
				state.Close()
				if *updateVectors {
					post["hash"], post["logs"] = root.Hex(), logsHash.Hex()
					continue
				}
				if err == nil && (post["hash"] != root.Hex() || post["logs"] != logsHash.Hex()) {
					t.Errorf("%s/%s/%d: file says root %v logs %v, the reference runner %s %s (go test -update)", name, sub.Fork, sub.Index, post["hash"], post["logs"], root, logsHash)
				}
			}
		}
		if *updateVectors {
			b, err := json.MarshalIndent(raw, "", " ")
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
				t.Fatal(err)
			}
			if doc, err = os.ReadFile(path); err != nil {
				t.Fatal(err)
			}
		}
		results, err := RunStateTests(doc)
		if err != nil {
			t.Fatal(err)
		}
		if len(results) == 0 {
			t.Fatalf("%s: no results", path)
		}
		for _, r := range results {
			if !r.Pass {
				t.Errorf("%s: %s", path, r)
			}
		}
	}
}

// TestStateTestDetectsMismatch: a wrong expected root or logs hash, or a
// missing expected exception, fails; an unknown fork is skipped.
func TestStateTestDetectsMismatch(t *testing.T) {
	doc, err := os.ReadFile("testdata/statetests/coco_vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]map[string]any
	if err := json.Unmarshal(doc, &raw); err != nil {
		t.Fatal(err)
	}
	posts := raw["storeAndLog"]["post"].(map[string]any)
	osaka := posts["Osaka"].([]any)
	osaka[0].(map[string]any)["hash"] = common.Hash{1}.Hex()
	osaka[1].(map[string]any)["logs"] = common.Hash{2}.Hex()
	osaka[2].(map[string]any)["expectException"] = "TR_Whatever"
	posts["Frontier"] = []any{osaka[0]}
	blob := map[string]any{}
	for k, v := range raw["transfer"] {
		blob[k] = v
	}
	txObj := map[string]any{}
	for k, v := range blob["transaction"].(map[string]any) {
		txObj[k] = v
	}
	txObj["blobVersionedHashes"] = []string{common.Hash{1}.Hex()}
	blob["transaction"] = txObj
	b, _ := json.Marshal(map[string]any{"storeAndLog": raw["storeAndLog"], "zblob": blob})
	results, err := RunStateTests(b)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"Osaka/0": "FAIL", "Osaka/1": "FAIL", "Osaka/2": "FAIL", "Frontier/0": "SKIP", "Prague/0": "PASS", "Cancun/2": "PASS"}
	for _, r := range results {
		if r.Name == "zblob" {
			if !r.Skipped {
				t.Errorf("a blob transaction's test: %s, want SKIP", r)
			}
			continue
		}
		key := r.Fork + "/" + strconv.Itoa(r.Index)
		if w, ok := want[key]; ok && !strings.HasPrefix(r.String(), w) {
			t.Errorf("%s: %s, want %s", key, r, w)
		}
	}
	if _, err := RunStateTests([]byte("not json")); err == nil {
		t.Error("a malformed file is not an error")
	}
}
