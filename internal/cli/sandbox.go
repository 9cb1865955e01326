package cli

import (
	"fmt"
	"path/filepath"

	"github.com/cocoledger/coco/sandbox"
	"github.com/spf13/cobra"
)

func newSandboxCmd() *cobra.Command {
	var (
		cfg      sandbox.Config
		logLevel string
	)
	cmd := &cobra.Command{
		Use:   "sandbox",
		Short: "Run a local coco service (one process per node) for development",
		Long: `Start a local service on 127.0.0.1: node processes, members and users with
keys, and DIR/sandbox.json describing them (written once the service is Open).
Runs until Ctrl-C, then stops the nodes cleanly. Run again with the same --dir
to restart the same service from its ledger.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := newLogger(cmd.ErrOrStderr(), logLevel, "text")
			if err != nil {
				return err
			}
			cfg.Logger = logger
			if cfg.Dir, err = filepath.Abs(cfg.Dir); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			cfg.Ready = func(info *sandbox.Info) {
				fmt.Fprintf(out, "coco sandbox is open: %d node(s), %d member(s), %d user(s)\n", len(info.Nodes), len(info.Members), len(info.Users))
				for _, n := range info.Nodes {
					fmt.Fprintf(out, "  node %.16s… https://%s (pid %d, log %s)\n", n.NodeID, n.RPCAddress, n.PID, filepath.Join(n.DataDir, "node.log"))
				}
				fmt.Fprintf(out, "  description: %s\n", filepath.Join(cfg.Dir, "sandbox.json"))
				if len(info.Users) > 0 {
					u := info.Users[0]
					fmt.Fprintf(out, "try:\n  curl --cacert %s --cert %s --key %s https://%s/app/log/private -H 'content-type: application/json' -d '{\"id\":1,\"msg\":\"hello\"}' -i\n",
						info.ServiceCert, u.Cert, u.Key, info.Nodes[0].RPCAddress)
				}
				fmt.Fprintln(out, "Ctrl-C stops the service.")
			}
			return sandbox.Run(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Dir, "dir", filepath.Join("workspace", "sandbox"), "sandbox directory")
	f.IntVar(&cfg.Nodes, "nodes", 3, "number of nodes, each its own process")
	f.IntVar(&cfg.Members, "members", 3, "number of members")
	f.IntVar(&cfg.Users, "users", 3, "number of users")
	f.StringArrayVar(&cfg.NodeArgs, "node-arg", nil, "extra flag for every node, e.g. --node-arg=--sig-interval=50ms (repeatable)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}
