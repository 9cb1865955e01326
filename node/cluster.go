package node

import (
	"cmp"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/cocoledger/coco/consensus"
	"github.com/cocoledger/coco/consensus/transport"
	cococrypto "github.com/cocoledger/coco/crypto"
	"github.com/cocoledger/coco/gov"
	pb "go.etcd.io/raft/v3/raftpb"
)

// learnerCatchUp is how far (in entries) a learner's log may trail the
// primary's commit index when it is promoted to voter. A voter that lags
// far behind would stall commits until it caught up.
const learnerCatchUp = 1000

// watchInterval is how often the membership watcher looks at the nodes map
// and the configuration even when nothing signalled a change.
const watchInterval = 250 * time.Millisecond

// members is the set of raft ids the transport talks to.
type members struct {
	ids   map[uint64]bool
	addrs map[uint64]string // node-to-node address per raft id, where known
}

// newTransport creates the node-to-node transport on the bound listener.
func (n *Node) newTransport(ln net.Listener) (*transport.Transport, error) {
	return transport.New(transport.Config{
		ID:          n.id.raftID,
		Listener:    ln,
		Cert:        n.id.tlsCert(),
		ServiceCert: n.id.serviceCert,
		RaftID: func(c *x509.Certificate) (uint64, error) {
			id, err := cococrypto.KeyID(c.PublicKey)
			if err != nil {
				return 0, err
			}
			return consensus.RaftID(id)
		},
		IsMember: n.isMember,
		Deliver:  n.deliver,
		Logger:   n.log,
	})
}

func (n *Node) deliver(ctx context.Context, m *pb.Message) error {
	c := n.cons
	if c == nil {
		return consensus.ErrStopped
	}
	return c.Step(ctx, m)
}

// isMember reports whether raftID may exchange raft messages with this
// node: it is in the configuration this node applied, or Trusted in its
// committed state, or one of the nodes it was told about when it joined;
// and it is not a Retired node that has left the configuration.
func (n *Node) isMember(raftID uint64) bool {
	m := n.members.Load()
	return m != nil && m.ids[raftID]
}

// signalMembership wakes the membership watcher.
func (n *Node) signalMembership() {
	select {
	case n.membershipCh <- struct{}{}:
	default:
	}
}

// watchMembership keeps the transport's peers and the member set in step
// with the committed nodes map and the configuration, and on the primary
// brings the configuration in line with the trusted nodes, one change at a
// time.
func (n *Node) watchMembership(ctx context.Context) {
	t := time.NewTicker(watchInterval)
	defer t.Stop()
	lastErr := ""
	for {
		n.refreshMembers()
		err := n.reconcile(ctx)
		switch {
		case err != nil && !errors.Is(err, context.Canceled) && err.Error() != lastErr:
			n.log.Warn("cannot bring the configuration in line with the trusted nodes", "err", err)
			lastErr = err.Error()
		case err == nil:
			lastErr = ""
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-n.membershipCh:
		}
	}
}

// refreshMembers recomputes the member set and the transport's peers.
func (n *Node) refreshMembers() {
	conf := n.cons.Membership()
	next := &members{ids: map[uint64]bool{}, addrs: map[uint64]string{}}
	for _, id := range conf.Voters {
		next.ids[id] = true
	}
	for _, id := range conf.Learners {
		next.ids[id] = true
	}
	for _, b := range n.joinPeers {
		next.ids[b.RaftID] = true
		if b.NodeAddress != "" {
			next.addrs[b.RaftID] = b.NodeAddress
		}
	}
	for _, ni := range n.nodes(n.store.BeginReadOnly()) {
		switch ni.Status {
		case gov.NodeTrusted:
			next.ids[ni.RaftID] = true
		case gov.NodeRetired:
			// Cut off only once it has left the configuration: raft commits
			// its removal under the configuration that still counts it.
			if !conf.Contains(ni.RaftID) {
				next.ids[ni.RaftID] = false
			}
		}
		if ni.NodeAddress != "" {
			next.addrs[ni.RaftID] = ni.NodeAddress
		}
	}
	delete(next.ids, n.id.raftID)
	prev := n.members.Swap(next)
	for id, ok := range next.ids {
		if !ok {
			continue
		}
		addr := next.addrs[id]
		if addr == "" {
			continue
		}
		if prev == nil || !prev.ids[id] || prev.addrs[id] != addr {
			n.log.Info("peer", "raft_id", id, "node_address", addr)
			n.tr.SetPeer(id, addr)
		}
	}
	if prev != nil {
		removed := false
		for id, ok := range prev.ids {
			if ok && !next.ids[id] {
				n.log.Info("peer removed", "raft_id", id)
				n.tr.RemovePeer(id)
				removed = true
			}
		}
		if removed {
			n.tr.MembershipChanged()
		}
	}
}

// reconcile makes, on the caught-up primary, the next configuration change
// that brings raft's configuration in line with the nodes map: trusted
// nodes join as learners, learners that caught up become voters, retired
// nodes leave.
func (n *Node) reconcile(ctx context.Context) error {
	s := n.cons.Status()
	if !s.WritesReady {
		return nil
	}
	conf := n.cons.Membership()
	infos := n.nodes(n.store.BeginReadOnly())
	slices.SortFunc(infos, func(a, b gov.NodeInfo) int { return cmp.Compare(a.RaftID, b.RaftID) })
	kind, id, ok := consensus.ChangeKind(0), uint64(0), false
	for _, ni := range infos {
		if ni.Status == gov.NodeTrusted && !conf.Contains(ni.RaftID) {
			kind, id, ok = consensus.AddLearner, ni.RaftID, true
			break
		}
	}
	if !ok {
		for _, ni := range infos {
			if ni.Status == gov.NodeRetired && conf.Contains(ni.RaftID) {
				kind, id, ok = consensus.RemoveNode, ni.RaftID, true
				break
			}
		}
	}
	if !ok && len(conf.Learners) > 0 {
		progress, err := n.cons.Progress(ctx)
		if err != nil {
			return err
		}
		// A learner votes once it holds the log up to its own admission
		// (the latest configuration entry) and trails the commit index by
		// little: a voter far behind would stall commits.
		for _, l := range conf.Learners {
			if m := progress[l]; m >= conf.Index && m+learnerCatchUp >= s.CommitIndex && n.trusted(infos, l) {
				kind, id, ok = consensus.AddVoter, l, true
				break
			}
		}
	}
	if !ok {
		return nil
	}
	// ProposeConfChange logs the change it proposes.
	if _, err := n.cons.ProposeConfChange(ctx, kind, id); err != nil && !errors.Is(err, consensus.ErrConfChangePending) {
		return fmt.Errorf("node: %s %d: %w", kind, id, err)
	}
	return nil
}

func (n *Node) trusted(infos []gov.NodeInfo, raftID uint64) bool {
	for _, ni := range infos {
		if ni.RaftID == raftID {
			return ni.Status == gov.NodeTrusted
		}
	}
	return false
}
