package merkle

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math/bits"
)

// Hash is a SHA-256 digest: a leaf, an interior node or a root.
type Hash [32]byte

// ErrOutOfRange is returned (wrapped) when a leaf index or tree size is not
// within the tree.
var ErrOutOfRange = errors.New("merkle: out of range")

// ProofStep is one step of an inclusion proof. Left says on which side the
// sibling Hash sits: Left means cur = SHA-256(Hash || cur), otherwise
// cur = SHA-256(cur || Hash).
type ProofStep struct {
	Left bool
	Hash Hash
}

// HashPair returns SHA-256(left || right), the hash of an interior node.
func HashPair(left, right Hash) Hash {
	var buf [64]byte
	copy(buf[:32], left[:])
	copy(buf[32:], right[:])
	return sha256.Sum256(buf[:])
}

// RootFromProof walks proof (ordered leaf -> root) from leaf and returns the
// root it implies. The caller compares it with a trusted (signed) root.
func RootFromProof(leaf Hash, proof []ProofStep) Hash {
	cur := leaf
	for _, s := range proof {
		if s.Left {
			cur = HashPair(s.Hash, cur)
		} else {
			cur = HashPair(cur, s.Hash)
		}
	}
	return cur
}

// Tree is an append-only (but truncatable) Merkle tree.
//
// It caches the hash of every complete, aligned power-of-two subtree:
// levels[h][j] is the root of leaves [j<<h, (j+1)<<h). The cache makes
// Append amortised O(1) and Root, RootAt and Proof O(log n) or O(log² n) in
// hashing, which matters because the primary appends tens of thousands of
// leaves a second while signatures and receipts ask for recent roots. The
// cache costs about one extra hash per leaf (n/2 + n/4 + ...).
//
// A Tree is not safe for concurrent use: the consensus loop owns it, and
// anyone else must go through that owner or hold their own lock.
type Tree struct {
	levels [][]Hash // levels[0] are the leaves
}

// New returns an empty tree.
func New() *Tree {
	return &Tree{levels: [][]Hash{nil}}
}

// Size returns the number of leaves.
func (t *Tree) Size() uint64 { return uint64(len(t.levels[0])) }

// Append adds leaf as the last leaf of the tree.
func (t *Tree) Append(leaf Hash) {
	t.levels[0] = append(t.levels[0], leaf)
	// Each time a level gets an even number of nodes, the last two form a
	// new complete subtree one level up.
	for h := 0; len(t.levels[h])%2 == 0; h++ {
		n := len(t.levels[h])
		parent := HashPair(t.levels[h][n-2], t.levels[h][n-1])
		if h+1 == len(t.levels) {
			t.levels = append(t.levels, nil)
		}
		t.levels[h+1] = append(t.levels[h+1], parent)
	}
}

// Leaf returns leaf i (0-based).
func (t *Tree) Leaf(i uint64) (Hash, error) {
	if i >= t.Size() {
		return Hash{}, fmt.Errorf("%w: leaf %d of a tree of %d leaves", ErrOutOfRange, i, t.Size())
	}
	return t.levels[0][i], nil
}

// Root returns the root of the whole tree, or the zero Hash if it is empty.
func (t *Tree) Root() Hash {
	if t.Size() == 0 {
		return Hash{}
	}
	return t.rangeHash(0, t.Size())
}

// RootAt returns the root of the tree made of the first size leaves,
// 1 <= size <= Size().
func (t *Tree) RootAt(size uint64) (Hash, error) {
	if size == 0 || size > t.Size() {
		return Hash{}, fmt.Errorf("%w: root at size %d of a tree of %d leaves", ErrOutOfRange, size, t.Size())
	}
	return t.rangeHash(0, size), nil
}

// Proof returns the inclusion proof of leaf index in the tree made of the
// first size leaves, ordered leaf -> root (RFC 6962 PATH without prefixes).
// A one-leaf tree has an empty proof.
func (t *Tree) Proof(index, size uint64) ([]ProofStep, error) {
	if size == 0 || size > t.Size() {
		return nil, fmt.Errorf("%w: proof in a tree of size %d of a tree of %d leaves", ErrOutOfRange, size, t.Size())
	}
	if index >= size {
		return nil, fmt.Errorf("%w: proof of leaf %d in a tree of size %d", ErrOutOfRange, index, size)
	}
	// Descend from the root, collecting siblings root -> leaf, then reverse.
	steps := make([]ProofStep, 0, bits.Len64(size))
	start, end := uint64(0), size
	for end-start > 1 {
		k := splitPoint(end - start)
		mid := start + k
		if index < mid {
			steps = append(steps, ProofStep{Left: false, Hash: t.rangeHash(mid, end)})
			end = mid
		} else {
			steps = append(steps, ProofStep{Left: true, Hash: t.rangeHash(start, mid)})
			start = mid
		}
	}
	for i, j := 0, len(steps)-1; i < j; i, j = i+1, j-1 {
		steps[i], steps[j] = steps[j], steps[i]
	}
	return steps, nil
}

// Truncate keeps only the first size leaves (size <= Size()), dropping the
// cached subtrees that covered any removed leaf. It is used when raft rolls
// back an uncommitted suffix of the log.
func (t *Tree) Truncate(size uint64) error {
	if size > t.Size() {
		return fmt.Errorf("%w: truncate to %d leaves a tree of %d leaves", ErrOutOfRange, size, t.Size())
	}
	for h := range t.levels {
		// levels[h][j] covers leaves up to (j+1)<<h, so it survives iff
		// j < size>>h. Zero the dropped tail so stale hashes are not
		// mistaken for live ones by a future bug, and shrink the top.
		keep := size >> uint(h)
		clear(t.levels[h][keep:])
		t.levels[h] = t.levels[h][:keep]
	}
	top := len(t.levels)
	for top > 1 && len(t.levels[top-1]) == 0 {
		top--
	}
	t.levels = t.levels[:top]
	return nil
}

// splitPoint returns the largest power of two strictly less than n (n >= 2).
func splitPoint(n uint64) uint64 {
	return uint64(1) << (bits.Len64(n-1) - 1)
}

// rangeHash returns the root of leaves [start, end), end > start, for a range
// that occurs in the RFC 6962 decomposition of a tree prefix: start is a
// multiple of the largest power of two not exceeding end-start, so every
// complete left part is a cached subtree.
func (t *Tree) rangeHash(start, end uint64) Hash {
	n := end - start
	if n&(n-1) == 0 {
		h := bits.TrailingZeros64(n)
		if start%n == 0 {
			return t.levels[h][start>>uint(h)]
		}
	}
	k := splitPoint(n)
	return HashPair(t.rangeHash(start, start+k), t.rangeHash(start+k, end))
}
