package linearizability

import (
	"context"
	"fmt"
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

// KillRestart crashes one node per round, round-robin over Nodes, leaves it
// down for Down, and restarts it. With one node that is a full outage;
// with a replicated service, a minority crash.
type KillRestart struct {
	Nodes []Restartable
	Down  time.Duration
	// Logf, if set, reports each step (t.Logf).
	Logf func(format string, args ...any)
}

var _ FaultInjector = (*KillRestart)(nil)

// Fault implements [FaultInjector].
func (k *KillRestart) Fault(ctx context.Context, round int) error {
	if len(k.Nodes) == 0 {
		return fmt.Errorf("linearizability: KillRestart has no nodes")
	}
	i := round % len(k.Nodes)
	n := k.Nodes[i]
	logf := k.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	start := time.Now()
	if err := n.Kill(); err != nil {
		return fmt.Errorf("kill node %d: %w", i, err)
	}
	logf("fault %d: killed node %d (SIGKILL)", round, i)
	select {
	case <-time.After(k.Down):
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := n.Restart(ctx); err != nil {
		return fmt.Errorf("restart node %d: %w", i, err)
	}
	logf("fault %d: node %d serves again, %v after the kill", round, i, time.Since(start).Round(time.Millisecond))
	return nil
}
