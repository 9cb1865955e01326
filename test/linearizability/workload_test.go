package linearizability

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// memService is an in-memory logging app that can be crashed, to test the
// workload, the fault injector and the checker together without processes.
type memService struct {
	mu   sync.Mutex
	m    map[uint64]string
	prev map[uint64]string // the value before the latest write, for staleReads
	down bool
	// staleReads makes Get answer the value before the latest write: the
	// kind of bug the check exists for.
	staleReads bool
}

var _ Restartable = (*memService)(nil)

func newMemService(staleReads bool) *memService {
	return &memService{m: map[uint64]string{}, prev: map[uint64]string{}, staleReads: staleReads}
}

func (s *memService) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = true
	return nil
}

func (s *memService) Restart(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = false
	return nil
}

// memClient is one history client of a memService. Some of its Puts lose
// their answer, applied or not, like a Put in flight when a node dies.
type memClient struct {
	s   *memService
	rng *rand.Rand // owned by the client's goroutine
}

func (c *memClient) Do(_ context.Context, in Input) (Output, error) {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if c.s.down {
		return Output{Outcome: Unsent, Detail: "connection refused"}, nil
	}
	switch in.Kind {
	case Put:
		lost := c.rng.IntN(20) == 0
		if !lost || c.rng.IntN(2) == 0 {
			if v, ok := c.s.m[in.ID]; ok {
				c.s.prev[in.ID] = v
			}
			c.s.m[in.ID] = in.Value
		}
		if lost {
			return Output{Outcome: Indeterminate, Detail: "lost answer"}, nil
		}
		return Output{Outcome: OK}, nil
	default:
		v, ok := c.s.m[in.ID]
		if p, had := c.s.prev[in.ID]; c.s.staleReads && had {
			v = p
		}
		if !ok {
			return Output{Outcome: Absent}, nil
		}
		return Output{Outcome: Found, Value: v}, nil
	}
}

func runMem(t *testing.T, s *memService, clients int) (*Recorder, Verdict) {
	t.Helper()
	cs := make([]Client, clients)
	for i := range cs {
		cs[i] = &memClient{s: s, rng: rand.New(rand.NewPCG(1, uint64(i)))}
	}
	rec, err := Run(t.Context(), Workload{
		Clients:  cs,
		Keys:     numKeys,
		Duration: 300 * time.Millisecond,
		Faults:   &KillRestart{Nodes: []Restartable{s}, Down: 10 * time.Millisecond},
		Rounds:   2,
		Seed:     1,
		Backoff:  time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	v, err := Check(rec.Operations(), checkTimeout, filepath.Join(t.TempDir(), "viz.html"))
	if err != nil {
		t.Fatal(err)
	}
	return rec, v
}

// TestRunCorrectService: a correct service with crashes and lost answers
// passes, and the history holds every kind of outcome.
func TestRunCorrectService(t *testing.T) {
	t.Parallel()
	rec, v := runMem(t, newMemService(false), numClients)
	st := rec.Stats()
	logStats(t, st)
	t.Logf("porcupine: %s in %v", v.Result, v.Elapsed)
	if v.Result != porcupine.Ok {
		t.Fatalf("Check = %s for ids %v, want Ok", v.Result, v.IllegalIDs)
	}
	if st.Indeterminate == 0 || st.PutsOK == 0 || st.Gets == 0 {
		t.Fatalf("history lacks outcomes the check is about: %+v", st)
	}
	// Two faults: two epochs of fresh ids, all read at the end.
	ids := map[uint64]bool{}
	for _, op := range rec.Operations() {
		ids[op.Input.(Input).ID] = true
	}
	if len(ids) != 2*numKeys {
		t.Fatalf("history uses %d ids, want %d (one set per fault)", len(ids), 2*numKeys)
	}
}

// TestRunStaleReads: a service with stale reads is caught. One client, so
// the history (and the violation in it) depends only on the seed.
func TestRunStaleReads(t *testing.T) {
	t.Parallel()
	_, v := runMem(t, newMemService(true), 1)
	if v.Result != porcupine.Illegal {
		t.Fatalf("Check = %s, want Illegal", v.Result)
	}
	if fi, err := os.Stat(v.Visualization); err != nil || fi.Size() == 0 {
		t.Fatalf("no visualization at %q: %v", v.Visualization, err)
	}
	if !strings.Contains(v.Excerpt, "cannot linearize") || !strings.Contains(v.Excerpt, "  * ") {
		t.Fatalf("excerpt does not point at the operation:\n%s", v.Excerpt)
	}
	t.Logf("illegal ids %v, visualization %s\n%s", v.IllegalIDs, v.Visualization, v.Excerpt)
}

// TestSpread: a Spread sends operations to all of its nodes, at random,
// names the node in the output, and names it in errors too.
func TestSpread(t *testing.T) {
	t.Parallel()
	s := newMemService(false)
	rng := rand.New(rand.NewPCG(1, 1))
	nodes := []Client{&memClient{s: s, rng: rng}, &memClient{s: s, rng: rng}, failingClient{}}
	sp := NewSpread(nodes, 7)
	seen := map[string]int{}
	for i := range 300 {
		out, err := sp.Do(t.Context(), Input{Kind: Put, ID: 1, Value: fmt.Sprintf("v%d", i)})
		if err != nil {
			if !strings.HasPrefix(err.Error(), "n2: ") {
				t.Fatalf("error %q does not name node n2", err)
			}
			seen["n2"]++
			continue
		}
		seen[out.Node]++
	}
	if len(seen) != 3 || seen["n0"] < 50 || seen["n1"] < 50 || seen["n2"] < 50 {
		t.Fatalf("operations per node %v, want about 100 each on n0, n1, n2", seen)
	}
	if d := describe(put(1, "a"), Output{Outcome: OK, Node: "n1"}); d != `put(1, "a") -> ok @n1` {
		t.Fatalf("describe = %q", d)
	}
}

type failingClient struct{}

func (failingClient) Do(context.Context, Input) (Output, error) {
	return Output{}, ErrUnexpected
}

// recordingNode is a Restartable that counts what was done to it.
type recordingNode struct{ kills, restarts int }

func (n *recordingNode) Kill() error                   { n.kills++; return nil }
func (n *recordingNode) Restart(context.Context) error { n.restarts++; return nil }

// TestKillRestartPick: Pick chooses the victim of each round (round-robin
// without it), and the node is back before Fault returns.
func TestKillRestartPick(t *testing.T) {
	t.Parallel()
	nodes := []*recordingNode{{}, {}, {}}
	rs := []Restartable{nodes[0], nodes[1], nodes[2]}
	k := &KillRestart{
		Nodes: rs, Down: time.Millisecond, MaxDown: 3 * time.Millisecond, Seed: 1,
		Pick: func(_ context.Context, round int) (int, string, error) { return 2 - round%2, "test", nil },
	}
	for round := range 4 {
		if err := k.Fault(t.Context(), round); err != nil {
			t.Fatal(err)
		}
	}
	if nodes[0].kills != 0 || nodes[1].kills != 2 || nodes[2].kills != 2 {
		t.Fatalf("kills %d %d %d, want 0 2 2", nodes[0].kills, nodes[1].kills, nodes[2].kills)
	}
	for i, n := range nodes {
		if n.kills != n.restarts {
			t.Fatalf("node %d: %d kills, %d restarts", i, n.kills, n.restarts)
		}
	}
	k.Pick = func(context.Context, int) (int, string, error) { return 3, "", nil }
	if err := k.Fault(t.Context(), 0); err == nil {
		t.Fatal("Fault accepted a pick out of range")
	}
	k.Pick = nil
	if err := k.Fault(t.Context(), 0); err != nil || nodes[0].kills != 1 {
		t.Fatalf("round-robin round 0: err %v, node 0 killed %d times", err, nodes[0].kills)
	}
}
