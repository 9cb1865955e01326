package transport

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// alpn names the protocol in the TLS handshake, so that a client speaking
// anything else (HTTP/1.1, h2) to this port fails the handshake with
// no_application_protocol instead of reaching the frame reader.
const alpn = "coco-raft/1"

// verifyNode checks that a peer's certificate chain starts with a node
// certificate issued directly by the service certificate and valid for
// usage, and returns the leaf. Neither the service certificate nor any other
// CA certificate is a node certificate. Intermediates the peer sends are ignored:
// node certificates are signed by the service key itself, and nothing else
// the peer presents may extend that trust.
func verifyNode(serviceCert *x509.Certificate, chain []*x509.Certificate, usage x509.ExtKeyUsage, now time.Time) (*x509.Certificate, error) {
	if len(chain) == 0 {
		return nil, fmt.Errorf("%w: peer sent no certificate", ErrRefused)
	}
	roots := x509.NewCertPool()
	roots.AddCert(serviceCert)
	leaf := chain[0]
	// The service certificate verifies against itself and, having no
	// extended key usage, for any usage; it names the service, not a node.
	if leaf.IsCA || leaf.Equal(serviceCert) {
		return nil, fmt.Errorf("%w: certificate %q is the service's or a CA's, not a node certificate", ErrRefused, leaf.Subject.CommonName)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:       roots,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{usage},
	}); err != nil {
		return nil, fmt.Errorf("%w: certificate %q is not a node certificate of this service: %w", ErrRefused, leaf.Subject.CommonName, err)
	}
	return leaf, nil
}

// serverTLS is the listener side: it demands a client certificate endorsed
// by the service for client auth. The caller maps it to a raft id after the
// handshake.
func (t *Transport) serverTLS() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{t.cfg.Cert},
		// Verification is ours (verifyNode): the standard library's would
		// accept intermediates supplied by the peer.
		ClientAuth: tls.RequireAnyClientCert,
		NextProtos: []string{alpn},
		// Every connection does a full handshake, so every connection's
		// certificate is checked now, against the current time.
		SessionTicketsDisabled: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if cs.NegotiatedProtocol != alpn {
				return fmt.Errorf("%w: client did not negotiate %q", ErrRefused, alpn)
			}
			_, err := verifyNode(t.cfg.ServiceCert, cs.PeerCertificates, x509.ExtKeyUsageClientAuth, time.Now())
			return err
		},
	}
}

// clientTLS is the dialling side for peer id: the server must present a node
// certificate of this service for server auth that maps to id. Host names
// are not checked: a node is named by its key, not by its address, and the
// raft id check is stronger than a SAN check would be.
func (t *Transport) clientTLS(id uint64) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{t.cfg.Cert},
		NextProtos:         []string{alpn},
		InsecureSkipVerify: true, // replaced by VerifyConnection below
		VerifyConnection: func(cs tls.ConnectionState) error {
			if cs.NegotiatedProtocol != alpn {
				return fmt.Errorf("%w: server did not negotiate %q", ErrRefused, alpn)
			}
			leaf, err := verifyNode(t.cfg.ServiceCert, cs.PeerCertificates, x509.ExtKeyUsageServerAuth, time.Now())
			if err != nil {
				return err
			}
			got, err := t.cfg.RaftID(leaf)
			if err != nil {
				return fmt.Errorf("%w: raft id of server certificate: %w", ErrRefused, err)
			}
			if got != id {
				return fmt.Errorf("%w: dialled raft id %d but the server is %d (stale address?)", ErrRefused, id, got)
			}
			if !t.cfg.IsMember(got) {
				return fmt.Errorf("%w: node %d is not a member", ErrRefused, got)
			}
			return nil
		},
	}
}

// peerID is the raft id of the authenticated client of an accepted
// connection.
func (t *Transport) peerID(cs tls.ConnectionState) (uint64, error) {
	if len(cs.PeerCertificates) == 0 {
		return 0, errors.New("transport: no peer certificate after handshake")
	}
	id, err := t.cfg.RaftID(cs.PeerCertificates[0])
	if err != nil {
		return 0, fmt.Errorf("%w: raft id of client certificate: %w", ErrRefused, err)
	}
	if id == 0 {
		return 0, fmt.Errorf("%w: client certificate maps to raft id 0", ErrRefused)
	}
	return id, nil
}
