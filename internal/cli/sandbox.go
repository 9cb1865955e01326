package cli

import "github.com/spf13/cobra"

// TODO(skeleton): replaced by the real command.
func newSandboxCmd() *cobra.Command {
	return &cobra.Command{Use: "sandbox", Hidden: true}
}
