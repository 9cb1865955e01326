package cli

import "github.com/spf13/cobra"

// TODO(skeleton): replaced by the real command.
func newNodeCmd() *cobra.Command {
	return &cobra.Command{Use: "node", Hidden: true}
}
