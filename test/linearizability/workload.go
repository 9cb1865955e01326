package linearizability

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Client performs operations against the service for one history client.
type Client interface {
	// Do performs in once and reports what was learnt. It never retries an
	// operation whose outcome is uncertain: a retry is a new operation with
	// a value of its own. It returns an error only for an answer the API
	// rules out and that leaves the history meaningless (a harness or coco
	// bug), never for a node being down.
	Do(ctx context.Context, in Input) (Output, error)
}

// FaultInjector disturbs the service while clients run.
type FaultInjector interface {
	// Fault applies fault number round and heals it, returning once the
	// service serves again.
	Fault(ctx context.Context, round int) error
}

// Workload describes one recorded run.
type Workload struct {
	// Clients are the concurrent history clients, one goroutine each. To
	// spread load over several nodes, give each client a Client that picks
	// a node per operation.
	Clients []Client
	// Keys is the number of log ids in use at a time. Few keys make
	// operations contend, which is where linearizability bugs show.
	//
	// Clients move to Keys fresh ids midway between two faults (epoch e
	// uses ids e*Keys+1 .. e*Keys+Keys), so each id's history spans
	// exactly one fault. Porcupine's memory and time grow with the square
	// of the operations on one id; rotating keeps both proportional to the
	// run's length. The final reads cover every id ever used, so a fault
	// that loses older writes is still caught.
	Keys int
	// Duration is how long clients run at least. They keep running for
	// Duration/(Rounds+1) after the last fault is healed, so that what
	// survived it is observed too.
	Duration time.Duration
	// Faults is applied Rounds times, evenly spread over Duration; nil for
	// none.
	Faults FaultInjector
	Rounds int
	// Seed makes each client's choice of operations reproducible (the
	// interleaving is not).
	Seed uint64
	// Backoff is how long a client waits after an operation that did not
	// get a definite answer, so clients of a dead node do not spin and
	// starve its restart of CPU. Zero means 20ms.
	Backoff time.Duration
}

// Run records a history of w. On error (a fault that could not heal, an
// answer the API rules out, ctx ended) the history so far is still returned.
func Run(ctx context.Context, w Workload) (*Recorder, error) {
	if len(w.Clients) == 0 || w.Keys < 1 {
		return nil, fmt.Errorf("linearizability: workload needs clients and keys (got %d, %d)", len(w.Clients), w.Keys)
	}
	backoff := w.Backoff
	if backoff == 0 {
		backoff = 20 * time.Millisecond
	}
	rec := NewRecorder()
	var epoch atomic.Uint64
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// stop ends the load without cancelling operations in flight, which
	// would only turn definite answers into indeterminate ones.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, c := range w.Clients {
		wg.Go(func() {
			if err := runClient(ctx, stop, rec, &epoch, c, i, w, backoff); err != nil {
				cancel(fmt.Errorf("client %d: %w", i, err))
			}
		})
	}

	type faultsResult struct {
		err      error
		healedAt time.Duration // of the last fault, from rec.Now
	}
	faultsDone := make(chan faultsResult, 1)
	go func() {
		var healedAt time.Duration
		for round := range w.Rounds {
			if w.Faults == nil {
				break
			}
			at := time.Duration(round+1) * w.Duration / time.Duration(w.Rounds+1)
			if !sleepUntil(ctx, rec, at) {
				break
			}
			if err := w.Faults.Fault(ctx, round); err != nil {
				faultsDone <- faultsResult{err: fmt.Errorf("fault %d: %w", round, err)}
				return
			}
			healedAt = time.Duration(rec.Now())
			if round+1 < w.Rounds {
				if !sleepUntil(ctx, rec, at+w.Duration/time.Duration(2*(w.Rounds+1))) {
					break
				}
				epoch.Add(1)
			}
		}
		faultsDone <- faultsResult{healedAt: healedAt}
	}()

	fr := <-faultsDone
	err := fr.err
	if err == nil {
		sleepUntil(ctx, rec, max(w.Duration, fr.healedAt+w.Duration/time.Duration(w.Rounds+1)))
	}
	close(stop)
	wg.Wait()
	// A client's error cancels ctx, which also ends a fault in progress:
	// report the cause, not the cancellation it led to.
	if cause := context.Cause(ctx); cause != nil && (err == nil || errors.Is(err, context.Canceled)) {
		err = cause
	}
	if err != nil {
		return rec, err
	}

	// Final reads of every key from every client: they pin down which
	// indeterminate writes took effect and catch writes lost late.
	ids := (epoch.Load() + 1) * uint64(w.Keys)
	for i, c := range w.Clients {
		id := rec.NewClientID()
		for k := range ids {
			in := Input{Kind: Get, ID: k + 1}
			call := rec.Now()
			out, err := c.Do(ctx, in)
			if err != nil {
				return rec, fmt.Errorf("client %d final read: %w", i, err)
			}
			rec.Add(id, in, call, out, rec.Now())
		}
	}
	return rec, nil
}

func runClient(ctx context.Context, stop <-chan struct{}, rec *Recorder, epoch *atomic.Uint64, c Client, i int, w Workload, backoff time.Duration) error {
	rng := rand.New(rand.NewPCG(w.Seed, uint64(i)))
	id := rec.NewClientID()
	for seq := 0; ; seq++ {
		select {
		case <-stop:
			return nil
		case <-ctx.Done():
			return nil
		default:
		}
		in := Input{Kind: Get, ID: epoch.Load()*uint64(w.Keys) + 1 + rng.Uint64N(uint64(w.Keys))}
		if rng.IntN(2) == 0 {
			in.Kind = Put
			in.Value = fmt.Sprintf("c%d.%d", i, seq)
		}
		call := rec.Now()
		out, err := c.Do(ctx, in)
		ret := rec.Now()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("%s: %w", in, err)
		}
		rec.Add(id, in, call, out, ret)
		switch out.Outcome {
		case Indeterminate, Unsent:
			if in.Kind == Put && out.Outcome == Indeterminate {
				id = rec.NewClientID()
			}
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
			}
		}
	}
}

// sleepUntil sleeps until rec.Now() reaches at; false if ctx ended first.
func sleepUntil(ctx context.Context, rec *Recorder, at time.Duration) bool {
	d := at - time.Duration(rec.Now())
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// ErrUnexpected marks an answer the API documentation rules out.
var ErrUnexpected = errors.New("unexpected answer")
