package constitution

import (
	"context"
	"fmt"

	"github.com/dop251/goja"
)

// Proposal states resolve may return. Withdrawn, Failed and Dropped are set
// by the service, never by a constitution.
const (
	StateOpen     = "Open"
	StateAccepted = "Accepted"
	StateRejected = "Rejected"
)

// constitutionExports are the functions every constitution must export.
var constitutionExports = []string{"validate", "resolve", "apply"}

// Vote is one member's ballot, already evaluated: what resolve sees.
type Vote struct {
	MemberID string `json:"member_id"`
	Vote     bool   `json:"vote"`
}

// Constitution is a compiled constitution. It is immutable and safe for
// concurrent use; every call runs in a fresh JS runtime.
type Constitution struct {
	source string
	prog   *program
	limits Limits
}

// Parse compiles source and checks that it exports validate, resolve and
// apply as functions (running its top level once, under the default
// limits). Errors carry the line of the problem.
func Parse(source string) (*Constitution, error) {
	p, err := compileModule("constitution.js", source, MaxConstitutionBytes, constitutionExports...)
	if err != nil {
		return nil, err
	}
	c := &Constitution{source: source, prog: p, limits: DefaultLimits()}
	_, err = runCall(context.Background(), c.loaded, c.limits, newKVView(nil, false, 0), "load",
		func(vm *goja.Runtime, p *program) (struct{}, error) {
			for _, name := range constitutionExports {
				if _, err := exportedFunc(vm, p, name); err != nil {
					return struct{}{}, err
				}
			}
			return struct{}{}, nil
		})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Source returns the source c was parsed from.
func (c *Constitution) Source() string { return c.source }

// WithLimits returns a copy of c that runs under l (zero fields: defaults).
func (c *Constitution) WithLimits(l Limits) *Constitution {
	cp := *c
	cp.limits = l.withDefaults()
	return &cp
}

// loaded returns c's compiled program, for runCall.
func (c *Constitution) loaded() (*program, error) { return c.prog, nil }

// Limits returns the limits c runs under.
func (c *Constitution) Limits() Limits { return c.limits }

func (c *Constitution) checkArgs(args ...string) error {
	n := 0
	for _, a := range args {
		n += len(a)
	}
	if n > c.limits.MaxArgBytes {
		return fmt.Errorf("%w: arguments are %d bytes, the limit is %d", ErrTooLarge, n, c.limits.MaxArgBytes)
	}
	return nil
}

// Validate runs validate(proposalJSON). As in CCF it returns
// {valid, description}; a proposal the constitution rejects is valid=false
// with a nil error, while err reports a constitution that threw, timed out
// or returned something else. Validate has no kv access.
func (c *Constitution) Validate(ctx context.Context, proposalJSON string) (valid bool, description string, err error) {
	if err := c.checkArgs(proposalJSON); err != nil {
		return false, "", err
	}
	if c.limits.Worker != "" {
		m, err := runInWorker(ctx, c.limits, workerCall{Op: "validate", Source: []byte(c.source), Limits: c.limits, Proposal: []byte(proposalJSON)}, newKVView(nil, false, 0))
		return m.Valid, m.Desc, err
	}
	type result struct {
		valid bool
		desc  string
	}
	r, err := runCall(ctx, c.loaded, c.limits, newKVView(nil, false, 0), "validate",
		func(vm *goja.Runtime, _ *program) (result, error) {
			f, err := exportedFunc(vm, c.prog, "validate")
			if err != nil {
				return result{}, err
			}
			v, err := f(goja.Undefined(), vm.ToValue(proposalJSON))
			if err != nil {
				return result{}, err
			}
			obj, ok := v.(*goja.Object)
			if !ok {
				return result{}, fmt.Errorf("%w: validate returned %s, want {valid, description}", ErrBadResult, describe(v))
			}
			// Get returns nil for a missing property (validate returned {}).
			vv := obj.Get("valid")
			valid, ok := false, false
			if vv != nil {
				valid, ok = vv.Export().(bool)
			}
			if !ok {
				return result{}, fmt.Errorf("%w: validate returned valid = %s, want a boolean", ErrBadResult, describe(vv))
			}
			var desc string
			if d := obj.Get("description"); d != nil && !goja.IsUndefined(d) && !goja.IsNull(d) {
				desc = d.String()
			}
			return result{valid, desc}, nil
		})
	return r.valid, r.desc, err
}

// Resolve runs resolve(proposalJSON, proposerID, votes) and returns "Open",
// "Accepted" or "Rejected"; anything else is ErrBadResult. tx is read-only
// here (CCF's resolve reads the member list; the default one does): a write
// throws in the script.
func (c *Constitution) Resolve(ctx context.Context, proposalJSON, proposerID string, votes []Vote, tx KV) (string, error) {
	if len(votes) > c.limits.MaxVotes {
		return "", fmt.Errorf("%w: %d votes, the limit is %d", ErrTooLarge, len(votes), c.limits.MaxVotes)
	}
	args := []string{proposalJSON, proposerID}
	for _, v := range votes {
		args = append(args, v.MemberID)
	}
	if err := c.checkArgs(args...); err != nil {
		return "", err
	}
	if c.limits.Worker != "" {
		m, err := runInWorker(ctx, c.limits, workerCall{Op: "resolve", Source: []byte(c.source), Limits: c.limits,
			Proposal: []byte(proposalJSON), ProposerID: []byte(proposerID), Votes: votes}, newKVView(tx, false, 0))
		return m.State, err
	}
	return runCall(ctx, c.loaded, c.limits, newKVView(tx, false, 0), "resolve",
		func(vm *goja.Runtime, _ *program) (string, error) {
			f, err := exportedFunc(vm, c.prog, "resolve")
			if err != nil {
				return "", err
			}
			arr := make([]any, len(votes))
			for i, v := range votes {
				o := vm.NewObject()
				if err := o.Set("member_id", v.MemberID); err != nil {
					return "", err
				}
				if err := o.Set("vote", v.Vote); err != nil {
					return "", err
				}
				arr[i] = o
			}
			res, err := f(goja.Undefined(), vm.ToValue(proposalJSON), vm.ToValue(proposerID), vm.NewArray(arr...))
			if err != nil {
				return "", err
			}
			s, ok := res.Export().(string)
			switch {
			case !ok:
				return "", fmt.Errorf("%w: resolve returned %s, want a state string", ErrBadResult, describe(res))
			case s != StateOpen && s != StateAccepted && s != StateRejected:
				return "", fmt.Errorf("%w: resolve returned %q, want %q, %q or %q", ErrBadResult, s, StateOpen, StateAccepted, StateRejected)
			}
			return s, nil
		})
}

// Apply runs apply(proposalJSON, proposalID) against tx. Its writes reach
// tx only if apply returns normally: a throw, a timeout or a write beyond
// Limits.MaxWriteBytes leaves tx untouched, so the caller can record the
// proposal as Failed in the same transaction.
func (c *Constitution) Apply(ctx context.Context, proposalJSON, proposalID string, tx KV) error {
	if err := c.checkArgs(proposalJSON, proposalID); err != nil {
		return err
	}
	view := newKVView(tx, true, c.limits.MaxWriteBytes)
	if c.limits.Worker != "" {
		if _, err := runInWorker(ctx, c.limits, workerCall{Op: "apply", Source: []byte(c.source), Limits: c.limits,
			Proposal: []byte(proposalJSON), ProposalID: []byte(proposalID)}, view); err != nil {
			return err
		}
		return view.flush()
	}
	_, err := runCall(ctx, c.loaded, c.limits, view, "apply",
		func(vm *goja.Runtime, _ *program) (struct{}, error) {
			f, err := exportedFunc(vm, c.prog, "apply")
			if err != nil {
				return struct{}{}, err
			}
			_, err = f(goja.Undefined(), vm.ToValue(proposalJSON), vm.ToValue(proposalID))
			return struct{}{}, err
		})
	if err != nil {
		// Past MaxWriteBytes the script saw a plain JS Error; the caller
		// still learns the cause.
		if lerr := view.writeLimitErr(); lerr != nil {
			return fmt.Errorf("%w; then: %w", lerr, err)
		}
		return err
	}
	// The script is done (its goroutine has returned), so tx is ours again.
	return view.flush()
}

// CheckBallot compiles a ballot without running it, so a malformed ballot
// can be refused when it is submitted rather than when it is counted.
func CheckBallot(source string) error {
	_, err := compileModule("ballot.js", source, MaxBallotBytes, "vote")
	return err
}

// EvalBallot runs a ballot's vote(proposalJSON, proposerID) in a fresh
// runtime and returns its boolean. A ballot has no kv access.
func EvalBallot(ctx context.Context, ballotSource, proposalJSON, proposerID string, limits Limits) (bool, error) {
	limits = limits.withDefaults()
	if n := len(proposalJSON) + len(proposerID); n > limits.MaxArgBytes {
		return false, fmt.Errorf("%w: arguments are %d bytes, the limit is %d", ErrTooLarge, n, limits.MaxArgBytes)
	}
	if len(ballotSource) > MaxBallotBytes {
		return false, fmt.Errorf("%w: ballot.js is %d bytes, the limit is %d", ErrTooLarge, len(ballotSource), MaxBallotBytes)
	}
	if limits.Worker != "" {
		m, err := runInWorker(ctx, limits, workerCall{Op: "ballot", Source: []byte(ballotSource), Limits: limits,
			Proposal: []byte(proposalJSON), ProposerID: []byte(proposerID)}, newKVView(nil, false, 0))
		return m.Vote, err
	}
	// Compiled on runCall's goroutine, so the time budget covers it.
	load := func() (*program, error) { return compileModule("ballot.js", ballotSource, MaxBallotBytes, "vote") }
	return runCall(ctx, load, limits, newKVView(nil, false, 0), "ballot",
		func(vm *goja.Runtime, p *program) (bool, error) {
			f, err := exportedFunc(vm, p, "vote")
			if err != nil {
				return false, err
			}
			res, err := f(goja.Undefined(), vm.ToValue(proposalJSON), vm.ToValue(proposerID))
			if err != nil {
				return false, err
			}
			b, ok := res.Export().(bool)
			if !ok {
				return false, fmt.Errorf("%w: vote returned %s, want a boolean", ErrBadResult, describe(res))
			}
			return b, nil
		})
}

// describe names a JS value for an error message without echoing large or
// sensitive content.
func describe(v goja.Value) string {
	switch {
	case v == nil || goja.IsUndefined(v):
		return "undefined"
	case goja.IsNull(v):
		return "null"
	}
	if _, ok := v.(*goja.Object); ok {
		return "an object"
	}
	return fmt.Sprintf("a %s", v.ExportType())
}
