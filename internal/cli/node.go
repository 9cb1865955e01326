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
	"github.com/cocoledger/coco/app/logging"
	"github.com/cocoledger/coco/node"
	"github.com/spf13/cobra"
)

func newNodeCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "node", Short: "Run a coco node"}
	cmd.AddCommand(newNodeStartCmd())
	return cmd
}

func newNodeStartCmd() *cobra.Command {
	var (
		cfg        node.Config
		logLevel   string
		logFormat  string
		cpuProfile string
	)
	cmd := &cobra.Command{
		Use:   "start",
		Short: "Start a node; a new data directory starts a new service",
		Long: `Start a node on DATA-DIR. If DATA-DIR holds no ledger, the node creates a new
service (service identity, ledger secret) and is its only node. Otherwise it
restarts on its ledger with the same identity and resumes the service.
The node runs until SIGINT or SIGTERM.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := newLogger(cmd.ErrOrStderr(), logLevel, logFormat)
			if err != nil {
				return err
			}
			cfg.Logger = logger
			cfg.Version = Version
			if cpuProfile != "" {
				stop, err := startCPUProfile(cpuProfile)
				if err != nil {
					return err
				}
				defer stop()
			}
			cfg.Apps = []app.Application{logging.App{}}
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
	f.StringArrayVar(&cfg.UserCerts, "user-cert", nil, "user certificate PEM file to register (repeatable)")
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
