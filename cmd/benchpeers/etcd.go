package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cocoledger/coco/bench"
	"github.com/cocoledger/coco/bench/etcdload"
)

// defaultEtcdEndpoints are the client endpoints of the cluster that
// `bench/etcd-cluster.sh start DIR` starts with its default base port.
const defaultEtcdEndpoints = "127.0.0.1:2379,127.0.0.1:2381,127.0.0.1:2383"

func newEtcdCmd() *cobra.Command {
	var (
		endpoints string
		cfg       etcdload.Config
		jsonPath  string
		system    string
	)
	cmd := &cobra.Command{
		Use:   "etcd",
		Short: "Acknowledged (committed, fsynced) Puts/s of an etcd cluster",
		Long: `Runs closed-loop clients, each with an etcd client (one gRPC connection) of
its own, rotated over --endpoints, that Put unique keys with --value-size-byte
values, and prints acknowledged Puts/s and latency as a markdown table row in
the shape of ` + "`coco bench log`" + `'s. An acknowledged Put is committed on a
majority of the members and fsynced (unless the cluster runs with
--unsafe-no-fsync). bench/etcd-cluster.sh starts a matching 3-member cluster.
With --json, the figure is appended to that JSON-lines file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for e := range strings.SplitSeq(endpoints, ",") {
				if e = strings.TrimSpace(e); e != "" {
					cfg.Endpoints = append(cfg.Endpoints, e)
				}
			}
			res, err := etcdload.Run(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			res.Target = system + " " + res.Target
			out := cmd.OutOrStdout()
			fmt.Fprintln(out, bench.MarkdownHeader)
			fmt.Fprintln(out, res.Markdown())
			if res.LastTransportError != "" {
				// Counts alone do not say why Puts failed.
				fmt.Fprintf(out, "<!-- %s: last error: %s -->\n", res.Target, res.LastTransportError)
			}
			if res.Writes == 0 {
				// Not appended: the figure alone would read like a
				// measurement.
				return fmt.Errorf("no Put acknowledged by %s (errors: %v)", res.Target, res.Errors)
			}
			if jsonPath != "" {
				return bench.AppendFigure(jsonPath, res.Figure(system))
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&endpoints, "endpoints", defaultEtcdEndpoints, "comma-separated client endpoints (host:port or http://host:port) of the members")
	fl.IntVar(&cfg.Clients, "clients", 64, "concurrent clients, each with its own connection")
	fl.IntVar(&cfg.ValueSize, "value-size", etcdload.DefaultValueSize, "value size in bytes")
	fl.DurationVar(&cfg.Duration, "duration", 10*time.Second, "measured duration")
	fl.DurationVar(&cfg.Warmup, "warmup", 2*time.Second, "warmup before measuring (not counted)")
	fl.StringVar(&cfg.KeyPrefix, "key-prefix", etcdload.DefaultKeyPrefix, "prefix of every key written")
	fl.StringVar(&jsonPath, "json", "", "append the figure to this JSON-lines file")
	fl.StringVar(&system, "system", etcdload.DefaultSystem, "system name of the figure")
	return cmd
}
