package bench

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	cococrypto "github.com/cocoledger/coco/crypto"
)

// CeilingServer is the baseline coco is compared with: the same HTTPS front
// (TLS 1.3, P-256 certificates, client certificates requested, HTTP/1.1 and
// HTTP/2) answering the logging app's POST from an in-memory map, with no
// consensus, ledger or fsync. Whatever it achieves on a machine bounds what
// coco can achieve there with the same client.
type CeilingServer struct {
	// CACert plays the service certificate: it issued the server
	// certificate and is what clients pin.
	CACert *x509.Certificate

	srv   *http.Server
	ln    net.Listener
	conns atomic.Int64

	mu    sync.Mutex
	seqno uint64
	logs  map[uint64]string
}

// StartCeilingServer listens on a random 127.0.0.1 port and serves until
// Close is called or ctx is cancelled.
func StartCeilingServer(ctx context.Context) (*CeilingServer, error) {
	ca, caKey, err := newCA()
	if err != nil {
		return nil, err
	}
	serverCert, err := newServerCert(ca, caKey)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("ceiling server listen: %w", err)
	}
	s := &CeilingServer{
		CACert: ca,
		ln:     ln,
		logs:   map[uint64]string{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /app/log/private", s.handlePost)
	mux.HandleFunc("POST /app/log/public", s.handlePost)
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetHTTP2(true)
	s.srv = &http.Server{
		Handler:   mux,
		Protocols: &protos,
		TLSConfig: &tls.Config{
			MinVersion:   tls.VersionTLS13,
			Certificates: []tls.Certificate{serverCert},
			// Like a coco node: a certificate is required, and checked by
			// the application against its users, not by the TLS stack.
			ClientAuth: tls.RequireAnyClientCert,
		},
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				s.conns.Add(1)
			}
		},
		// Handshake errors from clients hanging up at the end of a run are
		// expected noise, not something to print in the middle of a report.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	go func() { _ = s.srv.ServeTLS(ln, "", "") }()
	context.AfterFunc(ctx, func() { _ = s.Close() })
	return s, nil
}

// Addr is the host:port the server listens on.
func (s *CeilingServer) Addr() string { return s.ln.Addr().String() }

// Connections is the number of connections accepted so far; a benchmark
// with working keep-alive opens one per client.
func (s *CeilingServer) Connections() int64 { return s.conns.Load() }

// Entries is the number of distinct ids stored.
func (s *CeilingServer) Entries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.logs)
}

// Close stops the server and its connections; it is safe to call twice.
func (s *CeilingServer) Close() error {
	err := s.srv.Close()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("close ceiling server: %w", err)
	}
	return nil
}

type logEntry struct {
	ID  *uint64 `json:"id"`
	Msg *string `json:"msg"`
}

// handlePost does what the logging app does minus the ledger: decode, store,
// assign a transaction id, answer true.
func (s *CeilingServer) handlePost(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeError(w, http.StatusBadRequest, "InvalidInput", "cannot read body")
		return
	}
	var e logEntry
	if err := json.Unmarshal(body, &e); err != nil || e.ID == nil || e.Msg == nil {
		writeError(w, http.StatusBadRequest, "InvalidInput", `body must be {"id":uint64,"msg":string}`)
		return
	}
	s.mu.Lock()
	s.logs[*e.ID] = *e.Msg
	s.seqno++
	seqno := s.seqno
	s.mu.Unlock()

	var txid [24]byte
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["X-Ms-Ccf-Transaction-Id"] = []string{string(strconv.AppendUint(append(txid[:0], "1."...), seqno, 10))}
	_, _ = w.Write([]byte("true"))
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

// newCA makes a self-signed P-256 CA, the shape of coco's service identity.
func newCA() (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := cococrypto.GenerateKey()
	if err != nil {
		return nil, nil, fmt.Errorf("ceiling CA key: %w", err)
	}
	cert, err := cococrypto.SelfSignedCert(key, "coco bench ceiling service", 24*time.Hour, true)
	if err != nil {
		return nil, nil, fmt.Errorf("ceiling CA certificate: %w", err)
	}
	return cert, key, nil
}

// newServerCert issues a P-256 server certificate for 127.0.0.1/localhost,
// like a node certificate endorsed by the service identity.
func newServerCert(ca *x509.Certificate, caKey *ecdsa.PrivateKey) (tls.Certificate, error) {
	key, err := cococrypto.GenerateKey()
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("ceiling server key: %w", err)
	}
	cert, err := cococrypto.IssueCert(key.Public(), cococrypto.CertOptions{
		CommonName: "coco bench ceiling node", Hosts: []string{"127.0.0.1", "localhost"},
		Validity: 24 * time.Hour, ServerAuth: true,
	}, ca, caKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("ceiling server certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}, nil
}

// NewClientCert makes a throwaway self-signed P-256 client certificate, for
// running against the ceiling server when no sandbox user is at hand.
func NewClientCert() (tls.Certificate, error) {
	key, err := cococrypto.GenerateKey()
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("client key: %w", err)
	}
	cert, err := cococrypto.SelfSignedCert(key, "coco bench user", 24*time.Hour, false)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("client certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}, nil
}
