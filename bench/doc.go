// Package bench owns coco's workloads and the baselines they are compared
// with.
//
// RunLog drives the logging app (POST /app/log/{private,public}) from a fixed
// number of closed-loop clients, each on its own reused TCP+TLS connection,
// and counts only committed writes (200 responses). StartCeilingServer starts
// an in-memory HTTPS server answering the same request with no consensus,
// ledger or fsync, so that running the identical workload against both shows
// how much of the HTTP+TLS ceiling of the machine coco achieves.
//
// LoadSandbox reads the sandbox.json written by `coco sandbox`, which is how
// the benchmarks find nodes, the service certificate and user identities.
package bench
