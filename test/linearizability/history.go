package linearizability

import (
	"maps"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// EndOfTime is the Return of an operation whose outcome is unknown: it is
// concurrent with everything called after it, so the checker may linearize
// it at any point after its call, or after every other operation (where a
// write is never observed, i.e. did not happen).
const EndOfTime int64 = math.MaxInt64

// Recorder collects a concurrent history. It is safe for concurrent use.
type Recorder struct {
	start time.Time // holds a monotonic clock reading; Now is immune to wall-clock steps

	mu         sync.Mutex
	ops        []porcupine.Operation
	stats      Stats
	nextClient int
}

// Stats counts what a history holds and what was left out of it.
type Stats struct {
	Operations    int // recorded operations
	Puts          int // recorded Puts, of which:
	PutsOK        int
	PutsFailed    int
	Indeterminate int // recorded Puts with an unknown outcome
	Gets          int // recorded Gets (Found or Absent)
	DroppedGets   int // Gets with an unknown outcome, not recorded
	Unsent        int // operations that never reached a node, not recorded
	// Why operations were indeterminate or failed, by Output.Detail.
	Details map[string]int
}

// NewRecorder starts a history; timestamps count from now.
func NewRecorder() *Recorder {
	return &Recorder{start: time.Now(), stats: Stats{Details: map[string]int{}}}
}

// Now is the current timestamp: monotonic nanoseconds since NewRecorder.
// Take it just before sending a request and just after reading the answer.
func (r *Recorder) Now() int64 { return time.Since(r.start).Nanoseconds() }

// NewClientID returns an unused porcupine client id. A history client takes
// a new one after an indeterminate operation, because that operation stays
// open until EndOfTime and porcupine's visualization draws one client's
// operations on one line (the checker itself ignores client ids).
func (r *Recorder) NewClientID() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	id := r.nextClient
	r.nextClient++
	return id
}

// Add records one operation called at call and answered at ret (both from
// Now), applying the rules for unknown outcomes documented on [Outcome].
// It reports whether the operation went into the history.
func (r *Recorder) Add(client int, in Input, call int64, out Output, ret int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if out.Detail != "" {
		r.stats.Details[out.Detail]++
	}
	switch {
	case out.Outcome == Unsent:
		r.stats.Unsent++
		return false
	case in.Kind == Get && out.Outcome == Indeterminate:
		r.stats.DroppedGets++
		return false
	case in.Kind == Put && out.Outcome == Indeterminate:
		ret = EndOfTime
		r.stats.Indeterminate++
	case in.Kind == Put && out.Outcome == OK:
		r.stats.PutsOK++
	case in.Kind == Put && out.Outcome == Failed:
		r.stats.PutsFailed++
	}
	if in.Kind == Put {
		r.stats.Puts++
	} else {
		r.stats.Gets++
	}
	r.stats.Operations++
	r.ops = append(r.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
	return true
}

// Operations returns a copy of the history so far.
func (r *Recorder) Operations() []porcupine.Operation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ops)
}

// Stats returns a copy of the counters so far.
func (r *Recorder) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.stats
	s.Details = maps.Clone(r.stats.Details)
	return s
}

// ObservedIndeterminate counts the indeterminate Puts in ops whose value
// some Get returned: writes that took effect although their client never
// heard so (e.g. committed just before a kill -9). It shows the run
// exercised the case, not whether the history is linearizable.
func ObservedIndeterminate(ops []porcupine.Operation) int {
	seen := make(map[string]bool)
	for _, op := range ops {
		if out := op.Output.(Output); out.Outcome == Found {
			seen[out.Value] = true
		}
	}
	n := 0
	for _, op := range ops {
		if in := op.Input.(Input); in.Kind == Put && op.Output.(Output).Outcome == Indeterminate && seen[in.Value] {
			n++
		}
	}
	return n
}
