package consensustest

import (
	"context"
	"errors"
	"testing"

	"github.com/cocoledger/coco/consensus"
	"github.com/cocoledger/coco/kv"
)

// TestDelayedLinks slows links down by a number of ticks (not lost: every
// message arrives, late) while writes go on. A slow follower must not stop
// the others committing and must end up with the same ledger; a primary
// whose messages arrive later than an election timeout must lose its role
// to a new view, and nothing acknowledged may be lost on the way. The
// ledgers are compared while the delays last, then again after Heal.
func TestDelayedLinks(t *testing.T) {
	const electionTicks = 10
	for _, tc := range []struct {
		name string
		// delay slows links down, given the primary, and returns the node
		// whose links it slowed.
		delay func(c *Cluster, primary *Member) *Member
		// newView: the followers stop hearing from the primary for longer
		// than an election timeout, so one of them must take over.
		newView bool
	}{
		{"follower by a few ticks", func(c *Cluster, primary *Member) *Member {
			slow := followers(c, primary)[0]
			c.Net.DelayNode(slow.ID, 3)
			return slow
		}, false},
		// Its election timer fires, but pre-vote keeps it from disrupting
		// the others, who hear from the primary.
		{"follower beyond an election timeout", func(c *Cluster, primary *Member) *Member {
			slow := followers(c, primary)[0]
			c.Net.DelayNode(slow.ID, 3*electionTicks)
			return slow
		}, false},
		// Raft's randomized election timeout is below two election
		// timeouts; four leave room for the pre-vote round.
		{"messages from the primary", func(c *Cluster, primary *Member) *Member {
			for _, f := range followers(c, primary) {
				c.Net.SetDelay(primary.ID, f.ID, 4*electionTicks)
			}
			return primary
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New(t, Options{ElectionTicks: electionTicks})
			leader := c.WaitLeader()
			want := map[string]string{}
			ids := write(t, c, "a", 5, want)
			waitConverged(t, c, ids)
			view := leader.Node.Status().View

			slow := tc.delay(c, leader)
			// A write handed to the primary right away, before any tick:
			// when its messages are slow it may never commit it, and must
			// then not acknowledge it.
			type outcome struct {
				id  consensus.TxID
				err error
			}
			pending := make(chan outcome, 1)
			tx := leader.Store.Begin()
			if err := tx.Put("records", "early", []byte("early")); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), c.opts.Timeout)
			defer cancel()
			node := leader.Node
			go func() {
				id, err := node.Submit(ctx, tx, [32]byte{})
				pending <- outcome{id, err}
			}()

			if tc.newView {
				next := c.WaitLeader(followers(c, leader)...)
				if v := next.Node.Status().View; v <= view {
					t.Fatalf("new primary %d has view %d, old view %d", next.ID, v, view)
				}
			}
			// The service keeps committing while the links are slow, and
			// the slow node catches up without the delays being lifted.
			ids = append(ids, write(t, c, "b", 20, want)...)
			var early outcome
			c.WaitFor("the early write's outcome", func() bool {
				select {
				case early = <-pending:
					return true
				default:
					return false
				}
			})
			switch {
			case early.err == nil:
				ids = append(ids, early.id)
				want["records/early"] = "early"
			case errors.Is(early.err, consensus.ErrInvalidated), errors.Is(early.err, consensus.ErrNotPrimary),
				errors.Is(early.err, consensus.ErrNotReady), errors.Is(early.err, kv.ErrConflict):
			default:
				t.Fatalf("early write on node %d: %s, %v", leader.ID, early.id, early.err)
			}
			waitConverged(t, c, ids)
			checkCommitted(t, c, ids, want)
			waitSigned(c, lastSeqno(ids))
			c.CheckLedgers()
			if s := c.Net.Stats(); s.Delayed == 0 {
				t.Fatalf("no message was delayed: %+v", s)
			}
			if tc.newView {
				if st := leader.Node.Status(); st.IsPrimary || st.View <= view {
					t.Fatalf("old primary %d still leads, or never saw the new view: %+v", leader.ID, st)
				}
			}

			c.Net.Heal()
			ids = append(ids, write(t, c, "c", 5, want)...)
			waitConverged(t, c, ids)
			checkCommitted(t, c, ids, want)
			waitSigned(c, lastSeqno(ids))
			c.CheckLedgers()
			checkSameState(t, c, "records", "public:records")
			if early.err != nil {
				for _, m := range c.Members {
					if _, ok := m.Store.BeginReadOnly().Get("records", "early"); ok {
						t.Errorf("node %d holds the early write, refused with %v", m.ID, early.err)
					}
					if errors.Is(early.err, consensus.ErrInvalidated) {
						if st, err := m.Node.TxStatus(early.id); err != nil || st != consensus.TxInvalid {
							t.Errorf("node %d: invalidated %s is %s, %v", m.ID, early.id, st, err)
						}
					}
				}
			}
			t.Logf("slow node %d; early write %s, %v; network %+v", slow.ID, early.id, early.err, c.Net.Stats())
		})
	}
}
