package consensus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cococrypto "github.com/cocoledger/coco/crypto"
	"github.com/cocoledger/coco/kv"
	"github.com/cocoledger/coco/ledger"
	"github.com/cocoledger/coco/receipt"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// fixture is a single-node service in a temp dir whose secrets survive
// restarts of the node.
type fixture struct {
	dir       string
	keyring   *cococrypto.Keyring
	nodeCert  []byte
	svcCert   []byte
	cfgBase   Config
	led       *ledger.Ledger
	store     *kv.Store
	node      *Node
	cancel    context.CancelFunc
	runErr    chan error
	committed []CommittedTx
	mu        sync.Mutex
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	svcKey, err := cococrypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	svcCert, err := cococrypto.SelfSignedCert(svcKey, "svc", time.Hour, true)
	if err != nil {
		t.Fatal(err)
	}
	nodeKey, err := cococrypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	nodeCert, err := cococrypto.IssueCert(nodeKey.Public(), cococrypto.CertOptions{CommonName: "node", Hosts: []string{"127.0.0.1"}, Validity: time.Hour, ServerAuth: true, ClientAuth: true}, svcCert, svcKey)
	if err != nil {
		t.Fatal(err)
	}
	nodeID, err := cococrypto.KeyID(nodeKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	secret, err := cococrypto.NewLedgerSecret(1, 1)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := cococrypto.NewKeyring(secret)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f := &fixture{dir: dir, keyring: kr, nodeCert: cococrypto.EncodeCertPEM(nodeCert), svcCert: cococrypto.EncodeCertPEM(svcCert)}
	f.cfgBase = Config{
		ID: 1, NodeID: nodeID, StateDir: dir, LedgerDir: filepath.Join(dir, "ledger"),
		Keyring: kr, NodeKey: nodeKey, NodeCertPEM: f.nodeCert, ServiceKey: svcKey,
		Bootstrap: true, TickInterval: 5 * time.Millisecond, SigTxInterval: 10, SigInterval: 20 * time.Millisecond,
	}
	f.start(t)
	t.Cleanup(func() { f.stop(t) })
	return f
}

func (f *fixture) start(t *testing.T) {
	t.Helper()
	led, err := ledger.Open(ledger.Options{Dir: f.cfgBase.LedgerDir, ChunkSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	f.led, f.store = led, kv.NewStore()
	f.committed = nil
	cfg := f.cfgBase
	cfg.Ledger, cfg.Store = led, f.store
	cfg.OnCommit = func(c CommittedTx) {
		f.mu.Lock()
		f.committed = append(f.committed, c)
		f.mu.Unlock()
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.node = n
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	f.runErr = make(chan error, 1)
	go func() { f.runErr <- n.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for !n.Status().WritesReady {
		if time.Now().After(deadline) {
			t.Fatal("node never became ready")
		}
		time.Sleep(time.Millisecond)
	}
}

func (f *fixture) stop(t *testing.T) {
	t.Helper()
	if f.node == nil {
		return
	}
	f.cancel()
	if err := <-f.runErr; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("run: %v", err)
	}
	if err := f.led.Close(); err != nil {
		t.Errorf("close ledger: %v", err)
	}
	f.node = nil
}

func (f *fixture) put(t *testing.T, m, k, v string) TxID {
	t.Helper()
	tx := f.store.Begin()
	if err := tx.Put(m, k, []byte(v)); err != nil {
		t.Fatal(err)
	}
	id, err := f.node.Submit(context.Background(), tx, [32]byte{})
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	return id
}

func TestSubmitCommitsAndAssignsSeqnos(t *testing.T) {
	f := newFixture(t)
	var last TxID
	for i := range 5 {
		id := f.put(t, "records", fmt.Sprint(i), "v")
		if id.Seqno <= last.Seqno || id.View == 0 {
			t.Fatalf("txid %s after %s", id, last)
		}
		last = id
		st, err := f.node.TxStatus(id)
		if err != nil || st != TxCommitted {
			t.Fatalf("status of %s = %s, %v", id, st, err)
		}
		if got := f.store.CommittedVersion(); got < id.Seqno {
			t.Fatalf("committed version %d < %d", got, id.Seqno)
		}
	}
	if v, ok := f.store.BeginReadOnly().Get("records", "4"); !ok || string(v) != "v" {
		t.Fatalf("committed read = %q %v", v, ok)
	}
	for _, tc := range []struct {
		id   TxID
		want TxStatus
	}{
		{TxID{View: last.View + 1, Seqno: last.Seqno}, TxInvalid},
		{TxID{View: last.View, Seqno: last.Seqno + 1000}, TxUnknown},
		{TxID{View: last.View + 5, Seqno: last.Seqno + 1000}, TxUnknown},
	} {
		if st, _ := f.node.TxStatus(tc.id); st != tc.want {
			t.Errorf("status(%s) = %s, want %s", tc.id, st, tc.want)
		}
	}
}

// TestSubmitOrdered: the ordered callback reports the id before the
// commit, with the writes already in the kv head, so the next transaction
// can be built on them; a refused transaction never calls it.
func TestSubmitOrdered(t *testing.T) {
	f := newFixture(t)
	tx := f.store.Begin()
	if err := tx.Put("records", "a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	ordered := make(chan TxID, 1)
	headSaw := make(chan bool, 1)
	id, err := f.node.SubmitOrdered(context.Background(), tx, [32]byte{}, func(id TxID) {
		_, ok := f.store.Begin().Get("records", "a")
		headSaw <- ok
		ordered <- id
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case oid := <-ordered:
		if oid != id {
			t.Errorf("ordered id %s, submit returned %s", oid, id)
		}
		if !<-headSaw {
			t.Error("the kv head lacked the write when ordered was called")
		}
	default:
		t.Fatal("ordered was not called")
	}
	// A stale transaction conflicts and is never ordered.
	stale := f.store.Begin()
	stale.Get("records", "a")
	f.put(t, "records", "a", "2")
	if err := stale.Put("records", "b", []byte("x")); err != nil {
		t.Fatal(err)
	}
	called := false
	if _, err := f.node.SubmitOrdered(context.Background(), stale, [32]byte{}, func(TxID) { called = true }); !errors.Is(err, kv.ErrConflict) {
		t.Errorf("stale submit: %v, want ErrConflict", err)
	}
	if called {
		t.Error("ordered was called for a refused transaction")
	}
}

// TestConcurrentConflicts runs read-modify-write transactions on one key
// from many goroutines: conflicts must be reported, never lost updates.
func TestConcurrentConflicts(t *testing.T) {
	f := newFixture(t)
	const workers, each = 8, 25
	var wg sync.WaitGroup
	var mu sync.Mutex
	conflicts := 0
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for done := 0; done < each; {
				tx := f.store.Begin()
				v, _ := tx.Get("counter", "c")
				n := 0
				if v != nil {
					fmt.Sscan(string(v), &n)
				}
				_ = tx.Put("counter", "c", []byte(fmt.Sprint(n+1)))
				_, err := f.node.Submit(context.Background(), tx, [32]byte{})
				if errors.Is(err, kv.ErrConflict) {
					mu.Lock()
					conflicts++
					mu.Unlock()
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				done++
			}
		}()
	}
	wg.Wait()
	v, _ := f.store.BeginReadOnly().Get("counter", "c")
	if string(v) != fmt.Sprint(workers*each) {
		t.Fatalf("counter = %s, want %d (conflicts seen: %d)", v, workers*each, conflicts)
	}
	t.Logf("%d conflicts", conflicts)
}

func TestRestartReplaysCommittedState(t *testing.T) {
	f := newFixture(t)
	ids := make([]TxID, 0, 30)
	for i := range 30 {
		ids = append(ids, f.put(t, "records", fmt.Sprint(i), fmt.Sprint("v", i)))
	}
	pub := f.put(t, "public:records", "k", "public value")
	before := f.node.Status()
	f.stop(t)
	f.start(t)
	after := f.node.Status()
	if after.View <= before.View {
		t.Errorf("view did not advance across restart: %d -> %d", before.View, after.View)
	}
	tx := f.store.BeginReadOnly()
	for i := range 30 {
		if v, ok := tx.Get("records", fmt.Sprint(i)); !ok || string(v) != fmt.Sprint("v", i) {
			t.Fatalf("after restart records[%d] = %q %v", i, v, ok)
		}
	}
	for _, id := range append(ids, pub) {
		if st, err := f.node.TxStatus(id); err != nil || st != TxCommitted {
			t.Fatalf("after restart %s is %s (%v)", id, st, err)
		}
	}
	// New writes continue the same ledger.
	id := f.put(t, "records", "new", "x")
	if id.Seqno <= pub.Seqno {
		t.Fatalf("seqno went backwards: %s after %s", id, pub)
	}
}

func TestReceiptsVerify(t *testing.T) {
	f := newFixture(t)
	var ids []TxID
	for i := range 25 {
		ids = append(ids, f.put(t, "records", fmt.Sprint(i), "secret"))
	}
	svc, err := cococrypto.ParseCertPEM(f.svcCert)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		var r *Receipt
		deadline := time.Now().Add(5 * time.Second)
		for {
			r, err = f.node.Receipt(id)
			if !errors.Is(err, ErrNotSigned) || time.Now().After(deadline) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("receipt %s: %v", id, err)
		}
		j := receipt.NewJSON([]byte(r.Signature.Cert), r.Signature.NodeID, r.Signature.Sig, r.Leaf, r.Proof)
		v, err := j.Verify(svc)
		if err != nil {
			t.Fatalf("json receipt %s: %v", id, err)
		}
		if v.TxID != id.String() {
			t.Fatalf("json receipt is for %s, want %s", v.TxID, id)
		}
		cose, err := receipt.AttachProof(r.Signature.COSE, r.Leaf, r.Proof)
		if err != nil {
			t.Fatal(err)
		}
		if v, err := receipt.VerifyCOSE(cose, svc); err != nil || v.TxID != id.String() {
			t.Fatalf("cose receipt %s: %v %+v", id, err, v)
		}
	}
	// A root recomputed from the ledger matches the signed one.
	f.stop(t)
	rep, err := ledger.Verify(context.Background(), f.cfgBase.LedgerDir, ledger.VerifyOptions{ServiceCert: svc})
	if err != nil {
		t.Fatalf("ledger verify: %v", err)
	}
	if rep.Signatures == 0 {
		t.Fatal("no signatures in the ledger")
	}
	f.start(t)
}

func TestPrivateDataIsSealed(t *testing.T) {
	f := newFixture(t)
	id := f.put(t, "records", "k", "TOP-SECRET-VALUE")
	le, err := f.led.Entry(id.Seqno)
	if err != nil {
		t.Fatal(err)
	}
	if len(le.Private) == 0 {
		t.Fatal("private write set not sealed")
	}
	for _, b := range [][]byte{le.Public, le.Private} {
		if bytes.Contains(b, []byte("TOP-SECRET-VALUE")) {
			t.Fatal("private value in clear in the ledger entry")
		}
	}
	ws, err := f.node.DecodeWriteSet(le)
	if err != nil {
		t.Fatal(err)
	}
	if len(ws.Maps) != 1 || string(ws.Maps[0].Writes[0].Value) != "TOP-SECRET-VALUE" {
		t.Fatalf("decoded write set %+v", ws)
	}
}

func TestMissingCommittedEntriesIsAnError(t *testing.T) {
	f := newFixture(t)
	for i := range 5 {
		f.put(t, "records", fmt.Sprint(i), "v")
	}
	f.stop(t)
	if err := os.RemoveAll(f.cfgBase.LedgerDir); err != nil {
		t.Fatal(err)
	}
	led, err := ledger.Open(ledger.Options{Dir: f.cfgBase.LedgerDir})
	if err != nil {
		t.Fatal(err)
	}
	defer led.Close()
	cfg := f.cfgBase
	cfg.Ledger, cfg.Store = led, kv.NewStore()
	_, err = New(cfg)
	if err == nil || !strings.Contains(err.Error(), "committed entries are missing") {
		t.Fatalf("New with an emptied ledger: %v", err)
	}
}

// TestBootstrapEntryDurableStateNot restarts a new service that crashed
// after its bootstrap configuration entry was fsynced but before the raft
// state recording it was saved: the entry is committed by construction, so
// the node must recover its configuration and lead.
func TestBootstrapEntryDurableStateNot(t *testing.T) {
	f := newFixture(t)
	f.stop(t)
	for _, p := range []string{f.cfgBase.LedgerDir, filepath.Join(f.dir, stateFile)} {
		if err := os.RemoveAll(p); err != nil {
			t.Fatal(err)
		}
	}
	led, err := ledger.Open(ledger.Options{Dir: f.cfgBase.LedgerDir})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := proto.Marshal(&pb.ConfChange{Type: pb.ConfChangeAddNode.Enum(), NodeId: new(f.cfgBase.ID)})
	if err != nil {
		t.Fatal(err)
	}
	if err := led.Append(&ledger.Entry{Kind: ledger.KindInternal, RaftType: uint8(pb.EntryConfChange), Term: 1, Index: 1, Public: cc}); err != nil {
		t.Fatal(err)
	}
	if err := led.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := led.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.dir, stateFile), []byte(`{"term":0,"vote":0,"commit":0,"voters":null}`), 0o600); err != nil {
		t.Fatal(err)
	}
	f.start(t) // fails unless the node leads again
	if m := f.node.Membership(); len(m.Voters) != 1 || m.Voters[0] != f.cfgBase.ID || m.Index != 1 {
		t.Fatalf("membership after recovery: %+v", m)
	}
	if id := f.put(t, "records", "k", "v"); id.Seqno < 3 {
		t.Fatalf("write after recovery at %s", id)
	}
}
