// Package node runs one coco node: it owns the node's data directory and
// identity, starts the consensus loop over the ledger and kv store, and
// serves the HTTP API (TLS 1.3, HTTP/1.1 and HTTP/2): authentication, JSON
// errors, the node and receipt endpoints, and the applications' endpoints.
package node
