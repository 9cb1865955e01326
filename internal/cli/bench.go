package cli

import (
	"bufio"
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/cocoledger/coco/bench"
)

// benchFlags are the workload knobs shared by `bench log` and `bench ceiling`,
// so that both measure the identical workload.
type benchFlags struct {
	clients  int
	duration time.Duration
	warmup   time.Duration
	path     string
	msgSize  int
	http2    bool
	jsonOut  string
}

func (f *benchFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.IntVar(&f.clients, "clients", 64, "concurrent clients, each on its own kept-alive connection")
	fl.DurationVar(&f.duration, "duration", 10*time.Second, "measured duration")
	fl.DurationVar(&f.warmup, "warmup", 2*time.Second, "warmup before measuring (not counted)")
	fl.StringVar(&f.path, "path", bench.DefaultLogPath, "logging app endpoint to POST to")
	fl.IntVar(&f.msgSize, "msg-size", bench.DefaultMsgSize, "message size in bytes")
	fl.BoolVar(&f.http2, "http2", false, "use HTTP/2 instead of HTTP/1.1")
	fl.StringVar(&f.jsonOut, "json", "", "append each result as a JSON line (a comparison figure) to this file")
}

// record appends res to --json's file, if given, as the figure of system
// on the writes workload of this message size.
func (f *benchFlags) record(res *bench.Result, system string) error {
	if f.jsonOut == "" {
		return nil
	}
	return bench.AppendFigure(f.jsonOut, res.Figure(fmt.Sprintf("writes-%dB", f.msgSize), system))
}

func (f *benchFlags) config() bench.LogConfig {
	return bench.LogConfig{
		Clients:  f.clients,
		Duration: f.duration,
		Warmup:   f.warmup,
		Path:     f.path,
		MsgSize:  f.msgSize,
		HTTP2:    f.http2,
	}
}

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure coco's throughput and latency",
	}
	cmd.AddCommand(newBenchLogCmd(), newBenchERC20Cmd(), newBenchCeilingCmd(), newBenchCeilingServerCmd(), newBenchCryptoCmd(), newBenchReportCmd(), newBenchSmallBankCmd())
	return cmd
}

func newBenchLogCmd() *cobra.Command {
	var (
		f        benchFlags
		sandbox  string
		user     string
		allNodes bool
		ceiling  bool
		system   string
	)
	cmd := &cobra.Command{
		Use:   "log",
		Short: "Committed writes/s of the logging app on a running sandbox",
		Long: `Runs closed-loop clients that POST unique entries to the logging app of
the sandbox described by --sandbox and prints committed writes/s and latency
as a markdown table row. With --ceiling, the identical workload is then run
against a trivial in-memory HTTPS server in a process of its own, the ceiling of the
HTTP+TLS layer on this machine, and the ratio of the two is printed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sb, err := bench.LoadSandbox(benchSandboxFile(sandbox))
			if err != nil {
				return err
			}
			cfg := f.config()
			if cfg.ServiceCert, err = sb.ServiceCertificate(); err != nil {
				return err
			}
			if cfg.ClientCert, err = sb.UserCertificate(user); err != nil {
				return err
			}
			cfg.Targets = sb.RPCAddresses()
			if !allNodes && len(cfg.Targets) > 1 {
				// The primary: writes sent to a backup would measure
				// forwarding too.
				primary, err := bench.PrimaryAddress(cmd.Context(), cfg.ServiceCert, cfg.Targets)
				if err != nil {
					return err
				}
				cfg.Targets = []string{primary}
			}
			if system == "" {
				system = fmt.Sprintf("coco-%d", len(sb.Nodes))
			}
			out := cmd.OutOrStdout()
			fmt.Fprintln(out, bench.MarkdownHeader)
			res, err := runBench(cmd.Context(), out, cfg, "")
			if err != nil {
				return err
			}
			if err := benchFailed(res); err != nil {
				return err
			}
			if err := f.record(res, system); err != nil {
				return err
			}
			if !ceiling {
				return nil
			}
			top, err := runBenchCeiling(cmd.Context(), out, cfg)
			if err != nil {
				return err
			}
			if err := benchFailed(top); err != nil {
				return err
			}
			fmt.Fprintf(out, "\nratio writes coco/https-ceiling = %.2f\n", res.Throughput/top.Throughput)
			return f.record(top, "https-ceiling")
		},
	}
	f.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&sandbox, "sandbox", filepath.Join("workspace", "sandbox", "sandbox.json"), "sandbox.json written by coco sandbox (or its directory)")
	fl.StringVar(&user, "user", "user0", "sandbox user whose certificate authenticates the writes")
	fl.BoolVar(&allNodes, "all-nodes", false, "rotate requests over every node (backups forward writes) instead of sending them all to the primary")
	fl.BoolVar(&ceiling, "ceiling", false, "also measure the HTTPS ceiling (trivial in-memory server process) with the same workload")
	fl.StringVar(&system, "system", "", `name of the system measured, in the figure (default "coco-N" for N nodes)`)
	return cmd
}

func newBenchCeilingCmd() *cobra.Command {
	var f benchFlags
	cmd := &cobra.Command{
		Use:   "ceiling",
		Short: "Writes/s of a trivial in-memory HTTPS server (no sandbox needed)",
		Long: `Measures the ceiling of the HTTP+TLS layer on this machine: the logging
workload against a trivial HTTPS server (a process of its own) that stores entries in a map,
with no consensus, ledger or fsync.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := f.config()
			var err error
			if cfg.ClientCert, err = bench.NewClientCert(); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintln(out, bench.MarkdownHeader)
			res, err := runBenchCeiling(cmd.Context(), out, cfg)
			if err != nil {
				return err
			}
			if err := benchFailed(res); err != nil {
				return err
			}
			return f.record(res, "https-ceiling")
		},
	}
	f.register(cmd)
	return cmd
}

// runBenchCeiling runs cfg, minus its targets and CA, against a fresh ceiling
// server in a process of its own, as coco's node is: a server sharing the
// load generator's process would look faster than any real server can be.
func runBenchCeiling(ctx context.Context, out io.Writer, cfg bench.LogConfig) (*bench.Result, error) {
	exe, err := selfExecutable()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "coco-ceiling-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	caPath := filepath.Join(dir, "ca.pem")
	cmd := exec.CommandContext(ctx, exe, "bench", "ceiling-server", "--ca-out", caPath)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start ceiling server: %w", err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	addr, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("ceiling server did not report its address: %w", err)
	}
	addr = strings.TrimSpace(addr)
	if cfg.ServiceCert, err = bench.LoadCertificate(caPath); err != nil {
		return nil, err
	}
	cfg.Targets = []string{addr}
	return runBench(ctx, out, cfg, "https-ceiling "+addr)
}

// newBenchCeilingServerCmd runs the ceiling server as a process of its own
// for runBenchCeiling: it writes its CA certificate, prints its address on
// one line and serves until SIGTERM.
func newBenchCeilingServerCmd() *cobra.Command {
	var caOut string
	cmd := &cobra.Command{
		Use:    "ceiling-server",
		Short:  "Serve the HTTPS ceiling (used by bench log --ceiling and bench ceiling)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			srv, err := bench.StartCeilingServer(cmd.Context())
			if err != nil {
				return err
			}
			defer func() { _ = srv.Close() }()
			if err := os.WriteFile(caOut, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.CACert.Raw}), 0o644); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), srv.Addr())
			<-cmd.Context().Done()
			return nil
		},
	}
	cmd.Flags().StringVar(&caOut, "ca-out", "", "where to write the server's CA certificate")
	_ = cmd.MarkFlagRequired("ca-out")
	return cmd
}

func runBench(ctx context.Context, out io.Writer, cfg bench.LogConfig, label string) (*bench.Result, error) {
	res, err := bench.RunLog(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if label != "" {
		res.Target = label
	}
	fmt.Fprintln(out, res.Markdown())
	if res.LastTransportError != "" {
		// Counts alone do not say why requests got no answer.
		fmt.Fprintf(out, "<!-- %s: last transport error: %s -->\n", res.Target, res.LastTransportError)
	}
	return res, nil
}

// benchFailed turns a run that committed nothing into an error (and a non-zero
// exit code), since its row alone would read like a measurement.
func benchFailed(res *bench.Result) error {
	if res.Writes > 0 {
		return nil
	}
	if res.LastTransportError != "" {
		return fmt.Errorf("no write committed on %s: %s", res.Target, res.LastTransportError)
	}
	return fmt.Errorf("no write committed on %s (errors: %v)", res.Target, res.Errors)
}

// benchSandboxFile accepts either sandbox.json itself or the directory holding it.
func benchSandboxFile(path string) string {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return filepath.Join(path, "sandbox.json")
	}
	return path
}

func newBenchERC20Cmd() *cobra.Command {
	var (
		sandbox  string
		peer     string
		devKey   string
		accounts int
		batch    int
		duration time.Duration
		warmup   time.Duration
		maxRate  int
		seed     uint64
		allNodes bool
		jsonOut  string
		system   string
		tokenEVM string
	)
	cmd := &cobra.Command{
		Use:   "erc20",
		Short: "Committed ERC-20 transfers/s of the Ethereum app on a running sandbox (or of a peer chain)",
		Long: `Registers --accounts fresh users with Ethereum addresses (set_user proposals
voted by the sandbox's members), deploys an ERC-20 token, funds every account
with it, signs each account's transfers to random other accounts in advance,
and has every account send them in nonce order, one request at a time on its
own connection, through eth_sendRawTransaction (coco answers once the
transaction committed). Prints committed transfers/s and latency as a
markdown table row, then checks every account's token balance and nonce
against the acknowledged transfers.

With --peer URL instead of --sandbox, the same workload runs against another
chain's plain HTTP JSON-RPC (a geth dev chain from benchpeers geth, ganache):
--dev-key's account, funded at its genesis, deploys the token and gives every
account ether for gas (1 wei tip) and tokens. Such a chain answers
eth_sendRawTransaction on admission to its pool, so a request counts once a
block includes all its transfers (a watcher polls every 5 ms for new blocks).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			cfg := bench.ERC20Config{Batch: batch, Duration: duration, Warmup: warmup, MaxRate: maxRate, Seed: seed}
			errOut := cmd.ErrOrStderr()
			var err error
			if peer != "" {
				if cmd.Flags().Changed("sandbox") || allNodes {
					return fmt.Errorf("--peer excludes --sandbox and --all-nodes")
				}
				key, err := bench.ParseDevKey(devKey)
				if err != nil {
					return err
				}
				cfg.Peer = peer
				fmt.Fprintf(errOut, "setting up %d accounts and a token on %s...\n", accounts, peer)
				if cfg.Env, err = bench.SetupERC20Peer(ctx, peer, key, accounts, tokenEVM); err != nil {
					return err
				}
				if system == "" {
					system = "peer"
				}
			} else {
				sb, err := bench.LoadSandbox(benchSandboxFile(sandbox))
				if err != nil {
					return err
				}
				if cfg.ServiceCert, err = sb.ServiceCertificate(); err != nil {
					return err
				}
				primary, err := bench.PrimaryAddress(ctx, cfg.ServiceCert, sb.RPCAddresses())
				if err != nil {
					return err
				}
				cfg.Targets = []string{primary}
				if allNodes {
					cfg.Targets = sb.RPCAddresses()
				}
				fmt.Fprintf(errOut, "setting up %d accounts and a token on %s...\n", accounts, primary)
				if cfg.Env, err = bench.SetupERC20(ctx, sb, primary, accounts); err != nil {
					return err
				}
				if system == "" {
					system = fmt.Sprintf("coco-%d", len(sb.Nodes))
				}
			}
			fmt.Fprintf(errOut, "token %s; signing transfers and running for %s + %s warmup...\n", cfg.Env.Token, duration, warmup)
			res, err := bench.RunERC20(ctx, cfg)
			if err != nil {
				return err
			}
			res.Target = system + " " + res.Target
			out := cmd.OutOrStdout()
			fmt.Fprintln(out, bench.ERC20MarkdownHeader)
			fmt.Fprintln(out, res.Markdown())
			if res.LastError != "" {
				fmt.Fprintf(out, "<!-- last error: %s -->\n", res.LastError)
			}
			if res.Exhausted > 0 {
				fmt.Fprintf(out, "<!-- %d accounts sent every transfer they had signed: the figure is capped by --max-rate %d -->\n", res.Exhausted, maxRate)
			}
			counted, err := bench.VerifyERC20(ctx, cfg, res)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "<!-- balances and nonces of %d accounts match %d committed transfers -->\n", accounts, counted)
			if res.Transfers == 0 {
				return fmt.Errorf("no transfer committed in the measured window (errors: %v)", res.Errors)
			}
			if jsonOut != "" {
				return bench.AppendFigure(jsonOut, res.Figure(system))
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&sandbox, "sandbox", filepath.Join("workspace", "sandbox", "sandbox.json"), "sandbox.json written by coco sandbox (or its directory)")
	fl.StringVar(&peer, "peer", "", "run against this peer chain's HTTP JSON-RPC URL instead of a sandbox")
	fl.StringVar(&devKey, "dev-key", "", "hex private key of an account the peer chain funded at genesis (with --peer)")
	fl.IntVar(&accounts, "accounts", 64, "sending accounts, each a user on its own kept-alive connection")
	fl.IntVar(&batch, "batch", 1, "transfers per request: 1 sends plain JSON-RPC requests, more sends JSON-RPC batches")
	fl.DurationVar(&duration, "duration", 10*time.Second, "measured duration")
	fl.DurationVar(&warmup, "warmup", 2*time.Second, "warmup before measuring (not counted)")
	fl.IntVar(&maxRate, "max-rate", 20000, "transfers/s the pre-signed transfers can sustain over the whole run (signing happens before it)")
	fl.Uint64Var(&seed, "seed", 1, "seed of the recipients' choice")
	fl.BoolVar(&allNodes, "all-nodes", false, "rotate requests over every node (backups forward them) instead of sending them all to the primary")
	fl.StringVar(&jsonOut, "json", "", "append the result as a JSON line (a comparison figure) to this file")
	fl.StringVar(&system, "system", "", `name of the system measured, in the figure (default "coco-N" for N nodes, "peer" with --peer)`)
	fl.StringVar(&tokenEVM, "token-evm", "", `with --peer: the token compiled for this EVM version, "" (solc's default, the fork coco runs) or "shanghai" (ganache)`)
	return cmd
}
