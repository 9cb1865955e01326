// Package receipt owns coco's transaction receipts: the JSON receipt (node
// signature over a Merkle root, CCF's classic form) and the COSE receipt
// (RFC 9942 "COSE Receipts", CCF profile, signed by the service identity),
// how they are issued (NewJSON, SignRoot, AttachProof) and how they are
// verified offline with nothing but the service certificate.
//
// It is meant to be imported by clients, so it depends only on the standard
// library, merkle, go-cose and cbor: never on the node, kv or ledger.
//
// Both forms prove the same statement: the leaf
//
//	SHA-256(write_set_digest || SHA-256(commit_evidence) || claims_digest)
//
// is in a Merkle tree whose root was signed by the service (directly, or by a
// node the service endorsed). The transaction id comes from the commit
// evidence, which is only revealed once the transaction is committed.
package receipt
