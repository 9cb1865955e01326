package cli

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/cocoledger/coco/app"
	"github.com/cocoledger/coco/app/evm"
	"github.com/cocoledger/coco/app/logging"
	"github.com/cocoledger/coco/app/smallbank"
	"github.com/cocoledger/coco/node"
	"github.com/spf13/cobra"
)

func newNodeCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "node", Short: "Run a coco node"}
	cmd.AddCommand(newNodeStartCmd(), newNodeJoinCmd())
	return cmd
}

func newNodeStartCmd() *cobra.Command {
	return nodeRunCmd("start", "Start a node; a new data directory starts a new service",
		`Start a node on DATA-DIR. If DATA-DIR holds no ledger, the node creates a new
service (service identity, ledger secret) with the --member members and is
its only voter. The service is Opening: application endpoints answer 503
ServiceNotOpen until the members, each Active once it acknowledged the state
digest (coco gov ack), pass a transition_service_to_open proposal. Other nodes
join it with "coco node join". Otherwise it restarts on its ledger with
the same identity and resumes the service with its peers.
The node runs until SIGINT or SIGTERM.`, false)
}

func newNodeJoinCmd() *cobra.Command {
	return nodeRunCmd("join", "Start a node that joins an existing service",
		`Start a node on an empty DATA-DIR that joins the service of the node at
--target (any node's HTTPS address), whose service certificate --service-cert
it pins. The node stays Pending (see GET /node/network/nodes) until the
members pass a transition_node_to_trusted {node_id} proposal (coco gov propose
--action transition_node_to_trusted --arg node_id=ID); it then receives the
service identity and ledger secrets over the mutually authenticated channel,
catches up from its peers and becomes a voter.
Running the same command again restarts the joined node on its DATA-DIR.
The node runs until SIGINT or SIGTERM.`, true)
}

// nodeRunCmd builds "node start" and "node join", which share every flag
// but the join target.
func nodeRunCmd(use, short, long string, join bool) *cobra.Command {
	var (
		cfg        node.Config
		jc         node.JoinConfig
		logLevel   string
		logFormat  string
		cpuProfile string
		ethChainID uint64
		ethAlloc   string
		ethRecent  int
	)
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long:  long,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := newLogger(cmd.ErrOrStderr(), logLevel, logFormat)
			if err != nil {
				return err
			}
			cfg.Logger = logger
			cfg.Version = Version
			if join {
				cfg.Join = &jc
			}
			if cpuProfile != "" {
				stop, err := startCPUProfile(cpuProfile)
				if err != nil {
					return err
				}
				defer stop()
			}
			if ethRecent < evm.MinRecentBlocks {
				return fmt.Errorf("--eth-recent-blocks: %d is below %d (the EVM's BLOCKHASH reads the last 256 blocks)", ethRecent, evm.MinRecentBlocks)
			}
			evmCfg := evm.Config{ChainID: ethChainID, RecentBlocks: ethRecent, Version: Version, Logger: logger.With("component", "evm")}
			if ethAlloc != "" {
				if evmCfg.Alloc, err = evm.LoadAlloc(ethAlloc); err != nil {
					return fmt.Errorf("--eth-alloc: %w", err)
				}
			}
			cfg.Apps = []app.Application{logging.App{}, evm.New(evmCfg), smallbank.App{}}
			// Each constitution and ballot call runs in a process of its
			// own, this binary again (see constitution.ServeWorker), which
			// bounds its memory and can be killed.
			if cfg.GovLimits.Worker, err = selfExecutable(); err != nil {
				return err
			}
			n, err := node.Start(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "node %s listening on https://%s (service certificate %s)\n", n.NodeID(), n.Addr(), n.ServiceCertPath())
			werr := n.Wait(cmd.Context())
			return errors.Join(werr, n.Close())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data-dir", "", "node data directory (created if missing)")
	f.StringVar(&cfg.RPCAddress, "rpc-address", "127.0.0.1:8000", "host:port of the HTTPS API")
	f.StringVar(&cfg.NodeAddress, "node-address", "127.0.0.1:0", "host:port of the node-to-node listener (mutual TLS); give a fixed port in multi-node services")
	f.DurationVar(&cfg.ElectionTimeout, "election-timeout", 500*time.Millisecond, "a backup that hears nothing from the primary this long starts an election")
	if join {
		f.StringVar(&jc.Target, "target", "", "host:port of any node of the service to join")
		f.StringVar(&jc.ServiceCertFile, "service-cert", "", "the service certificate (service_cert.pem) the target must present")
		_ = cmd.MarkFlagRequired("target")
		_ = cmd.MarkFlagRequired("service-cert")
	} else {
		f.Var(&memberFlag{&cfg.Members}, "member", "CERT[,ENC_PUBKEY]: a member of the new service: certificate PEM file and optional RSA public key PEM file for recovery shares (repeatable; at least one to create a service)")
		f.StringVar(&cfg.ConstitutionFile, "constitution", "", "JavaScript constitution of the new service (default: the built-in one, majority of active members)")
		f.IntVar(&cfg.RecoveryThreshold, "recovery-threshold", 0, "members' shares needed to recover the new service (default 1 when any member has an encryption key)")
		f.Uint64Var(&ethChainID, "eth-chain-id", evm.DefaultChainID, "Ethereum chain id of the new service (EIP-155)")
		f.StringVar(&ethAlloc, "eth-alloc", "", `JSON file of the new service's Ethereum genesis accounts, go-ethereum "alloc" format ({"0xADDRESS": {"balance": "WEI"}})`)
	}
	f.IntVar(&ethRecent, "eth-recent-blocks", evm.DefaultRecentBlocks, "Ethereum blocks whose records stay in memory; older ones are read from the ledger (the primary's value decides)")
	f.Int64Var(&cfg.MaxBodySize, "max-body-size", 1<<20, "largest request body accepted, in bytes")
	f.Int64Var(&cfg.LedgerChunkSize, "ledger-chunk-size", 4<<20, "ledger chunk file size before rotation, in bytes")
	f.Uint64Var(&cfg.SigTxInterval, "sig-tx-interval", 5000, "emit a signature transaction after this many transactions")
	f.DurationVar(&cfg.SigInterval, "sig-interval", 100*time.Millisecond, "or after this long when anything is unsigned")
	f.DurationVar(&cfg.TickInterval, "tick-interval", 50*time.Millisecond, "raft tick interval")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&logFormat, "log-format", "text", "text or json")
	f.StringVar(&cpuProfile, "cpu-profile", "", "write a pprof CPU profile of the whole run to this file")
	_ = cmd.MarkFlagRequired("data-dir")
	return cmd
}

func newLogger(w interface{ Write([]byte) (int, error) }, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format must be text or json, not %q", format)
}

// startCPUProfile profiles the process until the returned stop is called.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpu-profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpu-profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// memberFlag parses --member CERT[,ENC_PUBKEY].
type memberFlag struct{ members *[]node.MemberConfig }

func (f *memberFlag) String() string { return "" }
func (f *memberFlag) Type() string   { return "CERT[,ENC_PUBKEY]" }

func (f *memberFlag) Set(v string) error {
	cert, enc, _ := strings.Cut(v, ",")
	if cert == "" {
		return errors.New("a member certificate file is required")
	}
	*f.members = append(*f.members, node.MemberConfig{CertFile: cert, EncryptionKeyFile: enc})
	return nil
}
