package consensustest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cocoledger/coco/consensus"
	"github.com/cocoledger/coco/ledger"
	pb "go.etcd.io/raft/v3/raftpb"
)

// confChange proposes a change on the current primary and waits until the
// primary has committed it. It returns the seqno of the configuration entry.
// A change the primary refused because it lost its role, or that was lost
// in a view change, is proposed again (changes are idempotent); tests do
// not rely on message timing keeping one primary.
func confChange(t *testing.T, c *Cluster, kind consensus.ChangeKind, id uint64) uint64 {
	t.Helper()
	deadline := time.Now().Add(c.opts.Timeout)
	for {
		if time.Now().After(deadline) {
			t.Fatalf("%s %d: no primary committed it (%s)", kind, id, c.describe())
		}
		leader := c.WaitLeader()
		seq, err := leader.Node.ProposeConfChange(context.Background(), kind, id)
		if errors.Is(err, consensus.ErrNotPrimary) || errors.Is(err, consensus.ErrNotReady) {
			continue
		}
		if err != nil {
			t.Fatalf("%s %d on node %d: %v", kind, id, leader.ID, err)
		}
		c.WaitFor(fmt.Sprintf("node %d committing %s %d at %d", leader.ID, kind, id, seq), func() bool {
			return leader.Node.Status().CommitIndex >= seq
		})
		le, err := leader.Ledger.Entry(seq)
		if err != nil {
			t.Fatalf("node %d: entry %d: %v", leader.ID, seq, err)
		}
		if le.Kind != ledger.KindInternal || le.RaftType != uint8(pb.EntryConfChange) {
			continue // another primary's entry committed at seq
		}
		if got := leader.Node.Membership().Index; got != seq {
			t.Fatalf("%s %d committed at %d, node %d's configuration is from %d", kind, id, seq, leader.ID, got)
		}
		return seq
	}
}

// progress returns the current primary's Progress.
func progress(t *testing.T, c *Cluster, on ...*Member) (leader *Member, pr map[uint64]uint64) {
	t.Helper()
	c.WaitFor("the primary's progress", func() bool {
		leader = c.WaitLeader(on...)
		var err error
		pr, err = leader.Node.Progress(context.Background())
		if errors.Is(err, consensus.ErrNotPrimary) {
			return false
		}
		if err != nil {
			t.Fatalf("progress on node %d: %v", leader.ID, err)
		}
		return true
	})
	return leader, pr
}

// waitCaughtUp ticks until the primary's Progress shows every id matching
// its whole log, and returns that progress.
func waitCaughtUp(t *testing.T, c *Cluster, ids ...uint64) map[uint64]uint64 {
	t.Helper()
	var pr map[uint64]uint64
	c.WaitFor(fmt.Sprintf("nodes %v catching up with the primary", ids), func() bool {
		var leader *Member
		leader, pr = progress(t, c)
		last := leader.Node.Status().LastIndex
		for _, id := range ids {
			if pr[id] < last {
				return false
			}
		}
		return true
	})
	return pr
}

// waitCommittedOn ticks until every member in on has applied up to seqno.
func waitCommittedOn(c *Cluster, seqno uint64, on ...*Member) {
	c.t.Helper()
	c.WaitFor(fmt.Sprintf("nodes committing %d", seqno), func() bool {
		for _, m := range on {
			if m.Node.Status().CommitIndex < seqno {
				return false
			}
		}
		return true
	})
}

// waitSigned ticks until every running member has committed a signature
// after seqno, so that CheckLedgers compares signed roots over it.
func waitSigned(c *Cluster, seqno uint64) {
	c.t.Helper()
	c.WaitFor(fmt.Sprintf("a committed signature after %d", seqno), func() bool {
		for _, m := range c.Members {
			if m.Running() && m.Node.Status().LastSignedSeqno <= seqno {
				return false
			}
		}
		return true
	})
}

func lastSeqno(ids []consensus.TxID) uint64 {
	var last uint64
	for _, id := range ids {
		last = max(last, id.Seqno)
	}
	return last
}

func sameConf(a, b consensus.Membership) bool {
	return slices.Equal(sorted(a.Voters), sorted(b.Voters)) && slices.Equal(sorted(a.Learners), sorted(b.Learners))
}

func conf(voters, learners []uint64) consensus.Membership {
	return consensus.Membership{Voters: voters, Learners: learners}
}

func raftIDs(ms ...*Member) []uint64 {
	ids := make([]uint64, len(ms))
	for i, m := range ms {
		ids[i] = m.ID
	}
	return ids
}

func except(c *Cluster, out ...*Member) []*Member {
	var rest []*Member
	for _, m := range c.Members {
		if !slices.Contains(out, m) {
			rest = append(rest, m)
		}
	}
	return rest
}

// TestGrowFromOne starts a service with one node, adds two empty nodes as
// learners, waits for them to catch up, promotes them, and then takes the
// founder away: the two new voters must elect a primary and commit alone.
func TestGrowFromOne(t *testing.T) {
	c := New(t, Options{Size: 1})
	first := c.WaitLeader()
	// The founder's configuration is the first entry of the log.
	if ms := first.Node.Membership(); !sameConf(ms, conf([]uint64{1}, nil)) || ms.Index != 1 {
		t.Fatalf("founder's membership %+v, want voter 1 from seqno 1", ms)
	}
	if le, err := first.Ledger.Entry(1); err != nil || le.Kind != ledger.KindInternal {
		t.Fatalf("entry 1 = %+v, %v; want the internal bootstrap configuration entry", le, err)
	}
	want := map[string]string{}
	ids := write(t, c, "before", 10, want)

	joiners := []*Member{c.AddMember(), c.AddMember()}
	for _, m := range joiners {
		if ms := m.Node.Membership(); len(ms.Voters)+len(ms.Learners) != 0 || ms.Index != 0 {
			t.Fatalf("new node %d starts with membership %+v, want none", m.ID, ms)
		}
	}
	// Outside the configuration nobody talks to them, and they talk to
	// nobody: time passes and nothing changes.
	view := first.Node.Status().View
	for range 3 * c.opts.ElectionTicks {
		c.Tick()
	}
	for _, m := range joiners {
		if st := m.Node.Status(); st.LastIndex != 0 || st.Leader != 0 || st.IsPrimary {
			t.Fatalf("node %d outside the configuration has status %+v", m.ID, st)
		}
	}
	if st := first.Node.Status(); !st.WritesReady || st.View != view {
		t.Fatalf("founder status %+v after new nodes started; was primary in view %d", st, view)
	}

	for _, m := range joiners {
		confChange(t, c, consensus.AddLearner, m.ID)
	}
	c.WaitMembership([]uint64{1}, []uint64{2, 3})
	pr := waitCaughtUp(t, c, 2, 3)
	if len(pr) != 3 {
		t.Fatalf("progress %v, want nodes 1, 2 and 3", pr)
	}
	// Learners replicate and apply everything, from the bootstrap entry on.
	waitConverged(t, c, ids)
	checkCommitted(t, c, ids, want)

	for _, m := range joiners {
		confChange(t, c, consensus.AddVoter, m.ID)
	}
	ms := c.WaitMembership([]uint64{1, 2, 3}, nil)
	ids = append(ids, write(t, c, "after", 10, want)...)
	waitConverged(t, c, ids)
	checkCommitted(t, c, ids, want)
	waitSigned(c, lastSeqno(ids))
	if upTo, sigs := c.CheckLedgers(); upTo < lastSeqno(ids) || sigs == 0 {
		t.Fatalf("compared %d entries with %d signatures", upTo, sigs)
	}
	checkSameState(t, c, "records", "public:records")

	// Every node saw the same configurations in the same order, the new
	// ones by replicating the log from its first entry.
	wantConfs := []consensus.Membership{
		conf([]uint64{1}, nil),
		conf([]uint64{1}, []uint64{2}),
		conf([]uint64{1}, []uint64{2, 3}),
		conf([]uint64{1, 2}, []uint64{3}),
		conf([]uint64{1, 2, 3}, nil),
	}
	for _, m := range c.Members {
		got := m.ConfChanges()
		if !slices.EqualFunc(got, wantConfs, sameConf) {
			t.Errorf("node %d: OnConfChange reported %v, want %v", m.ID, got, wantConfs)
		}
		if got := m.Node.Membership(); got.Index != ms.Index {
			t.Errorf("node %d: configuration from %d, want %d", m.ID, got.Index, ms.Index)
		}
	}

	// The new voters count: without the founder they elect a primary and
	// commit on their own.
	c.Stop(first)
	leader := c.WaitLeader(joiners...)
	if v := leader.Node.Status().View; v <= view {
		t.Fatalf("node %d leads view %d, founder led %d", leader.ID, v, view)
	}
	more := write(t, c, "without-founder", 5, want)
	waitCommittedOn(c, lastSeqno(more), joiners...)
	checkCommitted(t, c, append(ids, more...), want)
	c.CheckLedgers()
	checkSameState(t, c, "records", "public:records")
}

// TestConfChangeRefused checks the changes a node must refuse, and that a
// refused change leaves the service working.
func TestConfChangeRefused(t *testing.T) {
	c := New(t, Options{})
	leader := c.WaitLeader()
	ctx := context.Background()
	for _, f := range followers(c, leader) {
		if _, err := f.Node.ProposeConfChange(ctx, consensus.AddLearner, 9); !errors.Is(err, consensus.ErrNotPrimary) {
			t.Errorf("conf change on follower %d: %v, want ErrNotPrimary", f.ID, err)
		}
		if _, err := f.Node.Progress(ctx); !errors.Is(err, consensus.ErrNotPrimary) {
			t.Errorf("progress on follower %d: %v, want ErrNotPrimary", f.ID, err)
		}
	}
	for _, tc := range []struct {
		kind consensus.ChangeKind
		id   uint64
	}{
		{consensus.ChangeKind(7), 9},
		{consensus.AddLearner, 0},
	} {
		if seq, err := leader.Node.ProposeConfChange(ctx, tc.kind, tc.id); err == nil {
			t.Errorf("%s %d was proposed at %d", tc.kind, tc.id, seq)
		}
	}

	// An isolated primary that is not ticked keeps its role but cannot
	// commit, so its first change stays pending and the next is refused.
	joiner := c.AddMember()
	c.Net.Isolate(leader.ID)
	seq, err := leader.Node.ProposeConfChange(ctx, consensus.AddLearner, joiner.ID)
	if err != nil {
		t.Fatalf("add learner %d: %v", joiner.ID, err)
	}
	for _, kind := range []consensus.ChangeKind{consensus.AddVoter, consensus.RemoveNode} {
		if _, err := leader.Node.ProposeConfChange(ctx, kind, joiner.ID); !errors.Is(err, consensus.ErrConfChangePending) {
			t.Fatalf("%s while %d is pending: %v, want ErrConfChangePending", kind, seq, err)
		}
	}
	c.Net.Heal()
	if ms := c.WaitMembership([]uint64{1, 2, 3}, []uint64{joiner.ID}); ms.Index != seq {
		t.Fatalf("learner added at %d, proposed at %d", ms.Index, seq)
	}
	// Applied: the next change is accepted.
	confChange(t, c, consensus.AddVoter, joiner.ID)
	c.WaitMembership([]uint64{1, 2, 3, joiner.ID}, nil)
	id := c.MustPut("records", "k", "v")
	c.WaitCommitted(id.Seqno)
	checkCommitted(t, c, []consensus.TxID{id}, map[string]string{"records/k": "v"})

	// A stopped node answers ErrStopped.
	n := joiner.Node
	c.Stop(joiner)
	if _, err := n.ProposeConfChange(ctx, consensus.RemoveNode, 2); !errors.Is(err, consensus.ErrStopped) {
		t.Errorf("conf change on a stopped node: %v, want ErrStopped", err)
	}
	if err := n.ReadBarrier(ctx); !errors.Is(err, consensus.ErrStopped) {
		t.Errorf("read barrier on a stopped node: %v, want ErrStopped", err)
	}
}

// TestConfChangeKeepsAVoter: raft cannot apply a configuration without
// voters (it panics on every node that applies it, at every restart), so
// the primary must refuse to propose one.
func TestConfChangeKeepsAVoter(t *testing.T) {
	c := New(t, Options{Size: 1})
	leader := c.WaitLeader()
	learner := c.AddMember()
	confChange(t, c, consensus.AddLearner, learner.ID)
	for _, kind := range []consensus.ChangeKind{consensus.RemoveNode, consensus.AddLearner} {
		if seq, err := leader.Node.ProposeConfChange(context.Background(), kind, leader.ID); !errors.Is(err, consensus.ErrLastVoter) {
			t.Fatalf("%s of the only voter: seqno %d, %v; want ErrLastVoter", kind, seq, err)
		}
	}
	// Removing the learner or anyone else is fine.
	confChange(t, c, consensus.RemoveNode, 7)
	id := c.MustPut("records", "k", "v")
	c.WaitCommitted(id.Seqno)
	c.WaitMembership([]uint64{1}, []uint64{learner.ID})
	checkCommitted(t, c, []consensus.TxID{id}, map[string]string{"records/k": "v"})
}

// TestRemoveVoter removes a voter from a three-node service: the other two
// go on committing, and the removed node gets nothing ordered after its
// removal. A removed primary steps down and the others elect a new one.
func TestRemoveVoter(t *testing.T) {
	for _, tc := range []struct {
		name    string
		primary bool
	}{
		{"follower", false},
		{"primary", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New(t, Options{})
			leader := c.WaitLeader()
			want := map[string]string{}
			ids := write(t, c, "a", 5, want)
			c.WaitCommitted(lastSeqno(ids))
			victim := followers(c, leader)[0]
			if tc.primary {
				victim = leader
			}
			rest := except(c, victim)
			view := leader.Node.Status().View

			seq := confChange(t, c, consensus.RemoveNode, victim.ID)
			if ms := c.WaitMembership(raftIDs(rest...), nil, rest...); ms.Index != seq {
				t.Fatalf("removal applied from %d, proposed at %d", ms.Index, seq)
			}
			next, pr := progress(t, c, rest...)
			if tc.primary {
				if st := victim.Node.Status(); st.IsPrimary || st.WritesReady {
					t.Fatalf("removed primary still leads: %+v", st)
				}
				if next.Node.Status().View <= view {
					t.Fatalf("no new view after the primary was removed")
				}
			}
			if _, ok := pr[victim.ID]; ok || len(pr) != 2 {
				t.Fatalf("progress after removing %d: %v", victim.ID, pr)
			}

			more := write(t, c, "b", 10, want)
			waitCommittedOn(c, lastSeqno(more), rest...)
			if last := victim.Ledger.LastIndex(); last >= more[0].Seqno {
				t.Fatalf("removed node %d has entries up to %d; writes after its removal start at %d", victim.ID, last, more[0].Seqno)
			}
			// It stays where it is and cannot take part: it never leads,
			// and never forces a view on the others (pre-vote, and its log
			// is behind theirs). Whether the two keep their primary over
			// the ticks depends on message timing, so that is not checked.
			before := victim.Node.Status().LastIndex
			for range 3 * c.opts.ElectionTicks {
				c.Tick()
			}
			if after := victim.Node.Status().LastIndex; after != before {
				t.Fatalf("removed node's log grew from %d to %d", before, after)
			}
			var restView uint64
			for _, m := range rest {
				restView = max(restView, m.Node.Status().View)
			}
			if st := victim.Node.Status(); st.IsPrimary || st.View > restView {
				t.Fatalf("removed node %+v; the others are at view %d", st, restView)
			}
			if _, ok := victim.Store.BeginReadOnly().Get("records", "b1"); ok {
				t.Fatal("removed node applied a write ordered after its removal")
			}
			more = append(more, write(t, c, "c", 3, want)...)
			waitCommittedOn(c, lastSeqno(more), rest...)

			c.Stop(victim)
			ids = append(ids, more...)
			checkCommitted(t, c, ids, want)
			waitSigned(c, lastSeqno(ids))
			c.CheckLedgers()
			checkSameState(t, c, "records", "public:records")
		})
	}
}

// editRaftState rewrites fields of a stopped member's raft state file, as a
// crash at the wrong moment could have left it. It knows the file's name
// and JSON fields, which belong to package consensus.
func editRaftState(t *testing.T, m *Member, fields map[string]any) {
	t.Helper()
	path := filepath.Join(m.Dir, "raft_state.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	st := map[string]any{}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	for k, v := range fields {
		if _, ok := st[k]; !ok && k != "learners" {
			t.Fatalf("raft state %s has no field %q: %s", path, k, b)
		}
		st[k] = v
	}
	if b, err = json.Marshal(st); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestMembershipSurvivesRestart changes the configuration (a learner added
// and promoted, a founder removed), then restarts a node: its configuration
// must be the same after the restart, whether its state file is current or
// a crash left it behind the ledger, and it must keep committing.
func TestMembershipSurvivesRestart(t *testing.T) {
	for _, tc := range []struct {
		name string
		// state returns the fields to write into the stopped node's state
		// file, given the seqno of the first change after the founders'.
		state func(firstChange uint64) map[string]any
	}{
		{"clean", nil},
		// The configuration is rebuilt from the committed configuration
		// entries in the ledger.
		{"configuration not saved", func(uint64) map[string]any {
			return map[string]any{"voters": []uint64{1, 2, 3}, "learners": []uint64{}, "conf_index": 3}
		}},
		// The commit index is saved lazily: after a crash raft commits the
		// configuration entries again, which the saved configuration
		// already reflects. Applying them twice would go through stale
		// configurations.
		{"commit index not saved", func(firstChange uint64) map[string]any {
			return map[string]any{"commit": firstChange - 1}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// One big chunk: the ledger's own commit marker (committed
			// chunk files) does not cover the configuration entries.
			c := New(t, Options{ChunkSize: 1 << 20})
			leader := c.WaitLeader()
			if ms := c.WaitMembership([]uint64{1, 2, 3}, nil); ms.Index != 3 {
				t.Fatalf("founders' configuration from %d, want 3 (one entry per founder)", ms.Index)
			}
			want := map[string]string{}
			ids := write(t, c, "a", 5, want)
			fs := followers(c, leader)
			removed, target := fs[0], fs[1]

			joiner := c.AddMember()
			firstChange := confChange(t, c, consensus.AddLearner, joiner.ID)
			waitCaughtUp(t, c, joiner.ID)
			confChange(t, c, consensus.AddVoter, joiner.ID)
			confChange(t, c, consensus.RemoveNode, removed.ID)
			voters := sorted([]uint64{leader.ID, target.ID, joiner.ID})
			final := c.WaitMembership(voters, nil, except(c, removed)...)
			c.Stop(removed)
			ids = append(ids, write(t, c, "b", 5, want)...)
			c.WaitCommitted(lastSeqno(ids))

			check := func(m *Member, when string) {
				t.Helper()
				if got := m.Node.Membership(); !sameConf(got, final) || got.Index != final.Index {
					t.Fatalf("node %d %s: membership %+v, want %+v", m.ID, when, got, final)
				}
			}
			c.Stop(target)
			if tc.state != nil {
				editRaftState(t, target, tc.state(firstChange))
			}
			c.Start(target)
			check(target, "right after restart")
			ids = append(ids, write(t, c, "c", 5, want)...)
			c.WaitCommitted(lastSeqno(ids))
			check(target, "after catching up")
			for _, got := range target.ConfChanges() {
				if !sameConf(got, final) {
					t.Fatalf("node %d went through configuration %+v after its restart; want only %+v", target.ID, got, final)
				}
			}
			checkCommitted(t, c, ids, want)

			// The whole service restarts and keeps its configuration.
			running := except(c, removed)
			for _, m := range running {
				c.Stop(m)
			}
			for _, m := range running {
				c.Start(m)
				check(m, "after a full restart")
			}
			ids = append(ids, write(t, c, "d", 5, want)...)
			c.WaitCommitted(lastSeqno(ids))
			for _, m := range running {
				check(m, "after a full restart and writes")
			}
			checkCommitted(t, c, ids, want)
			waitSigned(c, lastSeqno(ids))
			c.CheckLedgers()
			checkSameState(t, c, "records", "public:records")
		})
	}
}

// readBarrier calls ReadBarrier on m, ticking every node until it returns,
// and reports how many ticks that took.
func readBarrier(c *Cluster, m *Member) (ticks int, err error) {
	c.t.Helper()
	done := make(chan error, 1)
	node := m.Node
	go func() { done <- node.ReadBarrier(context.Background()) }()
	for {
		select {
		case err := <-done:
			return ticks, err
		default:
		}
		c.Tick()
		ticks++
		time.Sleep(c.opts.TickPace)
	}
}

// mustReadBarrier is readBarrier where it must pass. ErrReadTimeout is
// retried: the primary may change when messages are slow, whatever the
// ticks, and a barrier raft did not confirm is no answer.
func mustReadBarrier(t *testing.T, c *Cluster, m *Member) {
	t.Helper()
	deadline := time.Now().Add(c.opts.Timeout)
	for {
		_, err := readBarrier(c, m)
		if err == nil {
			return
		}
		if !errors.Is(err, consensus.ErrReadTimeout) || time.Now().After(deadline) {
			t.Fatalf("read barrier on node %d: %v (%s)", m.ID, err, c.describe())
		}
	}
}

// TestReadBarrierSeesAcknowledgedWrites: once the primary acknowledged a
// write, a read barrier on any node makes its committed state show it. The
// reading follower is cut off while the write commits, so it is behind when
// the barrier starts and the barrier has to wait for it to catch up. No tick
// passes while it is cut off, so it still knows the primary when it is back.
func TestReadBarrierSeesAcknowledgedWrites(t *testing.T) {
	c := New(t, Options{})
	for i := range 10 {
		leader := c.WaitLeader()
		m := followers(c, leader)[i%2]
		key, value := fmt.Sprint("k", i), fmt.Sprint("v", i)
		c.Net.Isolate(m.ID)
		tx := leader.Store.Begin()
		if err := tx.Put("records", key, []byte(value)); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.opts.Timeout)
		id, err := leader.Node.Submit(ctx, tx, [32]byte{})
		cancel()
		if errors.Is(err, consensus.ErrNotPrimary) || errors.Is(err, consensus.ErrNotReady) {
			// The primary changed since the last ticks (timing); again.
			c.Net.Heal()
			continue
		}
		if err != nil {
			t.Fatalf("write %s without ticks: %v", key, err)
		}
		if st := m.Node.Status(); st.CommitIndex >= id.Seqno {
			t.Fatalf("isolated node %d committed %s", m.ID, id)
		}
		c.Net.Heal()
		mustReadBarrier(t, c, m)
		if st := m.Node.Status(); st.CommitIndex < id.Seqno {
			t.Fatalf("node %d passed a read barrier at commit %d, before write %s", m.ID, st.CommitIndex, id)
		}
		if got, ok := m.Store.BeginReadOnly().Get("records", key); !ok || string(got) != value {
			t.Fatalf("node %d after a read barrier: %s = %q (present %v), want %q", m.ID, key, got, ok, value)
		}
	}
}

// TestReadBarrierTimesOut cuts a node off: its read barriers fail with
// ErrReadTimeout within two election timeouts of ticks (none passes while
// time stands still), and pass again, seeing the others' writes, once it
// is back.
func TestReadBarrierTimesOut(t *testing.T) {
	for _, tc := range []struct {
		name    string
		primary bool
	}{
		{"follower", false},
		{"primary", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New(t, Options{})
			leader := c.WaitLeader()
			c.MustPut("records", "k", "before")
			m := followers(c, leader)[0]
			if tc.primary {
				m = leader
			}
			c.Net.Isolate(m.ID)

			done := make(chan error, 1)
			node := m.Node
			go func() { done <- node.ReadBarrier(context.Background()) }()
			// Without ticks nothing can answer it.
			select {
			case err := <-done:
				t.Fatalf("read barrier on isolated node %d returned %v without a tick", m.ID, err)
			case <-time.After(20 * time.Millisecond):
			}
			// Two election timeouts after it reached the loop; some slack
			// for ticks taken before it did.
			limit := 3 * c.opts.ElectionTicks
			ticks := 0
			for err := error(nil); ; {
				select {
				case err = <-done:
				default:
					c.Tick()
					ticks++
					if ticks > limit {
						t.Fatalf("read barrier on isolated node %d still pending after %d ticks", m.ID, ticks)
					}
					time.Sleep(c.opts.TickPace)
					continue
				}
				if !errors.Is(err, consensus.ErrReadTimeout) {
					t.Fatalf("read barrier on isolated node %d: %v, want ErrReadTimeout", m.ID, err)
				}
				break
			}
			// By now it knows no primary: the next one fails as well.
			if n, err := readBarrier(c, m); !errors.Is(err, consensus.ErrReadTimeout) || n > limit {
				t.Fatalf("second read barrier on isolated node %d: %v after %d ticks, want ErrReadTimeout", m.ID, err, n)
			}

			// The others go on; once back, the node's barrier sees their write.
			id := c.MustPut("records", "k", "while-isolated")
			if tc.primary && c.WaitLeader() == m {
				t.Fatalf("isolated node %d is still the primary", m.ID)
			}
			c.Net.Heal()
			c.WaitFor(fmt.Sprintf("node %d following a primary again", m.ID), func() bool {
				st := m.Node.Status()
				return st.Leader != 0 && st.Leader != m.ID
			})
			mustReadBarrier(t, c, m)
			if st := m.Node.Status(); st.CommitIndex < id.Seqno {
				t.Fatalf("node %d passed a read barrier at commit %d, before %s", m.ID, st.CommitIndex, id)
			}
			if got, _ := m.Store.BeginReadOnly().Get("records", "k"); string(got) != "while-isolated" {
				t.Fatalf("node %d after heal and read barrier: k = %q", m.ID, got)
			}
		})
	}
}

// TestReadBarrierConcurrent issues many barriers at once on every node,
// round after round with a write before each: they all pass, and each sees
// the write acknowledged before it was issued. (A barrier that times out
// because the primary changed, which message timing can cause, is retried.)
func TestReadBarrierConcurrent(t *testing.T) {
	c := New(t, Options{})
	c.WaitLeader()
	const perNode = 100
	for round := range 5 {
		key, value := fmt.Sprint("k", round), fmt.Sprint("v", round)
		c.MustPut("records", key, value)
		errs := make(chan error, perNode*len(c.Members))
		for _, m := range c.Members {
			node, store, id := m.Node, m.Store, m.ID
			for range perNode {
				go func() {
					err := node.ReadBarrier(context.Background())
					for errors.Is(err, consensus.ErrReadTimeout) {
						err = node.ReadBarrier(context.Background())
					}
					if err != nil {
						errs <- fmt.Errorf("node %d: %w", id, err)
						return
					}
					if got, ok := store.BeginReadOnly().Get("records", key); !ok || string(got) != value {
						errs <- fmt.Errorf("node %d after a read barrier: %s = %q (present %v), want %q", id, key, got, ok, value)
						return
					}
					errs <- nil
				}()
			}
		}
		n := 0
		c.WaitFor(fmt.Sprintf("round %d: %d read barriers", round, cap(errs)), func() bool {
			for {
				select {
				case err := <-errs:
					if err != nil {
						t.Fatalf("round %d: %v", round, err)
					}
					n++
					continue
				default:
				}
				return n == cap(errs)
			}
		})
	}
}
