package constitution

import "time"

// Source size bounds, checked before anything is compiled.
const (
	MaxConstitutionBytes = 1 << 20 // the default constitution is ~15 KiB
	MaxBallotBytes       = 4 << 10 // a ballot is normally one line, as in CCF
)

// Limits bound one call into JavaScript. Zero fields take the defaults.
//
// goja has no allocation limit. In a worker process (Worker) the heap is
// capped at MaxMemoryBytes. Either way memory is also bounded by the source
// and argument sizes here, by MaxWriteBytes for what an apply may leave in
// the kv, and by Timeout for anything a script grows step by step. See the
// package documentation for what in-process calls do not cover.
type Limits struct {
	// Timeout is the wall-clock budget of one call (default 1s). The
	// script is interrupted at Timeout; a call stuck in a long built-in
	// (which goja cannot interrupt) is abandoned at HardTimeout.
	Timeout time.Duration
	// MaxArgBytes bounds the proposal JSON and the other string arguments
	// together (default 1 MiB).
	MaxArgBytes int
	// MaxWriteBytes bounds the keys and values one call writes to the kv
	// (default 16 MiB).
	MaxWriteBytes int
	// MaxStringBytes bounds strings made by String.prototype.repeat,
	// padStart and padEnd, and the length of an ArrayBuffer: the built-ins
	// that allocate in one uninterruptible step (default 16 MiB).
	MaxStringBytes int
	// MaxCallDepth bounds JS recursion (default 1024), so runaway recursion
	// fails fast with a stack overflow rather than spinning to the timeout.
	MaxCallDepth int
	// MaxVotes bounds the votes passed to resolve (default 10000).
	MaxVotes int
	// Worker, if set, is the executable each call runs in, as a process
	// of its own (see ServeWorker); empty runs calls in this process. Only
	// a worker bounds memory (MaxMemoryBytes) and stops a script stuck in
	// a built-in at HardTimeout; in this process such a script is
	// abandoned but runs on.
	Worker string `json:"-"`
	// MaxMemoryBytes bounds a worker's heap (default 256 MiB).
	MaxMemoryBytes int64
}

// DefaultLimits returns the limits used when none are given.
func DefaultLimits() Limits {
	return Limits{
		Timeout:        time.Second,
		MaxArgBytes:    1 << 20,
		MaxWriteBytes:  16 << 20,
		MaxStringBytes: 16 << 20,
		MaxCallDepth:   1024,
		MaxVotes:       10000,
		MaxMemoryBytes: 256 << 20,
	}
}

// withDefaults fills zero (or negative) fields from DefaultLimits.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.Timeout <= 0 {
		l.Timeout = d.Timeout
	}
	if l.MaxArgBytes <= 0 {
		l.MaxArgBytes = d.MaxArgBytes
	}
	if l.MaxWriteBytes <= 0 {
		l.MaxWriteBytes = d.MaxWriteBytes
	}
	if l.MaxStringBytes <= 0 {
		l.MaxStringBytes = d.MaxStringBytes
	}
	if l.MaxCallDepth <= 0 {
		l.MaxCallDepth = d.MaxCallDepth
	}
	if l.MaxVotes <= 0 {
		l.MaxVotes = d.MaxVotes
	}
	if l.MaxMemoryBytes <= 0 {
		l.MaxMemoryBytes = d.MaxMemoryBytes
	}
	return l
}

// HardTimeout is when a call that ignored its interrupt is abandoned: goja
// checks for interrupts only between JS instructions, so a single built-in
// such as new Array(1e9).join() runs on past Timeout. The caller gets
// ErrTimeout at HardTimeout; the abandoned goroutine finishes in the
// background with its kv access already cut off.
func (l Limits) HardTimeout() time.Duration {
	l = l.withDefaults()
	grace := l.Timeout / 2
	if grace < 50*time.Millisecond {
		grace = 50 * time.Millisecond
	}
	return l.Timeout + grace
}
