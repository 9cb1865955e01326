// Package app is the boundary between coco's framework and the ledger
// protocols built on it (the logging app, the Ethereum app, ...). An
// Application names its endpoints; each endpoint's handler runs inside a
// kv transaction that the framework executes, retries on conflict, orders
// and commits. Handlers never see consensus.
package app
