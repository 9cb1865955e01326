// Package consensustest runs several consensus.Nodes in one process over an
// in-memory network whose faults the test controls, with raft ticks driven
// by the test rather than by wall time.
package consensustest

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cocoledger/coco/consensus"
	cococrypto "github.com/cocoledger/coco/crypto"
	"github.com/cocoledger/coco/kv"
	"github.com/cocoledger/coco/ledger"
	"github.com/cocoledger/coco/merkle"
)

// Options configures a Cluster. Zero values pick test-friendly defaults.
type Options struct {
	Size          int   // nodes; default 3
	Seed          int64 // seeds the network's random loss; default 1
	ChunkSize     int64 // ledger chunk size; default 4096, so chunks rotate often
	ElectionTicks int   // default 10
	SigTxInterval uint64
	SigInterval   time.Duration
	// TickPace is the wall time between tick rounds while waiting. It only
	// spaces ticks out so messages get delivered between them; correctness
	// never depends on it. Default 1ms.
	TickPace time.Duration
	// Timeout bounds every wait; default 20s.
	Timeout time.Duration
	Logger  *slog.Logger
}

func (o *Options) setDefaults() {
	if o.Size <= 0 {
		o.Size = 3
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.ChunkSize <= 0 {
		o.ChunkSize = 4096
	}
	if o.ElectionTicks <= 0 {
		o.ElectionTicks = 10
	}
	if o.SigTxInterval == 0 {
		o.SigTxInterval = 5
	}
	if o.SigInterval <= 0 {
		o.SigInterval = 5 * time.Millisecond
	}
	if o.TickPace <= 0 {
		o.TickPace = time.Millisecond
	}
	if o.Timeout <= 0 {
		o.Timeout = 20 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Cluster is a multi-node service in temp dirs: the nodes share the service
// identity and ledger secret, as a real service's nodes do, and each has its
// own node key and certificate endorsed by the service key.
type Cluster struct {
	t       testing.TB
	opts    Options
	root    string
	Net     *Network
	Members []*Member // Members[i] has raft id i+1
	// founders are the voters the service was created with: the Peers
	// every founding member is started with.
	founders []uint64

	ServiceCert    *x509.Certificate
	ServiceCertPEM []byte
	serviceKey     crypto.Signer
	secret         cococrypto.LedgerSecret
}

// Member is one node of the cluster and the state it runs on. Ledger, Store
// and Node are replaced on each restart; read them only from the test
// goroutine between Stop and Start.
type Member struct {
	ID      uint64
	Dir     string
	NodeID  string
	CertPEM []byte
	key     crypto.Signer

	Ledger *ledger.Ledger
	Store  *kv.Store
	Node   *consensus.Node

	// joined: the member was added to a running service (AddMember), so it
	// starts with an empty configuration instead of the founders' Peers.
	joined bool
	ticks  chan time.Time
	cancel context.CancelFunc
	done   chan struct{} // closed when Run has returned
	runErr error

	mu          sync.Mutex
	committed   []consensus.CommittedTx
	confChanges []consensus.Membership
}

// Running reports whether the member's node is started.
func (m *Member) Running() bool { return m.Node != nil }

// Committed returns what OnCommit reported since the last start.
func (m *Member) Committed() []consensus.CommittedTx {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]consensus.CommittedTx(nil), m.committed...)
}

// ConfChanges returns the configurations OnConfChange reported since the
// last start, in order. OnConfChange does not name the configuration
// entry, so Index is zero.
func (m *Member) ConfChanges() []consensus.Membership {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]consensus.Membership(nil), m.confChanges...)
}

// New starts a cluster of opts.Size nodes, all voters from the start, and
// stops it when the test ends.
func New(t testing.TB, opts Options) *Cluster {
	t.Helper()
	opts.setDefaults()
	svcKey, err := cococrypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	svcCert, err := cococrypto.SelfSignedCert(svcKey, "coco service", time.Hour, true)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := cococrypto.NewLedgerSecret(1, 1)
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{
		t: t, opts: opts, Net: NewNetwork(opts.Seed),
		ServiceCert: svcCert, ServiceCertPEM: cococrypto.EncodeCertPEM(svcCert),
		serviceKey: svcKey, secret: secret,
	}
	c.root = t.TempDir()
	for range opts.Size {
		c.newMember()
	}
	c.founders = c.Peers()
	t.Cleanup(c.Close)
	for _, m := range c.Members {
		c.Start(m)
	}
	return c
}

// newMember appends a member with the next raft id, its own dir, and a node
// key and certificate endorsed by the service key.
func (c *Cluster) newMember() *Member {
	c.t.Helper()
	id := uint64(len(c.Members) + 1)
	key, err := cococrypto.GenerateKey()
	if err != nil {
		c.t.Fatal(err)
	}
	cert, err := cococrypto.IssueCert(key.Public(), cococrypto.CertOptions{
		CommonName: fmt.Sprintf("node%d", id), Hosts: []string{"127.0.0.1"},
		Validity: time.Hour, ServerAuth: true, ClientAuth: true,
	}, c.ServiceCert, c.serviceKey)
	if err != nil {
		c.t.Fatal(err)
	}
	nodeID, err := cococrypto.KeyID(key.Public())
	if err != nil {
		c.t.Fatal(err)
	}
	m := &Member{
		ID: id, Dir: filepath.Join(c.root, fmt.Sprintf("node%d", id)),
		NodeID: nodeID, CertPEM: cococrypto.EncodeCertPEM(cert), key: key,
	}
	c.Members = append(c.Members, m)
	return m
}

// AddMember creates a member with the next raft id and starts it as a node
// joining a running service starts: no persisted state, no Peers, no
// bootstrap, so its configuration is empty and it neither campaigns nor
// votes. It learns the configuration, like everything else, by replicating
// the log from index 1 once a primary adds it (ProposeConfChange); until
// then nobody sends it anything. Call it from the test goroutine only.
func (c *Cluster) AddMember() *Member {
	c.t.Helper()
	m := c.newMember()
	m.joined = true
	c.Start(m)
	return m
}

// Peers returns the raft ids of all members, added ones included.
func (c *Cluster) Peers() []uint64 {
	ids := make([]uint64, len(c.Members))
	for i, m := range c.Members {
		ids[i] = m.ID
	}
	return ids
}

// Start (re)starts m on its data dir and attaches it to the network.
func (c *Cluster) Start(m *Member) {
	c.t.Helper()
	if m.Running() {
		c.t.Fatalf("node %d is already running", m.ID)
	}
	led, err := ledger.Open(ledger.Options{Dir: filepath.Join(m.Dir, "ledger"), ChunkSize: c.opts.ChunkSize})
	if err != nil {
		c.t.Fatalf("node %d: open ledger: %v", m.ID, err)
	}
	kr, err := cococrypto.NewKeyring(c.secret)
	if err != nil {
		c.t.Fatal(err)
	}
	store := kv.NewStore()
	m.mu.Lock()
	m.committed, m.confChanges = nil, nil
	m.mu.Unlock()
	// Peers only matter without persisted raft state: the founders' first
	// start. A joining member starts empty.
	var peers []uint64
	if !m.joined {
		peers = c.founders
	}
	ticks := make(chan time.Time)
	n, err := consensus.New(consensus.Config{
		ID: m.ID, NodeID: m.NodeID, StateDir: m.Dir, LedgerDir: filepath.Join(m.Dir, "ledger"),
		Ledger: led, Store: store, Keyring: kr,
		NodeKey: m.key, NodeCertPEM: m.CertPEM, ServiceKey: c.serviceKey,
		Transport: c.Net.Transport(), Peers: peers,
		Ticks: ticks, ElectionTicks: c.opts.ElectionTicks, HeartbeatTicks: 1,
		SigTxInterval: c.opts.SigTxInterval, SigInterval: c.opts.SigInterval,
		OnCommit: func(tx consensus.CommittedTx) {
			m.mu.Lock()
			m.committed = append(m.committed, tx)
			m.mu.Unlock()
		},
		OnConfChange: func(voters, learners []uint64) {
			m.mu.Lock()
			m.confChanges = append(m.confChanges, consensus.Membership{Voters: voters, Learners: learners})
			m.mu.Unlock()
		},
		Logger: c.opts.Logger.With("node", m.ID),
	})
	if err != nil {
		_ = led.Close()
		c.t.Fatalf("node %d: %v", m.ID, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.Ledger, m.Store, m.Node = led, store, n
	m.ticks, m.cancel, m.done, m.runErr = ticks, cancel, make(chan struct{}), nil
	done := m.done
	go func() {
		m.runErr = n.Run(ctx)
		close(done)
	}()
	c.Net.Attach(m.ID, n)
}

// Stop stops m's node and closes its ledger, as a clean process exit would.
// A node that stopped on its own (a failed disk write) fails the test.
func (c *Cluster) Stop(m *Member) {
	c.t.Helper()
	if !m.Running() {
		return
	}
	c.Net.Detach(m.ID)
	m.cancel()
	<-m.done
	if err := m.runErr; err != nil && !errors.Is(err, context.Canceled) {
		c.t.Errorf("node %d: run: %v", m.ID, err)
	}
	if err := m.Ledger.Close(); err != nil {
		c.t.Errorf("node %d: close ledger: %v", m.ID, err)
	}
	m.Node = nil
}

// Restart stops m and starts it again on its dir.
func (c *Cluster) Restart(m *Member) {
	c.t.Helper()
	c.Stop(m)
	c.Start(m)
}

// Close stops every node and the network.
func (c *Cluster) Close() {
	for _, m := range c.Members {
		c.Stop(m)
	}
	c.Net.Close()
}

// Tick gives one raft tick to every running node. It waits for each node's
// loop to take its tick, so time advances no faster than the slowest node,
// and fails the test if a node's loop has ended on its own. Then it
// advances the network's clock, releasing the delayed messages now due: a
// message delayed by n ticks arrives after n tick rounds.
func (c *Cluster) Tick() {
	c.t.Helper()
	for _, m := range c.Members {
		if !m.Running() {
			continue
		}
		select {
		case m.ticks <- time.Time{}:
		case <-m.done:
			c.t.Fatalf("node %d stopped: %v", m.ID, m.runErr)
		}
	}
	c.Net.Advance()
}

// WaitFor ticks every node until cond holds, failing the test after the
// cluster's timeout. what names the condition in the failure.
func (c *Cluster) WaitFor(what string, cond func() bool) {
	c.t.Helper()
	if err := c.waitFor(cond); err != nil {
		c.t.Fatalf("waiting for %s: %v", what, err)
	}
}

func (c *Cluster) waitFor(cond func() bool) error {
	c.t.Helper()
	deadline := time.Now().Add(c.opts.Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v (%s)", c.opts.Timeout, c.describe())
		}
		c.Tick()
		time.Sleep(c.opts.TickPace)
	}
	return nil
}

func (c *Cluster) describe() string {
	s := ""
	for _, m := range c.Members {
		if !m.Running() {
			s += fmt.Sprintf("[%d down] ", m.ID)
			continue
		}
		st := m.Node.Status()
		s += fmt.Sprintf("[%d view=%d leader=%d primary=%v ready=%v commit=%d last=%d] ", m.ID, st.View, st.Leader, st.IsPrimary, st.WritesReady, st.CommitIndex, st.LastIndex)
	}
	return s + fmt.Sprintf("net=%+v", c.Net.Stats())
}

// Leader returns the running member that is primary and ready for writes,
// or nil. With several (an isolated old primary), the highest view wins.
func (c *Cluster) Leader() *Member {
	var best *Member
	var view uint64
	for _, m := range c.Members {
		if !m.Running() {
			continue
		}
		if st := m.Node.Status(); st.WritesReady && st.View > view {
			best, view = m, st.View
		}
	}
	return best
}

// WaitLeader ticks until some member among candidates (all members when
// none are given) is primary and ready for writes, and returns it; with
// several (an isolated old primary that has not noticed yet), the one with
// the highest view.
func (c *Cluster) WaitLeader(candidates ...*Member) *Member {
	c.t.Helper()
	if len(candidates) == 0 {
		candidates = c.Members
	}
	var leader *Member
	c.WaitFor("a ready primary", func() bool {
		var view uint64
		leader = nil
		for _, m := range candidates {
			if !m.Running() {
				continue
			}
			if st := m.Node.Status(); st.WritesReady && st.View > view {
				leader, view = m, st.View
			}
		}
		return leader != nil
	})
	return leader
}

// Submit runs fn in a read-write transaction on m's store and submits it,
// ticking every node until it returns or ctx ends.
func (c *Cluster) Submit(ctx context.Context, m *Member, fn func(*kv.Tx) error) (consensus.TxID, error) {
	c.t.Helper()
	tx := m.Store.Begin()
	if err := fn(tx); err != nil {
		return consensus.TxID{}, err
	}
	type result struct {
		id  consensus.TxID
		err error
	}
	done := make(chan result, 1)
	node := m.Node
	go func() {
		id, err := node.Submit(ctx, tx, [32]byte{})
		done <- result{id, err}
	}()
	for {
		select {
		case r := <-done:
			return r.id, r.err
		default:
		}
		c.Tick()
		time.Sleep(c.opts.TickPace)
	}
}

// Put writes key=value in mapName through m and waits for the commit.
func (c *Cluster) Put(m *Member, mapName, key, value string) (consensus.TxID, error) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.Timeout)
	defer cancel()
	return c.Submit(ctx, m, func(tx *kv.Tx) error { return tx.Put(mapName, key, []byte(value)) })
}

// MustPut is Put on the current leader, failing the test on error. A write
// the leader refused without ordering it (it just lost its role, or is not
// ready) is retried on the next leader; nothing else is.
func (c *Cluster) MustPut(mapName, key, value string) consensus.TxID {
	c.t.Helper()
	deadline := time.Now().Add(c.opts.Timeout)
	for {
		leader := c.WaitLeader()
		id, err := c.Put(leader, mapName, key, value)
		if err == nil {
			return id
		}
		retry := errors.Is(err, consensus.ErrNotPrimary) || errors.Is(err, consensus.ErrNotReady)
		if !retry || time.Now().After(deadline) {
			c.t.Fatalf("put %s/%s on node %d: %v (%s)", mapName, key, leader.ID, err, c.describe())
		}
	}
}

// WaitCommitted ticks until every running member has applied up to seqno.
func (c *Cluster) WaitCommitted(seqno uint64) {
	c.t.Helper()
	c.WaitFor(fmt.Sprintf("every node committing %d", seqno), func() bool {
		for _, m := range c.Members {
			if m.Running() && m.Node.Status().CommitIndex < seqno {
				return false
			}
		}
		return true
	})
}

// CheckLedgers checks that every running member's ledger holds the same
// entries up to the lowest commit index among them: same term, kind and
// Merkle leaf. Each node's Merkle tree is recomputed from its own leaves,
// and every signature entry must sign that tree's root at its size on every
// node: the same Merkle roots at the same seqnos. It returns the index
// checked up to and the number of signatures seen.
func (c *Cluster) CheckLedgers() (upTo uint64, sigs int) {
	c.t.Helper()
	var running []*Member
	upTo = ^uint64(0)
	for _, m := range c.Members {
		if m.Running() {
			running = append(running, m)
			upTo = min(upTo, m.Node.Status().CommitIndex)
		}
	}
	if len(running) < 2 {
		c.t.Fatal("CheckLedgers needs two running nodes")
	}
	trees := make([]*merkle.Tree, len(running))
	for i := range trees {
		trees[i] = merkle.New()
	}
	for seq := uint64(1); seq <= upTo; seq++ {
		ref, err := running[0].Ledger.Entry(seq)
		if err != nil {
			c.t.Fatalf("node %d: entry %d: %v", running[0].ID, seq, err)
		}
		if ref.Kind == ledger.KindSignature {
			sigs++
		}
		for i, m := range running {
			le, err := m.Ledger.Entry(seq)
			if err != nil {
				c.t.Fatalf("node %d: entry %d: %v", m.ID, seq, err)
			}
			if le.Term != ref.Term || le.Kind != ref.Kind || le.Leaf() != ref.Leaf() {
				c.t.Fatalf("entry %d differs: node %d has %s %s leaf %x, node %d has %s %s leaf %x",
					seq, running[0].ID, ref.TxID(), ref.Kind, ref.Leaf(), m.ID, le.TxID(), le.Kind, le.Leaf())
			}
			if le.Kind == ledger.KindSignature {
				sig, err := le.Signature()
				if err != nil {
					c.t.Fatalf("node %d: signature %d: %v", m.ID, seq, err)
				}
				root := trees[i].Root()
				if sig.TreeSize != trees[i].Size() || sig.Root != hex.EncodeToString(root[:]) {
					c.t.Fatalf("node %d: signature %d signs %s over %d leaves; its own tree has %x over %d",
						m.ID, seq, sig.Root, sig.TreeSize, root, trees[i].Size())
				}
			}
			trees[i].Append(le.Leaf())
		}
	}
	return upTo, sigs
}

// WaitMembership ticks until every running member among on (all members
// when none are given) has applied a configuration with exactly these voters
// and learners from the same configuration entry, and returns it. (Members
// may pass through the same voters at different seqnos: a service founded
// with several Peers has them all from its first entry on.)
func (c *Cluster) WaitMembership(voters, learners []uint64, on ...*Member) consensus.Membership {
	c.t.Helper()
	if len(on) == 0 {
		on = c.Members
	}
	voters, learners = sorted(voters), sorted(learners)
	var got consensus.Membership
	c.WaitFor(fmt.Sprintf("voters %v and learners %v", voters, learners), func() bool {
		got = consensus.Membership{}
		for _, m := range on {
			if !m.Running() {
				continue
			}
			ms := m.Node.Membership()
			if !slices.Equal(sorted(ms.Voters), voters) || !slices.Equal(sorted(ms.Learners), learners) {
				return false
			}
			if got.Index != 0 && ms.Index != got.Index {
				return false
			}
			got = ms
		}
		return true
	})
	return got
}

func sorted(ids []uint64) []uint64 {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}
