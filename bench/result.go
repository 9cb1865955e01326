package bench

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Result summarises one RunLog run. Only the measured window counts: requests
// started during the warmup or finishing after the window are left out.
type Result struct {
	// Target names what was measured (the addresses, joined by commas).
	Target  string
	Clients int
	// Writes is the number of 200 responses, i.e. committed writes.
	Writes uint64
	// Errors counts failed requests by HTTP status code ("503") or
	// "transport" for requests that got no response.
	Errors map[string]int
	// LastTransportError is the last transport error seen, if any, since a
	// count alone does not say why the service could not be reached.
	LastTransportError string
	// Connections is the number of TCP connections dialed during the whole
	// run, warmup included: Clients x targets when keep-alive works.
	Connections int64
	Elapsed     time.Duration
	// Throughput is committed writes per second; P50..Max their latency.
	latencyStats
}

// ErrorCount is the total number of failed requests.
func (r *Result) ErrorCount() int { return sumCounts(r.Errors) }

// sumCounts is the total of counts by cause.
func sumCounts(m map[string]int) int {
	n := 0
	for _, c := range m {
		n += c
	}
	return n
}

// errorSummary renders Errors deterministically, e.g. "409:2 503:10", or "0".
func (r *Result) errorSummary() string { return summariseErrors(r.Errors) }

// summariseErrors renders error counts by cause deterministically, e.g.
// "409:2 503:10", or "0" when there are none.
func summariseErrors(errs map[string]int) string {
	if len(errs) == 0 {
		return "0"
	}
	parts := make([]string, 0, len(errs))
	for _, k := range slices.Sorted(maps.Keys(errs)) {
		parts = append(parts, fmt.Sprintf("%s:%d", k, errs[k]))
	}
	return strings.Join(parts, " ")
}

func fmtLatency(d time.Duration) string {
	return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
}

// String is a one-line human summary.
func (r *Result) String() string {
	return fmt.Sprintf("%s clients=%d writes=%d in %s = %.1f writes/s p50=%s p90=%s p99=%s max=%s errors=%s",
		r.Target, r.Clients, r.Writes, r.Elapsed, r.Throughput,
		fmtLatency(r.P50), fmtLatency(r.P90), fmtLatency(r.P99), fmtLatency(r.Max), r.errorSummary())
}

// MarkdownHeader is the table header matching Result.Markdown rows.
const MarkdownHeader = "| target | clients | committed writes/s | p50 | p99 | errors |\n|---|---:|---:|---:|---:|---|"

// Markdown renders r as one row of the MarkdownHeader table.
func (r *Result) Markdown() string {
	return fmt.Sprintf("| %s | %d | %.1f | %s | %s | %s |",
		r.Target, r.Clients, r.Throughput, fmtLatency(r.P50), fmtLatency(r.P99), r.errorSummary())
}
