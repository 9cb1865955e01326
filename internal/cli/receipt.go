package cli

import "github.com/spf13/cobra"

// TODO(skeleton): replaced by the real command.
func newReceiptCmd() *cobra.Command {
	return &cobra.Command{Use: "receipt", Hidden: true}
}
