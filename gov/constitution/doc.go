// Package constitution runs a service's constitution and members' ballots:
// JavaScript, as in CCF, executed with goja.
//
// A constitution exports validate(input), resolve(proposal, proposerId,
// votes) and apply(proposal, proposalId); a ballot exports vote(proposal,
// proposerId). The proposal is passed as its JSON string, votes as
// [{member_id, vote}] with vote the boolean result of each member's ballot.
// Default returns the default constitution (js/*.js): the actions of
// DESIGN.md with CCF's argument names, majority of Active members.
//
// # Modules
//
// goja runs scripts, not ES modules (the version in go.mod has no module
// loader). The only module syntax accepted is `export` in front of a
// top-level function, class, const, let or var declaration: the keyword is
// blanked (so line numbers stay right) and goja's AST of the result is
// checked to have a top-level declaration where each keyword stood.
// import, export default and export {...} are refused with a clear error.
// Code is compiled as strict, as module code is.
//
// # Isolation
//
// Every call (Validate, Resolve, Apply, EvalBallot) runs in a fresh
// goja.Runtime that first runs the whole module, so nothing (globals,
// patched prototypes, closures) survives from one call or proposal to the
// next. A Constitution holds only immutable compiled code and is safe for
// concurrent use.
//
// # Host API
//
// The script sees a global ccf object modelled on CCF's:
//
//   - ccf.kv["map"].get(k) / has(k) / set(k, v) / delete(k) /
//     forEach((value, key) => ...): keys and values are strings (CCF uses
//     ArrayBuffers; set, delete and bufToStr also accept ArrayBuffers, so
//     code written with ccf.strToBuf works). Only public maps are visible;
//     only governance maps (GovMapPrefix) are writable, and only in apply.
//     resolve reads; validate and ballots have no kv.
//   - ccf.strToBuf, ccf.bufToStr, ccf.jsonCompatibleToBuf,
//     ccf.bufToJsonCompatible.
//   - ccf.pemToId(pem): the member or user id of a certificate (hex SHA-256
//     of its DER), computed in Go since JS cannot hash.
//   - ccf.crypto.isValidX509CertBundle(pem), ccf.crypto.isValidPublicKeyPem(pem).
//   - ccf.checkConstitution(source): "" if source would Parse (compile and
//     exports only), else the error; the default validate uses it so a
//     broken constitution cannot be voted in.
//   - console.log and friends, which discard their output.
//
// Apply buffers its writes and hands them to the caller's KV only when the
// script returns normally, so a failed apply leaves the transaction clean.
//
// # Limits and what they do not cover
//
// Each call is interrupted after Limits.Timeout (1s by default: generous,
// because a loaded node must not fail a legitimate proposal, and governance
// is not latency-bound):
// while(true){} in a ballot or constitution returns ErrTimeout and the
// caller carries on. Recursion is bounded by Limits.MaxCallDepth.
//
// Neither a stack overflow of the Go runtime nor an allocation it cannot
// satisfy can be recovered: both are fatal errors that kill the process,
// whatever goroutine they happen on. So the inputs that would cause them
// are refused before goja acts on them:
//
//   - Parser recursion. goja's parser and compiler recurse once per nesting
//     level without a limit of their own. Every source is checked first
//     (Parse, CheckBallot, EvalBallot, ccf.checkConstitution): bracket and
//     template nesting deeper than MaxNestingDepth, or more than
//     MaxFunctions functions and arrows (compile time grows quadratically
//     with nested functions), is ErrSyntax. Scripts cannot compile code at
//     run time: eval and the Function constructors (plain, async,
//     generator) throw. JSON.parse refuses input nested more than 1024
//     levels deep. Ballots are compiled on the call's goroutine, inside
//     its Timeout.
//   - Single-step allocations. goja has no memory limit. ArrayBuffer
//     lengths (however the constructor is reached, ccf.strToBuf("").constructor
//     included) and the strings made by repeat, padStart and padEnd are
//     capped at MaxStringBytes; typed arrays, DataView and
//     SharedArrayBuffer are removed.
//
// Also bounded: source sizes (MaxConstitutionBytes, and MaxBallotBytes:
// 4 KiB, as ballots are one-liners), the proposal and other arguments
// (MaxArgBytes, MaxVotes), and the bytes one apply may write to the kv
// (MaxWriteBytes, enforced even if the script catches the error).
// Everything a script grows step by step in JS (s += s, array.push in a
// loop) is cut off by the timeout: measured on a development machine, such
// loops reach 30 to 85 MB of heap (50 to 130 MB allocated) in 100ms, all
// garbage once the call returns; the figure grows in proportion to Timeout
// (so roughly tenfold at the 1s default).
//
// # Worker processes
//
// With Limits.Worker set, every call runs in a fresh process of its own: a
// node started by the coco command sets it to the coco binary, which is
// started again with WorkerEnv (COCO_CONSTITUTION_WORKER=1) in its
// environment and serves the call because cmd/coco's main calls
// ServeWorker first. The worker runs the call with the in-process code
// described here. Its kv reads and writes go back to the caller over the
// pipes, where the caller's view enforces the same map policy and write
// limit, and buffers apply's writes until the worker reports success.
//
// In a worker the gap described below is closed. The worker watches its heap
// and exits with code 3, reported as ErrMemory ("memory limit exceeded"),
// once the heap holds more than Limits.MaxMemoryBytes (256 MiB by default;
// garbage not yet collected counts). A script stuck in a built-in gets
// ErrTimeout at Limits.HardTimeout, as in-process, and the worker then
// exits, which stops the built-in. The caller kills a worker still running
// at HardTimeout plus 2 s (an allowance for starting the process), or when
// the caller's context ends. A worker that cannot start, or dies any other
// way (a fatal error of the Go runtime included), is ErrInternal: the
// worker dies, not the caller. The cost is a process start per call, about
// 0.1 s on a 2-core machine.
//
// The gap, in-process (Limits.Worker empty, as in the Go tests of other
// packages): goja checks for interrupts only between JS instructions, so one
// built-in call on a huge sparse array (new Array(1e9).join(), .fill(0))
// runs for seconds to minutes and may allocate gigabytes before the
// interrupt is seen. Each call therefore runs on its own goroutine: the
// caller gets ErrTimeout at Limits.HardTimeout and goes on, the kv view is
// cut off first so the abandoned script can never touch the caller's
// transaction again, and the goroutine exits when the built-in returns. It
// still burns a CPU and its memory until then, and nothing bounds how many
// such goroutines a stream of hostile calls could leave behind; MaxMemoryBytes
// is not enforced. The fatal-error bounds above matter most in-process: they
// cover the paths known to reach a fatal error; they are not a proof that no
// other built-in can (for example, goja serialises a structure a script built
// millions of levels deep recursively), and in-process such an error kills
// the caller's whole process. In-process, the limits protect the caller
// from mistakes, not from a hostile member.
package constitution
