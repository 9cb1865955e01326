package bench

import (
	"fmt"
	"strings"
)

// ratioGoal is one ratio a comparison reports: coco's figure on a workload
// over another system's on the same workload with the same clients, and
// the goal issue 7 sets for it (0: none).
type ratioGoal struct {
	name     string // "writes", "erc20"
	workload func(string) bool
	other    string // the other side's system prefix
	label    string // what the line calls the other side
	goal     float64
	// against, if set, is the other side's workload when it differs from
	// coco's: a single-core rate, which stands for every client count.
	against string
}

var ratioGoals = []ratioGoal{
	{name: "writes", workload: isWrites, other: "etcd", label: "etcd", goal: 1.5},
	{name: "writes", workload: isWrites, other: "https-ceiling", label: "https-ceiling", goal: 0.7},
	{name: "erc20", workload: is("erc20"), other: "geth", label: "geth", goal: 3},
	{name: "erc20", workload: is("erc20"), other: "ganache", label: "ganache"},
	{name: "erc20", workload: is("erc20"), other: "1core", label: "ecrecover-1core", goal: 0.5, against: "ecrecover"},
}

func isWrites(w string) bool { return strings.HasPrefix(w, "writes-") }

func is(w string) func(string) bool { return func(x string) bool { return x == w } }

// Report renders figures as a markdown table, in the order given, then one
// line per ratio between coco and what it is compared with on the same
// workload and client count: "ratio writes coco/etcd = 1.23 (...)". Where
// a workload, system and client count were measured more than once, the
// last figure counts.
func Report(figs []Figure) string {
	var b strings.Builder
	b.WriteString("| workload | system | clients | per second | p50 | p99 | errors | note |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---|\n")
	for _, f := range figs {
		fmt.Fprintf(&b, "| %s | %s | %d | %.1f | %s | %s | %d | %s |\n",
			f.Workload, f.System, f.Clients, f.PerSec, fmtMs(f.P50Ms), fmtMs(f.P99Ms), f.Errors, f.Note)
	}
	lines := ratioLines(figs)
	if len(lines) > 0 {
		b.WriteString("\n")
		for _, l := range lines {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func fmtMs(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f ms", v)
}

type figKey struct {
	workload, system string
	clients          int
}

// ratioLines are Report's ratio lines, in the order of ratioGoals, then of
// coco's figures.
func ratioLines(figs []Figure) []string {
	last := map[figKey]Figure{}
	var order []figKey
	for _, f := range figs {
		k := figKey{f.Workload, f.System, f.Clients}
		if _, seen := last[k]; !seen {
			order = append(order, k)
		}
		last[k] = f
	}
	var lines []string
	for _, g := range ratioGoals {
		for _, k := range order {
			coco := last[k]
			if !strings.HasPrefix(coco.System, "coco") || !g.workload(coco.Workload) {
				continue
			}
			for _, ok := range order {
				other := last[ok]
				if !strings.HasPrefix(other.System, g.other) {
					continue
				}
				if g.against != "" {
					if other.Workload != g.against {
						continue
					}
				} else if other.Workload != coco.Workload || other.Clients != coco.Clients {
					continue
				}
				lines = append(lines, ratioLine(g, coco, other))
			}
		}
	}
	return lines
}

func ratioLine(g ratioGoal, coco, other Figure) string {
	ratio := 0.0
	if other.PerSec > 0 {
		ratio = coco.PerSec / other.PerSec
	}
	l := fmt.Sprintf("ratio %s coco/%s = %.2f (%s, %d clients; %s %.0f/s p50 %s p99 %s; %s %.0f/s",
		g.name, g.label, ratio, coco.Workload, coco.Clients,
		coco.System, coco.PerSec, fmtMs(coco.P50Ms), fmtMs(coco.P99Ms), other.System, other.PerSec)
	if other.P50Ms > 0 || other.P99Ms > 0 {
		l += fmt.Sprintf(" p50 %s p99 %s", fmtMs(other.P50Ms), fmtMs(other.P99Ms))
	}
	l += ")"
	if g.goal > 0 {
		verdict := "not met"
		if ratio >= g.goal {
			verdict = "met"
		}
		l += fmt.Sprintf(" goal >= %.1f: %s", g.goal, verdict)
	}
	return l
}
