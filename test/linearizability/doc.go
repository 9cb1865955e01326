// Package linearizability checks that coco's logging app behaves as a set of
// linearizable registers while nodes are killed and restarted.
//
// It owns the pieces of that check, each replaceable on its own so the same
// check runs against one node and against a replicated service:
//
//   - [Model]: a porcupine model of one register per log id, partitioned by
//     id so checking stays linear in the history length.
//   - [Recorder]: a concurrent history of operations with monotonic
//     timestamps, including operations whose outcome is unknown.
//   - [Client], [HTTPClient] and [Spread]: how one history client reaches
//     one node, how an HTTP outcome maps to a register outcome, and how a
//     history client spreads its operations over several nodes.
//   - [FaultInjector] and [KillRestart]: what disturbs the service while the
//     clients run (one node at a time, chosen round-robin or by a Pick
//     function, down for a fixed or random time).
//   - [Run]: the workload that ties them together, and [Check], which runs
//     porcupine and, on a violation, writes its HTML visualization and a
//     text [Excerpt] of the operations around the first that cannot be
//     linearized.
//
// The tests start real coco processes (the binary built once by TestMain),
// like test/e2e:
//
//   - TestLinearizableSingleNode: `coco node start`, killed with SIGKILL and
//     restarted twice.
//   - TestLinearizableThreeNodes: `coco sandbox` (three node processes);
//     each history client sends every operation to a node picked at random
//     (writes to a backup are forwarded to the primary; reads are
//     linearizable, the default, on whichever node they reach). Three
//     times, one node is killed with SIGKILL and restarted from its args in
//     sandbox.json after 0.2-1.5 s: the primary (found with GET
//     /node/network), then a backup, then the primary again. A round ends
//     when the node serves again, so at most one node is ever down.
//
// Durations:
//
//	go test ./test/linearizability        # ~10 s single node + ~15 s three nodes
//	go test ./test/linearizability -run Long -v -long   # 60 s / 10 crashes, 90 s / 18 crashes
//
// A violation fails with the path of porcupine's HTML visualization (under
// $TMPDIR/coco-linearizability, or -viz-dir DIR) and the excerpt. -seed N
// replays the clients' choice of operations and nodes and the choice of
// victims and downtimes; the interleaving is never replayed, so a
// violation is reported with its whole history rather than a seed to rerun.
// -read-consistency local sends reads as local (possibly stale on a
// backup): the three-node check then fails, which shows it catches stale
// reads; the suite never sets it.
package linearizability
