package consensus

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cocoledger/coco/ledger"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// ErrConfChangePending: a configuration change is proposed but not yet
// applied; raft takes one at a time.
var ErrConfChangePending = errors.New("consensus: a configuration change is still pending")

// ErrLastVoter: the change would leave the configuration without a voter,
// which raft cannot apply (it panics on every node that applies it).
var ErrLastVoter = errors.New("consensus: the change would remove the last voter")

// Membership is the configuration this node has applied.
type Membership struct {
	Voters   []uint64
	Learners []uint64
	Index    uint64 // seqno of the configuration entry (0: it predates the log)
}

// Contains reports whether id is a voter or a learner.
func (m Membership) Contains(id uint64) bool {
	return slices.Contains(m.Voters, id) || slices.Contains(m.Learners, id)
}

// Membership returns the configuration this node has applied. It is safe to
// call from any goroutine.
func (n *Node) Membership() Membership {
	st := n.state.get()
	return Membership{Voters: slices.Clone(st.Voters), Learners: slices.Clone(st.Learners), Index: st.ConfIndex}
}

// do runs f on the loop goroutine and waits for it.
func (n *Node) do(ctx context.Context, f func()) error {
	done := make(chan struct{})
	select {
	case n.ctrlCh <- func() { f(); close(done) }:
	case <-ctx.Done():
		return ctx.Err()
	case <-n.stopped:
		return ErrStopped
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-n.stopped:
		return ErrStopped
	}
}

// ChangeKind is a single-node configuration change.
type ChangeKind int

// The configuration changes a primary may propose. Changes are simple
// (one node at a time, raft's ConfChange V1): joint consensus would make
// raft append entries of its own (the auto-leave entry), which this node
// cannot give ledger entries of its own.
const (
	AddLearner ChangeKind = iota // replicate to the node without counting its vote
	AddVoter                     // make the node a voter (promote a learner)
	RemoveNode                   // take the node out of the configuration
)

func (k ChangeKind) String() string {
	switch k {
	case AddLearner:
		return "AddLearner"
	case AddVoter:
		return "AddVoter"
	case RemoveNode:
		return "RemoveNode"
	}
	return fmt.Sprintf("ChangeKind(%d)", int(k))
}

// ProposeConfChange orders a configuration change for node id and returns
// its seqno once proposed (not committed: Membership shows when it is
// applied). Only the caught-up primary can propose, and only when no other
// change is pending (ErrConfChangePending) and a voter remains (ErrLastVoter).
func (n *Node) ProposeConfChange(ctx context.Context, kind ChangeKind, id uint64) (uint64, error) {
	var cc pb.ConfChange
	switch kind {
	case AddLearner:
		cc.Type = pb.ConfChangeAddLearnerNode.Enum()
	case AddVoter:
		cc.Type = pb.ConfChangeAddNode.Enum()
	case RemoveNode:
		cc.Type = pb.ConfChangeRemoveNode.Enum()
	default:
		return 0, fmt.Errorf("consensus: unknown configuration change %v", kind)
	}
	if id == 0 {
		return 0, errors.New("consensus: configuration change for raft id 0")
	}
	cc.NodeId = new(id)
	var seq uint64
	var err error
	if derr := n.do(ctx, func() {
		switch err = n.cannotOrder(); {
		case err != nil:
		case n.applied < n.pendingConf:
			err = ErrConfChangePending
		case kind != AddVoter && slices.Equal(n.state.get().Voters, []uint64{id}):
			// No change is pending, so the applied configuration is raft's.
			err = ErrLastVoter
		default:
			// What raft's ProposeConfChange does, keeping the data: the entry
			// is this primary's own, like a transaction it orders.
			typ, data, merr := pb.MarshalConfChange(&cc)
			if merr != nil {
				err = fmt.Errorf("consensus: encode configuration change: %w", merr)
				return
			}
			e := &pb.Entry{Type: typ.Enum(), Term: new(n.term), Index: new(n.lastIndex + 1), Data: data}
			if perr := n.rn.Step(&pb.Message{Type: pb.MsgProp.Enum(), Entries: []*pb.Entry{{Type: typ.Enum(), Data: data}}}); perr != nil {
				err = fmt.Errorf("%w: %v", ErrNotPrimary, perr)
				return
			}
			le, lerr := ledgerEntry(e)
			if lerr != nil {
				err = lerr
				return
			}
			// Entries ordered after it are applied to the kv head at once,
			// so it must be too (store versions are seqnos), and remembered
			// as applied when it commits.
			if err = n.proposeEntryApplied(le, n.emptyWS); err != nil {
				return
			}
			n.pendingConf = le.Index
			seq = le.Index
			n.log.Info("proposed configuration change", "change", kind.String(), "raft_id", id, "seqno", seq)
		}
	}); derr != nil {
		return 0, derr
	}
	return seq, err
}

// Progress returns, on the primary, how far each member's log matches the
// primary's (raft's Progress.Match), keyed by raft id. It returns
// ErrNotPrimary elsewhere.
func (n *Node) Progress(ctx context.Context) (map[uint64]uint64, error) {
	var out map[uint64]uint64
	var err error
	if derr := n.do(ctx, func() {
		if !n.isLeader {
			err = ErrNotPrimary
			return
		}
		st := n.rn.Status()
		out = make(map[uint64]uint64, len(st.Progress))
		for id, pr := range st.Progress {
			out[id] = pr.Match
		}
	}); derr != nil {
		return nil, derr
	}
	return out, err
}

// replayConfEntry folds a committed configuration entry into the
// configuration rebuilt at start-up, unless the persisted state already
// reflects it.
func (n *Node) replayConfEntry(le *ledger.Entry) error {
	if le.Kind != ledger.KindInternal {
		return nil
	}
	switch pb.EntryType(le.RaftType) {
	case pb.EntryConfChange:
	case pb.EntryConfChangeV2:
		return fmt.Errorf("configuration entry %d: joint configuration changes are not supported", le.Index)
	default:
		return nil
	}
	conf := n.replayConf
	if conf == nil {
		st := n.state.get()
		conf = &st
	}
	if le.Index <= conf.ConfIndex {
		return nil
	}
	var cc pb.ConfChange
	if err := proto.Unmarshal(le.Public, &cc); err != nil {
		return fmt.Errorf("configuration entry %d: %w", le.Index, err)
	}
	id := cc.GetNodeId()
	conf.Voters = slices.DeleteFunc(conf.Voters, func(v uint64) bool { return v == id })
	conf.Learners = slices.DeleteFunc(conf.Learners, func(v uint64) bool { return v == id })
	switch cc.GetType() {
	case pb.ConfChangeAddNode:
		conf.Voters = append(conf.Voters, id)
	case pb.ConfChangeAddLearnerNode:
		conf.Learners = append(conf.Learners, id)
	case pb.ConfChangeRemoveNode:
	default:
		return fmt.Errorf("configuration entry %d: unsupported change %s", le.Index, cc.GetType())
	}
	slices.Sort(conf.Voters)
	slices.Sort(conf.Learners)
	conf.ConfIndex = le.Index
	n.replayConf = conf
	return nil
}

// ErrReadTimeout: the primary did not confirm a read barrier in time (no
// primary, or no quorum); retry.
var ErrReadTimeout = errors.New("consensus: the primary did not confirm the read in time")

// readBarriers tracks the read barriers in flight (loop-owned).
type readBarriers struct {
	nonce    [16]byte // random per process: request contexts are nonce || seq
	seq      uint64
	inflight map[uint64]*readBatch // request context -> batch, waiting for raft's ReadState
	ready    []*readBatch          // index known, waiting until it is applied
}

type readBatch struct {
	index uint64
	age   int // ticks since issued
	reqs  []chan error
}

// answer ends every barrier of the batch with err (nil: released).
func (b *readBatch) answer(err error) {
	for _, r := range b.reqs {
		r <- err
	}
}

// ReadBarrier returns once this node has applied everything the primary had
// committed when it was called, as confirmed by a quorum (raft's ReadIndex).
// A read of the committed state after it is linearizable. Concurrent
// barriers share one round trip.
func (n *Node) ReadBarrier(ctx context.Context) error {
	done := make(chan error, 1)
	select {
	case n.readCh <- done:
	case <-ctx.Done():
		return ctx.Err()
	case <-n.stopped:
		return ErrStopped
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-n.stopped:
		return ErrStopped
	}
}

// issueReads asks raft for one read index covering reqs.
func (n *Node) issueReads(reqs []chan error) {
	batch := &readBatch{reqs: reqs}
	if n.fatal != nil {
		batch.answer(n.fatal)
		return
	}
	if n.rn.BasicStatus().Lead == 0 {
		// Raft drops a read index request while no primary is known.
		batch.answer(ErrReadTimeout)
		return
	}
	if n.reads.inflight == nil {
		n.reads.inflight = make(map[uint64]*readBatch)
		// Request contexts must be unique across nodes and across this
		// node's restarts: the primary keeps pending reads by context, and
		// an answer meant for this node's previous life (still queued in a
		// peer's transport) must not release a read of this one.
		if _, err := rand.Read(n.reads.nonce[:]); err != nil {
			batch.answer(fmt.Errorf("consensus: read barrier nonce: %w", err))
			n.reads.inflight = nil
			return
		}
	}
	n.reads.seq++
	rctx := make([]byte, 0, len(n.reads.nonce)+8)
	rctx = append(rctx, n.reads.nonce[:]...)
	rctx = binary.BigEndian.AppendUint64(rctx, n.reads.seq)
	n.reads.inflight[n.reads.seq] = batch
	n.rn.ReadIndex(rctx)
}

// readStates records the read indexes raft confirmed.
func (n *Node) readStates(states []raftReadState) {
	for _, rs := range states {
		nonce := n.reads.nonce[:]
		if len(rs.ctx) != len(nonce)+8 || !bytes.Equal(rs.ctx[:len(nonce)], nonce) {
			continue // not ours (another life of this node)
		}
		seq := binary.BigEndian.Uint64(rs.ctx[len(nonce):])
		b, ok := n.reads.inflight[seq]
		if !ok {
			continue // timed out already
		}
		delete(n.reads.inflight, seq)
		b.index = rs.index
		n.reads.ready = append(n.reads.ready, b)
	}
	n.releaseReads()
}

// releaseReads answers the barriers whose index is applied.
func (n *Node) releaseReads() {
	n.reads.ready = slices.DeleteFunc(n.reads.ready, func(b *readBatch) bool {
		if b.index > n.applied {
			return false
		}
		b.answer(nil)
		return true
	})
}

// expireReads fails the barriers raft has not confirmed within two election
// timeouts (the request or its answer was lost, or the primary changed),
// and those confirmed but still not applied after ten (this node cannot
// catch up): their callers have given up by then.
func (n *Node) expireReads() {
	for seq, b := range n.reads.inflight {
		b.age++
		if b.age > 2*n.cfg.ElectionTicks {
			b.answer(ErrReadTimeout)
			delete(n.reads.inflight, seq)
		}
	}
	n.reads.ready = slices.DeleteFunc(n.reads.ready, func(b *readBatch) bool {
		b.age++
		if b.age <= 10*n.cfg.ElectionTicks {
			return false
		}
		b.answer(ErrReadTimeout)
		return true
	})
}

func (n *Node) failReads(err error) {
	for seq, b := range n.reads.inflight {
		b.answer(err)
		delete(n.reads.inflight, seq)
	}
	for _, b := range n.reads.ready {
		b.answer(err)
	}
	n.reads.ready = nil
}

// raftReadState is the part of raft's ReadState the loop uses.
type raftReadState struct {
	index uint64
	ctx   []byte
}

// TransferLeadership asks raft to hand the primary role to the voter whose
// log is most up to date, and waits until another node leads or ctx ends.
// A primary shutting down calls it so that the service does not wait an
// election timeout for a new one. It returns nil at once on a backup.
func (n *Node) TransferLeadership(ctx context.Context) error {
	var target uint64
	if err := n.do(ctx, func() {
		if !n.isLeader {
			return
		}
		st := n.rn.Status()
		var best uint64
		for id, pr := range st.Progress {
			if id == n.cfg.ID || pr.IsLearner {
				continue
			}
			if target == 0 || pr.Match > best {
				target, best = id, pr.Match
			}
		}
		if target != 0 {
			n.log.Info("transferring the primary role", "to", target, "match", best)
			n.rn.TransferLeader(target)
		}
	}); err != nil || target == 0 {
		return err
	}
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		if s := n.Status(); !s.IsPrimary && s.Leader != 0 && s.Leader != n.cfg.ID {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-n.stopped:
			return ErrStopped
		case <-t.C:
		}
	}
}
