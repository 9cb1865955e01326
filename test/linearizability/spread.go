package linearizability

import (
	"context"
	"fmt"
	"math/rand/v2"
)

// Spread is a [Client] for a replicated service: it sends each operation
// to one of several nodes, picked at random, so that one history client
// exercises all of them: writes sent to a backup are forwarded to the
// primary, reads are answered by whichever node they reach. It records the
// node in [Output.Node] ("n0", "n1", ...: the index in Nodes).
//
// A Spread belongs to one history client: Do is not safe for concurrent
// use (it draws from one random source).
type Spread struct {
	nodes []Client
	rng   *rand.Rand
}

var _ Client = (*Spread)(nil)

// NewSpread returns a Spread over nodes (one Client per node, not shared
// with another Spread, so that history clients have connections of their
// own). seed makes the choice of nodes reproducible.
func NewSpread(nodes []Client, seed uint64) *Spread {
	return &Spread{nodes: nodes, rng: rand.New(rand.NewPCG(seed, 0x5eed))}
}

// Do implements [Client].
func (s *Spread) Do(ctx context.Context, in Input) (Output, error) {
	if len(s.nodes) == 0 {
		return Output{}, fmt.Errorf("linearizability: Spread has no nodes")
	}
	i := s.rng.IntN(len(s.nodes))
	out, err := s.nodes[i].Do(ctx, in)
	if err != nil {
		return out, fmt.Errorf("n%d: %w", i, err)
	}
	out.Node = fmt.Sprintf("n%d", i)
	return out, nil
}
