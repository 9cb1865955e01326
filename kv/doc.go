// Package kv owns coco's in-memory key-value state: named maps of string keys
// to byte values, the transactions that read and write them, optimistic
// concurrency control, and the deterministic serialisation of write sets.
//
// A map whose name starts with "public:" is public (written to the ledger in
// clear); every other map is private (the ledger seals it). kv only
// classifies maps; sealing, the ledger and consensus live elsewhere.
//
// # State and versions
//
// Every state of the store is an immutable snapshot: a persistent sorted map
// of map names (github.com/benbjohnson/immutable) to copy-on-write B-trees of
// keys (github.com/tidwall/btree; Apply writes to a copy, never to a
// published tree), so a transaction holds a pointer to its snapshot and
// never takes a lock: readers never block the committer and the committer
// never blocks readers. Each key remembers the
// version that last wrote it and each map the version that last wrote any of
// its keys; this is what Store.Validate compares.
//
// The store tracks two states: the head (every applied write set, including
// those not yet committed by consensus) and the committed state. Between them
// it keeps the chain of pending states so it can serve committed reads and
// roll the head back when a primary loses leadership.
//
// # Concurrency
//
// Store.Begin, Store.BeginReadOnly, Store.Version, Store.CommittedVersion and
// all Tx reads are safe from any number of goroutines. The commit path
// (Validate, Apply, MarkCommitted, Rollback) is meant for one goroutine, the
// consensus loop; it is serialised internally anyway, so a mistake there is a
// logic error rather than a data race. A Tx belongs to one goroutine.
package kv
