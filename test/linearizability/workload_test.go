package linearizability

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
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
	t.Logf("illegal ids %v, visualization %s", v.IllegalIDs, v.Visualization)
}
