// Package linearizability checks that coco's logging app behaves as a set of
// linearizable registers while nodes are killed and restarted.
//
// It owns the pieces of that check, each replaceable on its own so the same
// check can run against one node today and a replicated service later:
//
//   - [Model]: a porcupine model of one register per log id, partitioned by
//     id so checking stays linear in the history length.
//   - [Recorder]: a concurrent history of operations with monotonic
//     timestamps, including operations whose outcome is unknown.
//   - [Client] and [HTTPClient]: how one history client reaches one node, and
//     how an HTTP outcome maps to a register outcome.
//   - [FaultInjector] and [KillRestart]: what disturbs the service while the
//     clients run.
//   - [Run]: the workload that ties them together, and [Check], which runs
//     porcupine and writes its HTML visualization on a violation.
//
// The tests start real coco processes (the binary built once by TestMain),
// like test/e2e:
//
//	go test ./test/linearizability                # ~10 s: 6 s of load, 2 crashes
//	go test ./test/linearizability -run Long -long -v   # 60 s, 10 crashes
//
// A violation fails with the path of porcupine's HTML visualization (under
// $TMPDIR/coco-linearizability, or -viz-dir DIR). -seed N replays the
// clients' choice of operations; the interleaving is never replayed, so a
// violation is reported with its whole history rather than a seed to rerun.
package linearizability
