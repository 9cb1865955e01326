package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/cocoledger/coco/bench"
)

func newBenchCryptoCmd() *cobra.Command {
	var (
		duration time.Duration
		jsonPath string
	)
	cmd := &cobra.Command{
		Use:   "crypto",
		Short: "Single-core secp256k1 ecrecover/s and P-256 verify/s",
		Long: `Measures, one after the other on one core (a goroutine locked to its OS
thread), how many Ethereum transaction senders can be recovered per second
(secp256k1 ecrecover, as the EVM app does for every transaction) and how many
P-256 ECDSA signatures over SHA-256 digests can be verified per second (as
for COSE-signed governance requests and receipts), each over 64 pre-made
signatures by distinct keys. Prints a markdown table; with --json, appends
one figure per operation (system "1core") to that JSON-lines file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rates, err := bench.RunCrypto(cmd.Context(), duration)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintln(out, bench.CryptoMarkdownHeader)
			for _, r := range rates {
				fmt.Fprintln(out, r.Markdown())
			}
			if jsonPath == "" {
				return nil
			}
			for _, r := range rates {
				if err := bench.AppendFigure(jsonPath, r.Figure()); err != nil {
					return err
				}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.DurationVar(&duration, "duration", 2*time.Second, "measured duration of each operation")
	fl.StringVar(&jsonPath, "json", "", "append the figures to this JSON-lines file")
	return cmd
}
