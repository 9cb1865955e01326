package linearizability

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"
)

// Restartable is a node the fault injector can crash.
type Restartable interface {
	// Kill stops the node without warning (SIGKILL) and waits until it
	// has exited.
	Kill() error
	// Restart starts the node again on the same data directory with the
	// same arguments and returns once it serves application requests.
	Restart(ctx context.Context) error
}

// KillRestart crashes one node per round, leaves it down for a while, and
// restarts it. With one node that is a full outage; with a replicated
// service, a minority crash. A round returns only once the node serves
// again, so at most one node is ever down.
type KillRestart struct {
	Nodes []Restartable
	// Down is how long a crashed node stays down. If MaxDown is greater,
	// each round's downtime is drawn uniformly from [Down, MaxDown] (from
	// Seed), so restarts land both before and after the survivors noticed.
	Down, MaxDown time.Duration
	// Pick chooses the node to crash in a round: its index in Nodes, and
	// what it is, for the log ("primary"). Nil crashes Nodes round-robin.
	Pick func(ctx context.Context, round int) (i int, role string, err error)
	Seed uint64
	// Logf, if set, reports each step (t.Logf).
	Logf func(format string, args ...any)

	rng *rand.Rand // from Seed; Fault runs on one goroutine
}

var _ FaultInjector = (*KillRestart)(nil)

// Fault implements [FaultInjector].
func (k *KillRestart) Fault(ctx context.Context, round int) error {
	if len(k.Nodes) == 0 {
		return fmt.Errorf("linearizability: KillRestart has no nodes")
	}
	logf := k.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	i, role := round%len(k.Nodes), ""
	if k.Pick != nil {
		var err error
		if i, role, err = k.Pick(ctx, round); err != nil {
			return fmt.Errorf("pick a node: %w", err)
		}
		if i < 0 || i >= len(k.Nodes) {
			return fmt.Errorf("linearizability: picked node %d of %d", i, len(k.Nodes))
		}
		role = ", the " + role
	}
	down := k.Down
	if k.MaxDown > k.Down {
		if k.rng == nil {
			k.rng = rand.New(rand.NewPCG(k.Seed, 0xfa17))
		}
		down += time.Duration(k.rng.Int64N(int64(k.MaxDown - k.Down + 1)))
	}
	n := k.Nodes[i]
	start := time.Now()
	if err := n.Kill(); err != nil {
		return fmt.Errorf("kill node %d: %w", i, err)
	}
	logf("fault %d: killed node %d%s (SIGKILL), down for %v", round, i, role, down.Round(time.Millisecond))
	select {
	case <-time.After(down):
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := n.Restart(ctx); err != nil {
		return fmt.Errorf("restart node %d: %w", i, err)
	}
	logf("fault %d: node %d serves again, %v after the kill", round, i, time.Since(start).Round(time.Millisecond))
	return nil
}
