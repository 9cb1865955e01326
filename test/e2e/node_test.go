package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestKillNineLosesNothingAcknowledged kills a node with SIGKILL under
// concurrent write load: every write it answered 200 must survive.
func TestKillNineLosesNothingAcknowledged(t *testing.T) {
	t.Parallel()
	n := startNode(t, t.TempDir())
	c := n.userClient(t)

	type ack struct{ msg, txid string }
	var acked syncMap[uint64, ack]
	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := uint64(0); !stop.Load(); i++ {
				id := uint64(w)<<32 | i
				msg := fmt.Sprintf("writer %d message %d", w, i)
				table := "private"
				if i%4 == 3 {
					table = "public"
				}
				r, err := c.try("POST", "/app/log/"+table, map[string]any{"id": id, "msg": msg})
				if err != nil {
					return // the node is gone
				}
				if r.Status == http.StatusOK {
					acked.set(id, ack{msg: table + ":" + msg, txid: r.Header.Get("x-ms-ccf-transaction-id")})
				}
			}
		}()
	}
	// Let the writers run for about two seconds, then pull the plug while
	// they are still writing.
	waitFor(t, startTimeout, "some acknowledged writes", func() (bool, string) {
		return len(acked.snapshot()) >= 16, "too few"
	})
	time.Sleep(2 * time.Second)
	n.kill()
	stop.Store(true)
	wg.Wait()
	got := acked.snapshot()
	t.Logf("%d writes acknowledged before SIGKILL", len(got))

	n.restart(t)
	c = n.userClient(t)
	ids := make(chan uint64)
	var bad atomic.Int64
	var checkers sync.WaitGroup
	for range 8 {
		checkers.Add(1)
		go func() {
			defer checkers.Done()
			for id := range ids {
				a := got[id]
				table, msg, _ := strings.Cut(a.msg, ":")
				if err := checkAcked(c, table, id, msg, a.txid); err != nil {
					if bad.Add(1) <= 10 {
						t.Error(err)
					}
				}
			}
		}()
	}
	var last uint64
	for id := range got {
		ids <- id
		last = id
	}
	close(ids)
	checkers.Wait()
	if bad.Load() > 0 {
		t.Fatalf("%d of %d acknowledged writes were lost or changed by kill -9", bad.Load(), len(got))
	}
	// A receipt for an acknowledged write verifies after the crash.
	r := getReceipt(t, c, "/app/receipt", got[last].txid)
	if out, code := verifyReceipt(t, t.TempDir(), "receipt.json", n.serviceCert(), r.Body); code != 0 {
		t.Errorf("receipt for %s after kill -9 does not verify (exit %d):\n%s", got[last].txid, code, out)
	}
	if t.Failed() {
		return
	}
	if code := n.stop(stopTimeout); code != 0 {
		t.Errorf("coco node exited %d after SIGTERM, want 0", code)
	}
	t.Run("ledger verify", func(t *testing.T) {
		ledgerCLI(t)
		if out, code := runCoco(t, "ledger", "verify", n.dataDir, "--service-cert", n.serviceCert()); code != 0 {
			t.Errorf("coco ledger verify after kill -9 exited %d:\n%s", code, out)
		}
	})
}

// checkAcked checks one acknowledged write after a crash; it runs on
// several goroutines, so it reports instead of failing.
func checkAcked(c *client, table string, id uint64, msg, txid string) error {
	r, err := c.try("GET", "/app/log/"+table+"?id="+strconv.FormatUint(id, 10), nil)
	if err != nil {
		return err
	}
	var m struct {
		Msg string `json:"msg"`
	}
	if r.Status != http.StatusOK || json.Unmarshal(r.Body, &m) != nil || m.Msg != msg {
		return fmt.Errorf("acknowledged %s write id %d (%s) reads %s after restart; want %q", table, id, txid, r, msg)
	}
	r, err = c.try("GET", "/node/tx?transaction_id="+txid, nil)
	if err != nil {
		return err
	}
	var st struct {
		Status string `json:"status"`
	}
	if r.Status != http.StatusOK || json.Unmarshal(r.Body, &st) != nil || st.Status != "Committed" {
		return fmt.Errorf("acknowledged write id %d at %s: /node/tx says %s, want Committed", id, txid, r)
	}
	return nil
}

// TestErrors checks that bad requests get the documented JSON errors and
// do not hurt the node.
func TestErrors(t *testing.T) {
	t.Parallel()
	n := startNode(t, t.TempDir(), "--max-body-size", "1024")
	c := n.userClient(t)

	big := `{"id":1,"msg":"` + strings.Repeat("x", 2000) + `"}`
	tests := []struct {
		name, method, path string
		body               any
		status             int
		code               string
	}{
		{"malformed JSON", "POST", "/app/log/private", `{"id":1,`, 400, "InvalidInput"},
		{"not JSON", "POST", "/app/log/public", `hello`, 400, "InvalidInput"},
		{"empty body", "POST", "/app/log/private", ``, 400, "InvalidInput"},
		{"trailing data", "POST", "/app/log/private", `{"id":1,"msg":"a"} {}`, 400, "InvalidInput"},
		{"array body", "POST", "/app/log/private", `[1,"a"]`, 400, "InvalidInput"},
		{"null body", "POST", "/app/log/private", `null`, 400, "InvalidInput"},
		{"id is a string", "POST", "/app/log/private", `{"id":"1","msg":"a"}`, 400, "InvalidInput"},
		{"id is negative", "POST", "/app/log/private", `{"id":-1,"msg":"a"}`, 400, "InvalidInput"},
		{"id is fractional", "POST", "/app/log/private", `{"id":1.5,"msg":"a"}`, 400, "InvalidInput"},
		{"id overflows", "POST", "/app/log/private", `{"id":18446744073709551616,"msg":"a"}`, 400, "InvalidInput"},
		{"msg is a number", "POST", "/app/log/public", `{"id":1,"msg":2}`, 400, "InvalidInput"},
		{"msg is null", "POST", "/app/log/public", `{"id":1,"msg":null}`, 400, "InvalidInput"},
		{"missing msg", "POST", "/app/log/private", `{"id":1}`, 400, "InvalidInput"},
		{"missing id", "POST", "/app/log/private", `{"msg":"a"}`, 400, "InvalidInput"},
		{"unknown field", "POST", "/app/log/private", `{"id":1,"msg":"a","extra":true}`, 400, "InvalidInput"},
		{"id query missing", "GET", "/app/log/private", nil, 400, "InvalidInput"},
		{"id query not a number", "GET", "/app/log/private?id=abc", nil, 400, "InvalidInput"},
		{"id query negative", "GET", "/app/log/public?id=-1", nil, 400, "InvalidInput"},
		{"id query overflows", "GET", "/app/log/private?id=18446744073709551616", nil, 400, "InvalidInput"},
		{"delete bad id", "DELETE", "/app/log/private?id=x", nil, 400, "InvalidInput"},
		{"absent record", "GET", "/app/log/private?id=424242", nil, 404, "ResourceNotFound"},
		{"unknown path", "GET", "/app/nope", nil, 404, "ResourceNotFound"},
		{"unknown path under node", "GET", "/node/nope", nil, 404, "ResourceNotFound"},
		{"body over the limit", "POST", "/app/log/private", big, 413, "RequestBodyTooLarge"},
		{"chunked body over the limit", "POST", "/app/log/private", io.MultiReader(strings.NewReader(big)), 413, "RequestBodyTooLarge"},
		{"tx id missing", "GET", "/node/tx", nil, 400, "InvalidInput"},
		{"tx id garbage", "GET", "/node/tx?transaction_id=abc", nil, 400, "InvalidInput"},
		{"tx id without seqno", "GET", "/node/tx?transaction_id=2.", nil, 400, "InvalidInput"},
		{"tx id three parts", "GET", "/node/tx?transaction_id=1.2.3", nil, 400, "InvalidInput"},
		{"tx id zero", "GET", "/node/tx?transaction_id=0.0", nil, 400, "InvalidInput"},
		{"tx id negative", "GET", "/node/tx?transaction_id=-1.5", nil, 400, "InvalidInput"},
		{"receipt bad tx id", "GET", "/app/receipt?transaction_id=x", nil, 400, "InvalidInput"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			expectError(t, c.do(tc.method, tc.path, tc.body), tc.status, tc.code)
		})
	}

	t.Run("wrong method", func(t *testing.T) {
		for path, allow := range map[string][]string{
			"/app/log/private": {"DELETE", "GET", "POST"},
			"/node/tx":         {"GET"},
		} {
			r := c.do("PUT", path, `{}`)
			expectError(t, r, http.StatusMethodNotAllowed, "MethodNotAllowed")
			var got []string
			for _, a := range strings.Split(r.Header.Get("Allow"), ",") {
				if a = strings.TrimSpace(a); a != "" {
					got = append(got, a)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, allow) {
				t.Errorf("PUT %s: Allow %q, want %v", path, r.Header.Get("Allow"), allow)
			}
		}
	})

	// Nothing above was recorded, and the node still serves.
	if _, ok := c.read("private", 1); ok {
		t.Error("a rejected write was recorded")
	}
	expect(t, c.do("GET", "/node/ready/app", nil), http.StatusNoContent, nil)
	txid := c.write("private", 1, strings.Repeat("y", 900))
	if st := c.txStatus(txid); st != "Committed" {
		t.Errorf("write after the errors: %s is %s", txid, st)
	}
	if n.exited() {
		t.Fatal("the node exited")
	}
}

// TestLedgerFilesHoldNoPrivateDataInClear writes distinctive values and
// searches every file the node wrote for them.
func TestLedgerFilesHoldNoPrivateDataInClear(t *testing.T) {
	t.Parallel()
	n := startNode(t, t.TempDir(), "--log-level", "debug")
	c := n.userClient(t)
	private := "PRIVATE-" + randHex(t)
	public := "PUBLIC-" + randHex(t)
	c.write("private", 7, private)
	c.write("public", 8, public)
	// A receipt and a historical read make the node load the entry again.
	getReceipt(t, c, "/app/receipt", c.write("private", 9, private+"-again"))
	expect(t, c.do("GET", "/app/log/private/historical?id=7", nil, "x-ms-ccf-transaction-id", c.write("private", 10, "x")), http.StatusOK, nil)
	if code := n.stop(stopTimeout); code != 0 {
		t.Errorf("coco node exited %d after SIGTERM, want 0", code)
	}

	for _, name := range []string{"node.log", "raft_state.json", "ledger"} {
		if _, err := os.Stat(filepath.Join(n.dataDir, name)); err != nil {
			t.Errorf("data dir lacks %s: %v", name, err)
		}
	}
	if hits := filesContaining(t, n.dataDir, []byte(private)); len(hits) > 0 {
		t.Errorf("the private value %q is in clear in %v", private, hits)
	}
	hits := filesContaining(t, filepath.Join(n.dataDir, "ledger"), []byte(public))
	if len(hits) == 0 {
		t.Errorf("the public value %q is in no ledger file", public)
	}

	t.Run("ledger read and verify", func(t *testing.T) {
		ledgerCLI(t)
		out, code := runCoco(t, "ledger", "read", n.dataDir)
		if code != 0 {
			t.Fatalf("coco ledger read exited %d:\n%s", code, out)
		}
		lines := 0
		for _, l := range strings.Split(out, "\n") {
			if strings.TrimSpace(l) == "" {
				continue
			}
			lines++
			if !json.Valid([]byte(l)) {
				t.Errorf("coco ledger read printed a line that is not JSON: %q", l)
			}
		}
		if lines == 0 {
			t.Error("coco ledger read printed nothing")
		}
		if !strings.Contains(out, public) {
			t.Errorf("coco ledger read does not show the public value %q", public)
		}
		if strings.Contains(out, private) {
			t.Errorf("coco ledger read shows the private value %q", private)
		}

		if out, code := runCoco(t, "ledger", "verify", n.dataDir, "--service-cert", n.serviceCert()); code != 0 {
			t.Fatalf("coco ledger verify on an intact ledger exited %d:\n%s", code, out)
		}
		chunk := hits[0]
		b, err := os.ReadFile(chunk)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0x40
		writeFile(t, chunk, b)
		out, code = runCoco(t, "ledger", "verify", n.dataDir, "--service-cert", n.serviceCert())
		if code == 0 {
			t.Fatalf("coco ledger verify accepted a ledger with a flipped byte in %s:\n%s", chunk, out)
		}
		if !strings.Contains(out, filepath.Base(chunk)) {
			t.Errorf("coco ledger verify failed without naming %s:\n%s", filepath.Base(chunk), out)
		}
	})
}

func randHex(t *testing.T) string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// TestMetricsAndInfo checks the framework endpoints.
func TestMetricsAndInfo(t *testing.T) {
	t.Parallel()
	n := startNode(t, t.TempDir())
	c := n.userClient(t)
	anon := newClient(t, n.addr, n.serviceCert(), clientOpts{})
	c.write("private", 1, "one")

	r := anon.do("GET", "/metrics", nil)
	expect(t, r, http.StatusOK, nil)
	for _, m := range []string{"coco_http_requests_total", "coco_commit_seqno", "coco_ledger_bytes", "coco_signatures_total"} {
		if !bytes.Contains(r.Body, []byte("\n"+m)) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
	if v := metricValue(r.Body, "coco_commit_seqno"); v < 1 {
		t.Errorf("coco_commit_seqno = %v after a committed write", v)
	}
	if v := metricValue(r.Body, "coco_ledger_bytes"); v <= 0 {
		t.Errorf("coco_ledger_bytes = %v after a committed write", v)
	}

	var network struct {
		Status  string `json:"service_status"`
		Cert    string `json:"service_certificate"`
		View    uint64 `json:"current_view"`
		Primary string `json:"primary_id"`
	}
	expect(t, anon.do("GET", "/node/network", nil), http.StatusOK, &network)
	if network.Status != "Open" {
		t.Errorf("service_status %q, want Open", network.Status)
	}
	want, err := os.ReadFile(n.serviceCert())
	if err != nil {
		t.Fatal(err)
	}
	if !samePEM(network.Cert, string(want)) {
		t.Errorf("service_certificate differs from service_cert.pem:\n%s\nvs\n%s", network.Cert, want)
	}
	if network.View < 1 || network.Primary == "" {
		t.Errorf("/node/network: view %d, primary %q", network.View, network.Primary)
	}

	var nodes struct {
		Nodes []struct {
			NodeID     string `json:"node_id"`
			Status     string `json:"status"`
			Primary    bool   `json:"primary"`
			RPCAddress string `json:"rpc_address"`
		} `json:"nodes"`
	}
	expect(t, anon.do("GET", "/node/network/nodes", nil), http.StatusOK, &nodes)
	if len(nodes.Nodes) != 1 || !nodes.Nodes[0].Primary || nodes.Nodes[0].Status != "Trusted" || nodes.Nodes[0].NodeID != network.Primary {
		t.Errorf("/node/network/nodes = %+v, want one Trusted primary %s", nodes.Nodes, network.Primary)
	}

	var version map[string]any
	expect(t, anon.do("GET", "/node/version", nil), http.StatusOK, &version)
	if v, _ := version["coco_version"].(string); v == "" {
		t.Errorf("/node/version = %v, want a coco_version", version)
	}
	if out, code := runCoco(t, "version"); code != 0 || strings.TrimSpace(out) != version["coco_version"] {
		t.Errorf("coco version = %q (exit %d), /node/version says %v", out, code, version["coco_version"])
	}

	var api struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	expect(t, anon.do("GET", "/app/api", nil), http.StatusOK, &api)
	if !strings.HasPrefix(api.OpenAPI, "3.") {
		t.Errorf("/app/api openapi = %q", api.OpenAPI)
	}
	for path, method := range map[string]string{"/app/log/private": "post", "/app/log/public": "get", "/app/receipt": "get", "/node/tx": "get"} {
		if _, ok := api.Paths[path][method]; !ok {
			t.Errorf("/app/api lacks %s %s", method, path)
		}
	}

	expect(t, anon.do("GET", "/node/ready/app", nil), http.StatusNoContent, nil)
	var commit struct {
		TxID string `json:"transaction_id"`
	}
	expect(t, anon.do("GET", "/node/commit", nil), http.StatusOK, &commit)
	if _, _, err := parseTxID(commit.TxID); err != nil {
		t.Errorf("/node/commit: %v", err)
	}
}

// metricValue returns the value of an unlabelled metric, or -1.
func metricValue(text []byte, name string) float64 {
	for _, l := range strings.Split(string(text), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

func samePEM(a, b string) bool {
	pa, _ := pem.Decode([]byte(a))
	pb, _ := pem.Decode([]byte(b))
	return pa != nil && pb != nil && bytes.Equal(pa.Bytes, pb.Bytes)
}

// TestHTTPVersions sends one request over HTTP/2 and one over HTTP/1.1.
func TestHTTPVersions(t *testing.T) {
	t.Parallel()
	n := startNode(t, t.TempDir())
	for _, tc := range []struct {
		http1 bool
		proto string
	}{{false, "HTTP/2.0"}, {true, "HTTP/1.1"}} {
		c := newClient(t, n.addr, n.serviceCert(), clientOpts{id: &n.user, http1: tc.http1})
		r := c.do("POST", "/app/log/private", map[string]any{"id": 1, "msg": tc.proto})
		expect(t, r, http.StatusOK, nil)
		if r.Proto != tc.proto {
			t.Errorf("response protocol %s, want %s", r.Proto, tc.proto)
		}
		if r.Header.Get("x-ms-ccf-transaction-id") == "" {
			t.Errorf("%s: write response has no x-ms-ccf-transaction-id", tc.proto)
		}
		if got, ok := c.read("private", 1); !ok || got != tc.proto {
			t.Errorf("%s: read back %q, %v", tc.proto, got, ok)
		}
	}
}
