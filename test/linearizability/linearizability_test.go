package linearizability

import (
	"context"
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

func runSingleNode(t *testing.T, d time.Duration, crashes int) {
	// Small ledger chunks, so crashes also land around chunk rotation.
	n := startNode(t, t.TempDir(), "--ledger-chunk-size", "65536")
	certPEM := n.serviceCertPEM(t)
	clients := make([]Client, numClients)
	for i := range clients {
		c, err := NewHTTPClient(n.addr, certPEM, n.user, requestTimeout)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		clients[i] = c
	}
	s := *seed
	if s == 0 {
		s = rand.Uint64()
	}
	t.Logf("seed %d (rerun with -seed %d for the same choice of operations)", s, s)

	// Bound the whole run so a node that never comes back fails the test
	// instead of hanging it until go test's timeout.
	ctx, cancel := context.WithTimeout(t.Context(), 2*d+time.Duration(crashes)*startTimeout)
	defer cancel()
	rec, err := Run(ctx, Workload{
		Clients:  clients,
		Keys:     numKeys,
		Duration: d,
		Faults:   &KillRestart{Nodes: []Restartable{n}, Down: downTime, Logf: t.Logf},
		Rounds:   crashes,
		Seed:     s,
	})
	if rec != nil {
		logStats(t, rec.Stats())
	}
	if err != nil {
		t.Fatalf("recording the history: %v", err)
	}
	ops := rec.Operations()
	t.Logf("indeterminate puts later observed: %d", ObservedIndeterminate(ops))
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
		t.Fatalf("history is not linearizable for ids %v; visualization: %s", v.IllegalIDs, v.Visualization)
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
