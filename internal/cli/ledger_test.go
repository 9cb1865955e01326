package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cocoledger/coco/kv"
	"github.com/cocoledger/coco/ledger"
)

func TestLedgerCommands(t *testing.T) {
	data := t.TempDir()
	dir := filepath.Join(data, "ledger")
	l, err := ledger.Open(ledger.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ws := &kv.WriteSet{Maps: []kv.MapWrites{{Name: "public:m", Writes: []kv.Write{
		{Key: "a", Value: []byte("hello")}, {Key: "b", Deleted: true}, {Key: "c", Value: []byte{0xff, 0x00}},
	}}}}
	entries := []*ledger.Entry{
		{Kind: ledger.KindInternal, Term: 1, Index: 1},
		{Kind: ledger.KindTx, Term: 1, Index: 2, Public: ws.Marshal(), Private: []byte("sealed secret")},
	}
	if err := l.Append(entries...); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (int, string, string) {
		var out, errw bytes.Buffer
		code := Main(context.Background(), args, &out, &errw)
		return code, out.String(), errw.String()
	}

	// A data dir is accepted as well as the ledger dir itself.
	for _, d := range []string{data, dir} {
		code, out, errs := run("ledger", "verify", d)
		if code != 0 || out != "OK: 2 entries, 0 signatures, last signed seqno 0, 1 files\n" {
			t.Fatalf("verify %s: %d %q %q", d, code, out, errs)
		}
	}

	code, out, errs := run("ledger", "read", data)
	if code != 0 {
		t.Fatalf("read: %d %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("read printed %q", out)
	}
	if want := `{"txid":"1.1","kind":"internal","private_bytes":0,"raft_type":0}`; lines[0] != want {
		t.Fatalf("line 1 %s, want %s", lines[0], want)
	}
	var tx struct {
		TxID         string                        `json:"txid"`
		Kind         string                        `json:"kind"`
		Public       map[string]map[string]*string `json:"public"`
		PrivateBytes int                           `json:"private_bytes"`
	}
	if err := json.Unmarshal([]byte(lines[1]), &tx); err != nil {
		t.Fatal(err)
	}
	m := tx.Public["public:m"]
	if tx.TxID != "1.2" || tx.Kind != "tx" || tx.PrivateBytes != 13 || *m["a"] != "hello" || m["b"] != nil || *m["c"] != "/wA=" {
		t.Fatalf("line 2: %s", lines[1])
	}
	if strings.Contains(out, "secret") {
		t.Fatal("private data printed")
	}

	// A flipped byte: named, exit code 1.
	p := filepath.Join(dir, "ledger_1")
	b, _ := os.ReadFile(p)
	b[len(b)-20] ^= 1
	os.WriteFile(p, b, 0o640)
	code, out, _ = run("ledger", "verify", data)
	if code == 0 || !strings.Contains(out, "BAD: "+p+" offset") || !strings.Contains(out, "(entry 2)") {
		t.Fatalf("verify of a damaged ledger: %d %q", code, out)
	}
	if code, _, _ := run("ledger", "verify", data, "--service-cert", filepath.Join(data, "nope.pem")); code == 0 {
		t.Fatal("missing service cert accepted")
	}
}
