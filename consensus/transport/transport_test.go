package transport

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cocoledger/coco/consensus"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func TestTwoNodesBothWays(t *testing.T) {
	ca := newCA(t, "service")
	a, b := startNode(t, ca, nodeOpts{}), startNode(t, ca, nodeOpts{})
	connect(a, b)
	const n = 1000
	// Batches of varying size, as the consensus loop hands them over.
	for i, size := 0, 1; i < n; i, size = i+size, size%7+1 {
		var ab, ba []*pb.Message
		for j := i; j < min(i+size, n); j++ {
			ab = append(ab, app(a.id, b.id, uint64(j), []byte("a to b")))
			ba = append(ba, app(b.id, a.id, uint64(j), []byte("b to a")))
		}
		a.Send(ab)
		b.Send(ba)
	}
	waitFor(t, "all messages", func() bool { return len(b.rec.all()) == n && len(a.rec.all()) == n })
	checkOrder(t, b.rec.from(a.id), n, "a to b")
	checkOrder(t, a.rec.from(b.id), n, "b to a")
	if got := string(b.rec.all()[0].GetEntries()[0].GetData()); got != "a to b" {
		t.Fatalf("payload %q", got)
	}
	// A writer counts a batch as sent after its write returns, and a reader
	// counts a message as received after Deliver returns; both can lag the
	// delivery observed above, so let the counters settle.
	waitFor(t, "counters", func() bool {
		sa, sb := a.Stats()[b.id], b.Stats()[a.id]
		return sa.Sent == n && sb.Sent == n && sa.Received == n && sb.Received == n
	})
	sa, sb := a.Stats()[b.id], b.Stats()[a.id]
	if sa.Sent != n || sa.Dropped != 0 || !sa.Connected || sa.Reconnects != 0 || sa.Received != n || sa.Refused != 0 {
		t.Fatalf("a's stats for b: %+v", sa)
	}
	if sb.Sent != n || sb.Received != n {
		t.Fatalf("b's stats for a: %+v", sb)
	}
}

func TestThreeNodesOrderPerPeer(t *testing.T) {
	ca := newCA(t, "service")
	nodes := []*node{startNode(t, ca, nodeOpts{}), startNode(t, ca, nodeOpts{}), startNode(t, ca, nodeOpts{})}
	connect(nodes...)
	const n = 300
	for i := range n {
		for _, src := range nodes {
			// One Send per message to several destinations, interleaved.
			var batch []*pb.Message
			for _, dst := range nodes {
				if dst != src {
					batch = append(batch, app(src.id, dst.id, uint64(i), nil))
				}
			}
			src.Send(batch)
		}
	}
	waitFor(t, "all messages", func() bool {
		for _, nd := range nodes {
			if len(nd.rec.all()) != 2*n {
				return false
			}
		}
		return true
	})
	for _, dst := range nodes {
		for _, src := range nodes {
			if src != dst {
				checkOrder(t, dst.rec.from(src.id), n, fmt.Sprintf("%d to %d", src.id, dst.id))
			}
		}
	}
}

func TestLargeMessage(t *testing.T) {
	ca := newCA(t, "service")
	a, b := startNode(t, ca, nodeOpts{}), startNode(t, ca, nodeOpts{})
	connect(a, b)
	m := &pb.Message{Type: pb.MsgApp.Enum(), From: new(a.id), To: new(b.id), Term: new(uint64(3)), Index: new(uint64(10))}
	for i := range 3 {
		data := make([]byte, 1<<20)
		if _, err := rand.Read(data); err != nil {
			t.Fatal(err)
		}
		m.Entries = append(m.Entries, &pb.Entry{Term: new(uint64(3)), Index: new(uint64(11 + i)), Data: data})
	}
	small := app(a.id, b.id, 99, []byte("after"))
	a.Send([]*pb.Message{m, small})
	b.Send([]*pb.Message{m2(b.id, a.id, m)})
	waitFor(t, "large messages", func() bool { return len(b.rec.all()) == 2 && len(a.rec.all()) == 1 })
	if got := b.rec.all(); !proto.Equal(got[0], m) || !proto.Equal(got[1], small) {
		t.Fatal("a to b: large message or the one after it changed in transit")
	}
	if !proto.Equal(a.rec.all()[0], m2(b.id, a.id, m)) {
		t.Fatal("b to a: large message changed in transit")
	}
}

// m2 is m re-addressed.
func m2(from, to uint64, m *pb.Message) *pb.Message {
	c := proto.Clone(m).(*pb.Message)
	c.From, c.To = new(from), new(to)
	return c
}

// TestForeignCertificatesRefused: a node whose certificate the service did
// not issue can neither reach a node nor be reached by it.
func TestForeignCertificatesRefused(t *testing.T) {
	ca := newCA(t, "service")
	other := newCA(t, "other service")
	a := startNode(t, ca, nodeOpts{})

	foreign, foreignID := other.nodeCert(t, true, true)
	self, selfID := selfSignedNodeCert(t)
	serverOnly, serverOnlyID := ca.nodeCert(t, true, false)
	service := tls.Certificate{Certificate: [][]byte{ca.cert.Raw}, PrivateKey: ca.key, Leaf: ca.cert}
	serviceID, err := raftIDOf(ca.cert)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		cert tls.Certificate
		id   uint64
	}{
		{"other CA", foreign, foreignID},
		{"self-signed", self, selfID},
		{"no client auth usage", serverOnly, serverOnlyID},
		{"service certificate", service, serviceID},
	} {
		t.Run("accept/"+c.name, func(t *testing.T) {
			conn, err := rawClient(t, a.Addr(), c.cert, a.id)
			if err == nil {
				// Refusal must come before the acknowledgement; send
				// anyway to show nothing gets through.
				_ = writeFrames(conn, app(c.id, a.id, 0, nil))
				conn.Close()
				t.Fatal("server acknowledged a foreign certificate")
			}
		})
	}

	// Dial: a peer presenting a foreign certificate as a server, while
	// trusting everything a would present.
	for _, c := range []struct {
		name string
		cert tls.Certificate
		id   uint64
		ca   *x509.Certificate
	}{
		{"other CA", foreign, foreignID, other.cert},
	} {
		t.Run("dial/"+c.name, func(t *testing.T) {
			evil := startNode(t, other, nodeOpts{cert: &c.cert, id: c.id, serviceCert: c.ca})
			a.SetPeer(evil.id, evil.Addr())
			defer a.RemovePeer(evil.id)
			// Every failed dial discards the queue; wait for several.
			waitFor(t, "failed dials", func() bool {
				a.Send([]*pb.Message{app(a.id, evil.id, 0, nil)})
				return a.Stats()[evil.id].Dropped >= 3
			})
			if st := a.Stats()[evil.id]; st.Connected || st.Sent != 0 {
				t.Fatalf("a connected to a foreign node: %+v", st)
			}
			if got := evil.rec.all(); len(got) != 0 {
				t.Fatalf("foreign node received %d messages", len(got))
			}
		})
	}
	// Dial: servers a transport would not run as (New checks its own
	// certificate), by hand; they acknowledge whatever they are sent.
	for _, c := range []struct {
		name string
		cert tls.Certificate
		id   uint64
	}{
		{"self-signed", self, selfID},
		{"service certificate", service, serviceID},
	} {
		t.Run("dial/"+c.name, func(t *testing.T) {
			addr := ackServer(t, c.cert)
			a.SetPeer(c.id, addr)
			defer a.RemovePeer(c.id)
			waitFor(t, "failed dials", func() bool {
				a.Send([]*pb.Message{app(a.id, c.id, 0, nil)})
				return a.Stats()[c.id].Dropped >= 3
			})
			if st := a.Stats()[c.id]; st.Connected || st.Sent != 0 || st.Reconnects != 0 {
				t.Fatalf("a connected to a server presenting a %s certificate: %+v", c.name, st)
			}
		})
	}
	if got := a.rec.all(); len(got) != 0 {
		t.Fatalf("a received %d messages from foreign nodes", len(got))
	}
}

// ackServer is a TLS server presenting cert that acknowledges any preface
// and discards what follows; it is closed when the test ends.
func ackServer(t *testing.T, cert tls.Certificate) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
		ClientAuth: tls.RequireAnyClientCert, NextProtos: []string{alpn},
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(waitTimeout))
				var pre [prefaceLen]byte
				if _, err := io.ReadFull(c, pre[:]); err != nil {
					return
				}
				_, _ = c.Write([]byte{prefaceAck})
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func TestOwnCertificateChecked(t *testing.T) {
	ca, other := newCA(t, "service"), newCA(t, "other")
	foreign, id := other.nodeCert(t, true, true)
	good, goodID := ca.nodeCert(t, true, true)
	cfg := func(cert tls.Certificate, id uint64) Config {
		return Config{ID: id, ListenAddr: "127.0.0.1:0", Cert: cert, ServiceCert: ca.cert, RaftID: raftIDOf,
			Deliver: func(context.Context, *pb.Message) error { return nil }, IsMember: everyone}
	}
	if _, err := New(cfg(foreign, id)); !errors.Is(err, ErrRefused) {
		t.Fatalf("New with a foreign certificate: %v", err)
	}
	if _, err := New(cfg(good, goodID+1)); err == nil {
		t.Fatal("New with a raft id its certificate does not map to succeeded")
	}
	service := tls.Certificate{Certificate: [][]byte{ca.cert.Raw}, PrivateKey: ca.key, Leaf: ca.cert}
	serviceID, err := raftIDOf(ca.cert)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(cfg(service, serviceID)); !errors.Is(err, ErrRefused) {
		t.Fatalf("New with the service certificate as node certificate: %v", err)
	}
	noMembership := cfg(good, goodID)
	noMembership.IsMember = nil
	if _, err := New(noMembership); err == nil {
		t.Fatal("New without IsMember succeeded")
	}
}

// TestNonRaftClientsRefused: HTTP clients and TLS clients without our ALPN
// fail cleanly at the handshake, even with a valid node certificate.
func TestNonRaftClientsRefused(t *testing.T) {
	ca := newCA(t, "service")
	a := startNode(t, ca, nodeOpts{})
	cert, _ := ca.nodeCert(t, true, true)
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}},
	}}
	if resp, err := client.Get("https://" + a.Addr() + "/node/state"); err == nil {
		resp.Body.Close()
		t.Fatalf("HTTPS request answered: %s", resp.Status)
	}

	conn, err := tls.Dial("tcp", a.Addr(), &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true})
	if err == nil {
		// Go's client completes before the server's verdict; the server
		// closes the connection instead of acknowledging.
		_, _ = conn.Write([]byte(prefaceMagic + "\x00\x00\x00\x00\x00\x00\x00\x00"))
		expectClosed(t, conn)
		conn.Close()
	}

	plain, err := net.Dial("tcp", a.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := plain.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, plain)
	if got := a.rec.all(); len(got) != 0 {
		t.Fatalf("received %d messages", len(got))
	}
}

func TestSpoofedSenderRefused(t *testing.T) {
	ca := newCA(t, "service")
	a, b, c := startNode(t, ca, nodeOpts{}), startNode(t, ca, nodeOpts{}), startNode(t, ca, nodeOpts{})
	connect(a, b)

	// b speaks for c: refused, connection closed, b reconnects.
	b.Send([]*pb.Message{app(c.id, a.id, 0, nil)})
	waitFor(t, "refusal", func() bool { return a.Stats()[b.id].Refused == 1 })
	// Whatever b wrote before it noticed the closed connection is lost, as
	// on any connection that fails; raft resends, and so do we.
	waitFor(t, "b's own message", func() bool {
		b.Send([]*pb.Message{app(b.id, a.id, 1, nil)})
		return len(a.rec.all()) > 0
	})
	for _, got := range a.rec.all() {
		if got.GetFrom() != b.id || got.GetIndex() != 1 {
			t.Fatalf("delivered %v", got)
		}
	}
	if st := b.Stats()[a.id]; st.Reconnects < 1 {
		t.Fatalf("b did not reconnect after its connection was closed: %+v", st)
	}

	// By hand: a valid stream, then a spoofed message; the connection is
	// closed at the spoofed one and nothing after it is delivered. d has a
	// node certificate but no transport of its own, whose reconnections
	// would replace (close) this connection.
	dCert, d := ca.nodeCert(t, true, true)
	for _, bad := range []*pb.Message{
		app(c.id, a.id, 3, nil), // From another node
		app(d, c.id, 3, nil),    // To another node
		app(d, 0, 3, nil),       // To nobody
	} {
		before := len(a.rec.from(d))
		conn, err := rawClient(t, a.Addr(), dCert, a.id)
		if err != nil {
			t.Fatal(err)
		}
		if err := writeFrames(conn, app(d, a.id, 2, nil), bad, app(d, a.id, 4, nil)); err != nil {
			t.Fatal(err)
		}
		expectClosed(t, conn)
		conn.Close()
		got := a.rec.from(d)[before:]
		if len(got) != 1 || got[0].GetIndex() != 2 {
			t.Fatalf("after spoofed %d->%d: delivered %d messages", bad.GetFrom(), bad.GetTo(), len(got))
		}
	}

	// The preface names the node the client means to reach.
	if conn, err := rawClient(t, a.Addr(), dCert, c.id); err == nil {
		conn.Close()
		t.Fatal("a acknowledged a connection meant for c")
	}
}

// TestDeliverErrorClosesConnection: a message consensus refuses
// (consensus.ErrBadMessage) ends the connection.
func TestDeliverErrorClosesConnection(t *testing.T) {
	ca := newCA(t, "service")
	rec := &recorder{}
	a := startNode(t, ca, nodeOpts{deliver: func(ctx context.Context, m *pb.Message) error {
		if m.GetType() == pb.MsgProp {
			return fmt.Errorf("%w: proposal", consensus.ErrBadMessage)
		}
		return rec.deliver(ctx, m)
	}})
	b := startNode(t, ca, nodeOpts{})
	conn, err := rawClient(t, a.Addr(), b.cert, a.id)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	prop := &pb.Message{Type: pb.MsgProp.Enum(), From: new(b.id), To: new(a.id)}
	if err := writeFrames(conn, prop, app(b.id, a.id, 0, nil)); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, conn)
	if got := rec.all(); len(got) != 0 {
		t.Fatalf("delivered %d after a refused message", len(got))
	}
	if st := a.Stats()[b.id]; st.Refused != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestPeerGoesAwayAndComesBack(t *testing.T) {
	ca := newCA(t, "service")
	a, b := startNode(t, ca, nodeOpts{}), startNode(t, ca, nodeOpts{})
	connect(a, b)
	a.Send([]*pb.Message{app(a.id, b.id, 0, nil)})
	waitFor(t, "first message", func() bool { return len(b.rec.all()) == 1 })

	addr := b.Addr()
	b.stop(t)
	waitFor(t, "a to notice", func() bool { return !a.Stats()[b.id].Connected })
	// While b is down nothing is delivered anywhere and Send does not block.
	for i := range 100 {
		a.Send([]*pb.Message{app(a.id, b.id, uint64(i+1), nil)})
	}

	b2 := startNode(t, ca, nodeOpts{addr: addr, cert: &b.cert, id: b.id})
	b2.SetPeer(a.id, a.Addr())
	// Raft keeps sending; so do we until something arrives.
	waitFor(t, "messages after the restart", func() bool {
		a.Send([]*pb.Message{app(a.id, b.id, 1000, nil)})
		b2.Send([]*pb.Message{app(b.id, a.id, 1000, nil)})
		return len(b2.rec.all()) > 0 && len(a.rec.from(b.id)) > 0
	})
	st := a.Stats()[b.id]
	if st.Reconnects < 1 || !st.Connected {
		t.Fatalf("a's stats for b after the restart: %+v", st)
	}
	// Whatever was queued while b was down arrives in order, if at all.
	var last uint64
	for _, m := range b2.rec.all() {
		if m.GetIndex() < last {
			t.Fatalf("out of order after reconnect: %d after %d", m.GetIndex(), last)
		}
		last = m.GetIndex()
	}
}

// blackHole accepts TCP connections and never answers, so a dialler hangs
// in the TLS handshake and its queue cannot drain.
func blackHole(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- c
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		for {
			select {
			case c := <-conns:
				c.Close()
			default:
				return
			}
		}
	})
	return ln.Addr().String()
}

func TestSendNeverBlocks(t *testing.T) {
	ca := newCA(t, "service")
	const queue, n = 16, 20000
	t.Run("unresponsive peer", func(t *testing.T) {
		a := startNode(t, ca, nodeOpts{queueSize: queue})
		const peer = 42
		a.SetPeer(peer, blackHole(t))
		sendAll(t, a, peer, n, nil)
		// The writer is stuck in the handshake, so at most the queue's
		// worth is kept and the rest is dropped; once the dial times out
		// the queue is dropped too. Counters are read one at a time, so
		// poll until they agree.
		waitFor(t, "every message queued or dropped", func() bool {
			st := a.Stats()[peer]
			return uint64(st.Queued)+st.Dropped == n
		})
		st := a.Stats()[peer]
		if st.Queued > queue || st.Dropped < n-queue || st.Sent != 0 || st.Connected {
			t.Fatalf("stats %+v; want at most %d queued, at least %d dropped, none sent", st, queue, n-queue)
		}
		a.stop(t) // Close does not wait for the handshake timeout
	})
	t.Run("byte limit", func(t *testing.T) {
		a := startNode(t, ca, nodeOpts{queueBytes: 10 << 10})
		const peer = 42
		a.SetPeer(peer, blackHole(t))
		sendAll(t, a, peer, 100, make([]byte, 1<<10))
		waitFor(t, "every message queued or dropped", func() bool {
			st := a.Stats()[peer]
			return uint64(st.Queued)+st.Dropped == 100
		})
		// The message-count limit (default 4096) would keep all 100.
		st := a.Stats()[peer]
		if st.Queued >= 10 || st.Dropped <= 90 || st.Sent != 0 {
			t.Fatalf("stats %+v; want at most 9 messages of ~1 KiB in a 10 KiB queue", st)
		}
	})
	t.Run("nobody listening", func(t *testing.T) {
		a := startNode(t, ca, nodeOpts{queueSize: queue})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		const peer = 42
		a.SetPeer(peer, addr)
		sendAll(t, a, peer, n, nil)
		waitFor(t, "all dropped", func() bool {
			st := a.Stats()[peer]
			return st.Dropped == n && st.Queued == 0
		})
	})
	t.Run("unknown peer", func(t *testing.T) {
		a := startNode(t, ca, nodeOpts{})
		sendAll(t, a, 7, 10, nil)
		if a.Unroutable() != 10 {
			t.Fatalf("unroutable %d", a.Unroutable())
		}
	})
}

// sendAll sends n messages to peer and fails if Send does not return: it
// must never wait for the network. A Send that blocked on a full queue would
// wait for a dial timeout per queue's worth, far longer than waitTimeout, so
// the bound is generous without letting that through.
func sendAll(t *testing.T, a *node, peer uint64, n int, data []byte) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			a.Send([]*pb.Message{app(a.id, peer, uint64(i), data)})
		}
	}()
	select {
	case <-done:
	case <-time.After(waitTimeout):
		t.Fatal("Send blocked")
	}
}

// TestStaleAddress: an address now served by another node is refused by the
// dialler (the certificate names someone else); moving the peer fixes it.
func TestStaleAddress(t *testing.T) {
	ca := newCA(t, "service")
	a, b, c := startNode(t, ca, nodeOpts{}), startNode(t, ca, nodeOpts{}), startNode(t, ca, nodeOpts{})
	a.SetPeer(b.id, c.Addr())
	waitFor(t, "failed dials", func() bool {
		a.Send([]*pb.Message{app(a.id, b.id, 0, nil)})
		return a.Stats()[b.id].Dropped >= 3
	})
	if len(c.rec.all()) != 0 || a.Stats()[b.id].Connected {
		t.Fatal("a delivered b's messages to c")
	}
	a.SetPeer(b.id, b.Addr())
	waitFor(t, "delivery at the new address", func() bool {
		a.Send([]*pb.Message{app(a.id, b.id, 1, nil)})
		return len(b.rec.all()) > 0
	})
	a.RemovePeer(b.id)
	if _, ok := a.Stats()[b.id]; ok {
		// b never connected to a, so no inbound stats keep it listed.
		t.Fatal("removed peer still listed")
	}
	a.Send([]*pb.Message{app(a.id, b.id, 2, nil)})
	if a.Unroutable() != 1 {
		t.Fatalf("unroutable %d after RemovePeer", a.Unroutable())
	}
}

func TestRunEndsWithContext(t *testing.T) {
	ca := newCA(t, "service")
	cert, id := ca.nodeCert(t, true, true)
	tr, err := New(Config{ID: id, ListenAddr: "127.0.0.1:0", Cert: cert, ServiceCert: ca.cert, RaftID: raftIDOf,
		Deliver: func(context.Context, *pb.Message) error { return nil }, IsMember: everyone})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx) }()
	tr.SetPeer(id+1, blackHole(t))
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Run did not end with its context")
	}
	if _, err := net.Dial("tcp", tr.Addr()); err == nil {
		t.Fatal("listener still open after Run ended")
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestFrameErrors(t *testing.T) {
	read := func(b []byte) error {
		_, _, err := readFrame(bufioReader(b), nil)
		return err
	}
	good, err := appendFrame(nil, app(1, 2, 3, []byte("x")))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, errEOF},
		{"short length", []byte{0, 0}, ErrBadFrame},
		{"short body", good[:len(good)-1], ErrBadFrame},
		{"too large", []byte{0xff, 0xff, 0xff, 0xff}, ErrFrameTooLarge},
		{"just over the limit", []byte{0x04, 0, 0, 1}, ErrFrameTooLarge},
		{"not protobuf", append([]byte{0, 0, 0, 3}, 0xff, 0xff, 0xff), ErrBadFrame},
	} {
		if err := read(c.in); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	if err := read(good); err != nil {
		t.Fatal(err)
	}
	huge := app(1, 2, 3, bytes.Repeat([]byte{1}, MaxFrameSize))
	if _, err := appendFrame(nil, huge); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("encoding an oversized message: %v", err)
	}
}

// dialFrom opens a TCP connection to addr from the loopback address ip, so
// that tests can play several hosts; it skips the test where only
// 127.0.0.1 is usable.
func dialFrom(t *testing.T, ip, addr string) (net.Conn, error) {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	c, err := d.Dial("tcp", addr)
	var op *net.OpError
	if err != nil && errors.As(err, &op) && op.Op == "dial" && errors.Is(err, syscall.EADDRNOTAVAIL) {
		t.Skipf("cannot dial from %s: %v", ip, err)
	}
	return c, err
}

// TestHandshakeSlots: connections that never complete a handshake hold at
// most maxHandshakes slots; beyond that new connections are closed at once,
// and once the slots free up peers get through again.
func TestHandshakeSlots(t *testing.T) {
	ca := newCA(t, "service")
	a, b := startNode(t, ca, nodeOpts{}), startNode(t, ca, nodeOpts{})
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	// From many hosts, none over its own limit.
	for i := range maxHandshakes {
		c, err := dialFrom(t, fmt.Sprintf("127.0.1.%d", i/maxHandshakesPerIP+1), a.Addr())
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	// Idle connections time out, so keep adding some (from fresh hosts)
	// until one is refused.
	k := 0
	waitFor(t, "a connection refused for want of a slot", func() bool {
		c, err := dialFrom(t, fmt.Sprintf("127.0.2.%d", k%250+1), a.Addr())
		k++
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
		return a.overload.Load() > 0
	})
	for _, c := range idle {
		c.Close()
	}
	idle = nil
	b.SetPeer(a.id, a.Addr())
	waitFor(t, "delivery once slots are free", func() bool {
		b.Send([]*pb.Message{app(b.id, a.id, 0, nil)})
		return len(a.rec.all()) > 0
	})
}

// TestHandshakeSlotsPerIP: one host holding and reopening idle connections
// gets at most maxHandshakesPerIP slots and does not lock out a real peer.
func TestHandshakeSlotsPerIP(t *testing.T) {
	ca := newCA(t, "service")
	a, b := startNode(t, ca, nodeOpts{}), startNode(t, ca, nodeOpts{})
	const attacker = "127.0.0.2"
	if c, err := dialFrom(t, attacker, a.Addr()); err != nil {
		t.Fatal(err)
	} else {
		c.Close()
	}

	// The attacker keeps 2*maxHandshakes connections open, reopening each
	// one the server closes.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	open := make(chan struct{}, 2*maxHandshakes)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case open <- struct{}{}:
			}
			d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(attacker)}}
			c, err := d.DialContext(ctx, "tcp", a.Addr())
			if err != nil {
				<-open
				time.Sleep(time.Millisecond)
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-open }()
				stop := context.AfterFunc(ctx, func() { c.Close() })
				defer stop()
				var buf [1]byte
				_, _ = c.Read(buf[:])
				c.Close()
			}()
		}
	}()

	waitFor(t, "attacker refused", func() bool { return a.overload.Load() > 0 })
	b.SetPeer(a.id, a.Addr())
	waitFor(t, "delivery from a real peer", func() bool {
		a.hsMu.Lock()
		held := a.hsPerIP[attacker]
		a.hsMu.Unlock()
		if held > maxHandshakesPerIP {
			t.Fatalf("%s holds %d handshake slots", attacker, held)
		}
		b.Send([]*pb.Message{app(b.id, a.id, 0, nil)})
		return len(a.rec.all()) > 0
	})
}

// TestNonMembersRefused: a node the service endorsed but that is not a
// member (retired, never trusted) is refused at the handshake, inbound and
// when dialled, and none of its messages are delivered.
func TestNonMembersRefused(t *testing.T) {
	ca := newCA(t, "service")
	bCert, bID := ca.nodeCert(t, true, true)
	aCert, aID := ca.nodeCert(t, true, true)
	// a accepts only itself; b accepts a.
	a := startNode(t, ca, nodeOpts{cert: &aCert, id: aID, isMember: newMembers(aID).isMember})
	b := startNode(t, ca, nodeOpts{cert: &bCert, id: bID, isMember: newMembers(aID, bID).isMember})

	// Inbound, by hand: refused before the acknowledgement.
	if conn, err := rawClient(t, a.Addr(), bCert, a.id); err == nil {
		_ = writeFrames(conn, app(b.id, a.id, 0, nil))
		conn.Close()
		t.Fatal("a acknowledged a non-member")
	}
	waitFor(t, "refusal counted", func() bool { return a.Stats()[b.id].Refused >= 1 })

	// Both ways through transports: b dials a (a refuses it), a dials b
	// (a refuses to talk to a non-member server).
	connect(a, b)
	waitFor(t, "failed dials both ways", func() bool {
		a.Send([]*pb.Message{app(a.id, b.id, 0, nil)})
		b.Send([]*pb.Message{app(b.id, a.id, 0, nil)})
		return a.Stats()[b.id].Dropped >= 3 && b.Stats()[a.id].Dropped >= 3
	})
	if st := a.Stats()[b.id]; st.Connected || st.Sent != 0 || st.Received != 0 {
		t.Fatalf("a's stats for non-member b: %+v", st)
	}
	if st := b.Stats()[a.id]; st.Connected || st.Sent != 0 {
		t.Fatalf("b's stats for a, which refuses it: %+v", st)
	}
	if got := a.rec.all(); len(got) != 0 {
		t.Fatalf("a received %d messages from a non-member", len(got))
	}
	if got := b.rec.all(); len(got) != 0 {
		t.Fatalf("b received %d messages from a, which must not dial a non-member", len(got))
	}
}

// TestMembershipRevoked: a member whose membership ends while connected is
// cut off at its next message, which is not delivered, and cannot
// reconnect; MembershipChanged cuts it off without waiting for a message.
func TestMembershipRevoked(t *testing.T) {
	ca := newCA(t, "service")
	for _, eager := range []bool{false, true} {
		t.Run(fmt.Sprintf("MembershipChanged=%v", eager), func(t *testing.T) {
			aCert, aID := ca.nodeCert(t, true, true)
			bCert, bID := ca.nodeCert(t, true, true)
			m := newMembers(aID, bID)
			a := startNode(t, ca, nodeOpts{cert: &aCert, id: aID, isMember: m.isMember})
			b := startNode(t, ca, nodeOpts{cert: &bCert, id: bID})
			b.SetPeer(a.id, a.Addr())
			waitFor(t, "delivery while a member", func() bool {
				b.Send([]*pb.Message{app(b.id, a.id, 0, nil)})
				return len(a.rec.all()) > 0
			})

			m.remove(b.id)
			if eager {
				a.MembershipChanged()
				waitFor(t, "b's connection closed", func() bool { return !b.Stats()[a.id].Connected })
			}
			// Everything sent from now on is read after the revocation.
			waitFor(t, "refusal", func() bool {
				b.Send([]*pb.Message{app(b.id, a.id, 1000, nil)})
				return a.Stats()[b.id].Refused >= 2
			})
			for _, got := range a.rec.all() {
				if got.GetIndex() >= 1000 {
					t.Fatalf("delivered a message sent after b stopped being a member: %v", got)
				}
			}
		})
	}
}
