// Package consensus owns coco's replication: one goroutine drives an
// etcd raft RawNode, orders transactions, assigns their ids, persists raft
// entries as ledger entries, maintains the Merkle tree over them, emits
// signature transactions and applies committed write sets to the kv store.
//
// See docs/design.md ("Transaction life cycle") for the invariants: seqno is
// the raft index, view is the raft term, and every raft entry is a ledger
// entry and a Merkle leaf.
//
// Package consensustest runs multi-node services in one process over an
// in-memory network with injected faults, with raft ticks driven by the
// test (Config.Ticks) rather than by wall time.
package consensus
