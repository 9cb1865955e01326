package node

import (
	"context"
	"crypto/rsa"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cocoledger/coco/app"
	"github.com/cocoledger/coco/consensus"
	"github.com/cocoledger/coco/consensus/transport"
	cococrypto "github.com/cocoledger/coco/crypto"
	"github.com/cocoledger/coco/gov"
	"github.com/cocoledger/coco/gov/constitution"
	"github.com/cocoledger/coco/kv"
	"github.com/cocoledger/coco/ledger"
)

// Config configures a node.
type Config struct {
	DataDir    string
	RPCAddress string // host:port for the HTTPS API
	// NodeAddress is host:port of the node-to-node listener (raft traffic,
	// mutual TLS between node certificates); default 127.0.0.1:0. Give a
	// fixed port to nodes of a multi-node service: peers find a restarted
	// node at the address recorded when it joined.
	NodeAddress string
	// Join, if set, makes a node with an empty data directory join an
	// existing service rather than create one. Once joined, the node
	// restarts from its data directory and Join only seeds its peers.
	Join *JoinConfig
	// ElectionTimeout is how long a backup waits without hearing from the
	// primary before it starts an election; default 10 ticks (500ms).
	ElectionTimeout time.Duration
	// Members are the consortium of a new service: its genesis transaction
	// records them (Accepted; each becomes Active by acknowledging the
	// state digest). Required to start a new service, ignored otherwise:
	// from then on, members change only through proposals.
	Members []MemberConfig
	// ConstitutionFile is the JavaScript constitution of a new service;
	// empty means the default one (gov/constitution/js).
	ConstitutionFile string
	// RecoveryThreshold of a new service (stored for recovery); 0 means 1
	// when any member holds an encryption key.
	RecoveryThreshold int
	// GovLimits bound constitution and ballot calls; zero fields take
	// the defaults (1s per call).
	GovLimits constitution.Limits
	Apps      []app.Application

	MaxBodySize     int64         // default 1 MiB
	LedgerChunkSize int64         // default 4 MiB
	SigTxInterval   uint64        // default 5000
	SigInterval     time.Duration // default 100ms
	TickInterval    time.Duration // default 50ms
	// MaxConflictRetries bounds re-execution of a conflicting transaction.
	MaxConflictRetries int // default 10
	Version            string
	Logger             *slog.Logger
}

func (c *Config) setDefaults() {
	if c.MaxBodySize <= 0 {
		c.MaxBodySize = 1 << 20
	}
	if c.MaxConflictRetries <= 0 {
		c.MaxConflictRetries = 10
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Version == "" {
		c.Version = "dev"
	}
}

// MemberConfig names a genesis member's files.
type MemberConfig struct {
	CertFile string
	// EncryptionKeyFile is the member's RSA public key PEM for recovery
	// shares; optional.
	EncryptionKeyFile string
}

// Node is a running coco node.
type Node struct {
	cfg     Config
	log     *slog.Logger
	id      *identity
	led     *ledger.Ledger
	store   *kv.Store
	cons    *consensus.Node
	hist    *historyIndex
	metrics *metrics
	routes  *router
	gov     *gov.Governance
	open    atomic.Bool // the service is Open: applications serve requests
	srv     *http.Server
	ln      net.Listener
	tr      *transport.Transport
	fwd     *forwarder

	// observers are the applications that derive state from commits.
	observers []app.CommitObserver

	joinPeers    []joinPeer // peers named by the join target, until the ledger names them
	members      atomic.Pointer[members]
	membershipCh chan struct{}
	leaderCh     atomic.Pointer[chan struct{}] // closed when the primary changes
	watchDone    chan struct{}
	appsDone     sync.WaitGroup // the applications' Run

	cancel   context.CancelFunc
	consDone chan struct{} // closed when the consensus loop returns
	consErr  error         // its error; read only after consDone
	lock     *os.File
}

// Start opens (or creates) the node in cfg.DataDir, starts consensus and
// the HTTPS API, and returns once the node serves requests. A new data
// directory starts a new service with this node as its only member, or,
// with cfg.Join, joins an existing service: Start then returns once the
// service has trusted the node and handed it its secrets (or ctx ends).
func Start(ctx context.Context, cfg Config) (*Node, error) {
	cfg.setDefaults()
	if cfg.DataDir == "" {
		return nil, errors.New("node: a data directory is required")
	}
	if err := os.MkdirAll(filepath.Join(cfg.DataDir, LedgerDir), 0o700); err != nil {
		return nil, fmt.Errorf("node: create data dir: %w", err)
	}
	n := &Node{cfg: cfg, log: cfg.Logger, store: kv.NewStore(), consDone: make(chan struct{}), membershipCh: make(chan struct{}, 1)}
	n.gov = gov.New(gov.Config{Limits: cfg.GovLimits, Logger: cfg.Logger.With("component", "gov")})
	started := false
	defer func() {
		if !started {
			n.Close()
		}
	}()
	var err error
	if n.lock, err = lockDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	// Bind before touching the ledger, so a busy port changes nothing.
	if n.ln, err = net.Listen("tcp", cfg.RPCAddress); err != nil {
		return nil, fmt.Errorf("node: listen on %s: %w", cfg.RPCAddress, err)
	}
	nodeAddr := cfg.NodeAddress
	if nodeAddr == "" {
		nodeAddr = "127.0.0.1:0"
	}
	nodeLn, err := net.Listen("tcp", nodeAddr)
	if err != nil {
		return nil, fmt.Errorf("node: listen on node address %s: %w", nodeAddr, err)
	}
	defer func() {
		if n.tr == nil {
			nodeLn.Close()
		}
	}()

	n.led, err = ledger.Open(ledger.Options{Dir: filepath.Join(cfg.DataDir, LedgerDir), ChunkSize: cfg.LedgerChunkSize, Logger: cfg.Logger.With("component", "ledger")})
	if err != nil {
		return nil, err
	}
	joining := false
	if cfg.Join != nil {
		ok, err := haveSecrets(cfg.DataDir)
		if err != nil {
			return nil, err
		}
		if !ok && n.led.LastIndex() > 0 {
			return nil, fmt.Errorf("node: %s has a ledger but no service secrets; it cannot join again with it (use an empty data directory)", cfg.DataDir)
		}
		joining = !ok
	}
	joinedBefore, err := exists(filepath.Join(cfg.DataDir, JoinedFile))
	if err != nil {
		return nil, err
	}
	newService := n.led.LastIndex() == 0 && cfg.Join == nil && !joinedBefore
	var genesis *gov.Genesis
	if newService {
		// Read before anything is created: a typo in a file name must not
		// leave a half-made service behind.
		if genesis, err = cfg.genesis(); err != nil {
			return nil, err
		}
	}
	nodeKey, err := loadOrCreateNodeKey(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if joining {
		jr, err := n.joinService(ctx, nodeKey, n.ln.Addr().String(), nodeLn.Addr().String())
		if err != nil {
			return nil, err
		}
		n.joinPeers = jr.Nodes
	}
	if n.id, err = loadOrCreateIdentity(cfg.DataDir, certHosts(cfg.RPCAddress, nodeAddr), newService); err != nil {
		return nil, err
	}
	n.hist = newHistoryIndex(cfg.Apps)
	for _, a := range cfg.Apps {
		if o, ok := a.(app.CommitObserver); ok {
			n.observers = append(n.observers, o)
		}
	}
	n.metrics = newMetrics(n)
	n.fwd = newForwarder(n.id.serviceCert, n.id.tlsCert())
	if n.tr, err = n.newTransport(nodeLn); err != nil {
		return nil, err
	}
	electionTicks := 0
	if cfg.ElectionTimeout > 0 {
		tick := cfg.TickInterval
		if tick <= 0 {
			tick = 50 * time.Millisecond
		}
		electionTicks = max(2, int(cfg.ElectionTimeout/tick))
	}

	n.cons, err = consensus.New(consensus.Config{
		ID:            n.id.raftID,
		NodeID:        n.id.nodeID,
		StateDir:      cfg.DataDir,
		LedgerDir:     filepath.Join(cfg.DataDir, LedgerDir),
		Ledger:        n.led,
		Store:         n.store,
		Keyring:       n.id.keyring,
		NodeKey:       n.id.nodeKey,
		NodeCertPEM:   n.id.nodeCertPEM,
		ServiceKey:    n.id.serviceKey,
		Bootstrap:     newService,
		TickInterval:  cfg.TickInterval,
		SigTxInterval: cfg.SigTxInterval,
		SigInterval:   cfg.SigInterval,
		ElectionTicks: electionTicks,
		Transport:     n.tr,
		OnCommit:      n.onCommit,
		OnConfChange:  func([]uint64, []uint64) { n.signalMembership() },
		Logger:        cfg.Logger.With("component", "consensus"),
	})
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	go func() {
		n.consErr = n.cons.Run(runCtx)
		close(n.consDone)
	}()
	go func() {
		if err := n.tr.Run(runCtx); err != nil && !errors.Is(err, context.Canceled) {
			n.log.Error("node-to-node transport stopped", "err", err)
		}
	}()
	if cfg.Join != nil && !joining {
		n.joinPeers = n.fetchPeers(ctx)
	}
	n.refreshMembers()
	leaderCh := make(chan struct{})
	n.leaderCh.Store(&leaderCh)
	n.watchDone = make(chan struct{})
	go func() {
		defer close(n.watchDone)
		var wg sync.WaitGroup
		wg.Go(func() { n.watchLeader(runCtx) })
		if !newService {
			wg.Go(func() { n.refreshOwnRecord(runCtx, n.ln.Addr().String(), n.tr.Addr()) })
		}
		n.watchMembership(runCtx)
		wg.Wait()
	}()

	// A new service, or one this node runs alone, is writable as soon as
	// this node leads; it then records itself (and, for a new service, its genesis governance state).
	// A node of a multi-node service serves as a backup until it is
	// elected, and its record is kept by the joins and the primary.
	if conf := n.cons.Membership(); newService || (len(conf.Voters) == 1 && conf.Voters[0] == n.id.raftID) {
		if err := n.waitWritable(ctx); err != nil {
			return nil, err
		}
		if err := n.registerService(ctx, nodeLn.Addr().String(), genesis); err != nil {
			return nil, err
		}
	}

	n.routes = n.buildRoutes()
	cert := tls.Certificate{Certificate: [][]byte{n.id.nodeCert.Raw}, PrivateKey: n.id.nodeKey, Leaf: n.id.nodeCert}
	n.srv = &http.Server{
		Handler: n,
		TLSConfig: &tls.Config{
			MinVersion:   tls.VersionTLS13,
			Certificates: []tls.Certificate{cert},
			// Users present self-signed certificates; they are checked
			// against the registered identities on every request.
			ClientAuth: tls.RequestClientCert,
		},
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second, // a slow body must not hold a handler forever
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
	}
	for _, a := range cfg.Apps {
		if r, ok := a.(app.Runner); ok {
			n.appsDone.Go(func() {
				if err := r.Run(runCtx, appHost{n}); err != nil && !errors.Is(err, context.Canceled) {
					n.log.Error("application stopped", "app", a.Name(), "err", err)
				}
			})
		}
	}
	go func() {
		if err := n.srv.ServeTLS(n.ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("https server stopped", "err", err)
		}
	}()
	n.log.Info("node started", "node_id", n.id.nodeID, "rpc_address", n.ln.Addr().String(), "node_address", n.tr.Addr(), "new_service", newService, "joined", joining)
	started = true
	return n, nil
}

// waitWritable waits until this node is primary and caught up, which for a
// single-node service takes one election.
func (n *Node) waitWritable(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for !n.cons.Status().WritesReady {
		select {
		case <-ctx.Done():
			return fmt.Errorf("node: consensus did not become ready: %w", ctx.Err())
		case <-n.consDone:
			return fmt.Errorf("node: consensus stopped: %w", n.consErr)
		case <-t.C:
		}
	}
	return nil
}

// registerService records this node in the service it runs alone: with
// genesis, the governance state of a new service too (service Opening,
// members, constitution), in the same transaction.
func (n *Node) registerService(ctx context.Context, nodeAddr string, genesis *gov.Genesis) error {
	// The bound address, not the configured one (which may say port 0).
	addr := n.ln.Addr().String()
	for attempt := 0; ; attempt++ {
		tx := n.store.Begin()
		if _, ok := tx.Get(gov.ServiceInfo, gov.ServiceKey); !ok && genesis != nil {
			genesis.ServiceCert = n.id.serviceCert
			if err := gov.WriteGenesis(tx, *genesis); err != nil {
				return fmt.Errorf("node: %w", err)
			}
			for _, a := range n.cfg.Apps {
				if g, ok := a.(app.GenesisWriter); ok {
					if err := g.WriteGenesis(tx); err != nil {
						return fmt.Errorf("node: genesis of the %s app: %w", a.Name(), err)
					}
				}
			}
		}
		info, _ := json.Marshal(gov.NodeInfo{NodeID: n.id.nodeID, RaftID: n.id.raftID, Status: gov.NodeTrusted, Cert: string(n.id.nodeCertPEM), RPCAddress: addr, NodeAddress: nodeAddr})
		if old, ok := tx.Get(gov.NodesInfo, n.id.nodeID); !ok || string(old) != string(info) {
			if err := tx.Put(gov.NodesInfo, n.id.nodeID, info); err != nil {
				return err
			}
		}
		if !tx.HasWrites() {
			return nil
		}
		_, err := n.cons.Submit(ctx, tx, [32]byte{})
		if errors.Is(err, kv.ErrConflict) && attempt < n.cfg.MaxConflictRetries {
			continue
		}
		if err != nil {
			return fmt.Errorf("node: register service: %w", err)
		}
		return nil
	}
}

// genesis reads the files that make a new service's governance state.
func (c *Config) genesis() (*gov.Genesis, error) {
	g := &gov.Genesis{Constitution: constitution.Default(), RecoveryThreshold: c.RecoveryThreshold}
	if c.ConstitutionFile != "" {
		b, err := os.ReadFile(c.ConstitutionFile)
		if err != nil {
			return nil, fmt.Errorf("node: constitution: %w", err)
		}
		g.Constitution = string(b)
	}
	for _, m := range c.Members {
		cert, err := cococrypto.ReadCertFile(m.CertFile)
		if err != nil {
			return nil, fmt.Errorf("node: member certificate: %w", err)
		}
		gm := gov.Member{Cert: cert}
		if m.EncryptionKeyFile != "" {
			b, err := os.ReadFile(m.EncryptionKeyFile)
			if err != nil {
				return nil, fmt.Errorf("node: member encryption key: %w", err)
			}
			pub, err := cococrypto.ParsePublicKeyPEM(b)
			if err != nil {
				return nil, fmt.Errorf("node: member encryption key %s: %w", m.EncryptionKeyFile, err)
			}
			if _, ok := pub.(*rsa.PublicKey); !ok {
				return nil, fmt.Errorf("node: member encryption key %s: an RSA public key is required, not %T", m.EncryptionKeyFile, pub)
			}
			gm.EncryptionKeyPEM = b
		}
		g.Members = append(g.Members, gm)
	}
	// Checked before anything is created: a refused genesis must not
	// leave a half-made data directory behind.
	if err := g.Check(); err != nil {
		return nil, fmt.Errorf("node: new service (--member, --constitution, --recovery-threshold): %w", err)
	}
	return g, nil
}

func (n *Node) onCommit(c consensus.CommittedTx) {
	n.hist.record(c.TxID.Seqno, c.WriteSet)
	for _, o := range n.observers {
		o.Committed(c.TxID.Seqno, c.WriteSet)
	}
	n.metrics.committed.Inc()
	for _, m := range c.WriteSet.Maps {
		switch m.Name {
		case gov.NodesInfo:
			n.signalMembership()
		case gov.ServiceInfo:
			for _, w := range m.Writes {
				var svc gov.Service
				if w.Key == gov.ServiceKey && !w.Deleted && json.Unmarshal(w.Value, &svc) == nil {
					n.open.Store(svc.Status == gov.StatusOpen)
				}
			}
		}
	}
}

// Wait blocks until ctx is done (nil) or the node can no longer work, for
// example because its ledger could not be written (the error). Either way
// the caller should Close the node.
func (n *Node) Wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-n.consDone:
		return fmt.Errorf("node: consensus stopped: %w", n.consErr)
	}
}

// Addr is the address the HTTPS API listens on.
func (n *Node) Addr() string { return n.ln.Addr().String() }

// NodeID is the node's id.
func (n *Node) NodeID() string { return n.id.nodeID }

// ServiceCertPath is the path of the service certificate clients pin.
func (n *Node) ServiceCertPath() string { return filepath.Join(n.cfg.DataDir, ServiceCertFile) }

// Close stops serving, stops consensus and closes the ledger.
func (n *Node) Close() error {
	if n.cons != nil && n.cons.Status().IsPrimary {
		// Hand over first, so the service has a primary again in a round
		// trip instead of an election timeout.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if err := n.cons.TransferLeadership(ctx); err != nil {
			n.log.Info("primary role not handed over before stopping", "err", err)
		}
		cancel()
	}
	if n.srv != nil {
		// A short grace period: requests in flight wait for a commit that
		// takes milliseconds, and an HTTP/2 connection can hold Shutdown until
		// its deadline anyway (golang/go#81153), after which Close cuts it.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if err := n.srv.Shutdown(ctx); err != nil {
			n.srv.Close()
		}
		cancel()
	} else if n.ln != nil {
		n.ln.Close()
	}
	if n.cons != nil && n.cancel != nil {
		n.cancel()
		<-n.consDone
	}
	n.appsDone.Wait()
	if n.watchDone != nil {
		<-n.watchDone
	}
	if n.fwd != nil {
		n.fwd.client.CloseIdleConnections()
	}
	if n.tr != nil {
		_ = n.tr.Close()
	}
	var err error
	if n.led != nil {
		err = n.led.Close()
	}
	if n.lock != nil {
		n.lock.Close() // releases the flock
	}
	n.log.Info("node stopped")
	return err
}

// lockDataDir takes an exclusive lock on the data directory for the life of
// the process: two nodes appending to one ledger would corrupt it.
func lockDataDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("node: lock data dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("node: data dir %s is in use by another coco process: %w", dir, err)
	}
	return f, nil
}

// appHost is the app.Host of the node's applications.
type appHost struct{ n *Node }

func (h appHost) Begin() *kv.Tx { return h.n.store.Begin() }

func (h appHost) IsPrimary() bool { return h.n.cons.Status().IsPrimary }

func (h appHost) CommittedWrites(seqno uint64) (*kv.WriteSet, error) {
	if c := h.n.store.CommittedVersion(); seqno == 0 || seqno > c {
		return nil, fmt.Errorf("node: transaction %d is not committed (committed up to %d)", seqno, c)
	}
	ws, err := h.n.entryWrites(seqno)
	if err != nil {
		return nil, fmt.Errorf("node: ledger entry %d: %w", seqno, err)
	}
	return ws, nil
}

// entryWrites reads the ledger entry at seqno and decodes its write set
// (private maps decrypted).
func (n *Node) entryWrites(seqno uint64) (*kv.WriteSet, error) {
	le, err := n.led.Entry(seqno)
	if err != nil {
		return nil, err
	}
	return n.cons.DecodeWriteSet(le)
}

func (h appHost) Submit(ctx context.Context, tx *kv.Tx, ordered func()) error {
	var cb func(consensus.TxID)
	if ordered != nil {
		cb = func(consensus.TxID) { ordered() }
	}
	_, err := h.n.cons.SubmitOrdered(ctx, tx, [32]byte{}, cb)
	if errors.Is(err, consensus.ErrNotPrimary) || errors.Is(err, consensus.ErrNotReady) {
		return fmt.Errorf("%w: %w", app.ErrNotPrimary, err)
	}
	return err
}
