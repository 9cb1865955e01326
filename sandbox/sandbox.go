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
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	cococrypto "github.com/cocoledger/coco/crypto"
	govclient "github.com/cocoledger/coco/gov/client"
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

// UserEther is each sandbox user's genesis balance, in wei: a million
// ether.
var UserEther = new(big.Int).Mul(big.NewInt(1_000_000), big.NewInt(1e18))

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
	if fresh {
		// A new service: the first node creates it, the members open it
		// through governance, and the others join it, trusted by
		// proposals.
		err = openService(ctx, cfg.Logger, info, &procs)
	} else {
		// A restart: every node resumes from its data directory at once (a
		// majority must be up before any of them can be primary); the
		// service's state, open or not, is in the ledger.
		for i := range info.Nodes {
			p, err := startNode(&info.Nodes[i])
			if err != nil {
				return err
			}
			procs = append(procs, p)
		}
		err = waitFor(ctx, info, procs, "the service to open", func(ctx context.Context) error {
			return checkNodes(ctx, info, len(info.Nodes), true)
		})
	}
	if err != nil {
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
	if cfg.Members < 1 {
		return nil, fmt.Errorf("sandbox: --members must be at least 1 to create a service (got %d)", cfg.Members)
	}
	// Data left by a start that never got as far as sandbox.json belongs
	// to a service whose members' keys are gone with it.
	if _, err := os.Stat(filepath.Join(dir, "node0", "ledger")); err == nil {
		return nil, fmt.Errorf("sandbox: %s holds a node's ledger but no sandbox.json (an earlier start did not finish?); remove the directory to create a new sandbox", dir)
	}
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
	}
	// Every user's Ethereum address starts with UserEther.
	alloc := map[string]map[string]string{}
	for _, u := range info.Users {
		alloc[u.EthAddress] = map[string]string{"balance": UserEther.String()}
	}
	allocJSON, err := json.MarshalIndent(alloc, "", "  ")
	if err != nil {
		return nil, err
	}
	allocPath := filepath.Join(dir, "eth_alloc.json")
	if err := cococrypto.WriteFileAtomic(allocPath, allocJSON, 0o600); err != nil {
		return nil, err
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
		// node0 creates the service with every member; the others join it
		// and stay Pending until the members trust them.
		var args []string
		if i == 0 {
			args = []string{bin, "node", "start", "--data-dir", data, "--rpc-address", rpc, "--node-address", nodeAddr,
				"--eth-chain-id", strconv.FormatUint(info.ChainID, 10), "--eth-alloc", allocPath}
			for _, m := range info.Members {
				args = append(args, "--member", m.Cert+","+encPubKeyPath(m))
			}
		} else {
			args = []string{bin, "node", "join", "--data-dir", data, "--rpc-address", rpc, "--node-address", nodeAddr,
				"--target", info.Nodes[0].RPCAddress, "--service-cert", info.ServiceCert}
		}
		args = append(args, cfg.NodeArgs...)
		info.Nodes = append(info.Nodes, NodeInfo{RPCAddress: rpc, NodeAddress: nodeAddr, DataDir: data, Args: args})
	}
	return info, nil
}

// encPubKeyPath is the public half of a member's encryption key, written
// next to its private key (MemberInfo.EncKey) by create.
func encPubKeyPath(m MemberInfo) string {
	return strings.TrimSuffix(m.EncKey, "_enc_privk.pem") + "_enc_pubk.pem"
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

// waitFor polls check until it succeeds, for at most startTimeout. A node
// process that exits meanwhile fails it at once: whatever answers on its
// address is not the node this sandbox started.
func waitFor(ctx context.Context, info *Info, procs []*nodeProc, what string, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	for {
		if err := exited(procs); err != nil {
			return err
		}
		err := check(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sandbox: timed out waiting for %s (see %s): %w", what, filepath.Join(info.Nodes[0].DataDir, "node.log"), err)
		case <-time.After(pollInterval):
		}
	}
}

// startTimeout bounds each wait of a sandbox's start-up; pollInterval is
// how often it checks.
const (
	startTimeout = 60 * time.Second
	pollInterval = 50 * time.Millisecond
)

// exited fails if any node process has exited.
func exited(procs []*nodeProc) error {
	for _, p := range procs {
		select {
		case <-p.done:
			return fmt.Errorf("sandbox: node process %d exited during start-up (%v); see %s", p.cmd.Process.Pid, p.cmd.ProcessState, p.log)
		default:
		}
	}
	return nil
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

// nodeRecord is one node of GET /node/network/nodes.
type nodeRecord struct {
	NodeID     string `json:"node_id"`
	RPCAddress string `json:"rpc_address"`
	Status     string `json:"status"`
	Membership string `json:"membership"`
}

// serviceClient is an HTTPS client that trusts the service certificate.
func serviceClient(info *Info) (*http.Client, error) {
	pem, err := os.ReadFile(info.ServiceCert)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("sandbox: %s holds no certificate", info.ServiceCert)
	}
	return &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}}}, nil
}

// nodesOf is GET /node/network/nodes of the node at addr.
func nodesOf(ctx context.Context, client *http.Client, addr string) ([]nodeRecord, error) {
	var nodes struct {
		Nodes []nodeRecord `json:"nodes"`
	}
	if err := GetJSON(ctx, client, addr, "/node/network/nodes", &nodes); err != nil {
		return nil, err
	}
	return nodes.Nodes, nil
}

// checkNodes succeeds once each of the first count nodes serves requests
// and sees all of them as trusted voters, and, if open, reports the
// service Open.
func checkNodes(ctx context.Context, info *Info, count int, open bool) error {
	client, err := serviceClient(info)
	if err != nil {
		return err
	}
	defer client.CloseIdleConnections()
	ready := "/node/ready/gov"
	if open {
		ready = "/node/ready/app"
	}
	for _, n := range info.Nodes[:count] {
		if err := GetJSON(ctx, client, n.RPCAddress, ready, nil); err != nil {
			return err
		}
		nodes, err := nodesOf(ctx, client, n.RPCAddress)
		if err != nil {
			return err
		}
		for _, want := range info.Nodes[:count] {
			if !slices.ContainsFunc(nodes, func(got nodeRecord) bool {
				return got.RPCAddress == want.RPCAddress && got.Status == "Trusted" && got.Membership == "Voter"
			}) {
				return fmt.Errorf("%s does not yet see %s as a trusted voter", n.RPCAddress, want.RPCAddress)
			}
		}
	}
	if !open {
		return nil
	}
	for _, n := range info.Nodes[:count] {
		var net struct {
			Status string `json:"service_status"`
		}
		if err := GetJSON(ctx, client, n.RPCAddress, "/node/network", &net); err != nil {
			return err
		}
		if net.Status != "Open" {
			return fmt.Errorf("%s: the service is %s", n.RPCAddress, net.Status)
		}
	}
	return nil
}

// openService starts a new service: node0 creates it; every member
// acknowledges the state digest (becoming Active); the other nodes join
// and the members trust each once it is Pending; once every node is a
// trusted voter, the members register the users and open the service.
// Started processes are appended to procs as they start.
func openService(ctx context.Context, log *slog.Logger, info *Info, procs *[]*nodeProc) error {
	p, err := startNode(&info.Nodes[0])
	if err != nil {
		return err
	}
	*procs = append(*procs, p)
	node0 := info.Nodes[0].RPCAddress
	if err := waitFor(ctx, info, *procs, "node0 to serve", func(ctx context.Context) error {
		return checkNodes(ctx, info, 1, false)
	}); err != nil {
		return err
	}

	// Each governance request is bounded by the client's timeout.
	members := make([]*govclient.Client, len(info.Members))
	for i, m := range info.Members {
		if members[i], err = govclient.Load(node0, info.ServiceCert, m.Cert, m.Key); err != nil {
			return fmt.Errorf("sandbox: %s: %w", m.Name, err)
		}
		defer members[i].Close()
		if err := members[i].Ack(ctx); err != nil {
			return fmt.Errorf("sandbox: %s acknowledges the state digest: %w", m.Name, err)
		}
	}
	pass := func(what string, p govclient.Proposal) error {
		v, err := govclient.Pass(ctx, members[0], members, p)
		if err != nil {
			return fmt.Errorf("sandbox: %s: %w", what, err)
		}
		log.Debug("proposal accepted", "what", what, "proposal_id", v.ProposalID)
		return nil
	}

	for i := range info.Nodes[1:] {
		p, err := startNode(&info.Nodes[1+i])
		if err != nil {
			return err
		}
		*procs = append(*procs, p)
	}
	if err := trustJoiners(ctx, log, info, *procs, pass); err != nil {
		return err
	}
	if err := waitFor(ctx, info, *procs, "every node to be a trusted voter", func(ctx context.Context) error {
		return checkNodes(ctx, info, len(info.Nodes), false)
	}); err != nil {
		return err
	}

	var open govclient.Proposal
	for _, u := range info.Users {
		cert, err := os.ReadFile(u.Cert)
		if err != nil {
			return fmt.Errorf("sandbox: %w", err)
		}
		open.Actions = append(open.Actions, govclient.Action{Name: "set_user", Args: map[string]any{"cert": string(cert), "user_data": map[string]any{"eth_address": u.EthAddress}}})
	}
	open.Actions = append(open.Actions, govclient.Action{Name: "transition_service_to_open"})
	if err := pass("register the users and open the service", open); err != nil {
		return err
	}
	log.Info("members opened the service", "members", len(info.Members), "users", len(info.Users))
	return waitFor(ctx, info, *procs, "the service to open", func(ctx context.Context) error {
		return checkNodes(ctx, info, len(info.Nodes), true)
	})
}

// trustJoiners passes transition_node_to_trusted for each joining node
// (info.Nodes[1:]) once node0 lists it as Pending, until node0 lists every
// one of them as Trusted.
func trustJoiners(ctx context.Context, log *slog.Logger, info *Info, procs []*nodeProc, pass func(string, govclient.Proposal) error) error {
	client, err := serviceClient(info)
	if err != nil {
		return err
	}
	defer client.CloseIdleConnections()
	joiners := map[string]bool{} // rpc address -> trusted
	for _, n := range info.Nodes[1:] {
		joiners[n.RPCAddress] = false
	}
	proposed := map[string]bool{} // node id
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	for {
		if err := exited(procs); err != nil {
			return err
		}
		nodes, err := nodesOf(ctx, client, info.Nodes[0].RPCAddress)
		if err == nil {
			for _, n := range nodes {
				if _, ours := joiners[n.RPCAddress]; !ours {
					continue
				}
				switch n.Status {
				case "Trusted":
					joiners[n.RPCAddress] = true
				case "Pending":
					if proposed[n.NodeID] {
						continue
					}
					proposed[n.NodeID] = true
					if err := pass("trust node "+n.NodeID, govclient.Proposal{Actions: []govclient.Action{
						{Name: "transition_node_to_trusted", Args: map[string]any{"node_id": n.NodeID}},
					}}); err != nil {
						return err
					}
					log.Info("members trusted a joining node", "node_id", n.NodeID, "rpc_address", n.RPCAddress)
				}
			}
			trusted := 0
			for _, ok := range joiners {
				if ok {
					trusted++
				}
			}
			if trusted == len(joiners) {
				return nil
			}
			err = fmt.Errorf("%d of %d joining nodes trusted", trusted, len(joiners))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sandbox: timed out waiting for the joining nodes (see their node.log): %w", err)
		case <-time.After(pollInterval):
		}
	}
}

func readNodeID(dataDir string) (string, error) {
	k, err := cococrypto.ReadKeyFile(filepath.Join(dataDir, "node_key.pem"))
	if err != nil {
		return "", err
	}
	return cococrypto.KeyID(k.Public())
}
