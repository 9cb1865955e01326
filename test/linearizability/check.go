package linearizability

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// Verdict is the outcome of [Check].
type Verdict struct {
	Result  porcupine.CheckResult
	Elapsed time.Duration // checker time, without the visualization
	// IllegalIDs are the log ids whose histories are not linearizable.
	IllegalIDs []uint64
	// Visualization is the HTML file written for an Illegal history.
	Visualization string
	// Excerpt is, for an Illegal history, a text rendering of the
	// operations around the first one that cannot be linearized, for the
	// first few illegal ids (see [Excerpt]).
	Excerpt string
}

// Check runs porcupine on ops with [Model]. A timeout of 0 means none; past
// it the result is Unknown. When the history is Illegal it writes
// porcupine's visualization of the illegal ids' operations (partial
// linearizations and the operations that cannot be placed) to vizPath.
func Check(ops []porcupine.Operation, timeout time.Duration, vizPath string) (Verdict, error) {
	m := Model()
	start := time.Now()
	var deadline time.Time
	if timeout > 0 {
		deadline = start.Add(timeout)
	}
	// Porcupine checks all partitions at once, each holding memory
	// quadratic in its length; a batch per CPU gets the same speed with a
	// bounded footprint.
	parts := m.Partition(ops)
	v := Verdict{Result: porcupine.Ok}
	var illegal []porcupine.Operation
	for batch := range slices.Chunk(parts, runtime.GOMAXPROCS(0)) {
		var left time.Duration
		if !deadline.IsZero() {
			if left = time.Until(deadline); left <= 0 {
				v.Result = porcupine.Unknown
				break
			}
		}
		res := porcupine.CheckOperationsTimeout(m, slices.Concat(batch...), left)
		switch res {
		case porcupine.Illegal:
			v.Result = porcupine.Illegal
			// Rechecked one by one, only to name the ids.
			for _, p := range batch {
				if !porcupine.CheckOperations(m, p) {
					v.IllegalIDs = append(v.IllegalIDs, p[0].Input.(Input).ID)
					illegal = append(illegal, p...)
				}
			}
		case porcupine.Unknown:
			if v.Result == porcupine.Ok {
				v.Result = porcupine.Unknown
			}
		}
	}
	v.Elapsed = time.Since(start)
	if v.Result != porcupine.Illegal {
		return v, nil
	}
	slices.Sort(v.IllegalIDs)
	v.Excerpt = Excerpt(illegal, 3)
	_, info := porcupine.CheckOperationsVerbose(m, illegal, 0)
	if err := os.MkdirAll(filepath.Dir(vizPath), 0o755); err != nil {
		return v, err
	}
	if err := porcupine.VisualizePath(m, info, vizPath); err != nil {
		return v, fmt.Errorf("write visualization: %w", err)
	}
	v.Visualization = vizPath
	return v, nil
}

// How many operations [Excerpt] shows before and after the one that cannot
// be linearized, in order of call.
const excerptBefore, excerptAfter = 24, 8

// Excerpt renders, for at most maxIDs of the ids whose history in ops is
// not linearizable, the operation that cannot be linearized (marked "*":
// of those outside porcupine's longest partial linearization, the one that
// returned first) and the operations called around it ("L": in that
// partial linearization), in order of call. Times are seconds since the
// recording started; "∞" is an unknown outcome.
func Excerpt(ops []porcupine.Operation, maxIDs int) string {
	m := Model()
	var b strings.Builder
	for _, part := range m.Partition(ops) {
		if maxIDs <= 0 {
			break
		}
		res, info := porcupine.CheckOperationsVerbose(m, part, 0)
		if res != porcupine.Illegal {
			continue
		}
		maxIDs--
		var best []int
		for _, p := range info.PartialLinearizations() {
			for _, l := range p {
				if len(l) > len(best) {
					best = l
				}
			}
		}
		in := make(map[int]bool, len(best))
		for _, i := range best {
			in[i] = true
		}
		stuck := -1
		for i, op := range part {
			if !in[i] && (stuck < 0 || op.Return < part[stuck].Return) {
				stuck = i
			}
		}
		if stuck < 0 {
			continue
		}
		s := part[stuck]
		fmt.Fprintf(&b, "id %d: %d operations, %d linearized; cannot linearize %s\n",
			s.Input.(Input).ID, len(part), len(best), describe(s.Input.(Input), s.Output.(Output)))
		// The operations called around it, in order of call.
		order := make([]int, len(part))
		for i := range order {
			order[i] = i
		}
		slices.SortStableFunc(order, func(i, j int) int { return cmp.Compare(part[i].Call, part[j].Call) })
		at := slices.Index(order, stuck)
		for _, i := range order[max(0, at-excerptBefore):min(len(order), at+excerptAfter+1)] {
			op := part[i]
			mark := " "
			switch {
			case i == stuck:
				mark = "*"
			case in[i]:
				mark = "L"
			}
			ret := "∞"
			if op.Return != EndOfTime {
				ret = fmt.Sprintf("%.4f", float64(op.Return)/1e9)
			}
			fmt.Fprintf(&b, "  %s client %-4d %.4f-%-7s %s\n", mark, op.ClientId, float64(op.Call)/1e9, ret, describe(op.Input.(Input), op.Output.(Output)))
		}
	}
	return b.String()
}
