package node

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/cocoledger/coco/consensus"
	cococrypto "github.com/cocoledger/coco/crypto"
)

// Files in a node's data directory.
const (
	NodeKeyFile       = "node_key.pem"
	NodeCertFile      = "node_cert.pem"
	ServiceCertFile   = "service_cert.pem"
	ServiceKeyFile    = "service_key.pem"
	LedgerSecretsFile = "ledger_secrets.json"
	LedgerDir         = "ledger"
	// JoinedFile marks a node that joined an existing service: it never
	// creates a service of its own.
	JoinedFile = "joined.json"
)

// identity is everything secret or identifying a node holds. On a TEE the
// secrets would be sealed to the enclave; here they are 0600 files.
type identity struct {
	nodeKey     crypto.Signer
	nodeCert    *x509.Certificate
	nodeCertPEM []byte
	nodeID      string
	raftID      uint64
	serviceKey  crypto.Signer
	serviceCert *x509.Certificate
	keyring     *cococrypto.Keyring
}

func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return false, err
}

// loadOrCreateIdentity loads the node's identity from dir, creating what is
// missing. Service secrets may only be created for a new service (empty
// ledger): a node with a ledger but no secrets needs disaster recovery.
func loadOrCreateIdentity(dir string, hosts []string, newService bool) (*identity, error) {
	id := &identity{}
	p := func(name string) string { return filepath.Join(dir, name) }
	k, err := loadOrCreateNodeKey(dir)
	if err != nil {
		return nil, err
	}
	id.nodeKey = k
	if id.nodeID, err = cococrypto.KeyID(k.Public()); err != nil {
		return nil, err
	}
	if id.raftID, err = consensus.RaftID(id.nodeID); err != nil {
		return nil, err
	}

	// Service identity and ledger secret.
	haveSvc, err := exists(p(ServiceKeyFile))
	if err != nil {
		return nil, err
	}
	haveSecrets, err := exists(p(LedgerSecretsFile))
	if err != nil {
		return nil, err
	}
	if !haveSvc || !haveSecrets {
		if !newService {
			return nil, fmt.Errorf("node: %s has a ledger but its service key or ledger secrets are missing; the service must be recovered by its members (not supported yet)", dir)
		}
		svcKey, err := cococrypto.GenerateKey()
		if err != nil {
			return nil, err
		}
		svcCert, err := cococrypto.SelfSignedCert(svcKey, "coco service", 10*365*24*time.Hour, true)
		if err != nil {
			return nil, err
		}
		secret, err := cococrypto.NewLedgerSecret(1, 1)
		if err != nil {
			return nil, err
		}
		b, err := cococrypto.MarshalSecrets([]cococrypto.LedgerSecret{secret})
		if err != nil {
			return nil, err
		}
		// A node certificate from an earlier service identity is useless;
		// remove it first, so a crash below cannot leave it behind.
		if err := os.Remove(p(NodeCertFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		// Secrets next, then the key whose presence marks them complete.
		if err := cococrypto.WriteFileAtomic(p(LedgerSecretsFile), b, 0o600); err != nil {
			return nil, err
		}
		if err := cococrypto.WriteCertFile(p(ServiceCertFile), svcCert); err != nil {
			return nil, err
		}
		if err := cococrypto.WriteKeyFile(p(ServiceKeyFile), svcKey); err != nil {
			return nil, err
		}
	}
	if id.serviceKey, err = cococrypto.ReadKeyFile(p(ServiceKeyFile)); err != nil {
		return nil, err
	}
	if id.serviceCert, err = cococrypto.ReadCertFile(p(ServiceCertFile)); err != nil {
		return nil, err
	}
	sb, err := os.ReadFile(p(LedgerSecretsFile))
	if err != nil {
		return nil, fmt.Errorf("node: read ledger secrets: %w", err)
	}
	secrets, err := cococrypto.UnmarshalSecrets(sb)
	if err != nil {
		return nil, fmt.Errorf("node: %s: %w", p(LedgerSecretsFile), err)
	}
	if id.keyring, err = cococrypto.NewKeyring(secrets...); err != nil {
		return nil, err
	}

	// Node certificate, endorsed by the service identity.
	if ok, err := exists(p(NodeCertFile)); err != nil {
		return nil, err
	} else if !ok {
		cert, err := cococrypto.IssueCert(k.Public(), cococrypto.CertOptions{
			CommonName: "coco node " + id.nodeID[:16], Hosts: hosts, Validity: 365 * 24 * time.Hour,
			ServerAuth: true, ClientAuth: true,
		}, id.serviceCert, id.serviceKey)
		if err != nil {
			return nil, err
		}
		if err := cococrypto.WriteCertFile(p(NodeCertFile), cert); err != nil {
			return nil, err
		}
	}
	if id.nodeCert, err = cococrypto.ReadCertFile(p(NodeCertFile)); err != nil {
		return nil, err
	}
	if err := id.nodeCert.CheckSignatureFrom(id.serviceCert); err != nil {
		return nil, fmt.Errorf("node: %s is not endorsed by %s: %w", p(NodeCertFile), p(ServiceCertFile), err)
	}
	id.nodeCertPEM = cococrypto.EncodeCertPEM(id.nodeCert)
	return id, nil
}

// loadOrCreateNodeKey returns the node's key, creating it on first start.
func loadOrCreateNodeKey(dir string) (crypto.Signer, error) {
	path := filepath.Join(dir, NodeKeyFile)
	if ok, err := exists(path); err != nil {
		return nil, err
	} else if !ok {
		k, err := cococrypto.GenerateKey()
		if err != nil {
			return nil, err
		}
		if err := cococrypto.WriteKeyFile(path, k); err != nil {
			return nil, err
		}
	}
	return cococrypto.ReadKeyFile(path)
}

// tlsCert is the node's certificate and key for TLS.
func (id *identity) tlsCert() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{id.nodeCert.Raw}, PrivateKey: id.nodeKey, Leaf: id.nodeCert}
}

// certHosts lists the names a node certificate must carry for addrs.
func certHosts(addrs ...string) []string {
	hosts := []string{"127.0.0.1", "localhost"}
	for _, addr := range addrs {
		if h, _, err := net.SplitHostPort(addr); err == nil && h != "" && h != "0.0.0.0" && h != "::" && !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	return hosts
}
