// Package sandbox launches a local coco service for development and tests:
// one OS process per node on 127.0.0.1, members and users with keys, and
// DIR/sandbox.json describing it all (the sandbox contract in DESIGN.md).
package sandbox

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	cococrypto "github.com/cocoledger/coco/crypto"
)

// Info is the content of sandbox.json.
type Info struct {
	ServiceCert string       `json:"service_cert"`
	ChainID     uint64       `json:"chain_id"`
	Nodes       []NodeInfo   `json:"nodes"`
	Members     []MemberInfo `json:"members"`
	Users       []UserInfo   `json:"users"`
}

// NodeInfo describes one node process.
type NodeInfo struct {
	NodeID      string   `json:"node_id"`
	RPCAddress  string   `json:"rpc_address"`
	NodeAddress string   `json:"node_address,omitempty"` // node-to-node listener
	PID         int      `json:"pid"`
	DataDir     string   `json:"data_dir"`
	Args        []string `json:"args"`
}

// MemberInfo describes one member's key files.
type MemberInfo struct {
	Name   string `json:"name"`
	ID     string `json:"id"`
	Cert   string `json:"cert"`
	Key    string `json:"key"`
	EncKey string `json:"enc_key"`
}

// UserInfo describes one user's key files.
type UserInfo struct {
	Name       string `json:"name"`
	ID         string `json:"id"`
	Cert       string `json:"cert"`
	Key        string `json:"key"`
	EthAddress string `json:"eth_address"`
	EthKey     string `json:"eth_key"`
}

// DefaultChainID is the Ethereum chain id of sandbox services.
const DefaultChainID = 1337

// Config configures a sandbox.
type Config struct {
	Dir     string
	Nodes   int
	Members int
	Users   int
	// Binary is the coco executable; it is copied into Dir/bin so that the
	// nodes' args stay valid after `go run` deletes its temporary build.
	Binary string
	// NodeArgs are extra flags passed to every `coco node start`.
	NodeArgs []string
	Logger   *slog.Logger
	// Ready, if set, is called once the service is open and sandbox.json written.
	Ready func(*Info)
}

// Run starts (or restarts) the sandbox service in cfg.Dir and keeps it
// running until ctx is done, then stops the nodes cleanly.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return err
	}
	cfg.Dir = dir
	if cfg.Nodes < 1 {
		return fmt.Errorf("sandbox: --nodes must be at least 1 (got %d)", cfg.Nodes)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	bin, err := installBinary(cfg.Binary, dir)
	if err != nil {
		return err
	}
	info, err := Load(filepath.Join(dir, "sandbox.json"))
	fresh := false
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if info, err = create(cfg, bin); err != nil {
			return err
		}
		fresh = true
	case err != nil:
		return err
	default:
		cfg.Logger.Info("restarting existing sandbox", "dir", dir)
		for i := range info.Nodes {
			info.Nodes[i].Args[0] = bin
		}
	}

	// Something already answering on a node's address (often that node,
	// still running from an earlier sandbox) would be mistaken for the node
	// we start.
	for _, nd := range info.Nodes {
		for _, addr := range []string{nd.RPCAddress, nd.NodeAddress} {
			if addr == "" {
				continue
			}
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				c.Close()
				return fmt.Errorf("sandbox: %s is already in use; is a node of this sandbox still running (last pid %d)? Stop it first", addr, nd.PID)
			}
		}
	}
	procs := make([]*nodeProc, 0, len(info.Nodes))
	defer func() { stopAll(procs, cfg.Logger) }()
	// A new service: the first node creates it, then the others join it.
	// A restart: every node resumes from its data directory at once (a
	// majority must be up before any of them can be primary).
	first := len(info.Nodes)
	if fresh {
		first = 1
	}
	for i := range info.Nodes[:first] {
		p, err := startNode(&info.Nodes[i])
		if err != nil {
			return err
		}
		procs = append(procs, p)
	}
	if fresh {
		if err := waitOpen(ctx, info, procs, 1); err != nil {
			return err
		}
		for i := range info.Nodes[first:] {
			p, err := startNode(&info.Nodes[first+i])
			if err != nil {
				return err
			}
			procs = append(procs, p)
		}
	}
	if err := waitOpen(ctx, info, procs, len(info.Nodes)); err != nil {
		return err
	}
	for i := range info.Nodes {
		if info.Nodes[i].NodeID == "" {
			if info.Nodes[i].NodeID, err = readNodeID(info.Nodes[i].DataDir); err != nil {
				return err
			}
		}
	}
	b, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return err
	}
	if err := cococrypto.WriteFileAtomic(filepath.Join(dir, "sandbox.json"), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("sandbox: write sandbox.json: %w", err)
	}
	if cfg.Ready != nil {
		cfg.Ready(info)
	}
	<-ctx.Done()
	return nil
}

// Load reads a sandbox.json.
func Load(path string) (*Info, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var info Info
	if err := json.Unmarshal(b, &info); err != nil {
		return nil, fmt.Errorf("sandbox: %s: %w", path, err)
	}
	if len(info.Nodes) == 0 {
		return nil, fmt.Errorf("sandbox: %s lists no nodes", path)
	}
	return &info, nil
}

func installBinary(src, dir string) (string, error) {
	if src == "" {
		var err error
		if src, err = os.Executable(); err != nil {
			return "", fmt.Errorf("sandbox: find coco executable: %w", err)
		}
	}
	dst := filepath.Join(dir, "bin", "coco")
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	in, err := os.Open(src)
	if err != nil {
		return "", fmt.Errorf("sandbox: %w", err)
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return "", fmt.Errorf("sandbox: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return "", fmt.Errorf("sandbox: copy coco binary: %w", err)
	}
	if err := out.Close(); err != nil {
		return "", err
	}
	return dst, os.Rename(tmp, dst)
}

// create makes the keys of a new sandbox and the nodes' command lines.
func create(cfg Config, bin string) (*Info, error) {
	dir := cfg.Dir
	info := &Info{ChainID: DefaultChainID}
	keys := filepath.Join(dir, "keys")
	if err := os.MkdirAll(keys, 0o700); err != nil {
		return nil, err
	}
	for i := 0; i < cfg.Members; i++ {
		name := "member" + strconv.Itoa(i)
		id, cert, key, err := newIdentity(keys, name)
		if err != nil {
			return nil, err
		}
		enc, err := cococrypto.GenerateEncryptionKey()
		if err != nil {
			return nil, err
		}
		encPath := filepath.Join(keys, name+"_enc_privk.pem")
		if err := cococrypto.WriteKeyFile(encPath, enc); err != nil {
			return nil, err
		}
		pub, err := cococrypto.EncodePublicKeyPEM(&enc.PublicKey)
		if err != nil {
			return nil, err
		}
		if err := cococrypto.WriteFileAtomic(filepath.Join(keys, name+"_enc_pubk.pem"), pub, 0o644); err != nil {
			return nil, err
		}
		info.Members = append(info.Members, MemberInfo{Name: name, ID: id, Cert: cert, Key: key, EncKey: encPath})
	}
	var userCerts []string
	for i := 0; i < cfg.Users; i++ {
		name := "user" + strconv.Itoa(i)
		id, cert, key, err := newIdentity(keys, name)
		if err != nil {
			return nil, err
		}
		hexKey, addr, err := cococrypto.GenerateEthKey()
		if err != nil {
			return nil, err
		}
		ethPath := filepath.Join(keys, name+"_eth_key")
		if err := cococrypto.WriteFileAtomic(ethPath, []byte(hexKey+"\n"), 0o600); err != nil {
			return nil, err
		}
		info.Users = append(info.Users, UserInfo{Name: name, ID: id, Cert: cert, Key: key, EthAddress: addr, EthKey: ethPath})
		userCerts = append(userCerts, cert)
	}
	info.ServiceCert = filepath.Join(dir, "node0", "service_cert.pem")
	taken := map[string]bool{}
	for i := 0; i < cfg.Nodes; i++ {
		rpc, err := freeAddr(taken)
		if err != nil {
			return nil, err
		}
		nodeAddr, err := freeAddr(taken)
		if err != nil {
			return nil, err
		}
		data := filepath.Join(dir, "node"+strconv.Itoa(i))
		// Every node trusts joiners while it is primary: there is no
		// governance to do it yet.
		var args []string
		if i == 0 {
			args = []string{bin, "node", "start", "--data-dir", data, "--rpc-address", rpc, "--node-address", nodeAddr, "--auto-trust-joiners"}
			for _, c := range userCerts {
				args = append(args, "--user-cert", c)
			}
		} else {
			args = []string{bin, "node", "join", "--data-dir", data, "--rpc-address", rpc, "--node-address", nodeAddr, "--auto-trust-joiners",
				"--target", info.Nodes[0].RPCAddress, "--service-cert", info.ServiceCert}
		}
		args = append(args, cfg.NodeArgs...)
		info.Nodes = append(info.Nodes, NodeInfo{RPCAddress: rpc, NodeAddress: nodeAddr, DataDir: data, Args: args})
	}
	return info, nil
}

func newIdentity(dir, name string) (id, certPath, keyPath string, err error) {
	k, err := cococrypto.GenerateKey()
	if err != nil {
		return "", "", "", err
	}
	cert, err := cococrypto.SelfSignedCert(k, name, 365*24*time.Hour, false)
	if err != nil {
		return "", "", "", err
	}
	certPath = filepath.Join(dir, name+"_cert.pem")
	keyPath = filepath.Join(dir, name+"_privk.pem")
	if err := cococrypto.WriteKeyFile(keyPath, k); err != nil {
		return "", "", "", err
	}
	if err := cococrypto.WriteCertFile(certPath, cert); err != nil {
		return "", "", "", err
	}
	return cococrypto.CertID(cert), certPath, keyPath, nil
}

// freeAddr returns a 127.0.0.1 address whose port is free right now and
// not in taken (ports are picked one at a time and released at once, so the
// kernel may hand the same one out twice), and adds it to taken.
func freeAddr(taken map[string]bool) (string, error) {
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", fmt.Errorf("sandbox: find a free port: %w", err)
		}
		addr := l.Addr().String()
		l.Close()
		if !taken[addr] {
			taken[addr] = true
			return addr, nil
		}
	}
	return "", errors.New("sandbox: could not find a free port")
}

// nodeProc is a running node process; done is closed when it exits.
type nodeProc struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// startNode starts one node process, logging to DATA_DIR/node.log. The node
// gets SIGTERM if the sandbox dies, so no orphan keeps the port.
func startNode(n *NodeInfo) (*nodeProc, error) {
	if err := os.MkdirAll(n.DataDir, 0o700); err != nil {
		return nil, err
	}
	logPath := filepath.Join(n.DataDir, "node.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(n.Args[0], n.Args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("sandbox: start node: %w", err)
	}
	n.PID = cmd.Process.Pid
	p := &nodeProc{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

func stopAll(procs []*nodeProc, log *slog.Logger) {
	for _, p := range procs {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	deadline := time.After(15 * time.Second)
	for _, p := range procs {
		select {
		case <-p.done:
		case <-deadline:
			log.Warn("node did not stop in time; killing it", "pid", p.cmd.Process.Pid)
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
}

// waitOpen waits until the first count nodes answer, the service is Open
// and each of them is a voter serving requests. A node process that exits
// meanwhile fails it at once: whatever answers on its address is not the
// node this sandbox started.
func waitOpen(ctx context.Context, info *Info, procs []*nodeProc, count int) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		for _, p := range procs {
			select {
			case <-p.done:
				return fmt.Errorf("sandbox: node process %d exited during start-up (%v); see %s", p.cmd.Process.Pid, p.cmd.ProcessState, p.log)
			default:
			}
		}
		err := checkOpen(ctx, info, count)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sandbox: service did not open (see %s): %w", filepath.Join(info.Nodes[0].DataDir, "node.log"), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// GetJSON GETs https://addr/path with client and decodes the answer into v
// (nil: the body is ignored). Any status but 200 or 204 is an error.
func GetJSON(ctx context.Context, client *http.Client, addr, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+path, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("%s%s: %s", addr, path, resp.Status)
	}
	if v == nil {
		return nil
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(v)
}

func checkOpen(ctx context.Context, info *Info, count int) error {
	pem, err := os.ReadFile(info.ServiceCert)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("sandbox: %s holds no certificate", info.ServiceCert)
	}
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}}}
	defer client.CloseIdleConnections()
	get := func(addr, path string, v any) error { return GetJSON(ctx, client, addr, path, v) }
	for _, n := range info.Nodes[:count] {
		var nodes struct {
			Nodes []struct {
				RPCAddress string `json:"rpc_address"`
				Status     string `json:"status"`
				Membership string `json:"membership"`
			} `json:"nodes"`
		}
		if err := get(n.RPCAddress, "/node/ready/app", nil); err != nil {
			return err
		}
		if err := get(n.RPCAddress, "/node/network/nodes", &nodes); err != nil {
			return err
		}
		for _, want := range info.Nodes[:count] {
			found := false
			for _, got := range nodes.Nodes {
				if got.RPCAddress == want.RPCAddress && got.Status == "Trusted" && got.Membership == "Voter" {
					found = true
				}
			}
			if !found {
				return fmt.Errorf("%s does not yet see %s as a trusted voter", n.RPCAddress, want.RPCAddress)
			}
		}
	}
	for _, n := range info.Nodes[:count] {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+n.RPCAddress+"/node/network", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		var net struct {
			Status string `json:"service_status"`
		}
		err = json.NewDecoder(resp.Body).Decode(&net)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if net.Status != "Open" {
			return fmt.Errorf("service is %s", net.Status)
		}
	}
	return nil
}

func readNodeID(dataDir string) (string, error) {
	k, err := cococrypto.ReadKeyFile(filepath.Join(dataDir, "node_key.pem"))
	if err != nil {
		return "", err
	}
	return cococrypto.KeyID(k.Public())
}
