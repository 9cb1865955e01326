package consensus

import (
	"bytes"
	"testing"

	"github.com/cocoledger/coco/ledger"
	pb "go.etcd.io/raft/v3/raftpb"
)

// TestStorageTailBounded appends entries of several sizes and checks the
// tail cache stays within its count and byte bounds (keeping the newest
// entry even when it alone is larger), that its byte count matches what it
// holds after truncations, and that every entry still reads back the same
// through Entries, from the cache or from the ledger.
func TestStorageTailBounded(t *testing.T) {
	tests := []struct {
		name    string
		n       int
		size    func(i int) int
		truncAt []int // append entries 1..n, then again from each of these
	}{
		{name: "small entries: count bound", n: tailCacheSize + 100, size: func(int) int { return 10 }},
		{name: "large entries: byte bound", n: 120, size: func(int) int { return 8 << 10 }},
		{name: "one entry above the byte bound", n: 3, size: func(i int) int { return testTailMax + 1 + i }},
		{name: "mixed, with truncations", n: 200, size: func(i int) int { return (i % 7) << 11 }, truncAt: []int{150, 190, 60}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			led, err := ledger.Open(ledger.Options{Dir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			defer led.Close()
			s := newStorage(led, &pb.HardState{}, &pb.ConfState{})
			s.tailMax = testTailMax // the real bound's sizes, scaled down
			want := map[uint64][]byte{}
			appendRange := func(from, to, term int) {
				var les []*ledger.Entry
				var res []*pb.Entry
				for i := from; i <= to; i++ {
					le := &ledger.Entry{Kind: ledger.KindTx, Term: uint64(term), Index: uint64(i), Public: bytes.Repeat([]byte{byte(i + term)}, tt.size(i))}
					re := raftEntry(le)
					les, res = append(les, le), append(res, re)
					want[uint64(i)] = re.GetData()
				}
				// In batches, as raft appends.
				for len(res) > 0 {
					k := min(len(res), 50)
					if err := s.append(res[:k], les[:k]); err != nil {
						t.Fatal(err)
					}
					res, les = res[k:], les[k:]
					s.check(t)
				}
				for i := to + 1; i <= len(want); i++ {
					delete(want, uint64(i))
				}
			}
			appendRange(1, tt.n, 1)
			for k, at := range tt.truncAt {
				appendRange(at, tt.n, k+2)
			}
			if err := led.Sync(); err != nil {
				t.Fatal(err)
			}
			ents, err := s.Entries(1, uint64(tt.n)+1, 1<<62)
			if err != nil {
				t.Fatal(err)
			}
			if len(ents) != tt.n {
				t.Fatalf("Entries gave %d entries, want %d", len(ents), tt.n)
			}
			for _, e := range ents {
				if !bytes.Equal(e.GetData(), want[e.GetIndex()]) {
					t.Fatalf("entry %d reads back different data", e.GetIndex())
				}
			}
		})
	}
}

// testTailMax replaces tailCacheBytes in TestStorageTailBounded, so that
// entries of a few KB exercise the byte bound quickly.
const testTailMax = 64 << 10

// check verifies the tail cache's invariants. Caller does not hold s.mu.
func (s *storage) check(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	held, newest := 0, uint64(0)
	for i, e := range s.tail {
		held += len(e.GetData())
		newest = max(newest, i)
	}
	if held != s.tailBytes {
		t.Fatalf("tailBytes %d, entries in the cache hold %d", s.tailBytes, held)
	}
	if len(s.tail) > tailCacheSize {
		t.Fatalf("%d entries cached, bound %d", len(s.tail), tailCacheSize)
	}
	if len(s.tail) > 1 && held > s.tailMax {
		t.Fatalf("%d bytes cached in %d entries, bound %d", held, len(s.tail), s.tailMax)
	}
	if newest != s.led.LastIndex() {
		t.Fatalf("newest cached entry %d, last index %d", newest, s.led.LastIndex())
	}
}
