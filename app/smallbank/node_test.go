package smallbank

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cocoledger/coco/internal/testproc"
	"github.com/cocoledger/coco/node"
)

// TestOverHTTPS hosts the application in a real node (in this process) and
// calls it as a user would: answers and errors are JSON with the right
// statuses, writes carry a transaction id, only users may call, and the
// balances are not in clear in the ledger.
func TestOverHTTPS(t *testing.T) {
	dir := t.TempDir()
	n, _, user := testproc.StartOpenNode(t, dir, App{})
	pemBytes, err := os.ReadFile(n.ServiceCertPath())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemBytes)
	client := func(certs ...tls.Certificate) *http.Client {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: certs, MinVersion: tls.VersionTLS13}}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr, Timeout: 10 * time.Second}
	}
	userClient, anon := client(user.TLS), client()
	post := func(c *http.Client, name, body string) (int, http.Header, []byte) {
		t.Helper()
		resp, err := c.Post("https://"+n.Addr()+PathPrefix+name, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, resp.Header, b
	}

	// A distinctive id and balance, to look for in the ledger files.
	const id, checking = 0x0123456789abcdef, 0x1122334455667788 % MaxAmount
	steps := []struct {
		name, endpoint, body string
		status               int
		code                 string // error code; "" for a success
		want                 string // success answer
	}{
		{"batch", "account/batch", `{"accounts":[{"id":` + itoa(id) + `,"checking":` + itoa(checking) + `,"savings":0},{"id":2,"checking":10,"savings":5}]}`, 200, "", `{"created":2}`},
		{"create existing", "account", `{"id":2,"checking":1,"savings":1}`, 409, CodeAccountAlreadyExists, ""},
		{"create", "account", `{"id":3,"checking":1,"savings":1}`, 200, "", `{"id":3,"checking":1,"savings":1}`},
		{"deposit", "deposit_checking", `{"id":2,"amount":5}`, 200, "", `{"id":2,"checking":15,"savings":5}`},
		{"deposit negative", "deposit_checking", `{"id":2,"amount":-5}`, 400, "InvalidInput", ""},
		{"savings overdrawn", "transact_savings", `{"id":2,"amount":-6}`, 422, CodeInsufficientFunds, ""},
		{"savings", "transact_savings", `{"id":2,"amount":-5}`, 200, "", `{"id":2,"checking":15,"savings":0}`},
		{"check bounced", "write_check", `{"id":2,"amount":20}`, 200, "", `{"id":2,"checking":-6,"savings":0,"charged":21}`},
		{"payment overdrawn", "send_payment", `{"from":2,"to":3,"amount":1}`, 422, CodeInsufficientFunds, ""},
		{"payment", "send_payment", `{"from":3,"to":2,"amount":1}`, 200, "", `{"from":{"id":3,"checking":0,"savings":1},"to":{"id":2,"checking":-5,"savings":0}}`},
		{"amalgamate", "amalgamate", `{"from":3,"to":2}`, 200, "", `{"from":{"id":3,"checking":0,"savings":0},"to":{"id":2,"checking":-4,"savings":0}}`},
		{"amalgamate unknown", "amalgamate", `{"from":3,"to":99}`, 404, CodeAccountNotFound, ""},
		{"balance", "balance", `{"id":2}`, 200, "", `{"id":2,"checking":-4,"savings":0,"balance":-4}`},
		{"balance unknown", "balance", `{"id":99}`, 404, CodeAccountNotFound, ""},
		{"balance malformed", "balance", `{"id":`, 400, "InvalidInput", ""},
	}
	for _, s := range steps {
		status, hdr, body := post(userClient, s.endpoint, s.body)
		if status != s.status {
			t.Fatalf("%s: %d %s, want %d", s.name, status, body, s.status)
		}
		if s.code == "" {
			if got := string(bytes.TrimSpace(body)); got != s.want {
				t.Errorf("%s: %s, want %s", s.name, got, s.want)
			}
			if txid := hdr.Get(node.TxIDHeader); (txid != "") != (s.endpoint != "balance") {
				t.Errorf("%s: transaction id %q", s.name, txid)
			}
			continue
		}
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if err := json.Unmarshal(body, &e); err != nil || e.Error.Code != s.code || e.Error.Message == "" {
			t.Errorf("%s: %s, want a JSON error %s (%v)", s.name, body, s.code, err)
		}
		if hdr.Get(node.TxIDHeader) != "" {
			t.Errorf("%s: a refused transaction carries a transaction id", s.name)
		}
	}

	for _, ep := range []string{"balance", "deposit_checking"} {
		if status, _, body := post(anon, ep, `{"id":2,"amount":1}`); status != http.StatusUnauthorized || !bytes.Contains(body, []byte("InvalidAuthenticationInfo")) {
			t.Errorf("%s without a client certificate: %d %s", ep, status, body)
		}
	}

	// The private maps are encrypted in the ledger: neither the id nor
	// the balance appears in clear.
	var needles [][]byte
	for _, v := range []uint64{id, checking} {
		b := binary.BigEndian.AppendUint64(nil, v)
		needles = append(needles, b, []byte(itoa(int64(v))))
	}
	err = filepath.WalkDir(filepath.Join(dir, "node"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, nd := range needles {
			if bytes.Contains(b, nd) {
				t.Errorf("%s holds %x in clear", path, nd)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func itoa(v int64) string {
	b, _ := json.Marshal(v)
	return string(b)
}
