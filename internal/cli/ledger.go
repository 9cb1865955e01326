package cli

import "github.com/spf13/cobra"

// TODO(skeleton): replaced by the real command.
func newLedgerCmd() *cobra.Command {
	return &cobra.Command{Use: "ledger", Hidden: true}
}
