package transport

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"
)

// BenchmarkSend measures one-way throughput of appends carrying 1 KiB
// entries between two transports on loopback, delivery included.
func BenchmarkSend(b *testing.B) {
	ca := newCA(b, "service")
	var delivered atomic.Int64
	src := startNode(b, ca, nodeOpts{queueSize: 1 << 16})
	dst := startNode(b, ca, nodeOpts{deliver: func(context.Context, *pb.Message) error {
		delivered.Add(1)
		return nil
	}})
	src.SetPeer(dst.id, dst.Addr())
	data := make([]byte, 1<<10)
	msgs := make([]*pb.Message, 64)
	for i := range msgs {
		msgs[i] = app(src.id, dst.id, uint64(i), data)
	}
	// Connect before timing.
	src.Send(msgs[:1])
	waitFor(b, "connection", func() bool { return delivered.Load() == 1 })
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	want := int64(1)
	for sent := 0; sent < b.N; {
		n := min(len(msgs), b.N-sent)
		// Stay under the queue bound, as raft's flow control would.
		for src.Stats()[dst.id].Queued > 1<<15 {
			runtime.Gosched()
		}
		src.Send(msgs[:n])
		sent += n
		want += int64(n)
	}
	waitFor(b, "delivery", func() bool { return delivered.Load() == want })
	b.StopTimer()
	if st := src.Stats()[dst.id]; st.Dropped != 0 {
		b.Fatalf("dropped %d", st.Dropped)
	}
}
