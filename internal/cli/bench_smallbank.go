package cli

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/cocoledger/coco/bench"
)

func newBenchSmallBankCmd() *cobra.Command {
	var (
		sandbox    string
		user       string
		cfg        bench.SmallBankConfig
		localReads bool
		jsonOut    string
		system     string
	)
	cmd := &cobra.Command{
		Use:   "smallbank",
		Short: "Committed SmallBank transactions/s of the smallbank app on a running sandbox",
		Long: `Creates --accounts accounts (each with 10000 in checking and 10000 in
savings, in batches of 1000) in the smallbank app of the sandbox described by
--sandbox, then runs closed-loop clients, each on its own kept-alive
connection to the primary, drawing transactions from SmallBank's standard
mix (25% send_payment, 15% each of balance, deposit_checking,
transact_savings, amalgamate and write_check) on uniformly random accounts.
Prints committed transactions/s (writes answered once committed, plus
balance reads) and latency as a markdown table row; transactions the
application refused for insufficient funds are counted apart as aborted.
Then it reads every account and checks that the money they hold is the
initial money plus the deposits and less the withdrawals that were
acknowledged: a mismatch, or no transaction committed, exits non-zero.
Each run creates new accounts (the first id is the clock in microseconds),
so runs on one sandbox do not interfere.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			sb, err := bench.LoadSandbox(benchSandboxFile(sandbox))
			if err != nil {
				return err
			}
			if cfg.ServiceCert, err = sb.ServiceCertificate(); err != nil {
				return err
			}
			if cfg.ClientCert, err = sb.UserCertificate(user); err != nil {
				return err
			}
			// The primary: writes sent to a backup would measure
			// forwarding too.
			primary, err := bench.PrimaryAddress(ctx, cfg.ServiceCert, sb.RPCAddresses())
			if err != nil {
				return err
			}
			cfg.Targets = []string{primary}
			cfg.LocalReads = localReads
			if system == "" {
				system = fmt.Sprintf("coco-%d", len(sb.Nodes))
			}
			errOut := cmd.ErrOrStderr()
			fmt.Fprintf(errOut, "creating %d accounts on %s, then running for %s + %s warmup...\n", cfg.Accounts, primary, cfg.Duration, cfg.Warmup)
			res, err := bench.RunSmallBank(ctx, cfg)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintln(out, bench.SmallBankMarkdownHeader)
			fmt.Fprintln(out, res.Markdown())
			if res.LastError != "" {
				// Counts alone do not say why requests failed.
				fmt.Fprintf(out, "<!-- last error: %s -->\n", res.LastError)
			}
			check, err := bench.VerifySmallBank(ctx, res)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "<!-- %s -->\n", check)
			if res.Transactions == 0 {
				return fmt.Errorf("no transaction committed in the measured window (errors: %v)", res.Errors)
			}
			if jsonOut != "" {
				return bench.AppendFigure(jsonOut, res.Figure(system))
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&sandbox, "sandbox", filepath.Join("workspace", "sandbox", "sandbox.json"), "sandbox.json written by coco sandbox (or its directory)")
	fl.StringVar(&user, "user", "user0", "sandbox user whose certificate authenticates the requests")
	fl.IntVar(&cfg.Accounts, "accounts", bench.DefaultSmallBankAccounts, "accounts created before the run, among which transactions pick at random")
	fl.IntVar(&cfg.Clients, "clients", 64, "concurrent clients, each on its own kept-alive connection")
	fl.DurationVar(&cfg.Duration, "duration", 10*time.Second, "measured duration")
	fl.DurationVar(&cfg.Warmup, "warmup", 2*time.Second, "warmup before measuring (not counted)")
	fl.Uint64Var(&cfg.Seed, "seed", 1, "seed of the clients' choices of transactions, accounts and amounts")
	fl.BoolVar(&localReads, "local-reads", false, "ask for local balance reads instead of linearizable ones (x-coco-read-consistency: local)")
	fl.StringVar(&jsonOut, "json", "", "append the result as a JSON line (a comparison figure) to this file")
	fl.StringVar(&system, "system", "", `name of the system measured, in the figure (default "coco-N" for N nodes)`)
	return cmd
}
