package consensustest

import (
	"context"
	"math/rand"
	"sync"

	"github.com/cocoledger/coco/consensus"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Stepper receives raft messages; *consensus.Node is one.
type Stepper interface {
	Step(ctx context.Context, m *pb.Message) error
}

var _ Stepper = (*consensus.Node)(nil)

// queueLimit bounds each destination's queue. Beyond it messages are
// dropped, as a real transport drops under back-pressure (raft retransmits).
const queueLimit = 1 << 14

// Network is an in-memory network between the nodes of one test cluster.
// Every message is cloned when it leaves its sender, so no two nodes ever
// share a mutable message. Faults (isolation, partitions, random loss) are
// applied when a message is delivered, so a fault also catches messages
// already queued when it was set. Loss uses a seeded source: for a given
// seed and order of messages the same messages are lost.
//
// Delays (SetDelay, DelayNode) are counted in ticks of the network's own
// clock, which only Advance moves (Cluster.Tick advances it once per tick
// round), never wall time. A message sent on a delayed link is held when it
// is sent and released to its destination's queue by the Advance that
// brings the clock to its due tick; faults apply to it when it is delivered,
// as to any other message. Messages on one link keep their order; a message
// on a faster link may overtake them.
type Network struct {
	mu        sync.Mutex
	rng       *rand.Rand
	dropRate  float64
	isolated  map[uint64]bool
	group     map[uint64]int // partition group of each node; nil when not partitioned
	endpoints map[uint64]*endpoint

	clock     uint64          // ticks so far (Advance)
	linkDelay map[link]int    // SetDelay
	nodeDelay map[uint64]int  // DelayNode
	held      []heldMessage   // held by a delay, in the order they were sent
	lastDue   map[link]uint64 // due tick of the last message held on each link
	stats     Stats
	closed    bool
	wg        sync.WaitGroup
	ctx       context.Context
	cancel    context.CancelFunc
}

// Stats counts what the network did with the messages it was given.
// Delayed counts the messages a delay held back when they were sent, and
// Held those of them not yet released: a held message is neither Delivered
// nor Dropped yet.
type Stats struct {
	Sent, Delivered, Dropped uint64
	Delayed, Held            uint64
}

// link is one direction between two nodes.
type link struct{ from, to uint64 }

// heldMessage is a message held by a delay until the clock reaches due.
type heldMessage struct {
	due uint64
	to  *endpoint
	m   *pb.Message
}

// heldLimit bounds the messages held by delays, as queueLimit bounds each
// queue: beyond it messages are dropped.
const heldLimit = 1 << 16

// endpoint is one destination: a queue drained by one goroutine, so Send
// never waits for a receiver and each destination sees messages in order.
type endpoint struct {
	id     uint64
	mu     sync.Mutex
	queue  []*pb.Message
	node   Stepper // nil while the node is down
	notify chan struct{}
}

// NewNetwork returns an empty network whose random loss is drawn from seed.
func NewNetwork(seed int64) *Network {
	ctx, cancel := context.WithCancel(context.Background())
	return &Network{
		rng:       rand.New(rand.NewSource(seed)),
		isolated:  make(map[uint64]bool),
		endpoints: make(map[uint64]*endpoint),
		linkDelay: make(map[link]int),
		nodeDelay: make(map[uint64]int),
		lastDue:   make(map[link]uint64),
		ctx:       ctx,
		cancel:    cancel,
	}
}

// Attach makes node the receiver of messages for raft id, replacing any
// earlier node with that id (a restart).
func (nw *Network) Attach(id uint64, node Stepper) {
	ep := nw.endpoint(id)
	if ep == nil {
		return
	}
	ep.mu.Lock()
	ep.node = node
	ep.mu.Unlock()
}

// Detach drops every message for id until it is attached again (the node is
// down). Queued messages are discarded: they would have been lost with the
// process. Messages a delay holds are still in flight: they reach id if it
// is attached again by the time they are due.
func (nw *Network) Detach(id uint64) {
	ep := nw.endpoint(id)
	if ep == nil {
		return
	}
	ep.mu.Lock()
	ep.node = nil
	dropped := len(ep.queue)
	ep.queue = nil
	ep.mu.Unlock()
	nw.mu.Lock()
	nw.stats.Dropped += uint64(dropped)
	nw.mu.Unlock()
}

func (nw *Network) endpoint(id uint64) *endpoint {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	if nw.closed {
		return nil
	}
	ep, ok := nw.endpoints[id]
	if !ok {
		ep = &endpoint{id: id, notify: make(chan struct{}, 1)}
		nw.endpoints[id] = ep
		nw.wg.Add(1)
		go nw.deliver(ep)
	}
	return ep
}

// Transport returns the transport a node uses to send.
func (nw *Network) Transport() consensus.Transport { return transport{nw} }

type transport struct{ nw *Network }

var _ consensus.Transport = transport{}

// Send queues a clone of every message for its destination, or holds it
// when its link is delayed.
func (t transport) Send(msgs []*pb.Message) {
	for _, m := range msgs {
		ep := t.nw.endpoint(m.GetTo())
		if ep == nil {
			return
		}
		c := proto.Clone(m).(*pb.Message)
		t.nw.mu.Lock()
		t.nw.stats.Sent++
		held := t.nw.hold(ep, c)
		t.nw.mu.Unlock()
		if held {
			continue
		}
		ep.mu.Lock()
		if ep.node == nil || len(ep.queue) >= queueLimit {
			ep.mu.Unlock()
			t.nw.countDrop()
			continue
		}
		ep.queue = append(ep.queue, c)
		ep.mu.Unlock()
		select {
		case ep.notify <- struct{}{}:
		default:
		}
	}
}

// hold holds m when its link is delayed, or when earlier messages on its
// link are still held (so it cannot overtake them), and reports whether it
// took m. nw.mu is held.
func (nw *Network) hold(ep *endpoint, m *pb.Message) bool {
	l := link{m.GetFrom(), m.GetTo()}
	d := max(nw.linkDelay[l], nw.nodeDelay[l.from], nw.nodeDelay[l.to])
	last := nw.lastDue[l] // every held message is due after the clock
	if d <= 0 && last <= nw.clock {
		return false
	}
	nw.stats.Delayed++
	if len(nw.held) >= heldLimit {
		nw.stats.Dropped++
		return true
	}
	due := max(nw.clock+uint64(max(d, 0)), last)
	nw.held = append(nw.held, heldMessage{due: due, to: ep, m: m})
	nw.lastDue[l] = due
	return true
}

// release queues, in the order they were sent, the held messages due by
// the clock, or all of them. nw.mu is held, so no Send decides about a
// link while its held messages are on their way to the queue.
func (nw *Network) release(all bool) {
	kept := nw.held[:0]
	for _, h := range nw.held {
		if !all && h.due > nw.clock {
			kept = append(kept, h)
			continue
		}
		ep := h.to
		ep.mu.Lock()
		if nw.closed || ep.node == nil || len(ep.queue) >= queueLimit {
			ep.mu.Unlock()
			nw.stats.Dropped++
			continue
		}
		ep.queue = append(ep.queue, h.m)
		ep.mu.Unlock()
		select {
		case ep.notify <- struct{}{}:
		default:
		}
	}
	clear(nw.held[len(kept):])
	nw.held = kept
	for l, due := range nw.lastDue {
		if all || due <= nw.clock {
			delete(nw.lastDue, l)
		}
	}
}

func (nw *Network) countDrop() {
	nw.mu.Lock()
	nw.stats.Dropped++
	nw.mu.Unlock()
}

func (nw *Network) deliver(ep *endpoint) {
	defer nw.wg.Done()
	for {
		select {
		case <-nw.ctx.Done():
			return
		case <-ep.notify:
		}
		for {
			ep.mu.Lock()
			if len(ep.queue) == 0 {
				ep.mu.Unlock()
				break
			}
			m := ep.queue[0]
			ep.queue[0] = nil
			ep.queue = ep.queue[1:]
			node := ep.node
			ep.mu.Unlock()
			if node == nil || !nw.pass(m.GetFrom(), m.GetTo()) {
				nw.countDrop()
				continue
			}
			// Step only waits while the node's inbox is full; a stopped
			// node answers at once, and Close cancels the wait.
			if err := node.Step(nw.ctx, m); err != nil {
				nw.countDrop()
				continue
			}
			nw.mu.Lock()
			nw.stats.Delivered++
			nw.mu.Unlock()
		}
	}
}

// pass decides whether a message from -> to gets through now.
func (nw *Network) pass(from, to uint64) bool {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	if nw.isolated[from] || nw.isolated[to] {
		return false
	}
	if nw.group != nil && nw.group[from] != nw.group[to] {
		return false
	}
	if nw.dropRate > 0 && nw.rng.Float64() < nw.dropRate {
		return false
	}
	return true
}

// Isolate drops all traffic to and from id until Heal.
func (nw *Network) Isolate(id uint64) {
	nw.mu.Lock()
	nw.isolated[id] = true
	nw.mu.Unlock()
}

// Partition splits the network: nodes talk only within their own group.
// Nodes named in no group form one more group together.
func (nw *Network) Partition(groups ...[]uint64) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	nw.group = make(map[uint64]int)
	for i, g := range groups {
		for _, id := range g {
			nw.group[id] = i + 1 // unnamed nodes get 0
		}
	}
}

// SetDropRate makes the network lose each message with probability p.
func (nw *Network) SetDropRate(p float64) {
	nw.mu.Lock()
	nw.dropRate = p
	nw.mu.Unlock()
}

// SetDelay delays the messages sent from -> to by ticks ticks of the
// network's clock: each is delivered only once Advance has been called
// ticks times after it was sent. ticks <= 0 removes the link's delay. A
// message on a link also delayed by DelayNode waits for the longer of the
// two. Changing a delay leaves held messages due when they were; a message
// sent later never overtakes one held earlier on its link.
func (nw *Network) SetDelay(from, to uint64, ticks int) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	if ticks <= 0 {
		delete(nw.linkDelay, link{from, to})
		return
	}
	nw.linkDelay[link{from, to}] = ticks
}

// DelayNode delays every message to and from id, as SetDelay does for one
// link, nodes added later included. ticks <= 0 removes it.
func (nw *Network) DelayNode(id uint64, ticks int) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	if ticks <= 0 {
		delete(nw.nodeDelay, id)
		return
	}
	nw.nodeDelay[id] = ticks
}

// Advance moves the network's clock one tick on and queues the held
// messages now due for delivery. Cluster.Tick calls it once per tick round,
// after ticking the nodes. Without delays it does nothing else.
func (nw *Network) Advance() {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	nw.clock++
	if len(nw.held) > 0 {
		nw.release(false)
	}
}

// Heal removes every fault: isolation, partitions, loss and delays.
// Messages held by a delay are not lost: they are queued at once, in the
// order they were sent, and delivered as any other message.
func (nw *Network) Heal() {
	nw.mu.Lock()
	clear(nw.isolated)
	nw.group = nil
	nw.dropRate = 0
	clear(nw.linkDelay)
	clear(nw.nodeDelay)
	nw.release(true)
	nw.mu.Unlock()
}

// Stats returns the message counts so far.
func (nw *Network) Stats() Stats {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	s := nw.stats
	s.Held = uint64(len(nw.held))
	return s
}

// Close stops delivery and waits for the delivery goroutines to end.
func (nw *Network) Close() {
	nw.mu.Lock()
	nw.closed = true
	nw.mu.Unlock()
	nw.cancel()
	nw.wg.Wait()
}
