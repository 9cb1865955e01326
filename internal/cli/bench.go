package cli

import "github.com/spf13/cobra"

// TODO(skeleton): replaced by the real command.
func newBenchCmd() *cobra.Command {
	return &cobra.Command{Use: "bench", Hidden: true}
}
