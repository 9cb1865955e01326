package linearizability

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/anishathalye/porcupine"
)

// step is one hand-written operation; ret is ignored for indeterminate
// Puts, which the Recorder leaves open until EndOfTime.
type step struct {
	client    int
	in        Input
	call, ret int64
	out       Output
}

func put(id uint64, v string) Input { return Input{Kind: Put, ID: id, Value: v} }
func get(id uint64) Input           { return Input{Kind: Get, ID: id} }

// Outputs of the hand-written histories.
const (
	ok = iota
	absent
	unknown
	failed
)

func out(o int) Output {
	return [...]Output{
		ok:      {Outcome: OK},
		absent:  {Outcome: Absent},
		unknown: {Outcome: Indeterminate, Detail: "connection reset"},
		failed:  {Outcome: Failed, Detail: "409 TransactionConflict"},
	}[o]
}

func found(v string) Output { return Output{Outcome: Found, Value: v} }

// history builds ops through a Recorder, so the rules for unknown outcomes
// are the ones the real runs use.
func history(steps ...step) []porcupine.Operation {
	r := NewRecorder()
	for _, s := range steps {
		r.Add(s.client, s.in, s.call, s.out, s.ret)
	}
	return r.Operations()
}

func TestModel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		ops     []porcupine.Operation
		illegal []uint64 // ids whose history is not linearizable
	}{
		{
			name: "valid concurrent history",
			ops: history(
				step{0, get(1), 0, 5, out(absent)},
				step{0, put(1, "a"), 10, 20, out(ok)},
				step{1, get(1), 25, 30, found("a")},
				// b is written while two reads run: one sees a, the
				// other b, in either order of their returns.
				step{0, put(1, "b"), 40, 60, out(ok)},
				step{1, get(1), 41, 61, found("b")},
				step{2, get(1), 42, 62, found("a")},
				step{1, get(1), 70, 80, found("b")},
				step{2, put(2, "x"), 0, 100, out(ok)},
				step{3, get(2), 50, 55, out(absent)},
				step{3, get(2), 56, 57, found("x")},
			),
		},
		{
			name: "stale read after a completed write",
			ops: history(
				step{0, put(1, "a"), 0, 10, out(ok)},
				step{0, put(1, "b"), 20, 30, out(ok)},
				step{1, get(1), 40, 50, found("a")},
				step{2, put(2, "x"), 0, 10, out(ok)},
				step{2, get(2), 20, 30, found("x")},
			),
			illegal: []uint64{1},
		},
		{
			name: "read of absent after a completed write",
			ops: history(
				step{0, put(3, "a"), 0, 10, out(ok)},
				step{1, get(3), 20, 30, out(absent)},
			),
			illegal: []uint64{3},
		},
		{
			name: "indeterminate write later observed",
			ops: history(
				step{0, put(1, "a"), 0, 10, out(ok)},
				step{0, put(1, "b"), 20, 25, out(unknown)},
				step{1, get(1), 30, 40, found("a")},
				step{2, get(1), 100, 110, found("b")},
				step{1, get(1), 120, 130, found("b")},
			),
		},
		{
			name: "indeterminate write never observed",
			ops: history(
				step{0, put(1, "a"), 0, 10, out(ok)},
				step{0, put(1, "b"), 20, 25, out(unknown)},
				step{1, get(1), 100, 110, found("a")},
				step{1, get(1), 120, 130, found("a")},
			),
		},
		{
			name: "indeterminate write observed, then undone",
			ops: history(
				step{0, put(1, "a"), 0, 10, out(ok)},
				step{0, put(1, "b"), 20, 25, out(unknown)},
				step{1, get(1), 100, 110, found("b")},
				step{1, get(1), 120, 130, found("a")},
			),
			illegal: []uint64{1},
		},
		{
			name: "indeterminate write observed before its call",
			ops: history(
				step{1, get(1), 0, 10, found("b")},
				step{0, put(1, "b"), 20, 25, out(unknown)},
			),
			illegal: []uint64{1},
		},
		{
			name: "indeterminate read is dropped",
			ops: history(
				step{0, put(1, "a"), 0, 10, out(ok)},
				step{1, get(1), 20, 30, Output{Outcome: Indeterminate, Detail: "EOF"}},
				step{1, get(1), 40, 50, Output{Outcome: Unsent}},
			),
		},
		{
			name: "failed write observed",
			ops: history(
				step{0, put(1, "a"), 0, 10, out(failed)},
				step{1, get(1), 20, 30, found("a")},
			),
			illegal: []uint64{1},
		},
		{
			name: "failed write not observed",
			ops: history(
				step{0, put(1, "a"), 0, 10, out(failed)},
				step{1, get(1), 20, 30, out(absent)},
			),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			viz := filepath.Join(t.TempDir(), "viz.html")
			v, err := Check(tt.ops, 0, viz)
			if err != nil {
				t.Fatal(err)
			}
			want := porcupine.Ok
			if tt.illegal != nil {
				want = porcupine.Illegal
			}
			if v.Result != want || !slices.Equal(v.IllegalIDs, tt.illegal) {
				t.Fatalf("Check = %s for ids %v, want %s for ids %v", v.Result, v.IllegalIDs, want, tt.illegal)
			}
			// The event form, partitioned by PartitionEvent, agrees.
			if got := porcupine.CheckEvents(Model(), events(tt.ops)); got != (want == porcupine.Ok) {
				t.Errorf("CheckEvents = %v, want %v", got, want == porcupine.Ok)
			}
			if want == porcupine.Illegal {
				if v.Visualization != viz {
					t.Fatalf("visualization at %q, want %q", v.Visualization, viz)
				}
				if fi, err := os.Stat(viz); err != nil || fi.Size() == 0 {
					t.Fatalf("visualization not written: %v", err)
				}
			} else if _, err := os.Stat(viz); !os.IsNotExist(err) {
				t.Fatalf("visualization written for a linearizable history (%v)", err)
			}
		})
	}
}

// TestRecorderIndeterminate checks the recorder's rules for unknown
// outcomes, which the model relies on.
func TestRecorderIndeterminate(t *testing.T) {
	t.Parallel()
	r := NewRecorder()
	if !r.Add(0, put(1, "a"), 1, out(unknown), 2) {
		t.Fatal("indeterminate put not recorded")
	}
	if r.Add(0, get(1), 3, out(unknown), 4) || r.Add(0, put(1, "b"), 5, Output{Outcome: Unsent}, 6) {
		t.Fatal("indeterminate get or unsent put recorded")
	}
	ops := r.Operations()
	if len(ops) != 1 || ops[0].Return != EndOfTime {
		t.Fatalf("history %+v, want one put open until EndOfTime", ops)
	}
	r.Add(1, get(1), 7, found("a"), 8)
	if n := ObservedIndeterminate(r.Operations()); n != 1 {
		t.Fatalf("ObservedIndeterminate = %d, want 1", n)
	}
	s := r.Stats()
	if s.Operations != 2 || s.Indeterminate != 1 || s.DroppedGets != 1 || s.Unsent != 1 || s.Details["connection reset"] != 2 {
		t.Fatalf("stats %+v", s)
	}
}

// events converts operations to porcupine's event form (calls and returns
// in time order, calls first on ties, as porcupine orders them).
func events(ops []porcupine.Operation) []porcupine.Event {
	type ev struct {
		t    int64
		kind porcupine.EventKind
		e    porcupine.Event
	}
	var es []ev
	for i, op := range ops {
		es = append(es,
			ev{op.Call, porcupine.CallEvent, porcupine.Event{ClientId: op.ClientId, Kind: porcupine.CallEvent, Value: op.Input, Id: i}},
			ev{op.Return, porcupine.ReturnEvent, porcupine.Event{ClientId: op.ClientId, Kind: porcupine.ReturnEvent, Value: op.Output, Id: i}})
	}
	slices.SortStableFunc(es, func(a, b ev) int {
		switch {
		case a.t < b.t:
			return -1
		case a.t > b.t:
			return 1
		case a.kind == b.kind:
			return 0
		case a.kind == porcupine.CallEvent:
			return -1
		}
		return 1
	})
	out := make([]porcupine.Event, len(es))
	for i, e := range es {
		out[i] = e.e
	}
	return out
}
