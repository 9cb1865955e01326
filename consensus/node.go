package consensus

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	cococrypto "github.com/cocoledger/coco/crypto"
	"github.com/cocoledger/coco/kv"
	"github.com/cocoledger/coco/ledger"
	"github.com/cocoledger/coco/merkle"
	"github.com/cocoledger/coco/receipt"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Errors returned by Submit and the read APIs.
var (
	// ErrNotPrimary: this node is not the primary, so it cannot order writes.
	ErrNotPrimary = errors.New("consensus: this node is not the primary")
	// ErrNotReady: the primary has not yet applied its log from earlier views.
	ErrNotReady = errors.New("consensus: primary is still catching up")
	// ErrInvalidated: the transaction was ordered but lost in a view change;
	// it will never commit.
	ErrInvalidated = errors.New("consensus: transaction was invalidated by a view change")
	// ErrStopped: the node is shutting down.
	ErrStopped = errors.New("consensus: node stopped")
	// ErrNotCommitted: the transaction is not (yet) committed.
	ErrNotCommitted = errors.New("consensus: transaction is not committed")
	// ErrNotSigned: committed, but no committed signature covers it yet.
	ErrNotSigned = errors.New("consensus: transaction is not yet covered by a signature")
	// ErrNoReceipt: the entry is raft's own and has no receipt.
	ErrNoReceipt = errors.New("consensus: entry has no receipt")
	// ErrBadMessage: Step was given a message no peer may send.
	ErrBadMessage = errors.New("consensus: unacceptable raft message")
)

// Transport carries raft messages to other nodes. Send must not block the
// loop for long: implementations queue and drop (raft retransmits).
type Transport interface {
	Send(msgs []*pb.Message)
}

// NoPeers is the transport of a single-node service.
type NoPeers struct{}

// Send drops msgs; a single-node service has nobody to talk to.
func (NoPeers) Send([]*pb.Message) {}

// CommittedTx describes a committed transaction for observers (indexes,
// metrics). The write set must not be modified.
type CommittedTx struct {
	TxID     TxID
	Kind     ledger.Kind
	WriteSet *kv.WriteSet
}

// Config configures a Node.
type Config struct {
	ID          uint64 // raft id, non-zero
	NodeID      string // hex node id, recorded in signatures
	StateDir    string // where raft_state.json lives
	LedgerDir   string // the ledger's directory (for the start-up replay)
	Ledger      *ledger.Ledger
	Store       *kv.Store
	Keyring     *cococrypto.Keyring
	NodeKey     crypto.Signer
	NodeCertPEM []byte
	ServiceKey  crypto.Signer
	Transport   Transport
	// Bootstrap makes this node the single voter of a new service when it
	// has no log and has never voted. The configuration becomes the first
	// entry of the log (raft's ConfChange), so nodes that join later learn it
	// by replication. A node with neither Bootstrap nor Peers starts with an
	// empty configuration and waits for a primary to replicate to it (a
	// joining node).
	Bootstrap bool
	// Peers, when set, are the raft ids of every voter of a new multi-node
	// service (this node's ID among them). Each node of such a service is
	// started with the same Peers and no log, so they all begin with the
	// same configuration entries at seqnos 1..len(Peers). Ignored once the
	// node has a log or a vote; takes precedence over Bootstrap.
	Peers []uint64

	TickInterval time.Duration // default 50ms
	// Ticks, if set, replaces the TickInterval ticker: every value received
	// is one raft tick. Tests use it so elections follow the test's clock.
	Ticks          <-chan time.Time
	ElectionTicks  int           // default 10
	HeartbeatTicks int           // default 1
	SigTxInterval  uint64        // signature every this many transactions; default 5000
	SigInterval    time.Duration // or this often when anything is unsigned; default 100ms

	// OnCommit, if set, is called on the loop goroutine for every committed
	// transaction and signature, in seqno order. It must be fast. It may
	// use the write set it is given but must not read the Store: during the
	// start-up replay (in New) the store is loaded in place and shows the
	// replayed entries only once replay ends.
	OnCommit func(CommittedTx)
	// OnConfChange, if set, is called on the loop goroutine with the new
	// configuration whenever a configuration entry is applied. It must be
	// fast and must not call back into the node.
	OnConfChange func(voters, learners []uint64)
	Logger       *slog.Logger
}

func (c *Config) setDefaults() {
	if c.TickInterval <= 0 {
		c.TickInterval = 50 * time.Millisecond
	}
	if c.ElectionTicks <= 0 {
		c.ElectionTicks = 10
	}
	if c.HeartbeatTicks <= 0 {
		c.HeartbeatTicks = 1
	}
	if c.SigTxInterval == 0 {
		c.SigTxInterval = 5000
	}
	if c.SigInterval <= 0 {
		c.SigInterval = 100 * time.Millisecond
	}
	if c.Transport == nil {
		c.Transport = NoPeers{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Status is a consistent snapshot of the node's consensus state.
type Status struct {
	ID              uint64
	View            uint64 // current raft term
	Leader          uint64 // raft id of the primary, 0 if unknown
	IsPrimary       bool
	WritesReady     bool // primary and caught up: Submit can succeed
	CommitIndex     uint64
	CommitView      uint64 // view of the entry at CommitIndex
	LastIndex       uint64
	Signatures      uint64 // signature transactions in the ledger
	LastSignedSeqno uint64 // seqno of the last committed signature
}

type proposal struct {
	tx      *kv.Tx
	claims  [32]byte
	done    chan result
	ordered func(TxID) // optional; see SubmitOrdered
}

type result struct {
	id  TxID
	err error
}

// ownEntry is an entry this primary proposed and applied to its kv head but
// that has not committed yet.
type ownEntry struct {
	le *ledger.Entry
	ws *kv.WriteSet
}

type waiter struct {
	term uint64
	done chan result
}

// Node drives raft for one coco node.
type Node struct {
	cfg   Config
	log   *slog.Logger
	rn    *raft.RawNode
	st    *storage
	state *stateStore

	// Merkle tree over every entry in the log; written by the loop, read by
	// receipt requests. Only the uncommitted suffix is ever truncated.
	treeMu sync.RWMutex
	tree   *merkle.Tree

	sigMu sync.RWMutex
	sigs  []uint64 // seqnos of signature entries in the log, ascending

	// Loop-owned state.
	term       uint64
	isLeader   bool
	readyIndex uint64 // first index of our term; writes wait until it is applied
	lastIndex  uint64 // last index in the log including unpersisted proposals
	applied    uint64
	commitView uint64
	own        map[uint64]ownEntry
	// waiters are the Submit calls waiting for their seqno to commit. A
	// seqno can have several: this node may order an entry at a seqno in
	// one view, lose it from its log, and order another there in a later
	// view while the first could still commit through another primary's log.
	// Whichever term commits at the seqno decides all of them.
	waiters    map[uint64][]waiter
	txSinceSig uint64
	lastSig    time.Time
	emptyWS    *kv.WriteSet

	campaign    bool             // campaign at once: a new service with one voter
	replayConf  *persistentState // configuration rebuilt by replay, if it changed
	pendingConf uint64           // index of the last configuration change proposed
	reads       readBarriers

	fatal error // set when the loop must stop; Run returns it
	// persistedLast is the last index the appender made durable. Status
	// reads it instead of the ledger, whose lock an fsync may hold.
	persistedLast atomic.Uint64
	status        atomic.Pointer[Status]
	submitCh      chan *proposal
	batch         []*proposal // reused by Run for each batch of proposals
	recvCh        chan *pb.Message
	ctrlCh        chan func()
	readCh        chan chan error
	local         *localQueue
	appenderDone  chan struct{}
	stop          chan struct{}
	stopped       chan struct{}
	stopOnce      sync.Once
}

const stateFile = "raft_state.json"

// New opens the node's raft state, replays the ledger into the kv store and
// the Merkle tree, and returns a node ready to Run.
func New(cfg Config) (*Node, error) {
	cfg.setDefaults()
	if cfg.ID == 0 {
		return nil, errors.New("consensus: raft id must be non-zero")
	}
	n := &Node{
		cfg:      cfg,
		log:      cfg.Logger,
		tree:     merkle.New(),
		own:      make(map[uint64]ownEntry),
		waiters:  make(map[uint64][]waiter),
		emptyWS:  &kv.WriteSet{},
		submitCh: make(chan *proposal, 4096),
		recvCh:   make(chan *pb.Message, 4096),
		ctrlCh:   make(chan func()),
		readCh:   make(chan chan error, 4096),
		stop:     make(chan struct{}),
		stopped:  make(chan struct{}),
		local:    newLocalQueue(),
	}
	statePath := filepath.Join(cfg.StateDir, stateFile)
	// A new service's first configuration is the first entries of its log
	// (one AddNode per voter), so a node that joins later learns it by
	// replicating the log like everything else.
	var bootstrap []uint64
	st, err := readState(statePath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if cfg.Ledger.LastIndex() > 0 {
			return nil, fmt.Errorf("consensus: %s is missing but the ledger has %d entries; refusing to guess the raft state", statePath, cfg.Ledger.LastIndex())
		}
		st = &persistentState{}
		if err := writeState(statePath, st); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, err
	}
	// A node that has never held any log or vote may (still) bootstrap: the
	// state file written above does not count, since a crash can come before
	// the bootstrap entries are durable.
	if cfg.Ledger.LastIndex() == 0 && st.Term == 0 && st.Vote == 0 && len(st.Voters) == 0 && len(st.Learners) == 0 {
		switch {
		case len(cfg.Peers) > 0:
			if !slices.Contains(cfg.Peers, cfg.ID) {
				return nil, fmt.Errorf("consensus: peers %v do not include this node's raft id %d", cfg.Peers, cfg.ID)
			}
			bootstrap = slices.Clone(cfg.Peers)
			slices.Sort(bootstrap)
			bootstrap = slices.Compact(bootstrap)
		case cfg.Bootstrap:
			bootstrap = []uint64{cfg.ID}
		}
	}
	// Bootstrap entries made durable before the state that records them (a
	// crash in between, or a joining node that received them): raft's
	// Bootstrap commits them by construction, at term 1.
	if st.Term == 0 && st.Commit == 0 && len(st.Voters) == 0 && len(st.Learners) == 0 && cfg.Ledger.LastIndex() > 0 {
		k, err := bootstrapPrefix(cfg.Ledger)
		if err != nil {
			return nil, err
		}
		if k > 0 {
			st.Term, st.Commit = 1, k
			if err := writeState(statePath, st); err != nil {
				return nil, err
			}
		}
	}
	n.state = &stateStore{path: statePath, st: *st, savedCommit: st.Commit}

	// Everything known committed is replayed into the kv store; raft hands us
	// the rest as it commits.
	last := cfg.Ledger.LastIndex()
	if st.Commit > last {
		return nil, fmt.Errorf("consensus: %s records entries up to %d as committed but the ledger in %s ends at %d: committed entries are missing", statePath, st.Commit, cfg.LedgerDir, last)
	}
	commitFloor := min(max(st.Commit, cfg.Ledger.CommittedIndex()), last)
	if err := n.replay(commitFloor); err != nil {
		return nil, err
	}
	if conf := n.replayConf; conf != nil {
		if err := n.state.setConf(conf.Voters, conf.Learners, conf.ConfIndex); err != nil {
			return nil, err
		}
		*st = n.state.get()
	}
	hs := st.hardState()
	hs.Commit = new(max(st.Commit, commitFloor))
	n.st = newStorage(cfg.Ledger, hs, st.confState())
	n.term = st.Term
	n.applied = commitFloor
	n.lastIndex = last
	n.persistedLast.Store(last)
	if commitFloor > 0 {
		t, err := cfg.Ledger.Term(commitFloor)
		if err != nil {
			return nil, fmt.Errorf("consensus: term of committed entry %d: %w", commitFloor, err)
		}
		n.commitView = t
	}

	rn, err := raft.NewRawNode(&raft.Config{
		ID:                        cfg.ID,
		ElectionTick:              cfg.ElectionTicks,
		HeartbeatTick:             cfg.HeartbeatTicks,
		Storage:                   n.st,
		Applied:                   commitFloor,
		MaxSizePerMsg:             1 << 20,
		MaxInflightMsgs:           256,
		MaxUncommittedEntriesSize: 1 << 30,
		CheckQuorum:               true,
		// The appender persists while the loop keeps ordering proposals.
		AsyncStorageWrites:        true,
		PreVote:                   true,
		DisableProposalForwarding: true, // backups forward at the HTTP layer, with the caller's identity
		// A removed primary stops ordering at once instead of leading a
		// configuration it is no longer part of.
		StepDownOnRemoval: true,
		Logger:            raftLogger{cfg.Logger.With("component", "raft")},
	})
	if err != nil {
		return nil, fmt.Errorf("consensus: start raft: %w", err)
	}
	n.rn = rn
	if len(bootstrap) > 0 {
		peers := make([]raft.Peer, len(bootstrap))
		for i, id := range bootstrap {
			peers[i] = raft.Peer{ID: id}
		}
		if err := rn.Bootstrap(peers); err != nil {
			return nil, fmt.Errorf("consensus: bootstrap: %w", err)
		}
		// A lone voter need not wait an election timeout to lead.
		n.campaign = len(bootstrap) == 1
	}
	n.publishStatus()
	return n, nil
}

// bootstrapPrefix counts the configuration entries of view 1 that open the
// ledger: the ones raft's Bootstrap writes (no primary ever orders entries
// in view 1).
func bootstrapPrefix(led *ledger.Ledger) (uint64, error) {
	var k uint64
	for i := uint64(1); i <= led.LastIndex(); i++ {
		le, err := led.Entry(i)
		if err != nil {
			return 0, fmt.Errorf("consensus: read ledger entry %d: %w", i, err)
		}
		if le.Term != 1 || le.Kind != ledger.KindInternal || pb.EntryType(le.RaftType) != pb.EntryConfChange {
			break
		}
		k = i
	}
	return k, nil
}

// replay rebuilds the Merkle tree from every ledger entry and the kv store
// from the committed ones.
func (n *Node) replay(commitFloor uint64) error {
	if n.cfg.Ledger.LastIndex() == 0 {
		return nil
	}
	// Nothing reads the store before replay ends, so the committed entries
	// go in through a Loader, in place, and are published once at the end.
	load, err := n.cfg.Store.NewLoader()
	if err != nil {
		return fmt.Errorf("consensus: replay: %w", err)
	}
	err = ledger.ReadDir(context.Background(), n.cfg.LedgerDir, func(le *ledger.Entry, file string, offset int64) error {
		if le.Index > n.cfg.Ledger.LastIndex() {
			return nil // beyond a torn tail that Open already cut; ReadDir only reads
		}
		n.tree.Append(le.Leaf())
		if le.Kind == ledger.KindSignature {
			n.sigs = append(n.sigs, le.Index)
		}
		if le.Index > commitFloor {
			return nil
		}
		if err := n.replayConfEntry(le); err != nil {
			return fmt.Errorf("consensus: replay %s offset %d: %w", file, offset, err)
		}
		ws, err := n.entryWriteSet(le)
		if err != nil {
			return fmt.Errorf("consensus: replay %s offset %d: %w", file, offset, err)
		}
		if err := load.Apply(le.Index, ws); err != nil {
			return fmt.Errorf("consensus: replay %s offset %d: %w", file, offset, err)
		}
		n.notifyCommit(le, ws)
		return nil
	})
	if err != nil {
		return err
	}
	if err := load.Flush(); err != nil {
		return fmt.Errorf("consensus: replay: %w", err)
	}
	return nil
}

// Run drives the node until ctx is cancelled or Stop is called.
func (n *Node) Run(ctx context.Context) error {
	defer close(n.stopped)
	ticks := n.cfg.Ticks
	if ticks == nil {
		ticker := time.NewTicker(n.cfg.TickInterval)
		defer ticker.Stop()
		ticks = ticker.C
	}

	jobs := make(chan *appendJob, 1024)
	failed := make(chan error, 1)
	n.appenderDone = make(chan struct{})
	go n.appender(jobs, n.local, failed)
	defer func() {
		close(jobs)
		<-n.appenderDone
		if err := n.state.saveCommit(true); err != nil {
			n.log.Warn("save raft state", "err", err)
		}
	}()

	// A lone voter need not wait an election timeout to lead. A new
	// service's voter campaigns once its bootstrap configuration entry is
	// applied (raft refuses to campaign while a configuration change is
	// pending), a restarted one at once.
	if cs := n.state.get(); !n.campaign && len(cs.Voters) == 1 && cs.Voters[0] == n.cfg.ID {
		if err := n.rn.Campaign(); err != nil {
			return fmt.Errorf("consensus: campaign: %w", err)
		}
	}
	n.lastSig = time.Now()
	defer n.failWaiters(ErrStopped)
	defer n.failReads(ErrStopped)
	for {
		if err := n.processReady(jobs); err != nil {
			n.log.Error("consensus loop stopped", "err", err)
			return err
		}
		if n.campaign && n.applied >= 1 {
			n.campaign = false
			if err := n.rn.Campaign(); err != nil {
				return fmt.Errorf("consensus: campaign: %w", err)
			}
			continue
		}
		n.maybeSign()
		if err := n.processReady(jobs); err != nil {
			n.log.Error("consensus loop stopped", "err", err)
			return err
		}
		if n.fatal != nil {
			n.log.Error("consensus loop stopped", "err", n.fatal)
			return n.fatal
		}
		if err := n.state.saveCommit(false); err != nil {
			n.log.Warn("save raft state", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-n.stop:
			return nil
		case err := <-failed:
			return err
		case <-n.local.notify:
			for _, m := range n.local.take() {
				n.step(m)
			}
		case <-ticks:
			n.rn.Tick()
			n.expireReads()
		case f := <-n.ctrlCh:
			f()
		case r := <-n.readCh:
			reqs := []chan error{r}
			for len(reqs) < 4096 {
				select {
				case r := <-n.readCh:
					reqs = append(reqs, r)
					continue
				default:
				}
				break
			}
			n.issueReads(reqs)
		case m := <-n.recvCh:
			n.step(m)
			for i := 0; i < 256; i++ {
				select {
				case m := <-n.recvCh:
					n.step(m)
					continue
				default:
				}
				break
			}
		case p := <-n.submitCh:
			// Group commit: take everything already queued and hand it to
			// raft as one proposal, so one message per backup and one
			// fsync carry the whole batch.
			batch := append(n.batch[:0], p)
			for len(batch) < maxBatch {
				select {
				case p := <-n.submitCh:
					batch = append(batch, p)
					continue
				default:
				}
				break
			}
			n.proposeBatch(batch)
			clear(batch)
			n.batch = batch[:0]
		}
	}
}

// Stop ends Run and waits for it to return.
func (n *Node) Stop() {
	n.stopOnce.Do(func() { close(n.stop) })
	<-n.stopped
}

func (n *Node) step(m *pb.Message) {
	if err := n.rn.Step(m); err != nil {
		n.log.Debug("raft step", "type", m.GetType().String(), "from", m.GetFrom(), "err", err)
	}
}

// Step delivers a raft message received from a peer. Messages no peer may
// send are refused with ErrBadMessage.
func (n *Node) Step(ctx context.Context, m *pb.Message) error {
	if err := n.checkPeerMessage(m); err != nil {
		return err
	}
	select {
	case n.recvCh <- m:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-n.stopped:
		return ErrStopped
	}
}

// checkPeerMessage refuses what would break the loop's invariants if a peer
// (buggy, or a transport bug) sent it:
//   - raft's local messages, or anything claiming to come from the local
//     append/apply threads: a forged MsgStorageAppendResp would make raft
//     count entries durable that are not, breaking the durability rule;
//   - proposals: backups forward writes at the HTTP layer and never through
//     raft (DisableProposalForwarding), and an entry raft appends on a
//     peer's behalf would shift seqnos away from the ones this primary
//     assigned (seqno == raft index), stopping the loop;
//   - messages addressed to another node or from no node or from itself.
func (n *Node) checkPeerMessage(m *pb.Message) error {
	switch {
	case m == nil:
		return fmt.Errorf("%w: nil", ErrBadMessage)
	case raft.IsLocalMsg(m.GetType()) || raft.IsLocalMsgTarget(m.GetFrom()):
		return fmt.Errorf("%w: local message %s from %x", ErrBadMessage, m.GetType(), m.GetFrom())
	case m.GetType() == pb.MsgSnap:
		// Snapshots are not supported yet; accepting one would stop the
		// appender (it fails on any snapshot).
		return fmt.Errorf("%w: snapshot from %d (snapshots are not supported)", ErrBadMessage, m.GetFrom())
	case m.GetType() == pb.MsgProp:
		return fmt.Errorf("%w: proposal from %d", ErrBadMessage, m.GetFrom())
	case m.GetTo() != n.cfg.ID:
		return fmt.Errorf("%w: %s for %d delivered to %d", ErrBadMessage, m.GetType(), m.GetTo(), n.cfg.ID)
	case m.GetFrom() == 0 || m.GetFrom() == n.cfg.ID:
		return fmt.Errorf("%w: %s from %d", ErrBadMessage, m.GetType(), m.GetFrom())
	}
	return nil
}

// Submit orders tx's writes and waits until they are committed. It returns
// kv.ErrConflict when tx's reads are stale (re-execute and submit again),
// ErrNotPrimary / ErrNotReady when this node cannot order writes now, and
// ErrInvalidated, with the transaction's id, when a view change dropped it
// (its seqno committed with another view's entry).
func (n *Node) Submit(ctx context.Context, tx *kv.Tx, claims [32]byte) (TxID, error) {
	return n.SubmitOrdered(ctx, tx, claims, nil)
}

// SubmitOrdered is Submit for a caller that builds transactions back to
// back: ordered, if not nil, is called with the transaction's id once its
// writes are applied to the kv head (so the next Store.Begin sees them),
// before they commit. It runs on the consensus loop and must return at
// once. It is not called when the transaction is refused before that.
func (n *Node) SubmitOrdered(ctx context.Context, tx *kv.Tx, claims [32]byte, ordered func(TxID)) (TxID, error) {
	p := &proposal{tx: tx, claims: claims, done: make(chan result, 1), ordered: ordered}
	select {
	case n.submitCh <- p:
	case <-ctx.Done():
		return TxID{}, ctx.Err()
	case <-n.stopped:
		return TxID{}, ErrStopped
	}
	select {
	case r := <-p.done:
		return r.id, r.err
	case <-ctx.Done():
		return TxID{}, ctx.Err()
	case <-n.stopped:
		return TxID{}, ErrStopped
	}
}

// cannotOrder says why this node cannot order entries now, or nil.
func (n *Node) cannotOrder() error {
	switch {
	case n.fatal != nil:
		return n.fatal
	case !n.isLeader:
		return ErrNotPrimary
	case n.applied < n.readyIndex:
		return ErrNotReady
	}
	return nil
}

// maxBatch bounds the transactions proposed to raft at once.
const maxBatch = 2048

// proposeBatch validates and orders a batch of transactions. Each is
// validated against the kv head with the ones before it applied (so a
// transaction that read what an earlier one writes conflicts), then the
// batch goes to raft as one proposal.
func (n *Node) proposeBatch(ps []*proposal) {
	fail := func(p *proposal, err error) { p.done <- result{err: err} }
	if err := n.cannotOrder(); err != nil {
		for _, p := range ps {
			fail(p, err)
		}
		return
	}
	baseIndex, baseVersion := n.lastIndex, n.cfg.Store.Version()
	ents := make([]*pb.Entry, 0, len(ps))
	accepted := ps[:0:0]
	for _, p := range ps {
		if err := n.cfg.Store.Validate(p.tx); err != nil {
			fail(p, err)
			continue
		}
		seq := n.lastIndex + 1
		ws := p.tx.WriteSet()
		le := &ledger.Entry{Kind: ledger.KindTx, Term: n.term, Index: seq, ClaimsDigest: p.claims}
		if err := n.fillEntry(le, ws); err != nil {
			fail(p, err)
			continue
		}
		if err := n.proposeEntryApplied(le, ws); err != nil {
			fail(p, err)
			for _, q := range accepted {
				fail(q, err)
			}
			return // fatal: Run stops
		}
		ents = append(ents, &pb.Entry{Data: le.Marshal()})
		accepted = append(accepted, p)
	}
	if len(ents) == 0 {
		return
	}
	if err := n.rn.Step(&pb.Message{Type: pb.MsgProp.Enum(), Entries: ents}); err != nil {
		// Raft took none of them (it drops proposals while transferring
		// leadership): forget them, as a step-down would.
		if rerr := n.cfg.Store.Rollback(baseVersion); rerr != nil {
			n.fatal = fmt.Errorf("consensus: roll back a dropped proposal: %w", rerr)
		}
		for i := baseIndex + 1; i <= n.lastIndex; i++ {
			delete(n.own, i)
		}
		n.lastIndex = baseIndex
		for _, p := range accepted {
			fail(p, fmt.Errorf("%w: %v", ErrNotPrimary, err))
		}
		return
	}
	for i, p := range accepted {
		seq := baseIndex + 1 + uint64(i)
		n.waiters[seq] = append(n.waiters[seq], waiter{term: n.term, done: p.done})
		if p.ordered != nil {
			p.ordered(TxID{View: n.term, Seqno: seq})
		}
	}
	n.txSinceSig += uint64(len(accepted))
}

// fillEntry sets an entry's commit evidence digest and serialised write set.
func (n *Node) fillEntry(le *ledger.Entry, ws *kv.WriteSet) error {
	ce, err := n.cfg.Keyring.CommitEvidence(le.Term, le.Index)
	if err != nil {
		return err
	}
	le.CommitEvidenceDigest = sha256.Sum256([]byte(ce))
	pub, priv := ws.Split()
	le.Public = pub.Marshal()
	if !priv.Empty() {
		sealed, err := n.cfg.Keyring.Seal(le.Index, priv.Marshal(), sealAAD(le.Term, le.Index))
		if err != nil {
			return fmt.Errorf("consensus: seal private write set: %w", err)
		}
		le.Private = sealed
	}
	return nil
}

// proposeEntry hands a primary's entry to raft and applies it to the kv head.
func (n *Node) proposeEntry(le *ledger.Entry, ws *kv.WriteSet) error {
	if err := n.rn.Propose(le.Marshal()); err != nil {
		return fmt.Errorf("%w: %v", ErrNotPrimary, err)
	}
	return n.proposeEntryApplied(le, ws)
}

// proposeEntryApplied applies an entry raft just took from this primary to
// the kv head and remembers it until it commits.
func (n *Node) proposeEntryApplied(le *ledger.Entry, ws *kv.WriteSet) error {
	n.lastIndex = le.Index
	if err := n.cfg.Store.Apply(le.Index, ws); err != nil {
		// The entry is in raft's log but the kv head cannot take it: an
		// invariant is broken. Stepping down would leave raft leading a
		// primary that orders nothing; stop instead (Run returns the error)
		// and let the restart rebuild the state from the ledger.
		n.fatal = fmt.Errorf("consensus: apply own proposal %d: %w", le.Index, err)
		return n.fatal
	}
	n.own[le.Index] = ownEntry{le: le, ws: ws}
	return nil
}

// sealAAD binds a sealed private write set to its transaction id, so
// ciphertexts cannot be moved between entries.
func sealAAD(term, index uint64) []byte {
	return fmt.Appendf(nil, "coco/ledger/v1:%d.%d", term, index)
}

// maybeSign emits a signature transaction when enough is unsigned. It runs
// right after processReady, so every proposed entry is persisted and in the
// tree: the signature covers exactly the entries before it.
func (n *Node) maybeSign() {
	if n.fatal != nil || !n.isLeader || n.applied < n.readyIndex || n.txSinceSig == 0 {
		return
	}
	if n.txSinceSig < n.cfg.SigTxInterval && time.Since(n.lastSig) < n.cfg.SigInterval {
		return
	}
	n.treeMu.RLock()
	size := n.tree.Size()
	root := n.tree.Root()
	n.treeMu.RUnlock()
	seq := n.lastIndex + 1
	if size != n.lastIndex {
		n.log.Error("merkle tree out of step with the log; not signing", "tree", size, "log", n.lastIndex)
		return
	}
	sig, err := n.cfg.NodeKey.Sign(rand.Reader, root[:], crypto.SHA256)
	if err != nil {
		n.log.Error("sign root", "err", err)
		return
	}
	id := TxID{View: n.term, Seqno: seq}
	now := time.Now()
	cose, err := receipt.SignRoot(n.cfg.ServiceKey, root, receipt.SignOptions{TxID: id.String(), IssuedAt: now, Issuer: "coco", Subject: "ledger.signature"})
	if err != nil {
		n.log.Error("cose sign root", "err", err)
		return
	}
	le, err := ledger.NewSignatureEntry(n.term, seq, &ledger.Signature{
		View: n.term, Seqno: seq, TreeSize: size, Root: hex.EncodeToString(root[:]),
		NodeID: n.cfg.NodeID, Cert: string(n.cfg.NodeCertPEM), Sig: sig, COSE: cose,
	})
	if err != nil {
		n.log.Error("signature entry", "err", err)
		return
	}
	ce, err := n.cfg.Keyring.CommitEvidence(le.Term, le.Index)
	if err != nil {
		n.log.Error("commit evidence", "err", err)
		return
	}
	le.CommitEvidenceDigest = sha256.Sum256([]byte(ce))
	if err := n.proposeEntry(le, n.emptyWS); err != nil {
		n.log.Warn("propose signature", "err", err)
		return
	}
	n.txSinceSig = 0
	n.lastSig = now
}

// processReady hands raft's output to its destinations: log appends to the
// appender, committed entries to apply (done here, in order), and messages
// to peers. With asynchronous storage writes raft attaches to each local
// storage message the responses to release once it is done.
func (n *Node) processReady(jobs chan<- *appendJob) error {
	for n.rn.HasReady() {
		rd := n.rn.Ready()
		// Leaving the primary role is handled before anything else in this
		// Ready, so that committed entries of another primary's log are
		// applied to a head already rolled back to the committed state.
		// Becoming primary is handled after the entries: readyIndex is the
		// empty entry raft appended for the new view in this Ready.
		isLeader := n.isLeader
		if rd.SoftState != nil {
			isLeader = rd.SoftState.RaftState == raft.StateLeader
		}
		term := n.term
		if rd.HardState != nil {
			term = rd.HardState.GetTerm()
		}
		if n.isLeader && (!isLeader || term != n.term) {
			// A new view, even if raft made us primary again within one
			// batch of messages (no SoftState change shows it): our
			// pending entries belong to the old view and the new view's
			// entries must carry the new term.
			n.log.Info("stepped down", "view", n.term, "new_view", term)
			n.stepDown()
		}
		n.term = term
		var peers []*pb.Message
		for _, m := range rd.Messages {
			switch m.GetTo() {
			case raft.LocalAppendThread:
				ents, err := n.prepareAppend(m.GetEntries())
				if err != nil {
					return err
				}
				jobs <- &appendJob{msg: m, ents: ents}
			case raft.LocalApplyThread:
				if err := n.applyCommitted(m.GetEntries()); err != nil {
					return err
				}
				for _, r := range m.GetResponses() {
					n.step(r)
				}
			default:
				peers = append(peers, m)
			}
		}
		if isLeader && !n.isLeader {
			n.becomePrimary()
		}
		if len(rd.ReadStates) > 0 {
			states := make([]raftReadState, len(rd.ReadStates))
			for i, rs := range rd.ReadStates {
				states[i] = raftReadState{index: rs.Index, ctx: rs.RequestCtx}
			}
			n.readStates(states)
		}
		if len(peers) > 0 {
			n.cfg.Transport.Send(peers)
		}
		n.publishStatus()
	}
	return nil
}

// prepareAppend converts entries raft is about to persist into ledger
// entries and brings the Merkle tree (and the list of signatures) in step
// with the log, truncating a conflicting suffix. It runs before the entries
// are durable: the tree mirrors raft's log, and receipts only ever use the
// committed prefix.
func (n *Node) prepareAppend(ents []*pb.Entry) ([]*ledger.Entry, error) {
	if len(ents) == 0 {
		return nil, nil
	}
	les := make([]*ledger.Entry, len(ents))
	for i, e := range ents {
		if o, ok := n.own[e.GetIndex()]; ok && o.le.Term == e.GetTerm() {
			les[i] = o.le
			continue
		}
		le, err := ledgerEntry(e)
		if err != nil {
			return nil, err
		}
		les[i] = le
	}
	first := les[0].Index
	n.treeMu.Lock()
	if first <= n.tree.Size() {
		if err := n.tree.Truncate(first - 1); err != nil {
			n.treeMu.Unlock()
			return nil, fmt.Errorf("consensus: truncate merkle tree: %w", err)
		}
	}
	for _, le := range les {
		n.tree.Append(le.Leaf())
	}
	n.treeMu.Unlock()

	n.sigMu.Lock()
	k := sort.Search(len(n.sigs), func(i int) bool { return n.sigs[i] >= first })
	n.sigs = n.sigs[:k]
	for _, le := range les {
		if le.Kind == ledger.KindSignature {
			n.sigs = append(n.sigs, le.Index)
		}
	}
	n.sigMu.Unlock()
	n.lastIndex = les[len(les)-1].Index
	return les, nil
}

// becomePrimary starts ordering writes in view n.term. Raft appended an
// empty entry for the new view in the Ready that made us primary
// (prepareAppend has seen it); we may order writes once it is applied.
func (n *Node) becomePrimary() {
	n.isLeader = true
	n.readyIndex = n.lastIndex
	n.txSinceSig = 1 // sign the new view promptly
	n.log.Info("became primary", "view", n.term, "ready_at", n.readyIndex)
}

// stepDown forgets this node's uncommitted proposals: the kv head goes back
// to the committed state, and whatever of them does commit is re-applied
// from the log like any other committed entry.
func (n *Node) stepDown() {
	n.isLeader = false
	// A configuration entry this node proposed may be truncated by the next
	// primary; raft's own pending-change guard starts afresh in each view.
	n.pendingConf = 0
	if err := n.cfg.Store.Rollback(n.cfg.Store.CommittedVersion()); err != nil {
		n.log.Error("rollback kv", "err", err)
	}
	clear(n.own)
}

func (n *Node) applyCommitted(ents []*pb.Entry) error {
	var last uint64
	for _, e := range ents {
		idx := e.GetIndex()
		if idx <= n.applied {
			continue
		}
		var le *ledger.Entry
		var ws *kv.WriteSet
		if o, ok := n.own[idx]; ok && o.le.Term == e.GetTerm() {
			le, ws = o.le, o.ws
			delete(n.own, idx)
		} else {
			var err error
			if le, err = ledgerEntry(e); err != nil {
				return err
			}
			if ws, err = n.applyEntry(le); err != nil {
				return fmt.Errorf("consensus: apply committed entry %s: %w", le.TxID(), err)
			}
		}
		// Raft started from the saved configuration, which may be newer
		// than the saved commit index (saved lazily): entries it reflects
		// commit again after a restart and must not be applied twice.
		if t := e.GetType(); (t == pb.EntryConfChange || t == pb.EntryConfChangeV2) && idx > n.state.get().ConfIndex {
			if err := n.applyConfChange(e); err != nil {
				return err
			}
		}
		n.applied = idx
		n.commitView = e.GetTerm()
		last = idx
		n.notifyCommit(le, ws)
	}
	if last == 0 {
		return nil
	}
	if err := n.cfg.Store.MarkCommitted(last); err != nil {
		return fmt.Errorf("consensus: mark committed %d: %w", last, err)
	}
	if err := n.cfg.Ledger.Commit(last); err != nil {
		return fmt.Errorf("consensus: ledger commit %d: %w", last, err)
	}
	// Answer the waiting clients only now, so that what they do next (read
	// their write, ask for its status) sees it committed.
	n.publishStatus()
	n.releaseReads()
	for _, e := range ents {
		idx := e.GetIndex()
		for _, w := range n.waiters[idx] {
			// The id goes back with ErrInvalidated too, so the caller can
			// name the transaction that will never commit.
			id := TxID{View: w.term, Seqno: idx}
			if w.term == e.GetTerm() {
				w.done <- result{id: id}
			} else {
				w.done <- result{id: id, err: ErrInvalidated}
			}
		}
		delete(n.waiters, idx)
	}
	return nil
}

// applyEntry applies a committed entry that this node did not execute to the
// kv store, keeping store versions equal to seqnos.
func (n *Node) applyEntry(le *ledger.Entry) (*kv.WriteSet, error) {
	ws, err := n.entryWriteSet(le)
	if err != nil {
		return nil, err
	}
	if err := n.cfg.Store.Apply(le.Index, ws); err != nil {
		return nil, err
	}
	return ws, nil
}

// entryWriteSet is what applying le writes: its decoded write set for a
// transaction, nothing for signature and internal entries.
func (n *Node) entryWriteSet(le *ledger.Entry) (*kv.WriteSet, error) {
	if le.Kind != ledger.KindTx {
		return n.emptyWS, nil
	}
	return n.DecodeWriteSet(le)
}

// DecodeWriteSet returns the full write set of a transaction entry,
// decrypting its private part.
func (n *Node) DecodeWriteSet(le *ledger.Entry) (*kv.WriteSet, error) {
	pub, err := kv.UnmarshalWriteSet(le.Public)
	if err != nil {
		return nil, fmt.Errorf("public write set: %w", err)
	}
	if len(le.Private) == 0 {
		return pub, nil
	}
	plain, err := n.cfg.Keyring.Open(le.Private, sealAAD(le.Term, le.Index))
	if err != nil {
		return nil, fmt.Errorf("private write set: %w", err)
	}
	priv, err := kv.UnmarshalWriteSetOwned(plain) // plain is ours alone
	if err != nil {
		return nil, fmt.Errorf("private write set: %w", err)
	}
	return kv.MergeWriteSets(pub, priv), nil
}

func (n *Node) applyConfChange(e *pb.Entry) error {
	var cc pb.ConfChangeI
	if e.GetType() == pb.EntryConfChange {
		var c pb.ConfChange
		if err := proto.Unmarshal(e.GetData(), &c); err != nil {
			return fmt.Errorf("consensus: conf change %d: %w", e.GetIndex(), err)
		}
		cc = &c
	} else {
		var c pb.ConfChangeV2
		if err := proto.Unmarshal(e.GetData(), &c); err != nil {
			return fmt.Errorf("consensus: conf change %d: %w", e.GetIndex(), err)
		}
		cc = &c
	}
	cs := n.rn.ApplyConfChange(cc)
	n.st.setConfState(cs)
	if err := n.state.setConf(cs.GetVoters(), cs.GetLearners(), e.GetIndex()); err != nil {
		return err
	}
	n.log.Info("configuration changed", "seqno", e.GetIndex(), "voters", cs.GetVoters(), "learners", cs.GetLearners())
	if n.cfg.OnConfChange != nil {
		n.cfg.OnConfChange(slices.Clone(cs.GetVoters()), slices.Clone(cs.GetLearners()))
	}
	return nil
}

func (n *Node) notifyCommit(le *ledger.Entry, ws *kv.WriteSet) {
	if n.cfg.OnCommit == nil || le.Kind == ledger.KindInternal {
		return
	}
	n.cfg.OnCommit(CommittedTx{TxID: TxID{View: le.Term, Seqno: le.Index}, Kind: le.Kind, WriteSet: ws})
}

func (n *Node) failWaiters(err error) {
	for idx, ws := range n.waiters {
		for _, w := range ws {
			// The id lets the client ask /node/tx later: the entry may
			// still commit.
			w.done <- result{id: TxID{View: w.term, Seqno: idx}, err: err}
		}
		delete(n.waiters, idx)
	}
}

func (n *Node) publishStatus() {
	bs := n.rn.BasicStatus()
	n.sigMu.RLock()
	sigCount := uint64(len(n.sigs))
	var lastSigned uint64
	for i := len(n.sigs) - 1; i >= 0; i-- {
		if n.sigs[i] <= n.applied {
			lastSigned = n.sigs[i]
			break
		}
	}
	n.sigMu.RUnlock()
	n.status.Store(&Status{
		ID:              n.cfg.ID,
		View:            bs.GetTerm(),
		Leader:          bs.Lead,
		IsPrimary:       n.isLeader,
		WritesReady:     n.isLeader && n.applied >= n.readyIndex,
		CommitIndex:     n.applied,
		CommitView:      n.commitView,
		LastIndex:       n.persistedLast.Load(),
		Signatures:      sigCount,
		LastSignedSeqno: lastSigned,
	})
}

// Status returns the latest published consensus status.
func (n *Node) Status() Status { return *n.status.Load() }
