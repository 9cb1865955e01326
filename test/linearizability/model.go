package linearizability

import (
	"fmt"

	"github.com/anishathalye/porcupine"
)

// OpKind is what an operation does to a register.
type OpKind uint8

const (
	// Put is POST /app/log/public {"id","msg"}.
	Put OpKind = iota + 1
	// Get is GET /app/log/public?id=.
	Get
)

func (k OpKind) String() string {
	switch k {
	case Put:
		return "put"
	case Get:
		return "get"
	}
	return fmt.Sprintf("OpKind(%d)", uint8(k))
}

// Input is a porcupine operation's input.
type Input struct {
	Kind OpKind
	ID   uint64
	// Value is the message a Put writes. Every Put in a history writes a
	// value of its own (never ""), so a read names the one write it saw.
	Value string
}

func (in Input) String() string {
	if in.Kind == Put {
		return fmt.Sprintf("put(%d, %q)", in.ID, in.Value)
	}
	return fmt.Sprintf("%s(%d)", in.Kind, in.ID)
}

// Outcome is what a client learnt about an operation.
type Outcome uint8

const (
	// OK: a Put was committed.
	OK Outcome = iota + 1
	// Found: a Get returned Output.Value.
	Found
	// Absent: a Get found no record (404).
	Absent
	// Failed: a Put was definitely not applied (coco said so, or the
	// request never reached it).
	Failed
	// Indeterminate: a Put may or may not have been applied (the
	// connection broke, the node died, the client timed out, 5xx). Such an
	// operation is recorded with Return = [EndOfTime] so that porcupine
	// may place it anywhere after its call, including after every other
	// operation, which is the same as never. An indeterminate Get tells
	// nothing and changes nothing, so it is not recorded at all.
	Indeterminate
	// Unsent: the request never reached a node (connection refused while
	// the node is down). It cannot have had an effect, so it is not
	// recorded either.
	Unsent
)

// Output is a porcupine operation's output.
type Output struct {
	Outcome Outcome
	Value   string // for Found
	// Detail says why a Put failed or is indeterminate ("503 NotPrimary",
	// "connection reset"); it only feeds the visualization.
	Detail string
	// Node names the node the operation was sent to ("n1"), when the
	// client spreads operations over several ([Spread]); it only feeds the
	// visualization.
	Node string
}

// register is the state of one log id. It is comparable, so porcupine's
// default == equality and its state cache work on it.
type register struct {
	present bool
	value   string
}

// Model is a porcupine model of the logging app as independent registers,
// one per id, all initially absent. Operations on different ids commute, so
// the history is partitioned by id and each partition checked on its own
// (P-compositionality): a history is linearizable iff every partition is.
func Model() porcupine.Model {
	return porcupine.Model{
		Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
			return partition(h, func(op porcupine.Operation) uint64 { return op.Input.(Input).ID })
		},
		PartitionEvent: func(h []porcupine.Event) [][]porcupine.Event {
			// A return event carries the output only; match it to its
			// call's id through the event id.
			ids := make(map[int]uint64)
			for _, e := range h {
				if e.Kind == porcupine.CallEvent {
					ids[e.Id] = e.Value.(Input).ID
				}
			}
			return partition(h, func(e porcupine.Event) uint64 { return ids[e.Id] })
		},
		Init: func() any { return register{} },
		Step: func(state, input, output any) (bool, any) {
			r, in, out := state.(register), input.(Input), output.(Output)
			switch in.Kind {
			case Put:
				switch out.Outcome {
				case OK, Indeterminate:
					// An indeterminate Put that did not happen is
					// linearized after everything else by the checker,
					// where applying it changes nothing observable.
					return true, register{present: true, value: in.Value}
				case Failed:
					return true, r
				}
			case Get:
				switch out.Outcome {
				case Found:
					return r.present && r.value == out.Value, r
				case Absent:
					return !r.present, r
				}
			}
			// A recorder bug, not a coco bug: refuse rather than guess.
			return false, r
		},
		DescribeOperation: func(input, output any) string {
			return describe(input.(Input), output.(Output))
		},
		DescribeState: func(state any) string {
			r := state.(register)
			if !r.present {
				return "absent"
			}
			return fmt.Sprintf("%q", r.value)
		},
	}
}

func describe(in Input, out Output) string {
	s := describeOutcome(in, out)
	if out.Node != "" {
		s += " @" + out.Node
	}
	return s
}

func describeOutcome(in Input, out Output) string {
	s := in.String()
	switch in.Kind {
	case Put:
		switch out.Outcome {
		case OK:
			return s + " -> ok"
		case Failed:
			return s + " -> failed: " + out.Detail
		case Indeterminate:
			return s + " -> ? (" + out.Detail + ")"
		}
	case Get:
		switch out.Outcome {
		case Found:
			return fmt.Sprintf("%s -> %q", s, out.Value)
		case Absent:
			return s + " -> absent"
		}
	}
	return fmt.Sprintf("invalid %+v -> %+v", in, out)
}

// partition groups h by key, keeping each group in history order and the
// groups in order of first appearance (so output is deterministic).
func partition[T any](h []T, key func(T) uint64) [][]T {
	index := make(map[uint64]int)
	var out [][]T
	for _, x := range h {
		k := key(x)
		i, ok := index[k]
		if !ok {
			i = len(out)
			index[k] = i
			out = append(out, nil)
		}
		out[i] = append(out[i], x)
	}
	return out
}
