package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFiguresRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "figs.json")
	in := []Figure{
		{Workload: "writes-100B", System: "coco-3", Clients: 64, PerSec: 5000, P50Ms: 10, P99Ms: 30},
		{Workload: "erc20", System: "geth-sim", Clients: 64, PerSec: 3600, Note: "batch 10"},
	}
	for _, f := range in {
		if err := AppendFigure(path, f); err != nil {
			t.Fatal(err)
		}
	}
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	out, err := ReadFigures(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) || out[0] != in[0] || out[1] != in[1] {
		t.Errorf("read %+v, want %+v", out, in)
	}
}

func TestReadFiguresErrors(t *testing.T) {
	cases := []struct{ name, in, err string }{
		{"empty", "", "no figures"},
		{"blank lines only", "\n\n", "no figures"},
		{"not JSON", `{"workload":"erc20","system":"x"}` + "\nnope\n", "line 2"},
		{"no system", `{"workload":"erc20"}`, "required"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ReadFigures(strings.NewReader(c.in))
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("err = %v, want one containing %q", err, c.err)
			}
		})
	}
}

func TestReport(t *testing.T) {
	figs := []Figure{
		{Workload: "writes-100B", System: "coco-3", Clients: 64, PerSec: 6000, P50Ms: 9, P99Ms: 30},
		{Workload: "writes-100B", System: "etcd-3", Clients: 64, PerSec: 8000, P50Ms: 7, P99Ms: 20},
		{Workload: "writes-100B", System: "etcd-3", Clients: 256, PerSec: 10000},
		{Workload: "writes-100B", System: "https-ceiling", Clients: 64, PerSec: 20000, P50Ms: 2, P99Ms: 8},
		// A second coco run at 256 clients: the last one counts.
		{Workload: "writes-100B", System: "coco-3", Clients: 256, PerSec: 1},
		{Workload: "writes-100B", System: "coco-3", Clients: 256, PerSec: 16000},
		{Workload: "writes-1024B", System: "coco-3", Clients: 64, PerSec: 4000},
		{Workload: "erc20", System: "coco-3", Clients: 64, PerSec: 5000, P50Ms: 100, P99Ms: 200},
		{Workload: "erc20", System: "geth-sim", Clients: 64, PerSec: 2500, P50Ms: 170, P99Ms: 240},
		{Workload: "erc20", System: "ganache", Clients: 64, PerSec: 100},
		{Workload: "ecrecover", System: "1core", Clients: 1, PerSec: 20000},
		{Workload: "smallbank", System: "coco-3", Clients: 64, PerSec: 7000},
	}
	got := Report(figs)
	rows := strings.Count(got, "\n| ")
	if rows != len(figs) {
		t.Errorf("%d table rows, want %d:\n%s", rows, len(figs), got)
	}
	want := []string{
		"ratio writes coco/etcd = 0.75 (writes-100B, 64 clients; coco-3 6000/s p50 9.00 ms p99 30.00 ms; etcd-3 8000/s p50 7.00 ms p99 20.00 ms) goal >= 1.5: not met",
		"ratio writes coco/etcd = 1.60 (writes-100B, 256 clients; coco-3 16000/s p50 - p99 -; etcd-3 10000/s) goal >= 1.5: met",
		"ratio writes coco/https-ceiling = 0.30 (writes-100B, 64 clients;",
		"ratio erc20 coco/geth = 2.00 (erc20, 64 clients; coco-3 5000/s p50 100.00 ms p99 200.00 ms; geth-sim 2500/s p50 170.00 ms p99 240.00 ms) goal >= 3.0: not met",
		"ratio erc20 coco/ganache = 50.00 (erc20, 64 clients; coco-3 5000/s p50 100.00 ms p99 200.00 ms; ganache 100/s)\n",
		"ratio erc20 coco/ecrecover-1core = 0.25 (erc20, 64 clients; coco-3 5000/s p50 100.00 ms p99 200.00 ms; 1core 20000/s) goal >= 0.5: not met",
	}
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("report lacks %q:\n%s", w, got)
		}
	}
	if n := strings.Count(got, "ratio "); n != len(want) {
		t.Errorf("%d ratio lines, want %d (no ratio for 1024B writes or smallbank, which have no counterpart):\n%s", n, len(want), got)
	}
}
