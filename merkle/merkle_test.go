package merkle

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"testing"
)

func leafN(i uint64) Hash {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], i)
	return sha256.Sum256(b[:])
}

// refRoot is the naive recursive MTH without prefixes.
func refRoot(leaves []Hash) Hash {
	if len(leaves) == 1 {
		return leaves[0]
	}
	k := splitPoint(uint64(len(leaves)))
	return HashPair(refRoot(leaves[:k]), refRoot(leaves[k:]))
}

// refPath is the naive recursive RFC 6962 PATH, ordered leaf -> root.
func refPath(m int, leaves []Hash) []ProofStep {
	if len(leaves) == 1 {
		return nil
	}
	k := int(splitPoint(uint64(len(leaves))))
	if m < k {
		return append(refPath(m, leaves[:k]), ProofStep{Left: false, Hash: refRoot(leaves[k:])})
	}
	return append(refPath(m-k, leaves[k:]), ProofStep{Left: true, Hash: refRoot(leaves[:k])})
}

const maxSize = 70

func buildTree(n uint64) (*Tree, []Hash) {
	t := New()
	leaves := make([]Hash, n)
	for i := range n {
		leaves[i] = leafN(i)
		t.Append(leaves[i])
	}
	return t, leaves
}

func equalProofs(a, b []ProofStep) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestTreeEmpty(t *testing.T) {
	tr := New()
	if tr.Size() != 0 || tr.Root() != (Hash{}) {
		t.Fatalf("empty tree: size %d root %x", tr.Size(), tr.Root())
	}
	if _, err := tr.RootAt(0); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("RootAt(0) err = %v", err)
	}
	if _, err := tr.Proof(0, 0); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("Proof(0,0) err = %v", err)
	}
	if _, err := tr.Leaf(0); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("Leaf(0) err = %v", err)
	}
}

func TestTreeOneLeafRootIsLeaf(t *testing.T) {
	tr, leaves := buildTree(1)
	if tr.Root() != leaves[0] {
		t.Fatalf("one-leaf root %x, want the leaf %x", tr.Root(), leaves[0])
	}
	p, err := tr.Proof(0, 1)
	if err != nil || len(p) != 0 {
		t.Fatalf("one-leaf proof = %v, %v; want empty", p, err)
	}
}

func TestTreeRootsAgainstReference(t *testing.T) {
	tr, leaves := buildTree(maxSize)
	for size := uint64(1); size <= maxSize; size++ {
		want := refRoot(leaves[:size])
		got, err := tr.RootAt(size)
		if err != nil {
			t.Fatalf("RootAt(%d): %v", size, err)
		}
		if got != want {
			t.Errorf("RootAt(%d) = %x, want %x", size, got, want)
		}
		// Root of a tree built to exactly size leaves.
		small, _ := buildTree(size)
		if small.Root() != want {
			t.Errorf("Root() of %d leaves = %x, want %x", size, small.Root(), want)
		}
	}
}

func TestTreeProofsAgainstReference(t *testing.T) {
	tr, leaves := buildTree(maxSize)
	for size := uint64(1); size <= maxSize; size++ {
		root := refRoot(leaves[:size])
		for idx := uint64(0); idx < size; idx++ {
			p, err := tr.Proof(idx, size)
			if err != nil {
				t.Fatalf("Proof(%d,%d): %v", idx, size, err)
			}
			if want := refPath(int(idx), leaves[:size]); !equalProofs(p, want) {
				t.Fatalf("Proof(%d,%d) = %v, want %v", idx, size, p, want)
			}
			if got := RootFromProof(leaves[idx], p); got != root {
				t.Fatalf("RootFromProof(leaf %d, size %d) = %x, want %x", idx, size, got, root)
			}
			// A proof must not verify another leaf.
			if size > 1 {
				other := leaves[(idx+1)%size]
				if RootFromProof(other, p) == root {
					t.Fatalf("Proof(%d,%d) also verifies leaf %d", idx, size, (idx+1)%size)
				}
			}
		}
	}
}

func TestTreeTruncateThenReappend(t *testing.T) {
	for from := uint64(0); from <= maxSize; from++ {
		for _, to := range []uint64{0, 1, from / 2, from - min(from, 1), from} {
			if to > from {
				continue
			}
			tr, leaves := buildTree(from)
			if err := tr.Truncate(to); err != nil {
				t.Fatalf("Truncate(%d) of %d: %v", to, from, err)
			}
			if tr.Size() != to {
				t.Fatalf("size after Truncate(%d) = %d", to, tr.Size())
			}
			if to > 0 && tr.Root() != refRoot(leaves[:to]) {
				t.Fatalf("root after Truncate(%d) of %d differs", to, from)
			}
			if to == 0 && tr.Root() != (Hash{}) {
				t.Fatalf("root after Truncate(0) not zero")
			}
			// Re-append different leaves up to maxSize and compare with a
			// fresh tree of the same leaves.
			fresh := New()
			for i := range to {
				fresh.Append(leaves[i])
			}
			for i := to; i < maxSize; i++ {
				l := leafN(1000 + i)
				tr.Append(l)
				fresh.Append(l)
			}
			for size := uint64(1); size <= maxSize; size++ {
				a, _ := tr.RootAt(size)
				b, _ := fresh.RootAt(size)
				if a != b {
					t.Fatalf("truncate %d->%d, re-append: RootAt(%d) differs", from, to, size)
				}
				for idx := uint64(0); idx < size; idx += 7 {
					pa, _ := tr.Proof(idx, size)
					pb, _ := fresh.Proof(idx, size)
					if !equalProofs(pa, pb) {
						t.Fatalf("truncate %d->%d, re-append: Proof(%d,%d) differs", from, to, idx, size)
					}
				}
			}
		}
	}
}

func TestTreeOutOfRange(t *testing.T) {
	tr, _ := buildTree(5)
	tests := []struct {
		name string
		err  error
	}{
		{"Leaf(5)", func() error { _, err := tr.Leaf(5); return err }()},
		{"RootAt(0)", func() error { _, err := tr.RootAt(0); return err }()},
		{"RootAt(6)", func() error { _, err := tr.RootAt(6); return err }()},
		{"Proof(0,0)", func() error { _, err := tr.Proof(0, 0); return err }()},
		{"Proof(0,6)", func() error { _, err := tr.Proof(0, 6); return err }()},
		{"Proof(3,3)", func() error { _, err := tr.Proof(3, 3); return err }()},
		{"Proof(max,5)", func() error { _, err := tr.Proof(^uint64(0), 5); return err }()},
		{"Truncate(6)", tr.Truncate(6)},
	}
	for _, tc := range tests {
		if !errors.Is(tc.err, ErrOutOfRange) {
			t.Errorf("%s: err = %v, want ErrOutOfRange", tc.name, tc.err)
		}
	}
	if tr.Size() != 5 {
		t.Fatalf("failed Truncate changed size to %d", tr.Size())
	}
}

func TestTreeLeaf(t *testing.T) {
	tr, leaves := buildTree(9)
	for i, want := range leaves {
		got, err := tr.Leaf(uint64(i))
		if err != nil || got != want {
			t.Fatalf("Leaf(%d) = %x, %v", i, got, err)
		}
	}
}

func BenchmarkAppendRoot(b *testing.B) {
	tr := New()
	// Start from a large tree, as a long-running service would.
	for i := range uint64(1 << 20) {
		tr.Append(leafN(i))
	}
	l := leafN(42)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		tr.Append(l)
		_ = tr.Root()
	}
}

func BenchmarkProofRecent(b *testing.B) {
	tr := New()
	for i := range uint64(1 << 20) {
		tr.Append(leafN(i))
	}
	size := tr.Size()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := tr.Proof(size-10, size-1); err != nil {
			b.Fatal(err)
		}
	}
}
