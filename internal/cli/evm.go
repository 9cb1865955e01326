package cli

import (
	"fmt"
	"os"

	"github.com/cocoledger/coco/app/evm"
	"github.com/spf13/cobra"
)

func newEVMCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "evm", Short: "Tools for the Ethereum app"}
	cmd.AddCommand(newEVMStateTestCmd())
	return cmd
}

func newEVMStateTestCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "statetest FILE...",
		Short: "Run Ethereum state tests through coco's StateDB",
		Long: `Run Ethereum state-test files (the GeneralStateTests JSON format of
ethereum/tests and execution-spec-tests) through coco's EVM state (the kv
StateDB), and print PASS, FAIL or SKIP for every post-state: the state root
(computed by loading the resulting accounts into a go-ethereum state trie)
and the logs hash must match the expected ones. Forks other than ` + fmt.Sprint(evm.StateTestForks) + `
are skipped. Exits with status 1 if any post-state fails.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var pass, fail, skip int
			for _, path := range args {
				doc, err := os.ReadFile(path)
				if err != nil {
					return err
				}
				results, err := evm.RunStateTests(doc)
				if err != nil {
					return fmt.Errorf("%s: %w", path, err)
				}
				for _, r := range results {
					fmt.Fprintln(cmd.OutOrStdout(), r)
					switch {
					case r.Skipped:
						skip++
					case r.Pass:
						pass++
					default:
						fail++
					}
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d passed, %d failed, %d skipped\n", pass, fail, skip)
			if fail > 0 {
				return fmt.Errorf("%d post-state(s) failed", fail)
			}
			return nil
		},
	}
}
