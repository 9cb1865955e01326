package bench

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// Figure is one measured row of a comparison. Every bench command that
// takes --json appends one Figure per run to that file as a JSON line, so
// that a comparison made of several commands (bench/compare.sh) can be
// reported by `coco bench report` in one table with its ratios.
type Figure struct {
	// Workload names what was done, identical on both sides of a ratio:
	// "writes-100B", "writes-1024B", "erc20", "smallbank", "ecrecover",
	// "p256-verify".
	Workload string `json:"workload"`
	// System names who did it: "coco-3", "etcd-3", "https-ceiling",
	// "geth-sim", "ganache", "1core".
	System string `json:"system"`
	// Clients is the number of concurrent closed-loop clients (accounts
	// for erc20; 1 for single-core figures).
	Clients int `json:"clients"`
	// PerSec is what was completed per second: committed writes,
	// committed transfers, verifications.
	PerSec float64 `json:"per_sec"`
	// P50Ms and P99Ms are latencies in milliseconds (0 when not
	// applicable).
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
	// Errors is the number of failed operations in the run.
	Errors int `json:"errors"`
	// Note is free text: a batch size, a durability setting.
	Note string `json:"note,omitempty"`
}

// ms converts d to float milliseconds for a Figure.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Figure is r as a row of a comparison.
func (r *Result) Figure(workload, system string) Figure {
	return Figure{Workload: workload, System: system, Clients: r.Clients, PerSec: r.Throughput,
		P50Ms: ms(r.P50), P99Ms: ms(r.P99), Errors: r.ErrorCount()}
}

// Figure is r as a row of a comparison.
func (r *ERC20Result) Figure(system string) Figure {
	return Figure{Workload: "erc20", System: system, Clients: r.Accounts, PerSec: r.Throughput,
		P50Ms: ms(r.P50), P99Ms: ms(r.P99), Errors: r.ErrorCount(), Note: fmt.Sprintf("batch %d", r.Batch)}
}

// AppendFigure appends f to the JSON-lines file at path, creating it if
// needed.
func AppendFigure(path string, f Figure) error {
	line, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("bench: encode figure: %w", err)
	}
	file, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	_, err = file.Write(append(line, '\n'))
	if cerr := file.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("bench: append figure to %s: %w", path, err)
	}
	return nil
}

// ReadFigures reads JSON-lines figures; blank lines are skipped, and a
// malformed line is an error naming its line number.
func ReadFigures(r io.Reader) ([]Figure, error) {
	var figs []Figure
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		var f Figure
		if err := json.Unmarshal(line, &f); err != nil {
			return nil, fmt.Errorf("bench: figures line %d: %w", n, err)
		}
		if f.Workload == "" || f.System == "" {
			return nil, fmt.Errorf("bench: figures line %d: workload and system are required", n)
		}
		figs = append(figs, f)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("bench: read figures: %w", err)
	}
	if len(figs) == 0 {
		return nil, errors.New("bench: no figures")
	}
	return figs, nil
}
