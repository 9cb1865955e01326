package main

import (
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/eth/ethconfig"
	"github.com/ethereum/go-ethereum/ethclient/simulated"
	gethlog "github.com/ethereum/go-ethereum/log"
	"github.com/ethereum/go-ethereum/node"
	"github.com/ethereum/go-ethereum/params"
	"github.com/spf13/cobra"

	"github.com/cocoledger/coco/app/evm"
)

// gethConfig is how the dev chain is set up; see newGethCmd.
type gethConfig struct {
	chainID  uint64
	interval time.Duration
	gasLimit uint64
	dataDir  string
	fund     []string
	port     int
}

// options are the simulated backend's settings for c: coco's fork (not
// the dev chain's experimental default), a zero base fee that stays zero
// (blocks stay under their gas target) with a 1 wei minimum tip, pool
// limits no run reaches (so nothing is dropped), and the HTTP JSON-RPC
// server on 127.0.0.1.
func (c gethConfig) options() func(*node.Config, *ethconfig.Config) {
	return func(nc *node.Config, ec *ethconfig.Config) {
		nc.DataDir = c.dataDir
		nc.HTTPHost = "127.0.0.1"
		nc.HTTPPort = c.port
		nc.HTTPModules = []string{"eth", "net", "web3", "txpool"}
		nc.HTTPVirtualHosts = []string{"*"}
		nc.BatchRequestLimit = 10_000

		ec.Genesis.Config = evm.ChainConfig(c.chainID)
		ec.Genesis.GasLimit = c.gasLimit
		ec.Genesis.BaseFee = new(big.Int)
		ec.NetworkId = c.chainID
		ec.Miner.GasCeil = c.gasLimit
		ec.Miner.GasPrice = big.NewInt(1)
		ec.TxPool.PriceLimit = 1
		ec.TxPool.AccountSlots = 1 << 20
		ec.TxPool.GlobalSlots = 1 << 22
		ec.TxPool.AccountQueue = 1 << 20
		ec.TxPool.GlobalQueue = 1 << 22
	}
}

// genesisAlloc funds each address in fund with 10^9 ether.
func genesisAlloc(fund []string) (types.GenesisAlloc, error) {
	alloc := types.GenesisAlloc{}
	balance := new(big.Int).Mul(big.NewInt(1e9), big.NewInt(params.Ether))
	for _, a := range fund {
		if !common.IsHexAddress(a) {
			return nil, fmt.Errorf("--fund %q is not an address", a)
		}
		alloc[common.HexToAddress(a)] = types.Account{Balance: balance}
	}
	return alloc, nil
}

// freePort asks the kernel for a free 127.0.0.1 port. The simulated
// backend does not say which port its HTTP server got, so it is given one.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	return port, ln.Close()
}

func newGethCmd() *cobra.Command {
	var c gethConfig
	cmd := &cobra.Command{
		Use:   "geth",
		Short: "Serve a go-ethereum dev chain (ethclient/simulated) over HTTP JSON-RPC",
		Long: `Runs go-ethereum's simulated backend (a full geth node with its txpool,
miner and state, minus networking and consensus) and serves its eth JSON-RPC
over HTTP on 127.0.0.1, sealing a block of whatever the pool holds every
--block-interval. It uses coco's chain configuration (the same fork), a base
fee of zero and a 1 wei minimum tip, and pool limits high enough that a
benchmark never has transactions dropped. Every --fund address starts with
10^9 ether. It prints its URL on one line, then serves until interrupted.

With --datadir the chain is kept on disk with geth's default write settings
(pebble; blocks and state are not fsynced one by one); without it, in memory.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if c.interval <= 0 {
				return fmt.Errorf("--block-interval must be positive, got %s", c.interval)
			}
			alloc, err := genesisAlloc(c.fund)
			if err != nil {
				return err
			}
			if c.port == 0 {
				if c.port, err = freePort(); err != nil {
					return err
				}
			}
			// geth logs through its own slog handler; keep what it says
			// about problems.
			gethlog.SetDefault(gethlog.NewLogger(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
			sim := simulated.NewBackend(alloc, c.options())
			defer func() { _ = sim.Close() }()
			fmt.Fprintf(cmd.OutOrStdout(), "http://127.0.0.1:%d\n", c.port)

			t := time.NewTicker(c.interval)
			defer t.Stop()
			for {
				select {
				case <-cmd.Context().Done():
					return nil
				case <-t.C:
					sim.Commit()
				}
			}
		},
	}
	fl := cmd.Flags()
	fl.Uint64Var(&c.chainID, "chain-id", evm.DefaultChainID, "EIP-155 chain id")
	fl.DurationVar(&c.interval, "block-interval", 100*time.Millisecond, "how often a block is sealed")
	fl.Uint64Var(&c.gasLimit, "gas-limit", 2_000_000_000, "block gas limit (its half, the target, must stay above what one interval carries for the base fee to stay zero)")
	fl.StringVar(&c.dataDir, "datadir", "", "keep the chain on disk here (default: in memory)")
	fl.StringSliceVar(&c.fund, "fund", nil, "address to fund with 10^9 ether at genesis (repeatable)")
	fl.IntVar(&c.port, "port", 0, "HTTP port on 127.0.0.1 (default: a free one)")
	return cmd
}
