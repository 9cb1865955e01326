// Command benchpeers runs what coco is compared with in bench/compare.sh:
// the load client of an etcd cluster and a go-ethereum dev chain served over
// HTTP JSON-RPC. It is a binary of its own so that coco does not link the
// etcd client or a geth node.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchpeers:", err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "benchpeers",
		Short:         "The systems coco is benchmarked against (etcd load client, geth dev chain)",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newGethCmd())
	root.AddCommand(newEtcdCmd())
	return root
}
