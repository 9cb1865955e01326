// Package merkle owns coco's Merkle tree over transaction leaves and its
// inclusion proofs.
//
// The tree has the shape of RFC 6962 (a tree of n leaves splits at the
// largest power of two k < n) but, as in CCF's merklecpp, without the
// leaf/node domain-separation prefixes: a leaf is used as is, an interior
// node is SHA-256(left || right), and a one-leaf tree's root is the leaf
// itself. Keeping CCF's shape means CCF-style receipt verifiers work on coco
// receipts unchanged.
//
// Leaf index i (0-based) is the transaction with seqno i+1. The tree can
// produce roots and proofs for any past size, because a signature transaction
// signs the root of the tree as it was when the signature was emitted, and it
// can be truncated because raft may roll back an uncommitted log suffix.
package merkle
