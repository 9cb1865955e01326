package cli

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/cocoledger/coco/bench"
)

func newBenchReportCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "report FILE...",
		Short: "Print the table and ratios of figures appended by the bench commands' --json",
		Long: `Reads the JSON-lines figures that bench log, bench ceiling, bench erc20,
bench smallbank, bench crypto and benchpeers etcd append with --json, and
prints them as one markdown table followed by one line per ratio of coco to
what it is compared with on the same workload and client count
(ratio writes coco/etcd, coco/https-ceiling; ratio erc20 coco/geth,
coco/ganache, coco/ecrecover-1core), each with both sides' p50 and p99
latency and, where issue 7 sets one, whether the goal is met.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var figs []bench.Figure
			for _, path := range args {
				f, err := os.Open(path)
				if err != nil {
					return err
				}
				got, err := bench.ReadFigures(f)
				f.Close()
				if err != nil {
					return fmt.Errorf("%s: %w", path, err)
				}
				figs = append(figs, got...)
			}
			fmt.Fprint(cmd.OutOrStdout(), bench.Report(figs))
			return nil
		},
	}
}
