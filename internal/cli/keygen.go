package cli

import "github.com/spf13/cobra"

// TODO(skeleton): replaced by the real command.
func newKeygenCmd() *cobra.Command {
	return &cobra.Command{Use: "keygen", Hidden: true}
}
