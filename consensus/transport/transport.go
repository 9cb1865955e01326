package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cocoledger/coco/consensus"
	pb "go.etcd.io/raft/v3/raftpb"
)

// Defaults for Config's optional fields.
const (
	DefaultQueueSize  = 4096
	DefaultQueueBytes = 64 << 20
	DefaultMinBackoff = 50 * time.Millisecond
	DefaultMaxBackoff = 2 * time.Second
)

// Timeouts of the connection set-up and of writes. A write that makes no
// progress for writeTimeout means the peer stopped reading altogether (its
// queue towards raft is not merely full); the connection is then replaced.
const (
	dialTimeout = 5 * time.Second
	// handshakeTimeout bounds the TLS handshake and preface exchange. Peers
	// on a working network finish in milliseconds; a short bound keeps idle
	// connections from holding handshake slots for long.
	handshakeTimeout = 3 * time.Second
	writeTimeout     = 30 * time.Second
	// maxHandshakes bounds connections accepted but not yet authenticated,
	// so anyone who can reach the port cannot pin unbounded goroutines and
	// memory for handshakeTimeout each. Peers are few; a refused peer
	// retries after its backoff.
	maxHandshakes = 128
	// maxHandshakesPerIP bounds the slots one source address may hold, so
	// that one host opening idle connections cannot take all maxHandshakes
	// of them and lock out the real peers. A peer has one outbound
	// connection to us at a time, so a few allow for peers behind one
	// address (NAT, several nodes on a host) reconnecting together.
	maxHandshakesPerIP = 4
)

// Config configures a Transport.
type Config struct {
	ID         uint64 // this node's raft id, non-zero
	ListenAddr string // host:port of the node-to-node listener ("127.0.0.1:0" allowed)
	// Listener, if set, is used instead of binding ListenAddr (the node
	// binds its ports before it touches its ledger). Close closes it.
	Listener    net.Listener
	Cert        tls.Certificate // this node's certificate (issued by ServiceCert) and key
	ServiceCert *x509.Certificate
	// RaftID maps a peer's verified certificate to its raft id. The node
	// package derives it from the node id (hex SHA-256 of the SPKI).
	RaftID func(nodeCert *x509.Certificate) (uint64, error)
	// IsMember reports whether raftID is a current member of the service
	// (the node package: a voter or learner in the ConfState whose node is
	// Trusted in governance). Required: a certificate stays endorsed after
	// its node is retired, and raft does not refuse a non-member's messages
	// (a MsgApp or MsgHeartbeat with a higher term makes a follower follow
	// its sender), so this check is what keeps retired or never-trusted
	// nodes out. It is consulted at every handshake, inbound and outbound,
	// and for every inbound message, so it must be cheap and safe for
	// concurrent use; a node that stops being a member is cut off at its
	// next message (or at once by MembershipChanged).
	IsMember func(raftID uint64) bool
	// Deliver hands a received message to consensus (consensus.Node.Step).
	// An error closes the connection the message came on.
	Deliver func(ctx context.Context, m *pb.Message) error
	Logger  *slog.Logger

	// QueueSize bounds each peer's outbound queue in messages; default
	// DefaultQueueSize. When full, Send drops and counts (raft retransmits).
	QueueSize int
	// QueueBytes bounds each peer's queue in encoded bytes, default
	// DefaultQueueBytes: 4096 queued appends of up to 1 MiB each would
	// otherwise hold gigabytes for a peer that is down. A message larger
	// than QueueBytes is still queued when the queue is empty.
	QueueBytes int64
	// MinBackoff and MaxBackoff bound the wait between reconnection
	// attempts, doubling from one to the other.
	MinBackoff, MaxBackoff time.Duration
}

// PeerStats describes the traffic with one peer. Outbound counts come from
// this node's connection to the peer, inbound ones from the peer's
// connections to this node.
type PeerStats struct {
	Addr       string
	Sent       uint64 // messages written to the connection
	Dropped    uint64 // messages given to Send that were never written (queue full, stale after a failed dial, connection lost)
	Queued     int    // messages waiting in the queue now
	Connected  bool   // the outbound connection is up
	Reconnects uint64 // outbound connections established after the first
	Received   uint64 // messages delivered from this peer
	Refused    uint64 // inbound connections or messages refused from this peer
}

// Transport is the node-to-node transport of one node.
type Transport struct {
	cfg Config
	log *slog.Logger
	ln  net.Listener

	ctx    context.Context // cancelled by Close; bounds every goroutine
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	peers    map[uint64]*peer
	conns    map[net.Conn]struct{} // every accepted connection, for Close
	inbound  map[uint64]net.Conn   // latest authenticated connection per peer
	inStats  map[uint64]*inboundStats
	closed   bool
	running  bool
	closeErr error

	handshakes chan struct{} // semaphore of maxHandshakes
	hsMu       sync.Mutex
	hsPerIP    map[string]int // handshakes in progress per source IP
	overload   atomic.Uint64  // connections refused for want of a slot
	unroutable atomic.Uint64
	closeOnce  sync.Once
}

type inboundStats struct {
	received, refused atomic.Uint64
}

var _ consensus.Transport = (*Transport)(nil)

// New checks cfg and binds the listener. Outbound traffic starts as soon as
// peers are set; inbound traffic once Run is called.
func New(cfg Config) (*Transport, error) {
	switch {
	case cfg.ID == 0:
		return nil, errors.New("transport: raft id must be non-zero")
	case cfg.ServiceCert == nil:
		return nil, errors.New("transport: no service certificate")
	case len(cfg.Cert.Certificate) == 0 || cfg.Cert.PrivateKey == nil:
		return nil, errors.New("transport: no node certificate and key")
	case cfg.RaftID == nil:
		return nil, errors.New("transport: no RaftID function")
	case cfg.Deliver == nil:
		return nil, errors.New("transport: no Deliver function")
	case cfg.IsMember == nil:
		// Required rather than defaulting to "everyone": a forgotten hook
		// would silently let every node the service ever endorsed in.
		return nil, errors.New("transport: no IsMember function")
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.QueueBytes <= 0 {
		cfg.QueueBytes = DefaultQueueBytes
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(DefaultMaxBackoff, cfg.MinBackoff)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	// Our own certificate must pass the checks peers will apply to it;
	// failing here names the misconfiguration instead of every peer
	// refusing us later.
	leaf := cfg.Cert.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(cfg.Cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("transport: parse node certificate: %w", err)
		}
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth} {
		if _, err := verifyNode(cfg.ServiceCert, []*x509.Certificate{leaf}, usage, time.Now()); err != nil {
			return nil, fmt.Errorf("transport: own certificate: %w", err)
		}
	}
	if id, err := cfg.RaftID(leaf); err != nil {
		return nil, fmt.Errorf("transport: raft id of own certificate: %w", err)
	} else if id != cfg.ID {
		return nil, fmt.Errorf("transport: own certificate maps to raft id %d, configured as %d", id, cfg.ID)
	}
	ln := cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", cfg.ListenAddr); err != nil {
			return nil, fmt.Errorf("transport: listen on %s: %w", cfg.ListenAddr, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Transport{
		cfg:        cfg,
		log:        cfg.Logger.With("component", "transport", "raft_id", cfg.ID),
		ln:         ln,
		ctx:        ctx,
		cancel:     cancel,
		peers:      make(map[uint64]*peer),
		conns:      make(map[net.Conn]struct{}),
		inbound:    make(map[uint64]net.Conn),
		inStats:    make(map[uint64]*inboundStats),
		handshakes: make(chan struct{}, maxHandshakes),
		hsPerIP:    make(map[string]int),
	}, nil
}

// Addr is the listener's address (with the port chosen when ListenAddr
// asked for port 0).
func (t *Transport) Addr() string { return t.ln.Addr().String() }

// Run accepts peers' connections until ctx is done or Close is called, then
// closes the transport (outbound connections included). It returns
// ctx.Err() when ctx ended it and nil after Close.
func (t *Transport) Run(ctx context.Context) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	if t.running {
		t.mu.Unlock()
		return errors.New("transport: Run called twice")
	}
	t.running = true
	t.mu.Unlock()

	stop := context.AfterFunc(ctx, func() { _ = t.Close() })
	defer stop()
	backoff := 5 * time.Millisecond
	for {
		conn, err := t.ln.Accept()
		if err != nil {
			if t.ctx.Err() != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				_ = t.Close()
				return fmt.Errorf("transport: listener %s closed: %w", t.Addr(), err)
			}
			// Out of file descriptors or similar: wait rather than spin or
			// give up on the listener.
			t.log.Warn("accept", "err", err)
			select {
			case <-time.After(backoff):
			case <-t.ctx.Done():
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		ip := remoteIP(conn)
		if !t.acquireHandshake(ip) {
			// Logged at powers of two: a flood must not flood the log too.
			if n := t.overload.Add(1); n&(n-1) == 0 {
				t.log.Warn("too many node-to-node handshakes in progress; refusing connections", "remote", conn.RemoteAddr().String(), "refused_so_far", n)
			}
			_ = conn.Close()
			continue
		}
		if !t.track(conn) {
			t.releaseHandshake(ip)
			_ = conn.Close()
			continue
		}
		go func() {
			defer t.wg.Done()
			t.serveInbound(conn, ip)
		}()
	}
}

// remoteIP is the source address of conn without its port.
func remoteIP(conn net.Conn) string {
	addr := conn.RemoteAddr().String()
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// acquireHandshake takes a handshake slot for a connection from ip, unless
// all maxHandshakes are taken or ip holds maxHandshakesPerIP already.
func (t *Transport) acquireHandshake(ip string) bool {
	t.hsMu.Lock()
	defer t.hsMu.Unlock()
	if t.hsPerIP[ip] >= maxHandshakesPerIP {
		return false
	}
	select {
	case t.handshakes <- struct{}{}:
	default:
		return false
	}
	t.hsPerIP[ip]++
	return true
}

func (t *Transport) releaseHandshake(ip string) {
	t.hsMu.Lock()
	defer t.hsMu.Unlock()
	if t.hsPerIP[ip]--; t.hsPerIP[ip] <= 0 {
		delete(t.hsPerIP, ip)
	}
	<-t.handshakes
}

// track records an accepted connection so Close can end it, unless the
// transport is already closed. Adding to the wait group under the same lock
// as Close's closed flag keeps Add from racing with Wait.
func (t *Transport) track(conn net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.conns[conn] = struct{}{}
	t.wg.Add(1)
	return true
}

func (t *Transport) untrack(conn net.Conn) {
	t.mu.Lock()
	delete(t.conns, conn)
	t.mu.Unlock()
}

// SetPeer adds peer id at addr (host:port of its node-to-node listener) or
// moves it to a new address, reconnecting.
func (t *Transport) SetPeer(id uint64, addr string) {
	if id == 0 || id == t.cfg.ID {
		t.log.Warn("ignoring peer", "peer", id, "addr", addr, "reason", "own or zero raft id")
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	if p, ok := t.peers[id]; ok {
		p.setAddr(addr)
		return
	}
	p := newPeer(t, id, addr)
	t.peers[id] = p
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		p.run()
	}()
}

// RemovePeer stops sending to id, dropping what is queued for it, and waits
// for its writer to end. Connections from id are not affected by it: raft
// does not refuse a removed node's messages (a higher term from it makes a
// follower follow it), so keeping removed nodes out is Config.IsMember's job
// (call MembershipChanged once it says no to id).
func (t *Transport) RemovePeer(id uint64) {
	t.mu.Lock()
	p, ok := t.peers[id]
	delete(t.peers, id)
	t.mu.Unlock()
	if ok {
		p.stop()
		<-p.done
	}
}

// Send queues msgs for their destinations and returns at once. A message
// for an unknown peer, or one that does not fit in its peer's queue, is
// dropped (raft retransmits). The messages must not be modified afterwards;
// raft never modifies messages it has handed out.
func (t *Transport) Send(msgs []*pb.Message) {
	if len(msgs) == 0 {
		return
	}
	t.mu.Lock()
	// Look up peers under one lock; the common case is a single destination.
	var last *peer
	var lastID uint64
	targets := make([]*peer, len(msgs))
	for i, m := range msgs {
		if to := m.GetTo(); last != nil && to == lastID {
			targets[i] = last
		} else {
			last, lastID = t.peers[to], to
			targets[i] = last
		}
	}
	t.mu.Unlock()
	for i, m := range msgs {
		if targets[i] == nil {
			if t.unroutable.Add(1) == 1 {
				t.log.Warn("dropping message for unknown peer", "to", m.GetTo(), "type", m.GetType().String())
			}
			continue
		}
		targets[i].enqueue(m)
	}
}

// MembershipChanged closes the inbound connections of nodes that
// Config.IsMember no longer accepts. Without it they are closed at their
// next message; calling it after a membership change cuts them off at once.
func (t *Transport) MembershipChanged() {
	t.mu.Lock()
	conns := make(map[uint64]net.Conn, len(t.inbound))
	for id, c := range t.inbound {
		conns[id] = c
	}
	t.mu.Unlock()
	// IsMember is called without t.mu: it may take the caller's locks.
	for id, c := range conns {
		if !t.cfg.IsMember(id) {
			_ = c.Close()
		}
	}
}

// Unroutable counts messages dropped because their destination is no peer.
func (t *Transport) Unroutable() uint64 { return t.unroutable.Load() }

// Stats returns counters per peer: every configured peer, and every node
// that has connected to this one.
func (t *Transport) Stats() map[uint64]PeerStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[uint64]PeerStats, len(t.peers)+len(t.inStats))
	for id, p := range t.peers {
		out[id] = p.stats()
	}
	for id, s := range t.inStats {
		ps := out[id]
		ps.Received, ps.Refused = s.received.Load(), s.refused.Load()
		out[id] = ps
	}
	return out
}

// Close stops the listener, every connection and every goroutine of the
// transport, and waits for them. Queued messages are dropped.
func (t *Transport) Close() error {
	t.closeOnce.Do(func() {
		t.mu.Lock()
		t.closed = true
		peers := make([]*peer, 0, len(t.peers))
		for _, p := range t.peers {
			peers = append(peers, p)
		}
		conns := make([]net.Conn, 0, len(t.conns))
		for c := range t.conns {
			conns = append(conns, c)
		}
		t.mu.Unlock()
		t.cancel()
		if err := t.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			t.closeErr = fmt.Errorf("transport: close listener: %w", err)
		}
		for _, p := range peers {
			p.stop()
		}
		for _, c := range conns {
			_ = c.Close()
		}
		t.wg.Wait()
	})
	return t.closeErr
}
