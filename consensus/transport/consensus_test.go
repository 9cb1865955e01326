package transport

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cocoledger/coco/consensus"
	cococrypto "github.com/cocoledger/coco/crypto"
	"github.com/cocoledger/coco/kv"
	"github.com/cocoledger/coco/ledger"
	pb "go.etcd.io/raft/v3/raftpb"
)

// raftNode is a consensus.Node on a real transport. consensustest's Cluster
// wires its nodes to its in-memory Network, so the nodes are built here the
// same way by hand.
type raftNode struct {
	tr    *node
	node  *consensus.Node
	store *kv.Store
	led   *ledger.Ledger
	done  chan error
}

// TestConsensusOverTransport runs three consensus nodes connected only by
// transports: they elect a primary, and writes submitted to it commit on
// every node.
func TestConsensusOverTransport(t *testing.T) {
	if testing.Short() {
		t.Skip("runs raft on wall-clock ticks")
	}
	ca := newCA(t, "service")
	secret, err := cococrypto.NewLedgerSecret(1, 1)
	if err != nil {
		t.Fatal(err)
	}

	// Transports first: consensus.New needs a transport, and the transport
	// delivers to the node, which exists only afterwards.
	const size = 3
	nodes := make([]*raftNode, size)
	targets := make([]atomic.Pointer[consensus.Node], size)
	peers := make([]uint64, size)
	keys := make([]crypto.Signer, size)
	for i := range nodes {
		cert, id := ca.nodeCert(t, true, true)
		keys[i] = cert.PrivateKey.(crypto.Signer)
		deliver := func(ctx context.Context, m *pb.Message) error {
			n := targets[i].Load()
			if n == nil {
				return consensus.ErrStopped // not started: the peer retries
			}
			return n.Step(ctx, m)
		}
		nodes[i] = &raftNode{tr: startNode(t, ca, nodeOpts{cert: &cert, id: id, deliver: deliver}), done: make(chan error, 1)}
		peers[i] = id
	}
	trs := make([]*node, size)
	for i, rn := range nodes {
		trs[i] = rn.tr
	}
	connect(trs...)

	root := t.TempDir()
	for i, rn := range nodes {
		dir := filepath.Join(root, fmt.Sprintf("node%d", i))
		led, err := ledger.Open(ledger.Options{Dir: filepath.Join(dir, "ledger")})
		if err != nil {
			t.Fatal(err)
		}
		kr, err := cococrypto.NewKeyring(secret)
		if err != nil {
			t.Fatal(err)
		}
		nodeID, err := cococrypto.KeyID(keys[i].Public())
		if err != nil {
			t.Fatal(err)
		}
		rn.store, rn.led = kv.NewStore(), led
		rn.node, err = consensus.New(consensus.Config{
			ID: rn.tr.id, NodeID: nodeID, StateDir: dir, LedgerDir: filepath.Join(dir, "ledger"),
			Ledger: led, Store: rn.store, Keyring: kr,
			NodeKey: keys[i], NodeCertPEM: cococrypto.EncodeCertPEM(rn.tr.cert.Leaf), ServiceKey: ca.key,
			Transport: rn.tr, Peers: peers,
			// A 500 ms election timeout (100 ms heartbeats) leaves room
			// for -race on a loaded machine; should leadership still move,
			// submit retries wherever it went.
			TickInterval: 50 * time.Millisecond, ElectionTicks: 10, HeartbeatTicks: 2,
			SigTxInterval: 5, SigInterval: 20 * time.Millisecond,
			Logger: testLogger(t).With("raft_node", rn.tr.id),
		})
		if err != nil {
			t.Fatal(err)
		}
		targets[i].Store(rn.node)
	}
	ctx, cancel := context.WithCancel(context.Background())
	for _, rn := range nodes {
		go func() { rn.done <- rn.node.Run(ctx) }()
	}
	t.Cleanup(func() {
		cancel()
		for _, rn := range nodes {
			if err := <-rn.done; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("node %d: %v", rn.tr.id, err)
			}
			rn.tr.stop(t) // before the ledger: Step must not reach a closed node
			if err := rn.led.Close(); err != nil {
				t.Errorf("close ledger: %v", err)
			}
		}
	})

	const writes = 10
	var last consensus.TxID
	for i := range writes {
		last = submit(t, nodes, "public:records", fmt.Sprint(i), fmt.Sprintf("value %d", i))
	}
	waitFor(t, fmt.Sprintf("every node committing %v", last), func() bool {
		for _, rn := range nodes {
			if rn.node.Status().CommitIndex < last.Seqno {
				return false
			}
		}
		return true
	})
	for _, rn := range nodes {
		tx := rn.store.BeginReadOnly()
		for i := range writes {
			v, ok := tx.Get("public:records", fmt.Sprint(i))
			if !ok || string(v) != fmt.Sprintf("value %d", i) {
				t.Fatalf("node %d: record %d = %q, %v", rn.tr.id, i, v, ok)
			}
		}
	}
	for _, rn := range nodes {
		for id, st := range rn.tr.Stats() {
			if st.Refused != 0 {
				t.Errorf("node %d refused messages from %d: %+v", rn.tr.id, id, st)
			}
		}
	}
}

// submit writes key=value through whichever node is primary, retrying while
// there is none, and returns the transaction id once committed.
func submit(t *testing.T, nodes []*raftNode, mapName, key, value string) consensus.TxID {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for time.Now().Before(deadline) {
		for _, rn := range nodes {
			if !rn.node.Status().WritesReady {
				continue
			}
			tx := rn.store.Begin()
			if err := tx.Put(mapName, key, []byte(value)); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			id, err := rn.node.Submit(ctx, tx, [32]byte{})
			cancel()
			switch {
			case err == nil:
				return id
			case errors.Is(err, consensus.ErrNotPrimary), errors.Is(err, consensus.ErrNotReady),
				errors.Is(err, consensus.ErrInvalidated), errors.Is(err, kv.ErrConflict):
				// Leadership moved under us; try again wherever it went.
			default:
				t.Fatalf("submit on %d: %v", rn.tr.id, err)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no primary accepted %s/%s within %v", mapName, key, waitTimeout)
	return consensus.TxID{}
}
