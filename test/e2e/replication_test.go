package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cocoledger/coco/ledger"
)

// Replication tests: real `coco sandbox` services of three node processes.

// electionTimeout bounds how long the tests wait for the nodes to agree on
// a primary, after a start or a failover. It is generous (the default
// election timeout is 500ms) because CI machines are slow and run these
// tests in parallel under -race; the time it took is logged.
const electionTimeout = 20 * time.Second

// networkInfo is GET /node/network.
type networkInfo struct {
	Status  string `json:"service_status"`
	View    uint64 `json:"current_view"`
	Primary string `json:"primary_id"`
}

// tryRetry is try, retrying while the answer is 503 (an election, a
// primary catching up: the service asks for a retry) for electionTimeout.
// On a slow machine an election may happen at any time; callers that
// expect no 503 use it so as not to fail on one.
func (c *client) tryRetry(method, path string, body any, hdr ...string) (*response, error) {
	deadline := time.Now().Add(electionTimeout)
	for {
		r, err := c.try(method, path, body, hdr...)
		if err != nil || r.Status != http.StatusServiceUnavailable || time.Now().After(deadline) {
			return r, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// doRetry is do with tryRetry.
func (c *client) doRetry(method, path string, body any, hdr ...string) *response {
	c.t.Helper()
	r, err := c.tryRetry(method, path, body, hdr...)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

// startThreeNodes starts a default sandbox (three nodes) with one member
// and one user.
func startThreeNodes(t *testing.T, dir string) *sandboxRun {
	t.Helper()
	s := startSandbox(t, dir, "--members", "1", "--users", "1")
	if len(s.info.Nodes) != 3 {
		t.Fatalf("sandbox.json lists %d nodes, want 3 (the default)", len(s.info.Nodes))
	}
	return s
}

// clients returns an anonymous and a user0 client for every node, in
// sandbox.json's order.
func (s *sandboxRun) clients(t *testing.T) (anon, user []*client) {
	for i := range s.info.Nodes {
		anon = append(anon, s.nodeClient(t, i, -1))
		user = append(user, s.nodeClient(t, i, 0))
	}
	return anon, user
}

// writeRetry is write with tryRetry. Writing the same record again after a
// 503 is harmless: it sets the same value.
func (c *client) writeRetry(table string, id uint64, msg string) string {
	c.t.Helper()
	return c.written(table, id, c.doRetry("POST", "/app/log/"+table, map[string]any{"id": id, "msg": msg}))
}

// readRetry is read with tryRetry.
func (c *client) readRetry(table string, id uint64) (msg string, ok bool) {
	c.t.Helper()
	msg, ok, err := c.tryRead(table, id)
	if err != nil {
		c.t.Fatal(err)
	}
	return msg, ok
}

// network is GET /node/network, without failing the test.
func (c *client) network() (networkInfo, error) {
	var ni networkInfo
	r, err := c.try("GET", "/node/network", nil)
	if err != nil {
		return ni, err
	}
	if r.Status != http.StatusOK {
		return ni, fmt.Errorf("GET /node/network: %s", r)
	}
	return ni, json.Unmarshal(r.Body, &ni)
}

// commitSeqno is the seqno of GET /node/commit, without failing the test.
func (c *client) commitSeqno() (uint64, error) {
	r, err := c.try("GET", "/node/commit", nil)
	if err != nil {
		return 0, err
	}
	var cm struct {
		TxID string `json:"transaction_id"`
	}
	if r.Status != http.StatusOK || json.Unmarshal(r.Body, &cm) != nil {
		return 0, fmt.Errorf("GET /node/commit: %s", r)
	}
	_, seq, err := parseTxID(cm.TxID)
	return seq, err
}

// tryTxStatus is txStatus without failing the test.
func (c *client) tryTxStatus(txid string) (string, error) {
	r, err := c.try("GET", "/node/tx?transaction_id="+txid, nil)
	if err != nil {
		return "", err
	}
	var st struct {
		TransactionID string `json:"transaction_id"`
		Status        string `json:"status"`
	}
	if r.Status != http.StatusOK || json.Unmarshal(r.Body, &st) != nil || st.TransactionID != txid {
		return "", fmt.Errorf("GET /node/tx?transaction_id=%s: %s", txid, r)
	}
	return st.Status, nil
}

// tryRead is read (with tryRetry) without failing the test; ok is false
// on 404.
func (c *client) tryRead(table string, id uint64, hdr ...string) (msg string, ok bool, err error) {
	r, err := c.tryRetry("GET", "/app/log/"+table+"?id="+strconv.FormatUint(id, 10), nil, hdr...)
	if err != nil {
		return "", false, err
	}
	switch r.Status {
	case http.StatusNotFound:
		return "", false, nil
	case http.StatusOK:
		var m struct {
			Msg string `json:"msg"`
		}
		if err := json.Unmarshal(r.Body, &m); err != nil {
			return "", false, fmt.Errorf("GET /app/log/%s?id=%d: %s: %v", table, id, r, err)
		}
		return m.Msg, true, nil
	}
	return "", false, fmt.Errorf("GET /app/log/%s?id=%d: %s", table, id, r)
}

// nodeIndex is the index in sandbox.json of the node with this id, or -1.
func (s *sandboxRun) nodeIndex(nodeID string) int {
	for i, n := range s.info.Nodes {
		if n.NodeID == nodeID {
			return i
		}
	}
	return -1
}

// waitPrimary waits until the nodes of s at indexes live (asked through
// anon) all name the same primary in the same view, the primary is one of
// them and ok (if set) accepts it. It returns the primary's index.
func waitPrimary(t testing.TB, s *sandboxRun, anon []*client, live []int, ok func(networkInfo) bool) (int, networkInfo) {
	t.Helper()
	primary, agreed := -1, networkInfo{}
	waitFor(t, electionTimeout, fmt.Sprintf("nodes %v to agree on a primary", live), func() (bool, string) {
		var first networkInfo
		for k, i := range live {
			ni, err := anon[i].network()
			if err != nil {
				return false, fmt.Sprintf("node %d: %v", i, err)
			}
			if ni.Primary == "" {
				return false, fmt.Sprintf("node %d knows no primary in view %d", i, ni.View)
			}
			if k == 0 {
				first = ni
			} else if ni.Primary != first.Primary || ni.View != first.View {
				return false, fmt.Sprintf("node %d: primary %.12s in view %d; node %d: primary %.12s in view %d", live[0], first.Primary, first.View, i, ni.Primary, ni.View)
			}
		}
		p := s.nodeIndex(first.Primary)
		if !slices.Contains(live, p) {
			return false, fmt.Sprintf("the primary %.12s is not one of nodes %v", first.Primary, live)
		}
		if ok != nil && !ok(first) {
			return false, fmt.Sprintf("primary %.12s (node %d) in view %d", first.Primary, p, first.View)
		}
		primary, agreed = p, first
		return true, ""
	})
	return primary, agreed
}

// forEachParallel calls fn for every item on a few goroutines and returns
// the first errors (at most 10) and how many there were.
func forEachParallel[T any](items []T, fn func(T) error) ([]error, int) {
	ch := make(chan T)
	var (
		mu   sync.Mutex
		errs []error
		n    int
		wg   sync.WaitGroup
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range ch {
				if err := fn(it); err != nil {
					mu.Lock()
					if n++; len(errs) < 10 {
						errs = append(errs, err)
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, it := range items {
		ch <- it
	}
	close(ch)
	wg.Wait()
	return errs, n
}

func reportErrors(t testing.TB, what string, errs []error, n int) {
	t.Helper()
	for _, err := range errs {
		t.Error(err)
	}
	if n > len(errs) {
		t.Errorf("... and %d more %s", n-len(errs), what)
	}
}

// ledgerEntry is what must be identical, entry by entry, in the ledgers of
// every node of a service: the txid, the kind and the Merkle leaf (which
// covers the write set, sealed private part included, and the digests).
type ledgerEntry struct {
	Kind        ledger.Kind
	Term, Index uint64
	Leaf        [32]byte
}

// readLedger reads the ledger of a stopped node, up to seqno upto.
func readLedger(t *testing.T, dataDir string, upto uint64) []ledgerEntry {
	t.Helper()
	var out []ledgerEntry
	errEnough := errors.New("enough")
	err := ledger.ReadDir(context.Background(), filepath.Join(dataDir, "ledger"), func(e *ledger.Entry, file string, off int64) error {
		if e.Index > upto {
			return errEnough
		}
		if e.Index != uint64(len(out))+1 {
			return fmt.Errorf("%s offset %d: entry %d follows entry %d", file, off, e.Index, len(out))
		}
		out = append(out, ledgerEntry{Kind: e.Kind, Term: e.Term, Index: e.Index, Leaf: e.Leaf()})
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) {
		t.Fatalf("read the ledger of %s: %v", dataDir, err)
	}
	if uint64(len(out)) < upto {
		t.Fatalf("the ledger of %s holds %d entries; its node reported %d committed", dataDir, len(out), upto)
	}
	return out
}

// checkLedgersAgree compares the ledgers of stopped nodes entry by entry up
// to upto (committed on all of them), runs `coco ledger verify` on each, and
// returns the entries.
func checkLedgersAgree(t *testing.T, s *sandboxRun, upto uint64) []ledgerEntry {
	t.Helper()
	ref := readLedger(t, s.info.Nodes[0].DataDir, upto)
	sigs := 0
	for _, e := range ref {
		if e.Kind == ledger.KindSignature {
			sigs++
		}
	}
	if sigs == 0 {
		t.Errorf("no signature transaction among the %d committed entries", upto)
	}
	for i, nd := range s.info.Nodes[1:] {
		got := readLedger(t, nd.DataDir, upto)
		diffs := 0
		for k := range ref {
			if got[k] != ref[k] {
				if diffs++; diffs <= 5 {
					t.Errorf("ledger entry %d: node %d has %s %d.%d leaf %x, node 0 has %s %d.%d leaf %x", k+1,
						i+1, got[k].Kind, got[k].Term, got[k].Index, got[k].Leaf[:8], ref[k].Kind, ref[k].Term, ref[k].Index, ref[k].Leaf[:8])
				}
			}
		}
		if diffs > 0 {
			t.Errorf("the committed ledgers of node %d and node 0 differ in %d of %d entries", i+1, diffs, upto)
		}
	}
	t.Logf("the ledgers of %d nodes agree on %d committed entries (%d signatures)", len(s.info.Nodes), upto, sigs)
	for i, nd := range s.info.Nodes {
		if out, code := runCoco(t, "ledger", "verify", nd.DataDir, "--service-cert", s.info.ServiceCert); code != 0 {
			t.Errorf("coco ledger verify on node %d (%s) exited %d:\n%s", i, nd.DataDir, code, out)
		}
	}
	return ref
}

// minCommit is the lowest commit seqno the nodes report.
func minCommit(t testing.TB, anon []*client) uint64 {
	t.Helper()
	low := uint64(0)
	for i, c := range anon {
		seq, err := c.commitSeqno()
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		if i == 0 || seq < low {
			low = seq
		}
	}
	return low
}

// TestWriteThroughBackup writes through a backup: it answers as the primary
// would, and the write is then visible on every node.
func TestWriteThroughBackup(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	s := startThreeNodes(t, filepath.Join(tmp, "sb"))
	anon, user := s.clients(t)
	p, net0 := waitPrimary(t, s, anon, []int{0, 1, 2}, nil)
	b := (p + 1) % 3
	other := 3 - p - b
	primary, backup := user[p], user[b]
	t.Logf("primary: node %d, view %d; writing through node %d", p, net0.View, b)

	// The write: 200 true with a transaction id, as from the primary.
	r := backup.doRetry("POST", "/app/log/private", map[string]any{"id": 1, "msg": "through the backup"})
	net1, err := anon[p].network()
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != http.StatusOK || string(bytes.TrimSpace(r.Body)) != "true" {
		t.Fatalf("POST /app/log/private to backup node %d: %s, want 200 true", b, r)
	}
	txid := r.Header.Get("x-ms-ccf-transaction-id")
	view, _, err := parseTxID(txid)
	if err != nil {
		t.Fatalf("write through the backup: x-ms-ccf-transaction-id %q: %v", txid, err)
	}
	direct := primary.doRetry("POST", "/app/log/private", map[string]any{"id": 2, "msg": "on the primary"})
	expect(t, direct, http.StatusOK, nil)
	if got, want := r.Header.Get("Content-Type"), direct.Header.Get("Content-Type"); got != want {
		t.Errorf("write through the backup: Content-Type %q; on the primary %q", got, want)
	}
	// The txid's view is the primary's. An election in between (possible on
	// a slow machine) moves the primary's view; the txid's is then between.
	if net1.View == net0.View && net1.Primary == net0.Primary {
		if view != net0.View {
			t.Errorf("write through the backup got %s; the primary's view is %d", txid, net0.View)
		}
	} else if view < net0.View || view > net1.View {
		t.Errorf("write through the backup got %s; the primary's view went from %d to %d", txid, net0.View, net1.View)
	}

	// Linearizable reads (the default) see it on every node at once.
	for i, c := range user {
		if got, ok := c.readRetry("private", 1); !ok || got != "through the backup" {
			t.Errorf("node %d: private id 1 = %q, %v right after the write through node %d was acknowledged", i, got, ok, b)
		}
	}
	// Local reads see it eventually, and every node reports it Committed.
	for i := range user {
		waitFor(t, startTimeout, fmt.Sprintf("node %d to apply %s", i, txid), func() (bool, string) {
			st, err := anon[i].tryTxStatus(txid)
			if err != nil || st != "Committed" {
				return false, fmt.Sprintf("/node/tx: %s %v", st, err)
			}
			msg, ok, err := user[i].tryRead("private", 1, "x-coco-read-consistency", "local")
			return err == nil && ok && msg == "through the backup", fmt.Sprintf("local read: %q %v %v", msg, ok, err)
		})
	}

	// Read-your-writes across nodes: a write acknowledged by one node is
	// read at once on another, whichever of them is the primary.
	for round := range 12 {
		w, rd := round%3, (round+1)%3
		msg := fmt.Sprintf("round %d via node %d", round, w)
		tx := user[w].writeRetry("public", 10, msg)
		if got, ok := user[rd].readRetry("public", 10); !ok || got != msg {
			t.Errorf("public id 10 written via node %d (%s) reads %q, %v on node %d; want %q", w, tx, got, ok, rd, msg)
		}
	}

	// A delete through the backup.
	user[other].writeRetry("public", 3, "to be deleted")
	r = backup.doRetry("DELETE", "/app/log/public?id=3", nil)
	if r.Status != http.StatusOK || string(bytes.TrimSpace(r.Body)) != "true" || r.Header.Get("x-ms-ccf-transaction-id") == "" {
		t.Errorf("DELETE through the backup: %s (txid %q), want 200 true with a txid", r, r.Header.Get("x-ms-ccf-transaction-id"))
	}
	for i, c := range user {
		if got, ok := c.readRetry("public", 3); ok {
			t.Errorf("node %d: public id 3 reads %q after its delete through node %d", i, got, b)
		}
	}

	// Bad requests get the same error from the backup as from the primary.
	t.Run("errors", func(t *testing.T) {
		big := `{"id":99,"msg":"` + strings.Repeat("x", 2<<20) + `"}`
		for _, tc := range []struct {
			name, method, path string
			body               any
			status             int
			code               string
		}{
			{"malformed JSON", "POST", "/app/log/private", `{"id":99,`, 400, "InvalidInput"},
			{"unknown field", "POST", "/app/log/private", `{"id":99,"msg":"a","extra":true}`, 400, "InvalidInput"},
			{"negative id", "POST", "/app/log/public", `{"id":-1,"msg":"a"}`, 400, "InvalidInput"},
			{"missing msg", "POST", "/app/log/private", `{"id":99}`, 400, "InvalidInput"},
			{"delete bad id", "DELETE", "/app/log/private?id=x", nil, 400, "InvalidInput"},
			{"wrong method", "PUT", "/app/log/private", `{}`, 405, "MethodNotAllowed"},
			{"body over the limit", "POST", "/app/log/private", big, 413, "RequestBodyTooLarge"},
		} {
			rb := backup.doRetry(tc.method, tc.path, tc.body)
			rp := primary.doRetry(tc.method, tc.path, tc.body)
			expectError(t, rb, tc.status, tc.code)
			expectError(t, rp, tc.status, tc.code)
			if !bytes.Equal(rb.Body, rp.Body) {
				t.Errorf("%s: the backup answers %s, the primary %s", tc.name, rb, rp)
			}
			for _, h := range []string{"x-ms-ccf-transaction-id", "Allow", "Retry-After"} {
				if rb.Header.Get(h) != rp.Header.Get(h) {
					t.Errorf("%s: %s %q from the backup, %q from the primary", tc.name, h, rb.Header.Get(h), rp.Header.Get(h))
				}
			}
		}
	})

	// The backup authenticates callers like the primary, and a caller
	// cannot pose as a backup forwarding someone else's request.
	t.Run("authentication", func(t *testing.T) {
		stranger := newIdentity(t, tmp, "stranger")
		pemBytes, err := os.ReadFile(s.info.Users[0].Cert)
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(pemBytes)
		if blk == nil {
			t.Fatalf("%s holds no PEM", s.info.Users[0].Cert)
		}
		// Header names from node/forward.go (ForwardedHeader, ForwardedCallerHeader).
		forged := []string{"x-coco-forwarded", s.info.Nodes[b].NodeID, "x-coco-forwarded-caller", base64.StdEncoding.EncodeToString(blk.Bytes)}
		for _, tc := range []struct {
			name string
			c    *client
			hdr  []string
		}{
			{"unregistered cert to the backup", newClient(t, s.info.Nodes[b].RPCAddress, s.info.ServiceCert, clientOpts{id: &stranger}), nil},
			{"no cert to the backup", anon[b], nil},
			{"forged forwarding to the backup", newClient(t, s.info.Nodes[b].RPCAddress, s.info.ServiceCert, clientOpts{id: &stranger}), forged},
			{"forged forwarding to the primary", newClient(t, s.info.Nodes[p].RPCAddress, s.info.ServiceCert, clientOpts{id: &stranger}), forged},
			{"anonymous forged forwarding to the primary", anon[p], forged},
		} {
			r := tc.c.do("POST", "/app/log/private", map[string]any{"id": 99, "msg": "intruder"}, tc.hdr...)
			expectError(t, r, http.StatusUnauthorized, "InvalidAuthenticationInfo")
			if r.Header.Get("x-ms-ccf-transaction-id") != "" {
				t.Errorf("%s: the refused write carries a transaction id", tc.name)
			}
			expectError(t, tc.c.do("GET", "/app/log/private?id=1", nil, tc.hdr...), http.StatusUnauthorized, "InvalidAuthenticationInfo")
		}
		for i, c := range user {
			if got, ok := c.readRetry("private", 99); ok {
				t.Errorf("node %d: a refused write was recorded: private id 99 = %q", i, got)
			}
		}
	})
}

// loadAttempt is one write of the load and what the service answered.
type loadAttempt struct {
	table, msg string
	id         uint64
	status     int    // 0: no response (transport error)
	code       string // JSON error code on errors
	txid       string // x-ms-ccf-transaction-id, if any
	after      bool   // sent once the old primary was back and following the new one
}

func (a loadAttempt) acked() bool { return a.status == http.StatusOK && a.txid != "" }

func (a loadAttempt) outcome() string {
	switch {
	case a.acked():
		return "acknowledged"
	case a.status == 0:
		return "transport error"
	}
	return strconv.Itoa(a.status) + " " + a.code
}

// TestKillPrimaryUnderLoad kills the primary with SIGKILL while clients
// write through every node: a new primary takes over, writes continue, the
// killed node restarts and catches up, nothing acknowledged is lost, no
// transaction stays Pending, and the nodes' ledgers are identical.
func TestKillPrimaryUnderLoad(t *testing.T) {
	t.Parallel()
	primaryFaultUnderLoad(t, false)
}

// TestFreezePrimaryUnderLoad stops the primary with SIGSTOP while clients
// write through every node, and resumes it once another node is primary.
// Unlike a crash, the old primary comes back with writes it had ordered but
// not committed: they must be dropped (503 TransactionInvalidated, with a
// txid that /node/tx reports Invalid) or committed, never left Pending, and
// the rest is checked as after a crash.
func TestFreezePrimaryUnderLoad(t *testing.T) {
	t.Parallel()
	primaryFaultUnderLoad(t, true)
}

// primaryFaultUnderLoad runs a three-node sandbox under write load through
// every node, takes the primary away (SIGKILL, then a restart from its
// sandbox.json command line; or with freeze, SIGSTOP, then SIGCONT) and
// checks the service over and after it.
func primaryFaultUnderLoad(t *testing.T, freeze bool) {
	s := startThreeNodes(t, filepath.Join(t.TempDir(), "sb"))
	anon, user := s.clients(t)
	victim, net0 := waitPrimary(t, s, anon, []int{0, 1, 2}, nil)
	var survivors []int
	for i := range s.info.Nodes {
		if i != victim {
			survivors = append(survivors, i)
		}
	}

	// send makes one write of the load through node i and records how it
	// went. It runs on the load's goroutines: it reports, never fails.
	send := func(i int, a loadAttempt) loadAttempt {
		r, err := user[i].try("POST", "/app/log/"+a.table, map[string]any{"id": a.id, "msg": a.msg})
		if err != nil {
			return a
		}
		a.status, a.txid = r.Status, r.Header.Get("x-ms-ccf-transaction-id")
		if a.txid != "" {
			if _, _, err := parseTxID(a.txid); err != nil {
				t.Errorf("write via node %d: %s with a bad txid: %v", i, r, err)
				a.txid = ""
			}
		}
		if r.Status == http.StatusOK && (a.txid == "" || string(bytes.TrimSpace(r.Body)) != "true") {
			t.Errorf("write via node %d: 200 %q with txid %q", i, r.Body, a.txid)
		}
		if r.Status != http.StatusOK {
			var e struct {
				Error struct{ Code string } `json:"error"`
			}
			_ = json.Unmarshal(r.Body, &e)
			a.code = e.Error.Code
			if r.Status != http.StatusServiceUnavailable {
				t.Errorf("write via node %d: %s; during a failover only 503s are expected", i, r)
			}
		}
		return a
	}

	// The load: writer w writes through node w%3, over a few keys of its
	// own so that each key is overwritten many times in a known order.
	const writers, keysPerWriter = 9, 16
	var (
		stop      atomic.Bool
		recovered atomic.Bool
		acks      [writers]atomic.Int64
		hist      [writers + 1][]loadAttempt // hist[writers]: one-off writes, in any order
		histMu    sync.Mutex                 // guards hist[writers]
		wg        sync.WaitGroup
	)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				a := loadAttempt{table: "private", id: uint64(w*1000 + i%keysPerWriter), msg: fmt.Sprintf("writer %d write %d", w, i), after: recovered.Load()}
				if a.id%2 == 1 {
					a.table = "public"
				}
				a = send(w%3, a)
				hist[w] = append(hist[w], a)
				if a.acked() {
					acks[w].Add(1)
				} else {
					time.Sleep(20 * time.Millisecond) // back off; not a correctness condition
				}
			}
		}()
	}
	stopLoad := sync.OnceFunc(func() {
		stop.Store(true)
		wg.Wait()
	})
	t.Cleanup(stopLoad) // before the sandbox stops (cleanups run last-in first-out)

	// waitAcks waits until every writer through one of nodes has had more
	// acknowledged writes than it had when waitAcks was called.
	waitAcks := func(what string, nodes []int, more int64) {
		t.Helper()
		var base [writers]int64
		for w := range writers {
			base[w] = acks[w].Load()
		}
		waitFor(t, electionTimeout, what, func() (bool, string) {
			for w := range writers {
				if slices.Contains(nodes, w%3) && acks[w].Load() < base[w]+more {
					return false, fmt.Sprintf("writer %d via node %d: %d acknowledged writes, waiting for %d", w, w%3, acks[w].Load(), base[w]+more)
				}
			}
			return true, ""
		})
	}
	waitAcks("writes through every node", []int{0, 1, 2}, 10)

	// Take the primary away: kill -9, or SIGSTOP.
	pid := s.info.Nodes[victim].PID
	sig := syscall.SIGKILL
	if freeze {
		sig = syscall.SIGSTOP
		t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) }) // runs before the load and the sandbox stop
	}
	t.Logf("sending %v to the primary, node %d (pid %d, view %d)", sig, victim, pid, net0.View)
	if err := syscall.Kill(pid, sig); err != nil {
		t.Fatalf("kill -%d %d: %v", sig, pid, err)
	}
	faulted := time.Now()
	if !freeze {
		waitFor(t, stopTimeout, fmt.Sprintf("pid %d to die", pid), func() (bool, string) {
			return !pidAlive(pid), "still running"
		})
	}
	newPrimary, net1 := waitPrimary(t, s, anon, survivors, func(ni networkInfo) bool {
		return ni.Primary != net0.Primary && ni.View > net0.View
	})
	t.Logf("node %d is primary in view %d, %v after the %v", newPrimary, net1.View, time.Since(faulted).Round(time.Millisecond), sig)
	if freeze {
		// Writes sent to the frozen primary wait in its socket; when it runs
		// again it may still take itself for the primary and order them in
		// its old view, which the new primary's log then overrides.
		for k := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				a := send(victim, loadAttempt{table: "private", id: uint64(800_000 + k), msg: fmt.Sprintf("sent to the frozen primary %d", k)})
				histMu.Lock()
				hist[writers] = append(hist[writers], a)
				histMu.Unlock()
			}()
		}
		// A write that a backup forwarded to the primary before it froze
		// waits for it to run again, even on the node that has become the
		// primary since (it forwarded it as a backup): the writers through
		// the survivors may all be stuck so. New writes through either
		// survivor succeed.
		for _, i := range survivors {
			for k := range 3 {
				user[i].writeRetry("private", uint64(900_000+10*i+k), "while the old primary is frozen")
			}
		}
	} else {
		waitAcks("writes through the surviving nodes after the failover", survivors, 5)
	}

	// Bring the old primary back: restart it with its command line from
	// sandbox.json, or let it run again.
	var rp *proc
	if freeze {
		if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
			t.Fatalf("kill -CONT %d: %v", pid, err)
		}
	} else {
		nd := s.info.Nodes[victim]
		rp = startArgv(t, filepath.Join(nd.DataDir, "node.log"), nd.Args)
		waitReady(t, anon[victim], rp)
	}
	// It follows the new primary.
	waitPrimary(t, s, anon, []int{0, 1, 2}, func(ni networkInfo) bool { return ni.Primary != net0.Primary && ni.View > net0.View })
	recovered.Store(true)
	var target uint64
	for _, i := range survivors {
		seq, err := anon[i].commitSeqno()
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		target = max(target, seq)
	}
	waitFor(t, electionTimeout, fmt.Sprintf("the old primary (node %d) to catch up to seqno %d", victim, target), func() (bool, string) {
		seq, err := anon[victim].commitSeqno()
		return err == nil && seq >= target, fmt.Sprintf("commit seqno %d, %v", seq, err)
	})
	waitAcks("writes through every node once the old primary is back", []int{0, 1, 2}, 5)
	stopLoad()

	// Sort out what the load saw.
	var acked, failed []loadAttempt
	outcomes := map[string]int{}
	var maxSeqno uint64
	for w := range hist {
		for _, a := range hist[w] {
			outcomes[a.outcome()]++
			if a.acked() {
				acked = append(acked, a)
				maxSeqno = max(maxSeqno, seqnoOf(t, a.txid))
			} else if a.txid != "" {
				failed = append(failed, a)
			}
		}
	}
	t.Logf("load outcomes: %v; %d failed writes carry a txid", outcomes, len(failed))
	for _, a := range acked {
		if v, _, _ := parseTxID(a.txid); a.after && v <= net0.View {
			t.Errorf("a write sent once the old primary was back was acknowledged at %s, in the old primary's view %d", a.txid, net0.View)
		}
	}

	// Every acknowledged write is Committed on every node.
	for i := range s.info.Nodes {
		waitFor(t, electionTimeout, fmt.Sprintf("node %d to commit seqno %d", i, maxSeqno), func() (bool, string) {
			seq, err := anon[i].commitSeqno()
			return err == nil && seq >= maxSeqno, fmt.Sprintf("commit seqno %d, %v", seq, err)
		})
		errs, n := forEachParallel(acked, func(a loadAttempt) error {
			st, err := anon[i].tryTxStatus(a.txid)
			if err == nil && st != "Committed" {
				err = fmt.Errorf("node %d: acknowledged write %s (%s id %d) is %s", i, a.txid, a.table, a.id, st)
			}
			return err
		})
		reportErrors(t, "acknowledged writes not Committed", errs, n)
	}

	// Every txid of a failed write ends up Invalid or Committed on every
	// node: none stays Pending (or Unknown) once the load is over.
	final := map[string]string{}
	var finalMu sync.Mutex
	waitFor(t, electionTimeout, "the txids of failed writes to be Invalid or Committed on every node", func() (bool, string) {
		pending := []string{}
		var mu sync.Mutex
		errs, _ := forEachParallel(failed, func(a loadAttempt) error {
			finalMu.Lock()
			_, done := final[a.txid]
			finalMu.Unlock()
			if done {
				return nil
			}
			var sts []string
			for i := range s.info.Nodes {
				st, err := anon[i].tryTxStatus(a.txid)
				if err != nil {
					return err
				}
				sts = append(sts, st)
			}
			if sts[0] != sts[1] || sts[1] != sts[2] || (sts[0] != "Invalid" && sts[0] != "Committed") {
				mu.Lock()
				pending = append(pending, fmt.Sprintf("%s (%s) is %v", a.txid, a.outcome(), sts))
				mu.Unlock()
				return nil
			}
			finalMu.Lock()
			final[a.txid] = sts[0]
			finalMu.Unlock()
			return nil
		})
		if len(errs) > 0 {
			return false, errs[0].Error()
		}
		sort.Strings(pending)
		return len(pending) == 0, fmt.Sprintf("%d not settled: %s", len(pending), strings.Join(pending[:min(len(pending), 5)], "; "))
	})

	settled := map[string]int{}
	for _, st := range final {
		settled[st]++
	}
	t.Logf("txids of failed writes: %v", settled)

	// Every key reads its last acknowledged value on every node, or the
	// value of a later write whose outcome the client did not learn.
	type key struct {
		table string
		id    uint64
	}
	const absent = "\x00absent"
	allowed := map[key][]string{}
	byMsg := map[string]loadAttempt{}
	for w := range hist {
		for _, a := range hist[w] {
			byMsg[a.msg] = a
			k := key{a.table, a.id}
			if allowed[k] == nil {
				allowed[k] = []string{absent}
			}
			switch {
			case a.acked() || final[a.txid] == "Committed":
				allowed[k] = []string{a.msg}
			case final[a.txid] == "Invalid":
			default:
				allowed[k] = append(allowed[k], a.msg)
			}
		}
	}
	keys := make([]key, 0, len(allowed))
	for k := range allowed {
		keys = append(keys, k)
	}
	var unacked syncMap[string, int] // outcomes of failed writes that took effect
	for i := range s.info.Nodes {
		errs, n := forEachParallel(keys, func(k key) error {
			msg, ok, err := user[i].tryRead(k.table, k.id)
			if err != nil {
				return err
			}
			if !ok {
				msg = absent
			}
			if !slices.Contains(allowed[k], msg) {
				return fmt.Errorf("node %d: %s id %d = %q; the writes allow only %q", i, k.table, k.id, msg, allowed[k])
			}
			if a, found := byMsg[msg]; i == 0 && found && !a.acked() {
				unacked.mu.Lock()
				if unacked.m == nil {
					unacked.m = map[string]int{}
				}
				unacked.m[a.outcome()]++
				unacked.mu.Unlock()
			}
			return nil
		})
		reportErrors(t, "keys with a wrong value", errs, n)
	}
	t.Logf("keys holding the value of a write that was not acknowledged, by the answer it got: %v", unacked.snapshot())

	// Stop every node cleanly and compare the ledgers.
	upto := minCommit(t, anon)
	if rp != nil {
		if code := rp.stop(stopTimeout); code != 0 {
			t.Errorf("the restarted node %d exited %d after SIGTERM, want 0", victim, code)
		}
	}
	if code := s.stop(stopTimeout); code != 0 {
		t.Errorf("coco sandbox exited %d after SIGTERM, want 0", code)
	}
	for i, nd := range s.info.Nodes {
		if pidAlive(nd.PID) {
			t.Errorf("node %d (pid %d) still runs after its sandbox stopped", i, nd.PID)
		}
	}
	entries := checkLedgersAgree(t, s, upto)
	missing := 0
	for _, a := range acked {
		v, seq, _ := parseTxID(a.txid)
		if seq <= upto && entries[seq-1].Term != v {
			if missing++; missing <= 5 {
				t.Errorf("acknowledged write %s: the ledger entry at seqno %d is %d.%d", a.txid, seq, entries[seq-1].Term, seq)
			}
		}
	}
}

// TestSandboxRestartAllNodes stops a three-node sandbox and starts it again
// on the same directory: every node comes back with its identity, the view
// moves on, every node serves what was written before (through any node),
// new writes commit everywhere, and the ledgers still agree.
func TestSandboxRestartAllNodes(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "sb")
	s := startThreeNodes(t, dir)
	anon, user := s.clients(t)
	waitPrimary(t, s, anon, []int{0, 1, 2}, nil)

	// Writes through every node, in both tables, one key overwritten.
	type rec struct {
		table, msg, txid string
		id               uint64
	}
	var recs []rec
	var maxSeqno uint64
	for i := range s.info.Nodes {
		for _, table := range []string{"private", "public"} {
			r := rec{table: table, id: uint64(100 + i), msg: fmt.Sprintf("%s via node %d before the restart", table, i)}
			r.txid = user[i].writeRetry(table, r.id, r.msg)
			recs = append(recs, r)
			maxSeqno = max(maxSeqno, seqnoOf(t, r.txid))
		}
		user[i].writeRetry("private", 7, fmt.Sprintf("overwritten by node %d", i))
	}
	recs = append(recs, rec{table: "private", id: 7, msg: "overwritten by node 2"})

	// The view of the last transaction committed before the stop: every
	// view after the restart is greater, or txids would repeat.
	var lastView uint64
	for i, c := range anon {
		r := c.do("GET", "/node/commit", nil)
		var cm struct {
			TxID string `json:"transaction_id"`
		}
		expect(t, r, http.StatusOK, &cm)
		v, _, err := parseTxID(cm.TxID)
		if err != nil {
			t.Fatalf("node %d: /node/commit: %v", i, err)
		}
		lastView = max(lastView, v)
	}

	// Clean stop: the sandbox and every node exit.
	oldInfo := s.info
	if code := s.stop(stopTimeout); code != 0 {
		t.Fatalf("coco sandbox exited %d after SIGTERM, want 0:\n%s", code, tail(s.logPath, 20))
	}
	for i, nd := range oldInfo.Nodes {
		if pidAlive(nd.PID) {
			t.Errorf("node %d (pid %d) still runs after its sandbox stopped", i, nd.PID)
		}
	}

	s = startSandbox(t, dir)
	if len(s.info.Nodes) != len(oldInfo.Nodes) {
		t.Fatalf("after the restart sandbox.json lists %d nodes, before %d", len(s.info.Nodes), len(oldInfo.Nodes))
	}
	for i, nd := range s.info.Nodes {
		old := oldInfo.Nodes[i]
		if nd.NodeID != old.NodeID || nd.RPCAddress != old.RPCAddress || nd.NodeAddress != old.NodeAddress || nd.DataDir != old.DataDir {
			t.Errorf("node %d after the restart: %s at %s/%s in %s; before: %s at %s/%s in %s", i,
				nd.NodeID, nd.RPCAddress, nd.NodeAddress, nd.DataDir, old.NodeID, old.RPCAddress, old.NodeAddress, old.DataDir)
		}
		if nd.PID == old.PID || !pidAlive(nd.PID) {
			t.Errorf("node %d after the restart: sandbox.json names pid %d (before %d), alive %v", i, nd.PID, old.PID, pidAlive(nd.PID))
		}
	}
	anon, user = s.clients(t)
	p, net1 := waitPrimary(t, s, anon, []int{0, 1, 2}, nil)
	if net1.View <= lastView {
		t.Errorf("view %d after the restart; the last commit before it was in view %d: views must grow (txids would repeat)", net1.View, lastView)
	}
	if net1.Status != "Open" {
		t.Errorf("service_status %q after the restart, want Open", net1.Status)
	}
	ids := []string{}
	for _, nd := range s.info.Nodes {
		ids = append(ids, nd.NodeID)
	}
	for i, c := range anon {
		// Exactly one primary, once any election is over.
		waitFor(t, electionTimeout, fmt.Sprintf("node %d to list its 3 nodes as trusted voters, one of them primary", i), func() (bool, string) {
			var nodes struct {
				Nodes []struct {
					NodeID     string `json:"node_id"`
					Status     string `json:"status"`
					Primary    bool   `json:"primary"`
					Membership string `json:"membership"`
				} `json:"nodes"`
			}
			r, err := c.try("GET", "/node/network/nodes", nil)
			if err != nil || r.Status != http.StatusOK || json.Unmarshal(r.Body, &nodes) != nil {
				return false, fmt.Sprintf("GET /node/network/nodes: %v %v", r, err)
			}
			primaries := 0
			var listed []string
			for _, n := range nodes.Nodes {
				if n.Status != "Trusted" || n.Membership != "Voter" {
					return false, fmt.Sprintf("node %.12s is %s, %s", n.NodeID, n.Status, n.Membership)
				}
				if n.Primary {
					primaries++
				}
				listed = append(listed, n.NodeID)
			}
			slices.Sort(listed)
			want := slices.Sorted(slices.Values(ids))
			if !slices.Equal(listed, want) {
				t.Fatalf("node %d after the restart: /node/network/nodes lists %v, sandbox.json %v", i, listed, want)
			}
			return primaries == 1, fmt.Sprintf("%d primaries: %s", primaries, r)
		})
	}

	// Every node serves the writes made before the restart.
	for i := range s.info.Nodes {
		for _, r := range recs {
			if got, ok := user[i].readRetry(r.table, r.id); !ok || got != r.msg {
				t.Errorf("node %d after the restart: %s id %d = %q, %v; want %q", i, r.table, r.id, got, ok, r.msg)
			}
			if r.txid == "" {
				continue
			}
			waitFor(t, startTimeout, fmt.Sprintf("node %d to report %s Committed", i, r.txid), func() (bool, string) {
				st, err := anon[i].tryTxStatus(r.txid)
				return err == nil && st == "Committed", fmt.Sprintf("%s %v", st, err)
			})
		}
	}

	// New writes through every node commit in the new view, after the old
	// ones, and are read on every node.
	for i := range s.info.Nodes {
		msg := fmt.Sprintf("via node %d after the restart", i)
		txid := user[i].writeRetry("public", 200, msg)
		v, seq, _ := parseTxID(txid)
		if seq <= maxSeqno || v <= lastView {
			t.Errorf("a write via node %d after the restart got %s; before it the last was seqno %d, in view %d", i, txid, maxSeqno, lastView)
		}
		maxSeqno = max(maxSeqno, seq)
		for k, c := range user {
			if got, ok := c.readRetry("public", 200); !ok || got != msg {
				t.Errorf("node %d: public id 200 = %q, %v right after node %d acknowledged %q", k, got, ok, i, msg)
			}
		}
	}
	t.Logf("primary after the restart: node %d, view %d (last commit before: view %d)", p, net1.View, lastView)

	for i := range s.info.Nodes {
		waitFor(t, startTimeout, fmt.Sprintf("node %d to commit seqno %d", i, maxSeqno), func() (bool, string) {
			seq, err := anon[i].commitSeqno()
			return err == nil && seq >= maxSeqno, fmt.Sprintf("commit seqno %d, %v", seq, err)
		})
	}
	upto := minCommit(t, anon)
	if code := s.stop(stopTimeout); code != 0 {
		t.Errorf("coco sandbox exited %d after SIGTERM, want 0", code)
	}
	checkLedgersAgree(t, s, upto)
}
