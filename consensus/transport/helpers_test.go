package transport

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/cocoledger/coco/consensus"
	cococrypto "github.com/cocoledger/coco/crypto"
	pb "go.etcd.io/raft/v3/raftpb"
)

// waitTimeout bounds every wait in these tests; outcomes never depend on it.
const waitTimeout = 20 * time.Second

// testCA is a service identity (or, in refusal tests, an impostor's).
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func newCA(t testing.TB, name string) *testCA {
	t.Helper()
	key, err := cococrypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := cococrypto.SelfSignedCert(key, name, time.Hour, true)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key}
}

// nodeCert issues a node certificate the way the node package does.
func (ca *testCA) nodeCert(t testing.TB, server, client bool) (tls.Certificate, uint64) {
	t.Helper()
	key, err := cococrypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := cococrypto.IssueCert(key.Public(), cococrypto.CertOptions{
		CommonName: "coco node", Hosts: []string{"127.0.0.1"}, Validity: time.Hour,
		ServerAuth: server, ClientAuth: client,
	}, ca.cert, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	id, err := raftIDOf(cert)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}, id
}

// selfSignedNodeCert is a leaf nobody endorsed.
func selfSignedNodeCert(t testing.TB) (tls.Certificate, uint64) {
	t.Helper()
	key, err := cococrypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := cococrypto.SelfSignedCert(key, "impostor", time.Hour, false)
	if err != nil {
		t.Fatal(err)
	}
	id, err := raftIDOf(cert)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}, id
}

// raftIDOf is what the node package passes as Config.RaftID: the first
// eight bytes of the node id (hex SHA-256 of the SPKI), zero mapped to one.
func raftIDOf(cert *x509.Certificate) (uint64, error) {
	nodeID, err := cococrypto.KeyID(cert.PublicKey)
	if err != nil {
		return 0, err
	}
	return consensus.RaftID(nodeID)
}

// recorder is a Deliver that keeps what it was given.
type recorder struct {
	mu   sync.Mutex
	msgs []*pb.Message
	err  error // returned by Deliver when set
}

func (r *recorder) deliver(_ context.Context, m *pb.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	r.msgs = append(r.msgs, m)
	return nil
}

func (r *recorder) all() []*pb.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*pb.Message(nil), r.msgs...)
}

func (r *recorder) from(id uint64) []*pb.Message {
	var out []*pb.Message
	for _, m := range r.all() {
		if m.GetFrom() == id {
			out = append(out, m)
		}
	}
	return out
}

// node is one transport under test.
type node struct {
	*Transport
	id   uint64
	cert tls.Certificate
	rec  *recorder
	done chan error
}

type nodeOpts struct {
	addr        string
	cert        *tls.Certificate
	id          uint64
	serviceCert *x509.Certificate // default: ca's
	queueSize   int
	queueBytes  int64
	deliver     func(context.Context, *pb.Message) error
	isMember    func(uint64) bool // default: everyone
}

// everyone is an IsMember for tests that are not about membership.
func everyone(uint64) bool { return true }

// members is a mutable IsMember.
type members struct {
	mu  sync.Mutex
	ids map[uint64]bool
}

func newMembers(ids ...uint64) *members {
	m := &members{ids: make(map[uint64]bool)}
	for _, id := range ids {
		m.ids[id] = true
	}
	return m
}

func (m *members) isMember(id uint64) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ids[id]
}

func (m *members) remove(id uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.ids, id)
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("TRANSPORT_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
}

// startNode starts a transport on 127.0.0.1 and closes it when the test
// ends.
func startNode(t testing.TB, ca *testCA, o nodeOpts) *node {
	t.Helper()
	n := &node{rec: &recorder{}, done: make(chan error, 1)}
	if o.cert != nil {
		n.cert, n.id = *o.cert, o.id
	} else {
		n.cert, n.id = ca.nodeCert(t, true, true)
	}
	if o.addr == "" {
		o.addr = "127.0.0.1:0"
	}
	if o.serviceCert == nil {
		o.serviceCert = ca.cert
	}
	deliver := n.rec.deliver
	if o.deliver != nil {
		deliver = o.deliver
	}
	if o.isMember == nil {
		o.isMember = everyone
	}
	tr, err := New(Config{
		ID: n.id, ListenAddr: o.addr, Cert: n.cert, ServiceCert: o.serviceCert,
		RaftID: raftIDOf, Deliver: deliver, IsMember: o.isMember, Logger: testLogger(t).With("node", n.id),
		QueueSize: o.queueSize, QueueBytes: o.queueBytes,
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	n.Transport = tr
	go func() { n.done <- tr.Run(context.Background()) }()
	t.Cleanup(func() { n.stop(t) })
	return n
}

// stop closes the transport and checks Run ended cleanly; idempotent.
func (n *node) stop(t testing.TB) {
	t.Helper()
	if err := n.Close(); err != nil {
		t.Errorf("close %d: %v", n.id, err)
	}
	select {
	case err, ok := <-n.done:
		if ok && err != nil {
			t.Errorf("run %d: %v", n.id, err)
		}
		if ok {
			close(n.done)
		}
	case <-time.After(waitTimeout):
		t.Errorf("run %d did not return after Close", n.id)
	}
}

// connect makes every node a peer of every other.
func connect(nodes ...*node) {
	for _, a := range nodes {
		for _, b := range nodes {
			if a != b {
				a.SetPeer(b.id, b.Addr())
			}
		}
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// app is a MsgApp carrying index i, so order is visible at the receiver.
func app(from, to, i uint64, data []byte) *pb.Message {
	return &pb.Message{
		Type: pb.MsgApp.Enum(), From: new(from), To: new(to), Term: new(uint64(1)),
		Index: new(i), Entries: []*pb.Entry{{Term: new(uint64(1)), Index: new(i + 1), Data: data}},
	}
}

// checkOrder checks that got is exactly indexes 0..n-1 in order.
func checkOrder(t testing.TB, got []*pb.Message, n int, what string) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("%s: got %d messages, want %d", what, len(got), n)
	}
	for i, m := range got {
		if m.GetIndex() != uint64(i) {
			t.Fatalf("%s: message %d has index %d: order not preserved", what, i, m.GetIndex())
		}
	}
}

// rawClient speaks the protocol by hand, to do what a Transport never
// would. It returns the TLS connection after the server acknowledged.
func rawClient(t testing.TB, addr string, cert tls.Certificate, to uint64) (*tls.Conn, error) {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
		NextProtos: []string{alpn}, InsecureSkipVerify: true,
	})
	if err != nil {
		return nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(waitTimeout))
	var pre [prefaceLen]byte
	copy(pre[:], prefaceMagic)
	binary.BigEndian.PutUint64(pre[len(prefaceMagic):], to)
	if _, err := conn.Write(pre[:]); err != nil {
		conn.Close()
		return nil, err
	}
	var ack [1]byte
	if _, err := conn.Read(ack[:]); err != nil {
		conn.Close()
		return nil, err
	}
	if ack[0] != prefaceAck {
		conn.Close()
		return nil, fmt.Errorf("ack %#x", ack[0])
	}
	return conn, nil
}

// writeFrames writes msgs as frames on conn.
func writeFrames(conn net.Conn, msgs ...*pb.Message) error {
	var buf []byte
	for _, m := range msgs {
		var err error
		if buf, err = appendFrame(buf, m); err != nil {
			return err
		}
	}
	_, err := conn.Write(buf)
	return err
}

// expectClosed waits for the server to close conn.
func expectClosed(t testing.TB, conn net.Conn) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(waitTimeout))
	var b [1]byte
	_, err := conn.Read(b[:])
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open (read: %v)", err)
	}
}
