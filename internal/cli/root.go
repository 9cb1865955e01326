// Package cli holds coco's cobra commands. cmd/coco is a thin main around Main.
package cli

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

// Version is coco's version, reported by `coco version` and GET /node/version.
const Version = "0.1.0"

// Main runs the coco command line with args and returns the process exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(stderr, "coco:", err)
		return 1
	}
	return 0
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "coco",
		Short:         "coco: a confidential consortium ledger",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		newVersionCmd(),
		newKeygenCmd(),
		newLedgerCmd(),
		newEVMCmd(),
		newReceiptCmd(),
		newNodeCmd(),
		newSandboxCmd(),
		newGovCmd(),
		newBenchCmd(),
	)
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print coco's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), Version)
			return nil
		},
	}
}

// selfExecutable is this binary, for the processes coco starts as itself:
// /proc/self/exe where there is one, which is the running image even if
// its file was replaced since (a rebuild under a running node), else
// os.Executable.
func selfExecutable() (string, error) {
	const self = "/proc/self/exe"
	if _, err := os.Stat(self); err == nil {
		return self, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("cannot find this binary to start it again: %w", err)
	}
	return exe, nil
}
