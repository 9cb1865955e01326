package consensus

import (
	"fmt"
	"sync"

	"github.com/cocoledger/coco/ledger"
	pb "go.etcd.io/raft/v3/raftpb"
)

// appendJob is one MsgStorageAppend, with its entries already converted to
// ledger entries by the loop.
type appendJob struct {
	msg  *pb.Message
	ents []*ledger.Entry
}

// localQueue carries messages from the appender back to the loop. It never
// blocks the appender, so the loop may block sending it work without
// deadlock.
type localQueue struct {
	mu     sync.Mutex
	msgs   []*pb.Message
	notify chan struct{}
}

func newLocalQueue() *localQueue { return &localQueue{notify: make(chan struct{}, 1)} }

func (q *localQueue) push(ms ...*pb.Message) {
	q.mu.Lock()
	q.msgs = append(q.msgs, ms...)
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

func (q *localQueue) take() []*pb.Message {
	q.mu.Lock()
	defer q.mu.Unlock()
	ms := q.msgs
	q.msgs = nil
	return ms
}

// appender is raft's LocalAppendThread: it persists entries and HardState,
// fsyncs once for everything queued (group commit), and only then releases
// the responses raft attached — acknowledgements to itself and to the
// leader — so nothing is acknowledged before it is durable. It stops when
// jobs is closed, after persisting what was queued.
func (n *Node) appender(jobs <-chan *appendJob, local *localQueue, failed chan<- error) {
	defer close(n.appenderDone)
	var batch []*appendJob
	for job := range jobs {
		batch = append(batch[:0], job)
	drain:
		for len(batch) < 256 {
			select {
			case j, ok := <-jobs:
				if !ok {
					break drain
				}
				batch = append(batch, j)
			default:
				break drain
			}
		}
		if err := n.persist(batch); err != nil {
			n.log.Error("persisting raft entries failed; stopping consensus", "err", err)
			failed <- err
			// Drain without acknowledging anything, so the loop can stop.
			for range jobs {
			}
			return
		}
		for _, j := range batch {
			if ents := j.msg.GetEntries(); len(ents) > 0 {
				n.persistedLast.Store(ents[len(ents)-1].GetIndex())
			}
		}
		for _, j := range batch {
			var remote []*pb.Message
			for _, r := range j.msg.GetResponses() {
				if r.GetTo() == n.cfg.ID {
					local.push(r)
				} else {
					remote = append(remote, r)
				}
			}
			if len(remote) > 0 {
				n.cfg.Transport.Send(remote)
			}
		}
	}
}

// persist writes a batch of jobs: entries first, one fsync, and only then
// the HardState. A follower's HardState can name as committed the entries
// that arrive in the same job; were it saved first (or saved lazily by the
// loop from setHard's record) and the process died before the fsync, the
// state file would claim committed entries the ledger does not hold, and the
// node could not restart.
func (n *Node) persist(batch []*appendJob) error {
	wrote := false
	var hs *pb.Message // the last job carrying a HardState
	for _, j := range batch {
		m := j.msg
		if len(m.GetEntries()) > 0 {
			if err := n.st.append(m.GetEntries(), j.ents); err != nil {
				return err
			}
			wrote = true
		}
		if m.Term != nil {
			hs = m
		}
		if m.GetSnapshot() != nil && m.GetSnapshot().GetMetadata().GetIndex() > 0 {
			return fmt.Errorf("consensus: raft snapshots are not supported yet")
		}
	}
	if wrote {
		if err := n.cfg.Ledger.Sync(); err != nil {
			return fmt.Errorf("consensus: sync ledger: %w", err)
		}
	}
	if hs != nil {
		// Term and vote are saved (fsynced) here, before any response of
		// the batch is released.
		if err := n.state.setHard(hs.GetTerm(), hs.GetVote(), hs.GetCommit()); err != nil {
			return err
		}
		n.st.setHardState(&pb.HardState{Term: new(hs.GetTerm()), Vote: new(hs.GetVote()), Commit: new(hs.GetCommit())})
	}
	return nil
}
