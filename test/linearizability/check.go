package linearizability

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
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
