package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
)

// getReceipt polls path until the receipt is signed (200), accepting only
// 202 + Retry-After meanwhile.
func getReceipt(t *testing.T, c *client, path, txid string) *response {
	t.Helper()
	var r *response
	waitFor(t, startTimeout, "a signed receipt for "+txid, func() (bool, string) {
		r = c.do("GET", path+"?transaction_id="+txid, nil)
		switch r.Status {
		case http.StatusOK:
			return true, ""
		case http.StatusAccepted:
			if r.Header.Get("Retry-After") == "" {
				t.Fatalf("GET %s: 202 without Retry-After", path)
			}
			return false, r.String()
		}
		t.Fatalf("GET %s?transaction_id=%s: %s", path, txid, r)
		return false, ""
	})
	return r
}

// verifyReceipt writes a receipt to a file and runs `coco receipt verify`.
func verifyReceipt(t *testing.T, dir, name, serviceCert string, b []byte) (string, int) {
	t.Helper()
	f := filepath.Join(dir, name)
	writeFile(t, f, b)
	return runCoco(t, "receipt", "verify", "--service-cert", serviceCert, f)
}

// TestSandboxTour walks the README: a sandbox, a private and a public
// write, status, read-back, both receipt forms verified offline (and
// refused once tampered with), and user authentication.
func TestSandboxTour(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	s := startSandbox(t, filepath.Join(tmp, "sb"), "--nodes", "1", "--members", "1", "--users", "2")
	if len(s.info.Users) != 2 || len(s.info.Members) != 1 || len(s.info.Nodes) != 1 {
		t.Fatalf("sandbox.json: %d users, %d members, %d nodes; want 2, 1, 1", len(s.info.Users), len(s.info.Members), len(s.info.Nodes))
	}
	if !pidAlive(s.info.Nodes[0].PID) {
		t.Errorf("sandbox.json names node pid %d, which is not running", s.info.Nodes[0].PID)
	}
	user0, user1 := s.client(t, 0), s.client(t, 1)

	for _, table := range []string{"private", "public"} {
		t.Run(table, func(t *testing.T) {
			user0.t, user1.t = t, t
			msg := "hello " + table
			txid := user0.write(table, 1, msg)
			if st := user0.txStatus(txid); st != "Committed" {
				t.Errorf("GET /node/tx?transaction_id=%s: %s, want Committed (writes are answered once committed)", txid, st)
			}
			for _, c := range []*client{user0, user1} {
				if got, ok := c.read(table, 1); !ok || got != msg {
					t.Errorf("GET /app/log/%s?id=1 = %q, %v; want %q", table, got, ok, msg)
				}
			}

			// JSON receipt.
			r := getReceipt(t, user0, "/app/receipt", txid)
			if out, code := verifyReceipt(t, tmp, table+"_receipt.json", s.info.ServiceCert, r.Body); code != 0 {
				t.Errorf("coco receipt verify (JSON) exited %d:\n%s", code, out)
			}
			var rc map[string]any
			if err := json.Unmarshal(r.Body, &rc); err != nil {
				t.Fatalf("receipt is not JSON: %v", err)
			}
			for _, k := range []string{"cert", "node_id", "signature", "leaf_components", "proof"} {
				if _, ok := rc[k]; !ok {
					t.Errorf("JSON receipt lacks %q: %s", k, r.Body)
				}
			}
			sig, err := base64.StdEncoding.DecodeString(fmt.Sprint(rc["signature"]))
			if err != nil || len(sig) == 0 {
				t.Fatalf("receipt signature %v is not base64: %v", rc["signature"], err)
			}
			sig[len(sig)/2] ^= 0x01
			rc["signature"] = base64.StdEncoding.EncodeToString(sig)
			bad, _ := json.Marshal(rc)
			if out, code := verifyReceipt(t, tmp, table+"_receipt_bad.json", s.info.ServiceCert, bad); code == 0 {
				t.Errorf("coco receipt verify accepted a JSON receipt with a flipped signature byte:\n%s", out)
			}

			// COSE receipt.
			r = getReceipt(t, user0, "/app/receipt/cose", txid)
			if ct := r.Header.Get("Content-Type"); ct != "application/cose" {
				t.Errorf("COSE receipt Content-Type %q, want application/cose", ct)
			}
			if out, code := verifyReceipt(t, tmp, table+"_receipt.cose", s.info.ServiceCert, r.Body); code != 0 {
				t.Errorf("coco receipt verify (COSE) exited %d:\n%s", code, out)
			}
			// The signature is the last element of the COSE_Sign1 array:
			// an ES256 signature's final byte is the file's final byte.
			bad = bytes.Clone(r.Body)
			bad[len(bad)-1] ^= 0x01
			if out, code := verifyReceipt(t, tmp, table+"_receipt_bad.cose", s.info.ServiceCert, bad); code == 0 {
				t.Errorf("coco receipt verify accepted a COSE receipt with a flipped signature byte:\n%s", out)
			}
		})
	}
	user0.t, user1.t = t, t

	// Authentication.
	stranger := newIdentity(t, tmp, "stranger")
	for name, c := range map[string]*client{
		"unregistered cert": newClient(t, s.info.Nodes[0].RPCAddress, s.info.ServiceCert, clientOpts{id: &stranger}),
		"no cert":           s.anon(t),
	} {
		for _, path := range []string{"/app/log/private?id=1", "/app/receipt?transaction_id=1.1"} {
			expectError(t, c.do("GET", path, nil), http.StatusUnauthorized, "InvalidAuthenticationInfo")
		}
		r := c.do("POST", "/app/log/private", map[string]any{"id": 2, "msg": "intruder"})
		expectError(t, r, http.StatusUnauthorized, "InvalidAuthenticationInfo")
		if r.Header.Get("x-ms-ccf-transaction-id") != "" {
			t.Errorf("%s: a refused write carries a transaction id", name)
		}
	}
	if _, ok := user0.read("private", 2); ok {
		t.Error("a write by an unauthenticated caller was recorded")
	}

	// If the sandbox itself dies, its node must not outlive it (orphans
	// keep ports and data dirs busy), and the same dir starts again.
	nodePID := s.info.Nodes[0].PID
	s.kill()
	waitFor(t, stopTimeout, fmt.Sprintf("node pid %d to stop after its sandbox was killed", nodePID), func() (bool, string) {
		return !pidAlive(nodePID), "still running"
	})
	s = startSandbox(t, s.dir)
	if got, ok := s.client(t, 1).read("public", 1); !ok || got != "hello public" {
		t.Errorf("after the sandbox was killed and restarted, public id 1 = %q, %v", got, ok)
	}
	if code := s.stop(stopTimeout); code != 0 {
		t.Errorf("coco sandbox exited %d after SIGTERM, want 0", code)
	}
}

// TestRestartKeepsCommittedData stops a sandbox cleanly and restarts it on
// the same directory: committed state, transaction ids and history survive.
func TestRestartKeepsCommittedData(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "sb")
	// Nodes keep the records of the newest 257 Ethereum blocks in memory
	// (the least they may) and read older ones from the ledger.
	s := startSandbox(t, dir, "--members", "1", "--users", "1", "--node-arg=--eth-recent-blocks=257")
	c := s.client(t, 0)

	// History of one private record, written in order.
	txPre := c.write("private", 1000, "before")
	txOld := c.write("private", 1001, "old value")
	txNew := c.write("private", 1001, "new value")
	txDel := c.write("private", 1002, "to be deleted")
	r := c.do("DELETE", "/app/log/private?id=1002", nil)
	expect(t, r, http.StatusOK, nil)
	txAfterDel := r.Header.Get("x-ms-ccf-transaction-id")

	// 200 records, some of them then deleted, written concurrently.
	type rec struct {
		table, msg, txid string
		deleted          bool
	}
	const n = 200
	recs := make([]rec, n+1)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := 1 + w; id <= n; id += 8 {
				table := "private"
				if id%3 == 0 {
					table = "public"
				}
				msg := fmt.Sprintf("record %d in %s", id, table)
				resp, err := c.try("POST", "/app/log/"+table, map[string]any{"id": id, "msg": msg})
				if err != nil || resp.Status != http.StatusOK {
					errs <- fmt.Errorf("POST id %d: %v %v", id, resp, err)
					return
				}
				recs[id] = rec{table: table, msg: msg, txid: resp.Header.Get("x-ms-ccf-transaction-id")}
				if id%17 == 0 {
					resp, err := c.try("DELETE", "/app/log/"+table+"?id="+strconv.Itoa(id), nil)
					if err != nil || resp.Status != http.StatusOK {
						errs <- fmt.Errorf("DELETE id %d: %v %v", id, resp, err)
						return
					}
					recs[id].deleted = true
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var maxSeqno uint64
	for id := 1; id <= n; id++ {
		maxSeqno = max(maxSeqno, seqnoOf(t, recs[id].txid))
	}
	// Ethereum transactions: nodes find the first by hash through an index
	// they rebuild from the ledger when they start, and read it from the
	// ledger, since 299 blocks came after it.
	ethTx, ethBlock := ethTransfers(t, s, c, 0, 300)
	if txs, ok := ethBlockTxs(t, c, ethBlock); !ok || len(txs) != 1 || txs[0] != ethTx {
		t.Fatalf("block %s holds %v (found %v), want [%s]", ethBlock, txs, ok, ethTx)
	}

	// Clean stop: exit 0, no node left behind.
	nodePID := s.info.Nodes[0].PID
	if code := s.stop(stopTimeout); code != 0 {
		t.Fatalf("coco sandbox exited %d after SIGTERM, want 0:\n%s", code, tail(s.logPath, 20))
	}
	if pidAlive(nodePID) {
		t.Fatalf("node process %d is still running after the sandbox stopped", nodePID)
	}

	s = startSandbox(t, dir)
	c = s.client(t, 0)
	for id := 1; id <= n; id++ {
		got, ok := c.read(recs[id].table, uint64(id))
		switch {
		case recs[id].deleted && ok:
			t.Errorf("%s id %d was deleted before the restart but reads %q", recs[id].table, id, got)
		case !recs[id].deleted && (!ok || got != recs[id].msg):
			t.Errorf("%s id %d after restart = %q, %v; want %q", recs[id].table, id, got, ok, recs[id].msg)
		}
		if st := c.txStatus(recs[id].txid); st != "Committed" {
			t.Errorf("write of id %d at %s is %s after restart, want Committed", id, recs[id].txid, st)
		}
	}
	for _, tx := range []string{txPre, txOld, txNew, txDel, txAfterDel} {
		if st := c.txStatus(tx); st != "Committed" {
			t.Errorf("%s is %s after restart, want Committed", tx, st)
		}
	}
	if got, ok := c.read("private", 1001); !ok || got != "new value" {
		t.Errorf("private id 1001 = %q, %v; want \"new value\"", got, ok)
	}
	if got, ok := c.read("private", 1002); ok {
		t.Errorf("deleted private id 1002 reads %q", got)
	}
	// Receipts for writes made before the restart are still served and
	// verify against the same service certificate.
	for _, tx := range []string{txOld, recs[n].txid} {
		r := getReceipt(t, c, "/app/receipt", tx)
		if out, code := verifyReceipt(t, t.TempDir(), "receipt.json", s.info.ServiceCert, r.Body); code != 0 {
			t.Errorf("receipt for %s after restart does not verify (exit %d):\n%s", tx, code, out)
		}
		r = getReceipt(t, c, "/app/receipt/cose", tx)
		if out, code := verifyReceipt(t, t.TempDir(), "receipt.cose", s.info.ServiceCert, r.Body); code != 0 {
			t.Errorf("COSE receipt for %s after restart does not verify (exit %d):\n%s", tx, code, out)
		}
	}
	for i := range s.info.Nodes {
		nc := s.nodeClient(t, i, 0)
		waitFor(t, startTimeout, "node "+strconv.Itoa(i)+" to find the Ethereum transaction by hash", func() (bool, string) {
			rc, ok := ethReceipt(t, nc, ethTx)
			if !ok {
				return false, "no receipt"
			}
			if rc.BlockHash != ethBlock || rc.Status != 1 {
				t.Fatalf("node %d: receipt of %s after restart: block %s status %d, want block %s status 1", i, ethTx, rc.BlockHash, rc.Status, ethBlock)
			}
			txs, ok := ethBlockTxs(t, nc, ethBlock)
			if !ok || len(txs) != 1 || txs[0] != ethTx {
				t.Fatalf("node %d: block %s after restart holds %v (found %v), want [%s]", i, ethBlock, txs, ok, ethTx)
			}
			return true, ""
		})
	}
	if seq := seqnoOf(t, c.write("public", 5000, "after restart")); seq <= maxSeqno {
		t.Errorf("a write after the restart got seqno %d, not above the last one before it (%d)", seq, maxSeqno)
	}

	// Historical reads across the restart.
	hist := func(id int, txid string) *response {
		return c.do("GET", "/app/log/private/historical?id="+strconv.Itoa(id), nil, "x-ms-ccf-transaction-id", txid)
	}
	var m struct {
		Msg string `json:"msg"`
	}
	expect(t, hist(1001, txOld), http.StatusOK, &m)
	if m.Msg != "old value" {
		t.Errorf("historical id 1001 at %s = %q, want \"old value\"", txOld, m.Msg)
	}
	expect(t, hist(1001, txNew), http.StatusOK, &m)
	if m.Msg != "new value" {
		t.Errorf("historical id 1001 at %s = %q, want \"new value\"", txNew, m.Msg)
	}
	expect(t, hist(1001, txPre), http.StatusNoContent, nil)
	expect(t, hist(1002, txDel), http.StatusOK, &m)
	if m.Msg != "to be deleted" {
		t.Errorf("historical id 1002 at %s = %q, want \"to be deleted\"", txDel, m.Msg)
	}
	expect(t, hist(1002, txAfterDel), http.StatusNoContent, nil)

	view, seq, _ := parseTxID(txOld)
	expectError(t, hist(1001, fmt.Sprintf("%d.%d", view+1, seq)), http.StatusNotFound, "TransactionInvalid")
	expectError(t, hist(1001, fmt.Sprintf("%d.%d", view+100, seq+1_000_000)), http.StatusNotFound, "TransactionPendingOrUnknown")
	expectError(t, c.do("GET", "/app/log/private/historical?id=1001", nil), http.StatusBadRequest, "InvalidInput")
	expectError(t, hist(1001, "not-a-txid"), http.StatusBadRequest, "InvalidInput")
	expectError(t, hist(1001, "0.0"), http.StatusBadRequest, "InvalidInput")
}

// fileContains reports whether any regular file under dir contains needle.
func filesContaining(t *testing.T, dir string, needle []byte) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, needle) {
			hits = append(hits, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits
}
