// Package ledger owns coco's durable, verifiable record: the chunk files in a
// node's DATA/ledger directory, the binary format of each entry in them, the
// digests that link every entry into the Merkle tree, and signature
// transactions.
//
// A Ledger is the write path used by consensus (append, sync, truncate a raft
// suffix, mark chunks committed) with O(1) random reads for raft and
// receipts. Verify and ReadDir are the read-only audit path: they never
// modify a file, so they are safe to point at a live node's directory or at
// a copy handed to an auditor.
//
// The record format, the file names and the digests are part of coco's
// on-disk contract (docs/design.md, "ledger"); changing them needs a new
// format byte.
package ledger
