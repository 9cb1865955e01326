package consensustest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cocoledger/coco/consensus"
	"github.com/cocoledger/coco/kv"
	"github.com/cocoledger/coco/ledger"
	"github.com/cocoledger/coco/receipt"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
)

func followers(c *Cluster, leader *Member) []*Member {
	var out []*Member
	for _, m := range c.Members {
		if m != leader {
			out = append(out, m)
		}
	}
	return out
}

// checkCommitted checks that every running member reports each id
// Committed and serves want from its committed kv state.
func checkCommitted(t *testing.T, c *Cluster, ids []consensus.TxID, want map[string]string) {
	t.Helper()
	for _, m := range c.Members {
		if !m.Running() {
			continue
		}
		for _, id := range ids {
			if st, err := m.Node.TxStatus(id); err != nil || st != consensus.TxCommitted {
				t.Errorf("node %d: status of %s = %s, %v; want Committed", m.ID, id, st, err)
			}
		}
		tx := m.Store.BeginReadOnly()
		for k, v := range want {
			mapName, key := splitKey(k)
			if got, ok := tx.Get(mapName, key); !ok || string(got) != v {
				t.Errorf("node %d: %s = %q (present %v), want %q", m.ID, k, got, ok, v)
			}
		}
	}
}

func splitKey(k string) (mapName, key string) {
	for i := len(k) - 1; i >= 0; i-- {
		if k[i] == '/' {
			return k[:i], k[i+1:]
		}
	}
	return "", k
}

// write puts n keys through the current leader and records them in want.
func write(t *testing.T, c *Cluster, prefix string, n int, want map[string]string) []consensus.TxID {
	t.Helper()
	var ids []consensus.TxID
	for i := range n {
		mapName := "records"
		if i%3 == 0 {
			mapName = "public:records"
		}
		key, value := fmt.Sprintf("%s%d", prefix, i), fmt.Sprintf("%s-value-%d", prefix, i)
		ids = append(ids, c.MustPut(mapName, key, value))
		want[mapName+"/"+key] = value
	}
	return ids
}

func waitConverged(t *testing.T, c *Cluster, ids []consensus.TxID) {
	t.Helper()
	var last uint64
	for _, id := range ids {
		last = max(last, id.Seqno)
	}
	c.WaitCommitted(last)
}

func TestReplication(t *testing.T) {
	c := New(t, Options{})
	leader := c.WaitLeader()
	want := map[string]string{}
	ids := write(t, c, "k", 30, want)
	waitConverged(t, c, ids)
	checkCommitted(t, c, ids, want)

	// A signature after the last write, so CheckLedgers compares signed roots.
	c.WaitFor("a committed signature covering the writes", func() bool {
		for _, m := range c.Members {
			if m.Node.Status().LastSignedSeqno <= ids[len(ids)-1].Seqno {
				return false
			}
		}
		return true
	})
	upTo, sigs := c.CheckLedgers()
	if sigs == 0 || upTo < ids[len(ids)-1].Seqno {
		t.Fatalf("compared %d entries with %d signatures", upTo, sigs)
	}

	// Backups report the same committed transactions to observers, in order.
	ref := leader.Committed()
	for _, m := range followers(c, leader) {
		got := m.Committed()
		n := min(len(got), len(ref))
		for i := range n {
			if got[i].TxID != ref[i].TxID || got[i].Kind != ref[i].Kind {
				t.Fatalf("node %d OnCommit[%d] = %s %s, leader saw %s %s", m.ID, i, got[i].TxID, got[i].Kind, ref[i].TxID, ref[i].Kind)
			}
		}
	}

	// Every node's ledger verifies on its own, signatures and endorsements
	// included.
	c.Close()
	for _, m := range c.Members {
		rep, err := ledger.Verify(context.Background(), filepath.Join(m.Dir, "ledger"), ledger.VerifyOptions{ServiceCert: c.ServiceCert})
		if err != nil {
			t.Fatalf("node %d: ledger verify: %v", m.ID, err)
		}
		if rep.Signatures == 0 {
			t.Fatalf("node %d: no signatures in the ledger", m.ID)
		}
	}
}

func TestSubmitOnFollower(t *testing.T) {
	c := New(t, Options{})
	leader := c.WaitLeader()
	c.MustPut("records", "a", "1")
	for _, m := range followers(c, leader) {
		t.Run(fmt.Sprintf("node%d", m.ID), func(t *testing.T) {
			_, err := c.Put(m, "records", "b", "2")
			if !errors.Is(err, consensus.ErrNotPrimary) {
				t.Fatalf("submit on follower %d: %v, want ErrNotPrimary", m.ID, err)
			}
			if st := m.Node.Status(); st.IsPrimary || st.Leader != leader.ID {
				t.Fatalf("follower %d status %+v, leader is %d", m.ID, st, leader.ID)
			}
		})
	}
}

func TestFailover(t *testing.T) {
	c := New(t, Options{})
	old := c.WaitLeader()
	want := map[string]string{}
	committed := write(t, c, "before", 10, want)
	oldView := old.Node.Status().View
	// Entries after the head when the primary is cut off are ordered only
	// by it (a signature it had ordered before may have reached others).
	base := old.Store.Version()

	// Cut the primary off, then hand it writes before any tick: it is
	// still primary, orders them, and can never commit them.
	c.Net.Isolate(old.ID)
	const lost = 5
	type outcome struct {
		id  consensus.TxID
		err error
	}
	outcomes := make(chan outcome, lost)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := range lost {
		tx := old.Store.Begin()
		if err := tx.Put("records", fmt.Sprint("lost", i), []byte("never")); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, err := old.Node.Submit(ctx, tx, [32]byte{})
			outcomes <- outcome{id, err}
		}()
		// Wait until it is ordered, so the next one does not conflict.
		deadline := time.Now().Add(10 * time.Second)
		for old.Store.Version() < base+uint64(i)+1 {
			if time.Now().After(deadline) {
				t.Fatalf("isolated primary never ordered write %d (head %d)", i, old.Store.Version())
			}
			time.Sleep(time.Millisecond)
		}
	}
	// What the isolated primary ordered, read from its own log.
	var isolated []consensus.TxID
	c.WaitFor("the isolated primary persisting its writes", func() bool {
		return old.Ledger.LastIndex() >= base+lost
	})
	for seq := base + 1; seq <= old.Ledger.LastIndex(); seq++ {
		le, err := old.Ledger.Entry(seq)
		if err != nil {
			t.Fatal(err)
		}
		isolated = append(isolated, consensus.TxID{View: le.Term, Seqno: le.Index})
	}

	others := followers(c, old)
	leader := c.WaitLeader(others...)
	if v := leader.Node.Status().View; v <= oldView {
		t.Fatalf("new primary %d has view %d, old view %d", leader.ID, v, oldView)
	}
	committed = append(committed, write(t, c, "during", 10, want)...)

	c.Net.Heal()
	c.WaitFor("the old primary following the new one", func() bool {
		st := old.Node.Status()
		return !st.IsPrimary && st.Leader == leader.ID
	})
	// Write until the cluster has committed past everything the isolated
	// primary ordered, so each of those seqnos is decided.
	for c.WaitLeader().Node.Status().CommitIndex <= isolated[len(isolated)-1].Seqno {
		committed = append(committed, write(t, c, fmt.Sprint("after", len(committed)), 1, want)...)
	}
	committed = append(committed, write(t, c, "final", 5, want)...)
	waitConverged(t, c, committed)

	if v, c := old.Store.Version(), old.Store.CommittedVersion(); v != c {
		t.Errorf("old primary's kv head %d is ahead of its committed state %d", v, c)
	}
	for i := range lost {
		if _, ok := old.Store.Begin().Get("records", fmt.Sprint("lost", i)); ok {
			t.Errorf("old primary's head still holds lost%d", i)
		}
	}
	wg.Wait()
	close(outcomes)
	for o := range outcomes {
		switch {
		case errors.Is(o.err, consensus.ErrInvalidated):
			if st, _ := leader.Node.TxStatus(o.id); o.id.IsZero() || st != consensus.TxInvalid {
				t.Errorf("invalidated write reports txid %s with status %s", o.id, st)
			}
		case errors.Is(o.err, context.DeadlineExceeded):
		default:
			t.Errorf("write to the isolated primary returned %s, %v; want ErrInvalidated", o.id, o.err)
		}
	}
	for _, m := range c.Members {
		for _, id := range isolated {
			if st, err := m.Node.TxStatus(id); err != nil || st != consensus.TxInvalid {
				t.Errorf("node %d: status of %s (ordered while isolated) = %s, %v; want Invalid", m.ID, id, st, err)
			}
		}
	}
	checkCommitted(t, c, committed, want)
	c.CheckLedgers()
}

func TestRestartCatchesUp(t *testing.T) {
	for _, tc := range []struct {
		name      string
		stopLead  bool
		writeDown int // writes while the node is down
	}{
		{"follower", false, 20},
		{"leader", true, 20},
		{"follower idle", false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New(t, Options{})
			leader := c.WaitLeader()
			want := map[string]string{}
			ids := write(t, c, "a", 10, want)
			down := followers(c, leader)[0]
			if tc.stopLead {
				down = leader
			}
			c.Stop(down)
			c.WaitLeader() // a new one when the leader went down
			ids = append(ids, write(t, c, "b", tc.writeDown, want)...)
			c.Start(down)
			ids = append(ids, write(t, c, "c", 5, want)...)
			waitConverged(t, c, ids)
			checkCommitted(t, c, ids, want)
			c.CheckLedgers()

			// The whole service restarts on its dirs and keeps its state.
			for _, m := range c.Members {
				c.Stop(m)
			}
			for _, m := range c.Members {
				c.Start(m)
			}
			ids = append(ids, write(t, c, "d", 3, want)...)
			waitConverged(t, c, ids)
			checkCommitted(t, c, ids, want)
			c.CheckLedgers()
		})
	}
}

func TestFollowerReceiptsVerify(t *testing.T) {
	c := New(t, Options{})
	leader := c.WaitLeader()
	want := map[string]string{}
	ids := write(t, c, "r", 12, want)
	waitConverged(t, c, ids)
	for _, m := range followers(c, leader) {
		for _, id := range ids {
			var r *consensus.Receipt
			var err error
			c.WaitFor(fmt.Sprintf("a receipt for %s on node %d", id, m.ID), func() bool {
				r, err = m.Node.Receipt(id)
				return !errors.Is(err, consensus.ErrNotSigned)
			})
			if err != nil {
				t.Fatalf("node %d: receipt %s: %v", m.ID, id, err)
			}
			j := receipt.NewJSON([]byte(r.Signature.Cert), r.Signature.NodeID, r.Signature.Sig, r.Leaf, r.Proof)
			v, err := j.Verify(c.ServiceCert)
			if err != nil {
				t.Fatalf("node %d: json receipt %s: %v", m.ID, id, err)
			}
			if v.TxID != id.String() {
				t.Fatalf("node %d: json receipt is for %s, want %s", m.ID, v.TxID, id)
			}
			cose, err := receipt.AttachProof(r.Signature.COSE, r.Leaf, r.Proof)
			if err != nil {
				t.Fatal(err)
			}
			if v, err := receipt.VerifyCOSE(cose, c.ServiceCert); err != nil || v.TxID != id.String() {
				t.Fatalf("node %d: cose receipt %s: %v %+v", m.ID, id, err, v)
			}
		}
	}
}

// TestLossyNetwork loses a fraction of all messages. Writes may fail
// (leadership moves), but every acknowledged write must end up committed
// everywhere, with the value the last acknowledged write gave it.
func TestLossyNetwork(t *testing.T) {
	for _, tc := range []struct {
		name string
		drop float64
		seed int64
	}{
		{"10%", 0.1, 7},
		{"20%", 0.2, 11},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New(t, Options{Seed: tc.seed})
			c.WaitLeader()
			c.Net.SetDropRate(tc.drop)
			want := map[string]string{}
			var acked []consensus.TxID
			failures := 0
			for i := 0; len(acked) < 40; i++ {
				leader := c.WaitLeader()
				key, value := fmt.Sprint(i%10), fmt.Sprint("v", i)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				id, err := c.Submit(ctx, leader, func(tx *kv.Tx) error { return tx.Put("records", key, []byte(value)) })
				cancel()
				switch {
				case err == nil:
					acked = append(acked, id)
					want["records/"+key] = value
				case errors.Is(err, consensus.ErrNotPrimary), errors.Is(err, consensus.ErrNotReady),
					errors.Is(err, consensus.ErrInvalidated), errors.Is(err, kv.ErrConflict),
					errors.Is(err, context.DeadlineExceeded):
					// Not acknowledged: whether it commits is unknown, and
					// the next write to the key decides its value.
					failures++
					if failures > 200 {
						t.Fatalf("too many failed writes: %v", err)
					}
				default:
					t.Fatalf("submit: %v", err)
				}
			}
			c.Net.Heal()
			// A last write per key fixes its value whatever failed writes did.
			for k := range 10 {
				key, value := fmt.Sprint(k), fmt.Sprint("final", k)
				acked = append(acked, c.MustPut("records", key, value))
				want["records/"+key] = value
			}
			waitConverged(t, c, acked)
			checkCommitted(t, c, acked, want)
			c.CheckLedgers()
			t.Logf("%d failed writes; network %+v", failures, c.Net.Stats())
		})
	}
}

// TestLeaderChurn cuts off whichever node is primary, round after round,
// while writers keep submitting unique keys to whoever is primary. Every
// acknowledged write must be committed on every node, and every write
// refused or invalidated must be absent everywhere.
func TestLeaderChurn(t *testing.T) {
	for _, tc := range []struct {
		name string
		seed int64
		drop float64
	}{
		{"clean", 3, 0},
		{"lossy", 5, 0.1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New(t, Options{Seed: tc.seed})
			c.WaitLeader()
			c.Net.SetDropRate(tc.drop)

			type outcome struct {
				key string
				id  consensus.TxID
				err error
			}
			var (
				mu       sync.Mutex
				outcomes []outcome
				wg       sync.WaitGroup
			)
			stop := make(chan struct{})
			const writers = 4
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						leader := c.Leader()
						if leader == nil {
							runtime.Gosched()
							continue
						}
						key := fmt.Sprintf("w%d-%d", w, i)
						tx := leader.Store.Begin()
						if err := tx.Put("churn", key, []byte(key)); err != nil {
							t.Error(err)
							return
						}
						ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
						id, err := leader.Node.Submit(ctx, tx, [32]byte{})
						cancel()
						mu.Lock()
						outcomes = append(outcomes, outcome{key, id, err})
						mu.Unlock()
					}
				}()
			}
			for round := range 4 {
				leader := c.WaitLeader()
				c.Net.Isolate(leader.ID)
				next := c.WaitLeader(followers(c, leader)...)
				c.WaitFor(fmt.Sprintf("round %d: writes committing under node %d", round, next.ID), func() bool {
					return next.Node.Status().CommitIndex > next.Node.Status().LastSignedSeqno
				})
				c.Net.Heal()
				c.Net.SetDropRate(tc.drop)
				c.WaitFor(fmt.Sprintf("round %d: node %d rejoining", round, leader.ID), func() bool {
					st := leader.Node.Status()
					return !st.IsPrimary && st.Leader != 0
				})
			}
			close(stop)
			// Writers may be waiting on commits: keep time moving.
			finished := make(chan struct{})
			go func() { wg.Wait(); close(finished) }()
			c.WaitFor("the writers to finish", func() bool {
				select {
				case <-finished:
					return true
				default:
					return false
				}
			})
			c.Net.Heal()
			last := c.MustPut("churn", "last", "x")
			c.WaitCommitted(last.Seqno)

			acked, refused, unknown := 0, 0, 0
			var ackedIDs []consensus.TxID
			for _, o := range outcomes {
				switch {
				case o.err == nil:
					acked++
					ackedIDs = append(ackedIDs, o.id)
				case errors.Is(o.err, consensus.ErrNotPrimary), errors.Is(o.err, consensus.ErrNotReady),
					errors.Is(o.err, consensus.ErrInvalidated), errors.Is(o.err, kv.ErrConflict):
					refused++
				case errors.Is(o.err, context.DeadlineExceeded):
					unknown++
				default:
					t.Fatalf("submit %s: %v", o.key, o.err)
				}
			}
			if acked == 0 {
				t.Fatal("no write was acknowledged")
			}
			for _, m := range c.Members {
				tx := m.Store.BeginReadOnly()
				for _, o := range outcomes {
					v, ok := tx.Get("churn", o.key)
					switch {
					case o.err == nil && (!ok || string(v) != o.key):
						t.Errorf("node %d: acknowledged %s (%s) is missing", m.ID, o.key, o.id)
					case o.err != nil && !errors.Is(o.err, context.DeadlineExceeded) && ok:
						t.Errorf("node %d: %s was refused (%v) but committed", m.ID, o.key, o.err)
					}
					if errors.Is(o.err, consensus.ErrInvalidated) {
						if st, _ := m.Node.TxStatus(o.id); st != consensus.TxInvalid {
							t.Errorf("node %d: invalidated %s has status %s", m.ID, o.id, st)
						}
					}
				}
			}
			checkCommitted(t, c, ackedIDs, nil)
			c.CheckLedgers()
			checkSameState(t, c, "churn")
			t.Logf("%d acknowledged, %d refused, %d unknown; network %+v", acked, refused, unknown, c.Net.Stats())
		})
	}
}

// checkSameState checks that every running member's committed state holds
// the same keys and values in the named maps.
func checkSameState(t *testing.T, c *Cluster, mapNames ...string) {
	t.Helper()
	var ref map[string]string
	var refID uint64
	for _, m := range c.Members {
		if !m.Running() {
			continue
		}
		got := map[string]string{}
		tx := m.Store.BeginReadOnly()
		for _, name := range mapNames {
			tx.Range(name, func(k string, v []byte) bool {
				got[name+"/"+k] = string(v)
				return true
			})
		}
		if ref == nil {
			ref, refID = got, m.ID
			continue
		}
		if !maps.Equal(ref, got) {
			t.Errorf("node %d's state (%d keys) differs from node %d's (%d keys)", m.ID, len(got), refID, len(ref))
		}
	}
}

// TestStepRejectsForeignMessages feeds a primary messages no honest peer
// sends: proposals (backups forward writes at the HTTP layer, never through
// raft), raft's local storage messages, and messages for another node. The
// service must keep ordering writes with seqno == raft index.
func TestStepRejectsForeignMessages(t *testing.T) {
	c := New(t, Options{})
	leader := c.WaitLeader()
	other := followers(c, leader)[0]
	c.MustPut("records", "a", "1")
	last := leader.Node.Status().LastIndex
	for _, tc := range []struct {
		name string
		m    *pb.Message
	}{
		{"proposal", &pb.Message{Type: pb.MsgProp.Enum(), From: new(other.ID), To: new(leader.ID), Entries: []*pb.Entry{{}}}},
		{"storage append response", &pb.Message{Type: pb.MsgStorageAppendResp.Enum(), From: new(raft.LocalAppendThread), To: new(leader.ID), Term: new(leader.Node.Status().View), Index: new(last + 100), LogTerm: new(leader.Node.Status().View)}},
		{"storage apply", &pb.Message{Type: pb.MsgStorageApply.Enum(), From: new(raft.LocalApplyThread), To: new(leader.ID)}},
		{"wrong recipient", &pb.Message{Type: pb.MsgHeartbeat.Enum(), From: new(other.ID), To: new(uint64(99)), Term: new(leader.Node.Status().View + 5)}},
	} {
		// No subtests: the cluster fails the test it was made for.
		if err := leader.Node.Step(context.Background(), tc.m); err == nil {
			t.Errorf("Step accepted a %s", tc.name)
		}
		id := c.MustPut("records", tc.name, "v")
		le, err := leader.Ledger.Entry(id.Seqno)
		if err != nil || le.Kind != ledger.KindTx || le.Term != id.View {
			t.Fatalf("after a %s: entry at %s is %+v, %v", tc.name, id, le, err)
		}
	}
	c.CheckLedgers()
}

// TestDivergentTailTruncated gives an isolated primary enough writes, with
// signatures, to close ledger chunks that the rest of the service never
// sees, then brings it back (optionally after a restart on its dir): its
// ledger, Merkle tree and kv state must converge to the service's.
func TestDivergentTailTruncated(t *testing.T) {
	for _, tc := range []struct {
		name    string
		restart bool
	}{
		{"rejoin", false},
		{"restart then rejoin", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New(t, Options{ChunkSize: 2048})
			old := c.WaitLeader()
			want := map[string]string{}
			committed := write(t, c, "a", 5, want)
			base := old.Store.Version()
			c.Net.Isolate(old.ID)

			const lost = 20
			big := strings.Repeat("x", 300)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var wg sync.WaitGroup
			for i := range lost {
				tx := old.Store.Begin()
				if err := tx.Put("records", fmt.Sprint("lost", i), []byte(big)); err != nil {
					t.Fatal(err)
				}
				wg.Add(1)
				node := old.Node
				go func() {
					defer wg.Done()
					_, _ = node.Submit(ctx, tx, [32]byte{})
				}()
				deadline := time.Now().Add(10 * time.Second)
				for old.Store.Version() <= base+uint64(i) {
					if time.Now().After(deadline) {
						t.Fatalf("isolated primary never ordered write %d", i)
					}
					time.Sleep(time.Millisecond)
				}
			}
			var isolated []consensus.TxID
			c.WaitFor("the isolated primary's log", func() bool { return old.Ledger.LastIndex() >= base+lost })
			for seq := base + 1; seq <= old.Ledger.LastIndex(); seq++ {
				le, err := old.Ledger.Entry(seq)
				if err != nil {
					t.Fatal(err)
				}
				isolated = append(isolated, consensus.TxID{View: le.Term, Seqno: le.Index})
			}
			// The lost tail spans closed chunks, so rejoining reopens them.
			if files, _ := filepath.Glob(filepath.Join(old.Dir, "ledger", "ledger_*-*")); len(files) < 3 {
				t.Fatalf("isolated primary closed only %v", files)
			}
			if tc.restart {
				cancel() // the Submit calls end with the process
				c.Stop(old)
				wg.Wait()
			}
			c.WaitLeader(followers(c, old)...)
			committed = append(committed, write(t, c, "b", 8, want)...)
			if tc.restart {
				c.Start(old)
			}
			c.Net.Heal()
			for leader := c.WaitLeader(); leader.Node.Status().CommitIndex <= isolated[len(isolated)-1].Seqno; leader = c.WaitLeader() {
				committed = append(committed, write(t, c, fmt.Sprint("c", len(committed)), 1, want)...)
			}
			committed = append(committed, write(t, c, "d", 3, want)...)
			waitConverged(t, c, committed)
			cancel()
			wg.Wait()

			checkCommitted(t, c, committed, want)
			c.CheckLedgers()
			checkSameState(t, c, "records", "public:records")
			for _, m := range c.Members {
				for _, id := range isolated {
					if st, err := m.Node.TxStatus(id); err != nil || st != consensus.TxInvalid {
						t.Errorf("node %d: %s is %s, %v; want Invalid", m.ID, id, st, err)
					}
				}
				if _, ok := m.Store.Begin().Get("records", "lost0"); ok {
					t.Errorf("node %d holds a lost write", m.ID)
				}
			}
			// Receipts from the rejoined node verify.
			for _, id := range committed[len(committed)-3:] {
				var r *consensus.Receipt
				var err error
				c.WaitFor("a receipt on the rejoined node", func() bool {
					r, err = old.Node.Receipt(id)
					return !errors.Is(err, consensus.ErrNotSigned)
				})
				if err != nil {
					t.Fatalf("receipt %s: %v", id, err)
				}
				if _, err := receipt.NewJSON([]byte(r.Signature.Cert), r.Signature.NodeID, r.Signature.Sig, r.Leaf, r.Proof).Verify(c.ServiceCert); err != nil {
					t.Fatalf("receipt %s from the rejoined node: %v", id, err)
				}
			}
			c.Close()
			for _, m := range c.Members {
				if _, err := ledger.Verify(context.Background(), filepath.Join(m.Dir, "ledger"), ledger.VerifyOptions{ServiceCert: c.ServiceCert}); err != nil {
					t.Fatalf("node %d: ledger verify: %v", m.ID, err)
				}
			}
		})
	}
}
