package evm

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"slices"
	"time"

	"github.com/cocoledger/coco/app"
	"github.com/cocoledger/coco/kv"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
)

// pending is a signed transaction waiting for the builder.
type pending struct {
	tx   *types.Transaction
	from common.Address
	done chan outcome // buffered: the builder never blocks on it
}

type outcome struct {
	receipt *Receipt
	err     error
}

// builder turns queued transactions into blocks on the primary: it takes
// what is queued (up to maxBatch), executes it one transaction per block
// on the latest state, and submits all those blocks as one coco
// transaction. As soon as that transaction is ordered it starts the next
// batch on top, while the first commits. It is the only writer of the
// chain's maps, so its transactions do not conflict with each other.
type builder struct {
	exec     func(*kv.Tx) (*Executor, error)
	queue    chan *pending
	maxBatch int
	log      *slog.Logger
	now      func() time.Time
}

func newBuilder(exec func(*kv.Tx) (*Executor, error), maxBatch, queueLen int, log *slog.Logger) *builder {
	return &builder{exec: exec, queue: make(chan *pending, queueLen), maxBatch: maxBatch, log: log, now: time.Now}
}

// errQueueFull: the primary has more transactions queued than it takes.
var errQueueFull = errors.New("the transaction queue is full; retry")

// add queues p, or fails at once when the queue is full.
func (b *builder) add(p *pending) error {
	select {
	case b.queue <- p:
		return nil
	default:
		return errQueueFull
	}
}

// run builds blocks until ctx ends.
func (b *builder) run(ctx context.Context, h app.Host) error {
	for {
		var first *pending
		select {
		case first = <-b.queue:
		case <-ctx.Done():
			b.drain(ctx.Err())
			return ctx.Err()
		}
		batch := []*pending{first}
	fill:
		for len(batch) < b.maxBatch {
			select {
			case p := <-b.queue:
				batch = append(batch, p)
			default:
				break fill
			}
		}
		b.build(ctx, h, batch)
	}
}

// drain fails what is still queued.
func (b *builder) drain(err error) {
	for {
		select {
		case p := <-b.queue:
			p.done <- outcome{err: err}
		default:
			return
		}
	}
}

// maxConflicts bounds re-executions of a batch that read stale state (a
// governance transaction ordered concurrently, or a new primary's first
// batch).
const maxConflicts = 5

// notReadyBackoff is the wait before retrying a batch on a primary that
// cannot order yet (just elected, applying earlier views' entries).
const notReadyBackoff = 100 * time.Millisecond

// build executes batch and submits it, returning once it is ordered (or
// has failed); its clients hear when it commits.
func (b *builder) build(ctx context.Context, h app.Host, batch []*pending) {
	// A sender's transactions in nonce order, so that ones sent back to
	// back and queued together are not refused as "nonce too high".
	slices.SortStableFunc(batch, func(x, y *pending) int {
		if c := cmp.Compare(string(x.from[:]), string(y.from[:])); c != 0 {
			return c
		}
		return cmp.Compare(x.tx.Nonce(), y.tx.Nonce())
	})
	for attempt := 1; ; attempt++ {
		if !h.IsPrimary() {
			fail(batch, app.ErrNotPrimary)
			return
		}
		tx := h.Begin()
		included, unanswered, err := b.execute(tx, batch)
		if err != nil {
			b.log.Error("executing a batch of transactions failed", "err", err, "transactions", len(batch))
			fail(unanswered, err)
			return
		}
		if len(included) == 0 {
			return
		}
		ordered := make(chan struct{})
		submitted := make(chan error, 1)
		go func() { submitted <- h.Submit(ctx, tx, func() { close(ordered) }) }()
		select {
		case <-ordered:
			go func() {
				err := <-submitted
				for _, o := range included {
					if err != nil {
						o.p.done <- outcome{err: err}
					} else {
						o.p.done <- outcome{receipt: o.r}
					}
				}
			}()
			return
		case err := <-submitted:
			// Conflicts, and a primary still applying earlier views'
			// entries (it cannot order yet), are worth another try.
			if (errors.Is(err, kv.ErrConflict) || (errors.Is(err, app.ErrNotPrimary) && h.IsPrimary())) && attempt < maxConflicts {
				if !errors.Is(err, kv.ErrConflict) {
					time.Sleep(notReadyBackoff)
				}
				batch = pendings(included)
				continue
			}
			fail(pendings(included), err)
			return
		}
	}
}

type executed struct {
	p *pending
	r *Receipt
}

// execute runs batch in tx. Invalid transactions are answered at once and
// left out; the rest are returned with their receipts. An error is one
// that is no transaction's fault (kv); unanswered then lists the
// transactions not answered yet.
func (b *builder) execute(tx *kv.Tx, batch []*pending) (out []executed, unanswered []*pending, err error) {
	exec, err := b.exec(tx)
	if err != nil {
		return nil, batch, err
	}
	head, _, err := readHead(tx)
	if err != nil {
		return nil, batch, err
	}
	s := NewStateDB(tx)
	now := uint64(b.now().Unix())
	for i, p := range batch {
		r, err := exec.Apply(tx, s, p.tx, p.from, now)
		switch {
		case errors.Is(err, ErrInvalidTx):
			p.done <- outcome{err: err}
		case err != nil:
			return nil, append(pendings(out), batch[i:]...), err
		default:
			out = append(out, executed{p: p, r: r})
		}
	}
	if len(out) > 0 {
		if err := exec.Prune(tx, head.Number+1); err != nil {
			return nil, pendings(out), err
		}
	}
	return out, nil, nil
}

func pendings(es []executed) []*pending {
	ps := make([]*pending, len(es))
	for i, e := range es {
		ps[i] = e.p
	}
	return ps
}

func fail(batch []*pending, err error) {
	for _, p := range batch {
		p.done <- outcome{err: err}
	}
}
