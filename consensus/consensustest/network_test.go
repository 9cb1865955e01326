package consensustest

import (
	"context"
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

// settle waits until the network has decided the fate of every message.
func settle(t *testing.T, nw *Network) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := nw.Stats()
		if s.Delivered+s.Dropped == s.Sent {
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
		{"healed", func(nw *Network) { nw.Isolate(2); nw.Partition([]uint64{1}); nw.SetDropRate(1); nw.Heal() }, all},
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
