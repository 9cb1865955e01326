package consensustest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
)

// recorder is a Stepper that keeps what it receives.
type recorder struct {
	mu   sync.Mutex
	msgs []*pb.Message
}

func (r *recorder) Step(_ context.Context, m *pb.Message) error {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
	return nil
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

func msg(from, to uint64) *pb.Message {
	return &pb.Message{Type: pb.MsgHeartbeat.Enum(), From: new(from), To: new(to), Entries: []*pb.Entry{{Data: []byte("d")}}}
}

// settle waits until the network has decided the fate of every message
// not held by a delay.
func settle(t *testing.T, nw *Network) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := nw.Stats()
		if s.Delivered+s.Dropped+s.Held == s.Sent {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("network never settled: %+v", s)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestNetworkFaults(t *testing.T) {
	type pair struct{ from, to uint64 }
	all := []pair{{1, 2}, {2, 1}, {1, 3}, {3, 1}, {2, 3}, {3, 2}}
	for _, tc := range []struct {
		name  string
		fault func(*Network)
		pass  []pair
	}{
		{"healthy", func(*Network) {}, all},
		{"isolate 1", func(nw *Network) { nw.Isolate(1) }, []pair{{2, 3}, {3, 2}}},
		{"partition {1,2} {3}", func(nw *Network) { nw.Partition([]uint64{1, 2}, []uint64{3}) }, []pair{{1, 2}, {2, 1}}},
		{"partition {3} rest", func(nw *Network) { nw.Partition([]uint64{3}) }, []pair{{1, 2}, {2, 1}}},
		{"healed", func(nw *Network) {
			nw.Isolate(2)
			nw.Partition([]uint64{1})
			nw.SetDropRate(1)
			nw.SetDelay(1, 2, 5)
			nw.DelayNode(3, 5)
			nw.Heal()
		}, all},
		{"lose everything", func(nw *Network) { nw.SetDropRate(1) }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nw := NewNetwork(1)
			defer nw.Close()
			recs := map[uint64]*recorder{1: {}, 2: {}, 3: {}}
			for id, r := range recs {
				nw.Attach(id, r)
			}
			tc.fault(nw)
			want := map[uint64]int{}
			for _, p := range all {
				nw.Transport().Send([]*pb.Message{msg(p.from, p.to)})
			}
			for _, p := range tc.pass {
				want[p.to]++
			}
			settle(t, nw)
			for id, r := range recs {
				if got := r.count(); got != want[id] {
					t.Errorf("node %d received %d messages, want %d", id, got, want[id])
				}
			}
		})
	}
}

func TestNetworkClonesAndDetaches(t *testing.T) {
	nw := NewNetwork(1)
	defer nw.Close()
	r := &recorder{}
	nw.Attach(2, r)
	m := msg(1, 2)
	nw.Transport().Send([]*pb.Message{m})
	settle(t, nw)
	m.Entries[0].Data[0] = 'X'
	if got := string(r.msgs[0].GetEntries()[0].GetData()); got != "d" || r.msgs[0] == m {
		t.Fatalf("receiver shares the sender's message: %q", got)
	}
	nw.Detach(2)
	nw.Transport().Send([]*pb.Message{msg(1, 2)})
	settle(t, nw)
	if r.count() != 1 {
		t.Fatal("a detached node received a message")
	}
}

// TestNetworkLossIsSeeded: with one sender and the same seed, the same
// messages are lost.
func TestNetworkLossIsSeeded(t *testing.T) {
	run := func(seed int64) []uint64 {
		nw := NewNetwork(seed)
		defer nw.Close()
		r := &recorder{}
		nw.Attach(2, r)
		nw.SetDropRate(0.3)
		for i := range 200 {
			m := msg(1, 2)
			m.Index = new(uint64(i))
			nw.Transport().Send([]*pb.Message{m})
		}
		settle(t, nw)
		var got []uint64
		for _, m := range r.msgs {
			got = append(got, m.GetIndex())
		}
		return got
	}
	a, b := run(42), run(42)
	if len(a) == 0 || len(a) == 200 || len(a) != len(b) {
		t.Fatalf("seeded loss delivered %d then %d of 200", len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("seeded loss differs at %d: %d vs %d", i, a[i], b[i])
		}
	}
}

// indexes returns the Index of every message r received from from, in the
// order it received them.
func (r *recorder) indexes(from uint64) []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := []uint64{}
	for _, m := range r.msgs {
		if m.GetFrom() == from {
			out = append(out, m.GetIndex())
		}
	}
	return out
}

func sendIndexed(nw *Network, from, to, index uint64) {
	m := msg(from, to)
	m.Index = new(index)
	nw.Transport().Send([]*pb.Message{m})
}

func upTo(n uint64) []uint64 {
	out := []uint64{}
	for i := range n {
		out = append(out, i)
	}
	return out
}

// TestNetworkDelay: messages on a delayed link arrive after the clock has
// advanced by the delay, not before, in the order they were sent, while
// other links (the reverse direction included) deliver at once, overtaking
// them. Changing the delay never reorders a link.
func TestNetworkDelay(t *testing.T) {
	nw := NewNetwork(1)
	defer nw.Close()
	recs := map[uint64]*recorder{1: {}, 2: {}, 3: {}}
	for id, r := range recs {
		nw.Attach(id, r)
	}
	expect := func(when string, to, from uint64, want []uint64) {
		t.Helper()
		if got := recs[to].indexes(from); !slices.Equal(got, want) {
			t.Fatalf("%s: node %d received %v from node %d, want %v", when, to, got, from, want)
		}
	}

	const delay = 3
	nw.SetDelay(1, 2, delay)
	for i := range uint64(5) {
		sendIndexed(nw, 1, 2, i)
		sendIndexed(nw, 3, 2, i)
		sendIndexed(nw, 1, 3, i)
		sendIndexed(nw, 2, 1, i)
	}
	settle(t, nw)
	expect("before any advance", 2, 1, []uint64{})
	expect("other links", 2, 3, upTo(5))
	expect("other links", 3, 1, upTo(5))
	expect("the reverse link", 1, 2, upTo(5))
	if s := nw.Stats(); s.Delayed != 5 || s.Held != 5 || s.Delivered != 15 {
		t.Fatalf("stats with 5 messages held: %+v", s)
	}
	for i := 1; i < delay; i++ {
		nw.Advance()
		settle(t, nw)
		expect(fmt.Sprintf("after %d advances", i), 2, 1, []uint64{})
	}
	nw.Advance()
	settle(t, nw)
	expect(fmt.Sprintf("after %d advances", delay), 2, 1, upTo(5))
	// Node 3's messages to 2, sent after node 1's, overtook them.
	recs[2].mu.Lock()
	first := slices.Clone(recs[2].msgs[:5])
	recs[2].mu.Unlock()
	for i, m := range first {
		if m.GetFrom() != 3 {
			t.Fatalf("message %d node 2 received is from node %d; the undelayed link should have come first", i, m.GetFrom())
		}
	}
	if s := nw.Stats(); s.Held != 0 || s.Delivered != 20 {
		t.Fatalf("stats after release: %+v", s)
	}

	// A shorter delay does not let a later message overtake a held one.
	sendIndexed(nw, 1, 2, 5) // due in 3
	nw.SetDelay(1, 2, 1)
	sendIndexed(nw, 1, 2, 6) // due in 1, but behind 5
	nw.Advance()
	settle(t, nw)
	expect("a shortened delay", 2, 1, upTo(5))
	nw.Advance()
	nw.Advance()
	settle(t, nw)
	expect("a shortened delay", 2, 1, upTo(7))

	// No delay: delivered without any advance.
	nw.SetDelay(1, 2, 0)
	sendIndexed(nw, 1, 2, 7)
	settle(t, nw)
	expect("no delay", 2, 1, upTo(8))
}

// TestNetworkDelayNode: DelayNode delays every link to and from one node
// (the longer delay wins when a link has its own); faults apply when a held
// message is delivered; Heal ends the delays and releases what they held.
func TestNetworkDelayNode(t *testing.T) {
	nw := NewNetwork(1)
	defer nw.Close()
	recs := map[uint64]*recorder{1: {}, 2: {}, 3: {}}
	for id, r := range recs {
		nw.Attach(id, r)
	}
	nw.DelayNode(2, 2)
	nw.SetDelay(1, 2, 4)
	sendIndexed(nw, 1, 2, 0) // 4
	sendIndexed(nw, 3, 2, 0) // 2
	sendIndexed(nw, 2, 3, 0) // 2
	sendIndexed(nw, 1, 3, 0) // none
	settle(t, nw)
	counts := func() [3]int { return [3]int{recs[1].count(), recs[2].count(), recs[3].count()} }
	for i, want := range [][3]int{
		{0, 0, 1}, // no advance
		{0, 0, 1}, // 1
		{0, 1, 2}, // 2: node 2's own delay
		{0, 1, 2}, // 3
		{0, 2, 2}, // 4: the link's longer delay
	} {
		if i > 0 {
			nw.Advance()
			settle(t, nw)
		}
		if got := counts(); got != want {
			t.Fatalf("after %d advances nodes 1-3 received %v, want %v", i, got, want)
		}
	}

	// Isolated when it is delivered: lost, though it was sent before.
	sendIndexed(nw, 3, 2, 1)
	nw.Isolate(2)
	nw.Advance()
	nw.Advance()
	settle(t, nw)
	if got := counts(); got != [3]int{0, 2, 2} {
		t.Fatalf("an isolated node received a held message: %v", got)
	}
	if s := nw.Stats(); s.Dropped != 1 || s.Held != 0 {
		t.Fatalf("stats after a held message was lost: %+v", s)
	}

	// Heal delivers what is held at once, and ends the delays.
	sendIndexed(nw, 1, 2, 1)
	sendIndexed(nw, 2, 1, 0)
	settle(t, nw)
	if got := counts(); got != [3]int{0, 2, 2} {
		t.Fatalf("held messages delivered early: %v", got)
	}
	nw.Heal()
	sendIndexed(nw, 1, 2, 2)
	settle(t, nw)
	if got := counts(); got != [3]int{1, 4, 2} {
		t.Fatalf("after Heal nodes 1-3 received %v, want [1 4 2]", got)
	}
	if got := recs[2].indexes(1); !slices.Equal(got, []uint64{0, 1, 2}) {
		t.Fatalf("node 2 received %v from node 1 across Heal, want [0 1 2]", got)
	}
	if s := nw.Stats(); s.Held != 0 || s.Sent != s.Delivered+s.Dropped {
		t.Fatalf("stats after Heal: %+v", s)
	}
}
