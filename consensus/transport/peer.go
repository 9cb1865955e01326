package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// preface opens every connection: magic, then the raft id the client means
// to reach, so that a node answering on a peer's old address refuses at once
// instead of receiving messages meant for someone else.
const (
	prefaceMagic = "COCORAFT"
	prefaceLen   = len(prefaceMagic) + 8
	prefaceAck   = 0x01
)

// errPeerClosed: the peer ended the connection (it is shutting down, or it
// refused something we sent).
var errPeerClosed = errors.New("transport: peer closed the connection")

type queued struct {
	m    *pb.Message
	size int64
}

// peer is the outbound side towards one node: a bounded queue and the
// writer goroutine (run) that owns the connection.
type peer struct {
	t      *Transport
	id     uint64
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when run returns
	queue  chan queued
	kick   chan struct{} // cuts a backoff short after an address change

	queuedBytes atomic.Int64
	sent        atomic.Uint64
	dropped     atomic.Uint64
	reconnects  atomic.Uint64
	connected   atomic.Bool
	tooLarge    atomic.Uint64

	mu   sync.Mutex
	addr string
	conn net.Conn // current connection, closed to interrupt the writer
}

func newPeer(t *Transport, id uint64, addr string) *peer {
	ctx, cancel := context.WithCancel(t.ctx)
	return &peer{
		t: t, id: id, addr: addr, ctx: ctx, cancel: cancel,
		done:  make(chan struct{}),
		queue: make(chan queued, t.cfg.QueueSize),
		kick:  make(chan struct{}, 1),
	}
}

func (p *peer) stats() PeerStats {
	p.mu.Lock()
	addr := p.addr
	p.mu.Unlock()
	return PeerStats{
		Addr:       addr,
		Sent:       p.sent.Load(),
		Dropped:    p.dropped.Load(),
		Queued:     len(p.queue),
		Connected:  p.connected.Load(),
		Reconnects: p.reconnects.Load(),
	}
}

func (p *peer) setAddr(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.addr == addr {
		return
	}
	p.addr = addr
	// Whatever we are connected to is no longer the peer's address.
	if p.conn != nil {
		_ = p.conn.Close()
	}
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

func (p *peer) stop() {
	p.cancel()
	p.mu.Lock()
	if p.conn != nil {
		_ = p.conn.Close()
	}
	p.mu.Unlock()
}

// enqueue never blocks: the consensus loop calls it.
func (p *peer) enqueue(m *pb.Message) {
	size := int64(proto.Size(m))
	if size > MaxFrameSize {
		// The peer would refuse the frame and drop the connection; raft
		// would retransmit it forever. Say so loudly, once in a while.
		if n := p.tooLarge.Add(1); n&(n-1) == 0 {
			p.t.log.Error("dropping message larger than the frame limit", "peer", p.id, "type", m.GetType().String(), "bytes", size, "limit", MaxFrameSize, "count", n)
		}
		p.dropped.Add(1)
		return
	}
	for {
		cur := p.queuedBytes.Load()
		if cur > 0 && cur+size > p.t.cfg.QueueBytes {
			p.dropped.Add(1)
			return
		}
		if p.queuedBytes.CompareAndSwap(cur, cur+size) {
			break
		}
	}
	select {
	case p.queue <- queued{m, size}:
	default:
		p.queuedBytes.Add(-size)
		p.dropped.Add(1)
	}
}

// discard drops everything queued: after a failed dial the backlog is stale
// by the time a connection exists, and raft resends from its own state.
func (p *peer) discard() {
	for {
		select {
		case it := <-p.queue:
			p.queuedBytes.Add(-it.size)
			p.dropped.Add(1)
		default:
			return
		}
	}
}

// sleep waits d, or less after an address change; false when stopped.
func (p *peer) sleep(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-p.kick:
		return p.ctx.Err() == nil
	case <-p.ctx.Done():
		return false
	}
}

// jitter spreads reconnection attempts of many nodes over [d/2, d].
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

// run is the writer: connect, drain the queue into the connection, and
// reconnect with capped exponential backoff when the connection fails.
func (p *peer) run() {
	defer close(p.done)
	defer p.discard()
	log := p.t.log.With("peer", p.id)
	cfg := p.t.cfg
	backoff := cfg.MinBackoff
	failures := 0
	everConnected := false
	for p.ctx.Err() == nil {
		conn, err := p.dial()
		if err != nil {
			if p.ctx.Err() != nil {
				return
			}
			failures++
			// The first failure is news; the rest of the outage is not.
			if failures == 1 {
				log.Warn("cannot connect to peer; retrying", "addr", p.getAddr(), "err", err)
			} else {
				log.Debug("cannot connect to peer", "addr", p.getAddr(), "attempt", failures, "err", err)
			}
			p.discard()
			if !p.sleep(jitter(backoff)) {
				return
			}
			backoff = min(2*backoff, cfg.MaxBackoff)
			continue
		}
		if everConnected {
			p.reconnects.Add(1)
		}
		everConnected = true
		if failures > 0 {
			log.Info("connected to peer", "addr", p.getAddr(), "after_attempts", failures+1)
		}
		failures = 0
		connectedAt := time.Now()
		p.connected.Store(true)
		err = p.write(conn)
		p.connected.Store(false)
		if p.ctx.Err() != nil {
			return
		}
		log.Warn("connection to peer lost; reconnecting", "addr", p.getAddr(), "err", err)
		// A connection that lived long was healthy: start over. One that
		// died at once (the peer refuses what we send) keeps backing off.
		if time.Since(connectedAt) > cfg.MaxBackoff {
			backoff = cfg.MinBackoff
		}
		if !p.sleep(jitter(backoff)) {
			return
		}
		backoff = min(2*backoff, cfg.MaxBackoff)
	}
}

func (p *peer) getAddr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addr
}

// setConn publishes the connection so stop and setAddr can interrupt it;
// false if the peer was stopped meanwhile.
func (p *peer) setConn(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c != nil && p.ctx.Err() != nil {
		return false
	}
	p.conn = c
	return true
}

// dial connects, authenticates the server as peer p.id and exchanges the
// preface. The connection is usable only once the server has acknowledged:
// in TLS 1.3 the client finishes its handshake before the server has checked
// the client's certificate, so a refusal shows up only at this read.
func (p *peer) dial() (*tls.Conn, error) {
	addr := p.getAddr()
	d := tls.Dialer{
		NetDialer: &net.Dialer{Timeout: dialTimeout},
		Config:    p.t.clientTLS(p.id),
	}
	c, err := d.DialContext(p.ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("transport: dial %d at %s: %w", p.id, addr, err)
	}
	conn := c.(*tls.Conn)
	if !p.setConn(conn) {
		_ = conn.Close()
		return nil, p.ctx.Err()
	}
	ok := false
	defer func() {
		if !ok {
			p.setConn(nil)
			_ = conn.Close()
		}
	}()
	if err := conn.SetDeadline(time.Now().Add(handshakeTimeout)); err != nil {
		return nil, fmt.Errorf("transport: %s: %w", addr, err)
	}
	var pre [prefaceLen]byte
	copy(pre[:], prefaceMagic)
	binary.BigEndian.PutUint64(pre[len(prefaceMagic):], p.id)
	if _, err := conn.Write(pre[:]); err != nil {
		return nil, fmt.Errorf("transport: preface to %d at %s: %w", p.id, addr, err)
	}
	var ack [1]byte
	if _, err := io.ReadFull(conn, ack[:]); err != nil {
		return nil, fmt.Errorf("transport: %d at %s did not accept us: %w", p.id, addr, err)
	}
	if ack[0] != prefaceAck {
		return nil, fmt.Errorf("%w: %d at %s answered the preface with %#x", ErrRefused, p.id, addr, ack[0])
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return nil, fmt.Errorf("transport: %s: %w", addr, err)
	}
	ok = true
	return conn, nil
}

// write drains the queue into conn until the connection fails or the peer is
// stopped. It flushes only when the queue is empty, so a burst of messages
// leaves in as few writes as the buffer allows.
func (p *peer) write(conn *tls.Conn) error {
	// The server never writes after its acknowledgement, so anything the
	// reader sees (EOF, a reset, an alert) means the connection is over.
	// Noticing it here, rather than at the next write, stops us from
	// buffering into a dead connection while raft is quiet.
	dead := make(chan struct{})
	go func() {
		defer close(dead)
		var b [1]byte
		_, _ = conn.Read(b[:])
		_ = conn.Close()
	}()
	defer func() {
		p.setConn(nil)
		_ = conn.Close()
		<-dead
	}()

	bw := bufio.NewWriterSize(conn, 64<<10)
	var buf []byte
	pending := uint64(0) // written to bw, not yet flushed
	fail := func(err error) error {
		p.dropped.Add(pending)
		return err
	}
	for {
		var it queued
		select {
		case <-p.ctx.Done():
			return p.ctx.Err()
		case <-dead:
			return errPeerClosed
		case it = <-p.queue:
		}
		for more := true; more; {
			p.queuedBytes.Add(-it.size)
			var err error
			buf, err = appendFrame(buf[:0], it.m)
			if err != nil {
				p.t.log.Error("dropping message", "peer", p.id, "err", err)
				p.dropped.Add(1)
			} else {
				if err := conn.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
					return fail(err)
				}
				if _, err := bw.Write(buf); err != nil {
					p.dropped.Add(1)
					return fail(fmt.Errorf("transport: write to %d: %w", p.id, err))
				}
				pending++
			}
			// Do not keep a buffer sized for one rare huge message.
			if cap(buf) > 4<<20 {
				buf = nil
			}
			select {
			case it = <-p.queue:
			default:
				more = false
			}
		}
		if err := bw.Flush(); err != nil {
			return fail(fmt.Errorf("transport: write to %d: %w", p.id, err))
		}
		p.sent.Add(pending)
		pending = 0
	}
}
