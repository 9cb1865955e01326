package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cocoledger/coco/sandbox"
)

// ErrInvalidSandbox is wrapped by every LoadSandbox validation error.
var ErrInvalidSandbox = errors.New("invalid sandbox file")

// Sandbox is the content of sandbox.json, as written by `coco sandbox`
// (see "The sandbox contract" in the design), with the helpers a load
// generator needs.
type Sandbox struct {
	sandbox.Info
}

// LoadSandbox reads and validates the sandbox.json at path. Relative file
// paths inside it are resolved against the file's directory: the contract
// says they are absolute, but hand-written files for tests and copies of a
// sandbox moved elsewhere are friendlier that way.
func LoadSandbox(path string) (*Sandbox, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read sandbox: %w", err)
	}
	var sb Sandbox
	if err := json.Unmarshal(raw, &sb); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidSandbox, path, err)
	}
	if err := sb.validate(); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidSandbox, path, err)
	}
	sb.resolve(filepath.Dir(path))
	return &sb, nil
}

func (sb *Sandbox) validate() error {
	var errs []error
	if sb.ServiceCert == "" {
		errs = append(errs, errors.New("service_cert is missing"))
	}
	if len(sb.Nodes) == 0 {
		errs = append(errs, errors.New("nodes is empty"))
	}
	for i, n := range sb.Nodes {
		if n.RPCAddress == "" {
			errs = append(errs, fmt.Errorf("nodes[%d].rpc_address is missing", i))
			continue
		}
		if _, _, err := net.SplitHostPort(n.RPCAddress); err != nil {
			errs = append(errs, fmt.Errorf("nodes[%d].rpc_address %q: %w", i, n.RPCAddress, err))
		}
	}
	for i, m := range sb.Members {
		if m.Name == "" || m.Cert == "" || m.Key == "" {
			errs = append(errs, fmt.Errorf("members[%d] needs name, cert and key", i))
		}
	}
	names := make(map[string]bool, len(sb.Users))
	for i, u := range sb.Users {
		if u.Name == "" || u.Cert == "" || u.Key == "" {
			errs = append(errs, fmt.Errorf("users[%d] needs name, cert and key", i))
		}
		if names[u.Name] {
			errs = append(errs, fmt.Errorf("users[%d]: duplicate name %q", i, u.Name))
		}
		names[u.Name] = true
	}
	return errors.Join(errs...)
}

func (sb *Sandbox) resolve(dir string) {
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	sb.ServiceCert = abs(sb.ServiceCert)
	for i := range sb.Members {
		m := &sb.Members[i]
		m.Cert, m.Key, m.EncKey = abs(m.Cert), abs(m.Key), abs(m.EncKey)
	}
	for i := range sb.Users {
		u := &sb.Users[i]
		u.Cert, u.Key, u.EthKey = abs(u.Cert), abs(u.Key), abs(u.EthKey)
	}
	for i := range sb.Nodes {
		sb.Nodes[i].DataDir = abs(sb.Nodes[i].DataDir)
	}
}

// RPCAddresses lists the nodes' RPC addresses in file order.
func (sb *Sandbox) RPCAddresses() []string {
	out := make([]string, len(sb.Nodes))
	for i, n := range sb.Nodes {
		out[i] = n.RPCAddress
	}
	return out
}

// User returns the user called name.
func (sb *Sandbox) User(name string) (sandbox.UserInfo, error) {
	known := make([]string, 0, len(sb.Users))
	for _, u := range sb.Users {
		if u.Name == name {
			return u, nil
		}
		known = append(known, u.Name)
	}
	return sandbox.UserInfo{}, fmt.Errorf("no user %q in sandbox (have: %s)", name, strings.Join(known, ", "))
}

// UserCertificate loads the TLS client certificate of the user called name.
func (sb *Sandbox) UserCertificate(name string) (tls.Certificate, error) {
	u, err := sb.User(name)
	if err != nil {
		return tls.Certificate{}, err
	}
	c, err := tls.LoadX509KeyPair(u.Cert, u.Key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("load user %q key pair: %w", name, err)
	}
	return c, nil
}

// ServiceCertificate loads the service certificate that clients pin as CA.
func (sb *Sandbox) ServiceCertificate() (*x509.Certificate, error) {
	return LoadCertificate(sb.ServiceCert)
}

// LoadCertificate reads the first PEM CERTIFICATE block of the file at path.
func LoadCertificate(path string) (*x509.Certificate, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read certificate: %w", err)
	}
	for {
		var block *pem.Block
		block, raw = pem.Decode(raw)
		if block == nil {
			return nil, fmt.Errorf("%s: no PEM CERTIFICATE block", path)
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return c, nil
	}
}

// PrimaryAddress asks the nodes at addrs, in turn, which node is primary
// and returns its RPC address.
func PrimaryAddress(ctx context.Context, serviceCert *x509.Certificate, addrs []string) (string, error) {
	pool := x509.NewCertPool()
	pool.AddCert(serviceCert)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}}}
	defer client.CloseIdleConnections()
	var errs []error
	for _, addr := range addrs {
		var nodes struct {
			Nodes []struct {
				Primary    bool   `json:"primary"`
				RPCAddress string `json:"rpc_address"`
			} `json:"nodes"`
		}
		if err := sandbox.GetJSON(ctx, client, addr, "/node/network/nodes", &nodes); err != nil {
			errs = append(errs, err)
			continue
		}
		for _, n := range nodes.Nodes {
			if n.Primary {
				return n.RPCAddress, nil
			}
		}
		errs = append(errs, fmt.Errorf("%s knows no primary", addr))
	}
	return "", fmt.Errorf("bench: no primary found: %w", errors.Join(errs...))
}
