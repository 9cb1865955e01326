package linearizability

import (
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// The shape of the load. Few ids so that operations contend; enough
// clients that several writes are in flight at every kill.
const (
	numClients     = 8
	numKeys        = 5
	requestTimeout = 10 * time.Second
	downTime       = 200 * time.Millisecond // long enough for clients to find the port closed
	// How long a crashed node of a replicated service stays down, drawn
	// per crash.
	clusterMinDown = 200 * time.Millisecond
	clusterMaxDown = 1500 * time.Millisecond
	// checkTimeout bounds the checker. Partitioned by id, a history of the
	// long run checks in well under a second; Unknown means something is
	// badly off and fails the test rather than passing unchecked.
	checkTimeout = 2 * time.Minute
)

// TestLinearizableSingleNode records a history while a single node is
// killed with SIGKILL and restarted twice, and checks it is linearizable.
func TestLinearizableSingleNode(t *testing.T) {
	runSingleNode(t, 6*time.Second, 2)
}

// TestLinearizableSingleNodeLong is the same for a minute and ten crashes.
func TestLinearizableSingleNodeLong(t *testing.T) {
	if !*long {
		t.Skip("runs for minutes; enable with -long")
	}
	runSingleNode(t, 60*time.Second, 10)
}

// TestLinearizableThreeNodes records a history of clients spreading their
// operations over the three nodes of a `coco sandbox` while one node at a
// time is killed with SIGKILL and restarted from its sandbox.json args:
// the primary, then a backup, then the primary again.
func TestLinearizableThreeNodes(t *testing.T) {
	runSandbox(t, 10*time.Second, 3)
}

// TestLinearizableThreeNodesLong is the same for a minute and a half and
// eighteen crashes, half of them of the primary.
func TestLinearizableThreeNodesLong(t *testing.T) {
	if !*long {
		t.Skip("runs for minutes; enable with -long")
	}
	runSandbox(t, 90*time.Second, 18)
}

func runSingleNode(t *testing.T, d time.Duration, crashes int) {
	// Small ledger chunks, so crashes also land around chunk rotation.
	n := startNode(t, t.TempDir(), "--ledger-chunk-size", "65536")
	certPEM := n.serviceCertPEM(t)
	clients := make([]Client, numClients)
	for i := range clients {
		clients[i] = newHTTPClient(t, n.addr, certPEM, n.user)
	}
	s := runSeed(t)
	record(t.Context(), t, Workload{
		Clients:  clients,
		Keys:     numKeys,
		Duration: d,
		Faults:   &KillRestart{Nodes: []Restartable{n}, Down: downTime, Logf: t.Logf},
		Rounds:   crashes,
		Seed:     s,
	})
}

func runSandbox(t *testing.T, d time.Duration, crashes int) {
	// Small ledger chunks, so crashes also land around chunk rotation.
	svc := startSandbox(t, t.TempDir(), "--ledger-chunk-size=65536")
	s := runSeed(t)
	clients := make([]Client, numClients)
	for i := range clients {
		nodes := make([]Client, len(svc.nodes))
		for j, n := range svc.nodes {
			nodes[j] = newHTTPClient(t, n.rpc, svc.certPEM, svc.user)
		}
		clients[i] = NewSpread(nodes, s+uint64(i)<<32)
	}
	// A node or the sandbox exiting on its own ends the run at once, with
	// the reason, instead of leaving the clients to time out.
	ctx, cancel := context.WithCancelCause(t.Context())
	defer cancel(nil)
	go svc.watch(ctx, cancel)
	record(ctx, t, Workload{
		Clients:  clients,
		Keys:     numKeys,
		Duration: d,
		Faults: &KillRestart{
			Nodes: svc.restartables(),
			// From before the survivors elect a new primary (election
			// timeout 500ms) to well after.
			Down:    clusterMinDown,
			MaxDown: clusterMaxDown,
			Pick:    svc.picker(s),
			Seed:    s,
			Logf:    t.Logf,
		},
		Rounds: crashes,
		Seed:   s,
	})
}

func newHTTPClient(t *testing.T, addr string, certPEM []byte, user tls.Certificate) *HTTPClient {
	t.Helper()
	c, err := NewHTTPClient(addr, certPEM, user, requestTimeout)
	if err != nil {
		t.Fatal(err)
	}
	c.ReadConsistency = *readConsistency
	t.Cleanup(c.Close)
	return c
}

// runSeed is -seed, or a random seed, logged.
func runSeed(t *testing.T) uint64 {
	s := *seed
	if s == 0 {
		s = rand.Uint64()
	}
	t.Logf("seed %d (rerun with -seed %d for the same random choices: operations, nodes, victims, downtimes)", s, s)
	return s
}

// record runs w, logs what the history holds, and checks it. ctx may end
// the run early (with a cause).
func record(ctx context.Context, t *testing.T, w Workload) {
	t.Helper()
	// Bound the whole run so a node that never comes back fails the test
	// instead of hanging it until go test's timeout.
	ctx, cancel := context.WithTimeout(ctx, 2*w.Duration+time.Duration(w.Rounds)*startTimeout)
	defer cancel()
	start := time.Now()
	rec, err := Run(ctx, w)
	if rec != nil {
		st := rec.Stats()
		logStats(t, st)
		var bad []string
		for d, n := range st.Details {
			if strings.HasPrefix(d, APIViolation) {
				bad = append(bad, fmt.Sprintf("%dx %s", n, strings.TrimPrefix(d, APIViolation)))
			}
		}
		if len(bad) > 0 {
			sort.Strings(bad)
			// Not fatal: the history still gets checked.
			t.Errorf("coco gave answers its API rules out (recorded as unknown outcomes): %s", strings.Join(bad, "; "))
		}
	}
	if err != nil {
		t.Fatalf("recording the history: %v", err)
	}
	ops := rec.Operations()
	t.Logf("recorded in %v; indeterminate puts later observed: %d", time.Since(start).Round(time.Millisecond), ObservedIndeterminate(ops))
	if *readConsistency != "" {
		t.Logf("reads were sent with x-coco-read-consistency: %s", *readConsistency)
	}
	checkHistory(t, ops)
}

func logStats(t *testing.T, s Stats) {
	t.Helper()
	details := make([]string, 0, len(s.Details))
	for k, v := range s.Details {
		details = append(details, fmt.Sprintf("%s: %d", k, v))
	}
	sort.Strings(details)
	t.Logf("history: %d operations (%d puts: %d ok, %d failed, %d indeterminate; %d gets); not recorded: %d unsent, %d gets with unknown outcome; reasons {%s}",
		s.Operations, s.Puts, s.PutsOK, s.PutsFailed, s.Indeterminate, s.Gets, s.Unsent, s.DroppedGets, strings.Join(details, ", "))
}

// checkHistory fails t unless ops is linearizable, pointing at the
// visualization of a violation.
func checkHistory(t *testing.T, ops []porcupine.Operation) {
	t.Helper()
	v, err := Check(ops, checkTimeout, vizPath(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("porcupine: %s for %d operations in %v", v.Result, len(ops), v.Elapsed.Round(time.Microsecond))
	switch v.Result {
	case porcupine.Ok:
	case porcupine.Illegal:
		t.Fatalf("history is not linearizable for ids %v; visualization: %s\n%s", v.IllegalIDs, v.Visualization, v.Excerpt)
	default:
		t.Fatalf("porcupine could not decide within %v (%s)", checkTimeout, v.Result)
	}
}

// vizPath is where a violation's visualization goes. Not under
// t.TempDir(): that is removed when the test ends, and the file is only
// written to be looked at afterwards.
func vizPath(t *testing.T) string {
	name := regexp.MustCompile(`[^A-Za-z0-9_.-]+`).ReplaceAllString(t.Name(), "_")
	name = fmt.Sprintf("%s-%d.html", name, time.Now().UnixNano())
	if *vizDir != "" {
		return filepath.Join(*vizDir, name)
	}
	return filepath.Join(os.TempDir(), "coco-linearizability", name)
}
