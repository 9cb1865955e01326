package constitution

import "errors"

var (
	// ErrTimeout: a call ran past Limits.Timeout (an infinite loop, or
	// work too big for a governance step). The call's writes are dropped.
	ErrTimeout = errors.New("constitution: script timed out")
	// ErrSyntax: the source does not compile or uses module syntax other
	// than `export` in front of top-level declarations.
	ErrSyntax = errors.New("constitution: syntax error")
	// ErrMissingExport: a required function is not exported.
	ErrMissingExport = errors.New("constitution: missing export")
	// ErrScript: the script threw (or overflowed its stack).
	ErrScript = errors.New("constitution: script error")
	// ErrBadResult: a function returned something its contract forbids.
	ErrBadResult = errors.New("constitution: bad result")
	// ErrTooLarge: a source, argument or apply's kv writes exceed Limits.
	ErrTooLarge = errors.New("constitution: too large")
	// ErrInternal: the JS engine panicked, or a worker process failed;
	// the call is abandoned.
	ErrInternal = errors.New("constitution: internal error")
	// ErrMemory: a call in a worker process (Limits.Worker) grew its heap
	// past Limits.MaxMemoryBytes and was stopped.
	ErrMemory = errors.New("constitution: memory limit exceeded")
)
