package node

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cocoledger/coco/app"
	"github.com/cocoledger/coco/app/logging"
	"github.com/cocoledger/coco/consensus"
	cococrypto "github.com/cocoledger/coco/crypto"
	"github.com/cocoledger/coco/receipt"
)

type testNode struct {
	n      *Node
	cfg    Config
	client *http.Client // user0
	anon   *http.Client
}

func startTestNode(t *testing.T, dir string, userCert string, userTLS tls.Certificate) *testNode {
	t.Helper()
	member := newTestMember(t)
	cfg := Config{
		DataDir: dir, RPCAddress: "127.0.0.1:0", Members: []MemberConfig{{CertFile: member.certPath}},
		Apps: []app.Application{logging.App{}}, TickInterval: 5 * time.Millisecond, SigInterval: 10 * time.Millisecond,
		MaxBodySize: 4096,
	}
	n, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	svc, err := cococrypto.ReadCertFile(n.ServiceCertPath())
	if err != nil {
		t.Fatal(err)
	}
	if !n.open.Load() { // a new service; a restarted one was opened before
		uc, err := cococrypto.ReadCertFile(userCert)
		if err != nil {
			t.Fatal(err)
		}
		openService(t, member.client(t, n.Addr(), n.ServiceCertPath()), uc)
	}
	pool := x509.NewCertPool()
	pool.AddCert(svc)
	mk := func(certs []tls.Certificate) *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: certs, MinVersion: tls.VersionTLS13},
			MaxConnsPerHost: 16, MaxIdleConnsPerHost: 16,
		}}
	}
	return &testNode{n: n, cfg: cfg, client: mk([]tls.Certificate{userTLS}), anon: mk(nil)}
}

func newUser(t *testing.T, dir string) (string, tls.Certificate) {
	t.Helper()
	k, err := cococrypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := cococrypto.SelfSignedCert(k, "user0", time.Hour, false)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath := filepath.Join(dir, "user_cert.pem"), filepath.Join(dir, "user_key.pem")
	if err := cococrypto.WriteCertFile(certPath, cert); err != nil {
		t.Fatal(err)
	}
	if err := cococrypto.WriteKeyFile(keyPath, k); err != nil {
		t.Fatal(err)
	}
	pair, err := cococrypto.LoadKeyPair(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	return certPath, pair
}

func (tn *testNode) do(t *testing.T, c *http.Client, method, path, body string, hdr ...string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, "https://"+tn.n.Addr()+path, bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
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

// TestConcurrentWritesReadsAndReceipts drives the HTTP front from many
// goroutines (run with -race): every acknowledged write is readable and
// committed, and its receipts verify against the service certificate.
func TestConcurrentWritesReadsAndReceipts(t *testing.T) {
	dir := t.TempDir()
	certPath, pair := newUser(t, t.TempDir())
	tn := startTestNode(t, dir, certPath, pair)

	const workers, each = 8, 20
	var wg sync.WaitGroup
	var mu sync.Mutex
	txids := map[int]string{}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id := w*1000 + i
				code, h, body := tn.do(t, tn.client, "POST", "/app/log/private", fmt.Sprintf(`{"id":%d,"msg":"m%d"}`, id, id))
				if code != 200 || string(body) != "true" {
					t.Errorf("write %d: %d %s", id, code, body)
					return
				}
				mu.Lock()
				txids[id] = h.Get(TxIDHeader)
				mu.Unlock()
				// Reads on the committed state see the write at once.
				if code, _, body := tn.do(t, tn.client, "GET", fmt.Sprintf("/app/log/private?id=%d", id), ""); code != 200 || string(body) != fmt.Sprintf(`{"msg":"m%d"}`, id) {
					t.Errorf("read %d after write: %d %s", id, code, body)
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	svc, err := cococrypto.ReadCertFile(tn.n.ServiceCertPath())
	if err != nil {
		t.Fatal(err)
	}
	for id, tx := range txids {
		if id%37 != 0 {
			continue
		}
		var st struct{ Status string }
		_, _, b := tn.do(t, tn.anon, "GET", "/node/tx?transaction_id="+tx, "")
		if err := json.Unmarshal(b, &st); err != nil || st.Status != "Committed" {
			t.Fatalf("status of %s: %s", tx, b)
		}
		for _, path := range []string{"/app/receipt", "/app/receipt/cose"} {
			var code int
			var body []byte
			deadline := time.Now().Add(10 * time.Second)
			for {
				code, _, body = tn.do(t, tn.client, "GET", path+"?transaction_id="+tx, "")
				if code != http.StatusAccepted || time.Now().After(deadline) {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			if code != 200 {
				t.Fatalf("%s %s: %d %s", path, tx, code, body)
			}
			v, err := receipt.Verify(body, svc)
			if err != nil || v.TxID != tx {
				t.Fatalf("%s %s does not verify: %v %+v", path, tx, err, v)
			}
		}
	}
}

func TestErrorsAreJSON(t *testing.T) {
	certPath, pair := newUser(t, t.TempDir())
	tn := startTestNode(t, t.TempDir(), certPath, pair)
	big := bytes.Repeat([]byte("a"), 5000)
	for _, tc := range []struct {
		name         string
		client       *http.Client
		method, path string
		body         string
		code         int
		errCode      string
	}{
		{"malformed", tn.client, "POST", "/app/log/private", `{"id":`, 400, "InvalidInput"},
		{"wrong type", tn.client, "POST", "/app/log/private", `{"id":"1","msg":"x"}`, 400, "InvalidInput"},
		{"missing msg", tn.client, "POST", "/app/log/private", `{"id":1}`, 400, "InvalidInput"},
		{"unknown field", tn.client, "POST", "/app/log/private", `{"id":1,"msg":"x","x":1}`, 400, "InvalidInput"},
		{"bad id", tn.client, "GET", "/app/log/private?id=-1", ``, 400, "InvalidInput"},
		{"absent", tn.client, "GET", "/app/log/private?id=424242", ``, 404, "ResourceNotFound"},
		{"no cert", tn.anon, "GET", "/app/log/private?id=1", ``, 401, "InvalidAuthenticationInfo"},
		{"unknown path", tn.client, "GET", "/nope", ``, 404, "ResourceNotFound"},
		{"wrong method", tn.client, "PATCH", "/app/log/private", ``, 405, "MethodNotAllowed"},
		{"too large", tn.client, "POST", "/app/log/private", string(big), 413, "RequestBodyTooLarge"},
		{"bad txid", tn.anon, "GET", "/node/tx?transaction_id=1.0", ``, 400, "InvalidInput"},
		{"historical without header", tn.client, "GET", "/app/log/private/historical?id=1", ``, 400, "InvalidInput"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, h, body := tn.do(t, tc.client, tc.method, tc.path, tc.body)
			var e struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			if code != tc.code || h.Get("Content-Type") != "application/json" || json.Unmarshal(body, &e) != nil || e.Error.Code != tc.errCode || e.Error.Message == "" {
				t.Fatalf("got %d %s %s; want %d %s", code, h.Get("Content-Type"), body, tc.code, tc.errCode)
			}
		})
	}
	if code, _, _ := tn.do(t, tn.client, "POST", "/app/log/private", `{"id":1,"msg":"still alive"}`); code != 200 {
		t.Fatalf("node stopped serving after bad input: %d", code)
	}
}

func TestRestartResumesService(t *testing.T) {
	dir := t.TempDir()
	certPath, pair := newUser(t, t.TempDir())
	tn := startTestNode(t, dir, certPath, pair)
	_, h, _ := tn.do(t, tn.client, "POST", "/app/log/public", `{"id":7,"msg":"first"}`)
	first := h.Get(TxIDHeader)
	tn.do(t, tn.client, "POST", "/app/log/public", `{"id":7,"msg":"second"}`)
	svcBefore, _ := cococrypto.ReadCertFile(tn.n.ServiceCertPath())
	if err := tn.n.Close(); err != nil {
		t.Fatal(err)
	}
	tn = startTestNode(t, dir, certPath, pair)
	svcAfter, _ := cococrypto.ReadCertFile(tn.n.ServiceCertPath())
	if !svcBefore.Equal(svcAfter) {
		t.Fatal("service identity changed across restart")
	}
	if code, _, body := tn.do(t, tn.client, "GET", "/app/log/public?id=7", ""); code != 200 || string(body) != `{"msg":"second"}` {
		t.Fatalf("after restart: %d %s", code, body)
	}
	if code, _, body := tn.do(t, tn.client, "GET", "/app/log/public/historical?id=7", "", TxIDHeader, first); code != 200 || string(body) != `{"msg":"first"}` {
		t.Fatalf("historical after restart: %d %s", code, body)
	}
}

func TestReadBody(t *testing.T) {
	for _, tc := range []struct {
		name    string
		body    string
		length  int64
		wantErr bool
	}{
		{"length given", "hello", 5, false},
		{"length unknown", "hello", -1, false},
		{"empty", "", 0, false},
		{"shorter than its length", "hel", 5, true},
	} {
		got, err := readBody(strings.NewReader(tc.body), tc.length)
		if (err != nil) != tc.wantErr || (!tc.wantErr && string(got) != tc.body) {
			t.Errorf("%s: %q, %v", tc.name, got, err)
		}
	}
}

// appHost.CommittedWrites reads a committed transaction's writes back from
// the ledger, private maps decrypted, and refuses what is not committed.
func TestAppHostCommittedWrites(t *testing.T) {
	certPath, pair := newUser(t, t.TempDir())
	tn := startTestNode(t, t.TempDir(), certPath, pair)
	code, h, body := tn.do(t, tn.client, "POST", "/app/log/private", `{"id":7,"msg":"secret seven"}`)
	if code != 200 {
		t.Fatalf("write: %d %s", code, body)
	}
	id, err := consensus.ParseTxID(h.Get(TxIDHeader))
	if err != nil {
		t.Fatal(err)
	}
	host := appHost{tn.n}
	ws, err := host.CommittedWrites(id.Seqno)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mw := range ws.Maps {
		for _, w := range mw.Writes {
			found = found || bytes.Contains(w.Value, []byte("secret seven"))
		}
	}
	if !found {
		t.Errorf("the writes of %s do not hold the record in clear: %+v", id, ws)
	}
	for _, seqno := range []uint64{0, tn.n.store.CommittedVersion() + 1} {
		if ws, err := host.CommittedWrites(seqno); err == nil {
			t.Errorf("CommittedWrites(%d) = %+v, want an error", seqno, ws)
		}
	}
}
