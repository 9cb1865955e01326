package bench

import (
	"context"
	"time"
)

// This file lends bench's closed-loop machinery to the load clients of the
// systems coco is compared with (bench/etcdload), so that their figures are
// windowed, recorded and summarised exactly as RunLog's are.

// RunWindowed runs n closed-loop clients, client(ctx, i, window, end) each
// on its own goroutine, as RunLog does: they start at once, count only what
// they send at or after window and finish by end (window is warmup from
// now, end duration after it), and ctx is cancelled 10 s after end in case
// they hang. It waits for all of them and returns ctx's error if ctx ended
// first.
func RunWindowed(ctx context.Context, warmup, duration time.Duration, n int, client func(ctx context.Context, i int, window, end time.Time)) error {
	return runWindowed(ctx, warmup, duration, n, client)
}

// Histogram is the latency histogram of RunLog: values within 0.8%, constant
// memory, no allocation per sample. It is not safe for concurrent use: give
// each client its own and Merge them at the end.
type Histogram struct{ h histogram }

// Record adds one latency.
func (h *Histogram) Record(d time.Duration) { h.h.record(d) }

// Merge adds o's samples to h.
func (h *Histogram) Merge(o *Histogram) { h.h.merge(&o.h) }

// Count is the number of recorded latencies.
func (h *Histogram) Count() uint64 { return h.h.n }

// Result summarises h, recorded over a measured window of length window, as
// a Result: Writes is h's count, Throughput that count per second.
func (h *Histogram) Result(target string, clients int, window time.Duration) *Result {
	return &Result{
		Target:       target,
		Clients:      clients,
		Writes:       h.h.n,
		Errors:       map[string]int{},
		Elapsed:      window,
		latencyStats: h.h.stats(window),
	}
}
