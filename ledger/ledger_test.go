package ledger

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cocoledger/coco/merkle"
)

// signer makes real signature entries over the leaves it has seen.
type signer struct {
	id   *identities
	tree *merkle.Tree
}

func newSigner(t testing.TB) *signer { return &signer{id: newIdentities(t), tree: merkle.New()} }

// appendRange appends txEntry(term, from..to) and syncs; every 10th entry is
// a signature so chunks can close: a real one with s, else a fake one.
func appendRange(t testing.TB, l *Ledger, s *signer, term, from, to uint64) []*Entry {
	t.Helper()
	var es []*Entry
	for i := from; i <= to; i++ {
		e := txEntry(term, i, 30)
		if i%10 == 0 {
			if s != nil {
				e = s.id.signatureEntry(t, term, i, s.tree)
			} else {
				e = &Entry{Kind: KindSignature, Term: term, Index: i, Public: []byte(`{"fake":true}`)}
			}
		}
		if s != nil {
			s.tree.Append(e.Leaf())
		}
		es = append(es, e)
	}
	if err := l.Append(es...); err != nil {
		t.Fatal(err)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	return es
}

func checkEntries(t testing.TB, l *Ledger, want []*Entry) {
	t.Helper()
	if l.LastIndex() != uint64(len(want)) {
		t.Fatalf("LastIndex %d, want %d", l.LastIndex(), len(want))
	}
	for _, w := range want {
		got, err := l.Entry(w.Index)
		if err != nil {
			t.Fatalf("Entry(%d): %v", w.Index, err)
		}
		if !reflect.DeepEqual(got, w) {
			t.Fatalf("Entry(%d) = %+v, want %+v", w.Index, got, w)
		}
		if term, err := l.Term(w.Index); err != nil || term != w.Term {
			t.Fatalf("Term(%d) = %d, %v", w.Index, term, err)
		}
	}
	if len(want) > 0 {
		got, err := l.Entries(1, uint64(len(want))+1)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatal("Entries differs")
		}
	}
}

// dirBytes is the size of the records in dir's chunk files (an open
// chunk's preallocated zeros left out).
func dirBytes(t testing.TB, dir string) int64 {
	var n int64
	for _, f := range chunkFiles(t, dir) {
		n += recordBytes(t, filepath.Join(dir, f))
	}
	return n
}

func recordBytes(t testing.TB, path string) int64 {
	var n int64
	for _, r := range readRecords(t, path) {
		n += recordHeaderSize + int64(len(r.body))
	}
	return n
}

func TestRoundTripChunks(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, 500)
	if l.FirstIndex() != 1 || l.LastIndex() != 0 {
		t.Fatalf("fresh ledger: first %d last %d", l.FirstIndex(), l.LastIndex())
	}
	want := appendRange(t, l, nil, 1, 1, 45)
	want = append(want, appendRange(t, l, nil, 2, 46, 55)...)
	files := chunkFiles(t, dir)
	// Chunks close at signatures (every 10th) once >= 500 bytes (~8 records).
	wantFiles := []string{"ledger_1-10", "ledger_11-20", "ledger_21-30", "ledger_31-40", "ledger_41-50", "ledger_51"}
	if !slices.Equal(files, wantFiles) {
		t.Fatalf("files %v, want %v", files, wantFiles)
	}
	checkEntries(t, l, want)
	if got := dirBytes(t, dir); l.Bytes() != got {
		t.Fatalf("Bytes %d, on disk %d", l.Bytes(), got)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Entry(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Entry after Close: %v", err)
	}
	l2 := openT(t, dir, 500)
	checkEntries(t, l2, want)
	want = append(want, appendRange(t, l2, nil, 3, 56, 60)...)
	if !slices.Equal(chunkFiles(t, dir), append(wantFiles[:5:5], "ledger_51-60")) {
		t.Fatalf("files after reopen and append: %v", chunkFiles(t, dir))
	}
	checkEntries(t, l2, want)
	// ReadDir sees the same.
	var got []*Entry
	if err := ReadDir(context.Background(), dir, func(e *Entry, _ string, _ int64) error { got = append(got, e); return nil }); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatal("ReadDir differs")
	}
}

func TestAppendRejects(t *testing.T) {
	l := openT(t, t.TempDir(), 0)
	appendRange(t, l, nil, 2, 1, 3)
	tests := []struct {
		name string
		es   []*Entry
	}{
		{"gap", []*Entry{txEntry(2, 5, 1)}},
		{"overlap", []*Entry{txEntry(2, 3, 1)}},
		{"not contiguous", []*Entry{txEntry(2, 4, 1), txEntry(2, 6, 1)}},
		{"lower term", []*Entry{txEntry(1, 4, 1)}},
		{"invalid", []*Entry{{Kind: 9, Term: 2, Index: 4}}},
		{"nil", []*Entry{nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := l.Append(tt.es...); err == nil {
				t.Fatal("accepted")
			}
			if l.LastIndex() != 3 {
				t.Fatalf("LastIndex %d after refused append", l.LastIndex())
			}
		})
	}
	if err := l.Append(txEntry(2, 4, 1)); err != nil {
		t.Fatalf("ledger unusable after refused appends: %v", err)
	}
}

func TestTruncate(t *testing.T) {
	tests := []struct {
		name      string
		last      uint64
		wantFiles []string
	}{
		{"noop", 35, []string{"ledger_1-10", "ledger_11-20", "ledger_21-30", "ledger_31"}},
		{"within open chunk", 33, []string{"ledger_1-10", "ledger_11-20", "ledger_21-30", "ledger_31"}},
		{"whole open chunk", 30, []string{"ledger_1-10", "ledger_11-20", "ledger_21-30"}},
		{"into closed chunk", 15, []string{"ledger_1-10", "ledger_11"}},
		{"to closed chunk end", 20, []string{"ledger_1-10", "ledger_11-20"}},
		{"everything", 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			l := openT(t, dir, 500)
			all := appendRange(t, l, nil, 1, 1, 35)
			if err := l.Truncate(tt.last); err != nil {
				t.Fatal(err)
			}
			if got := chunkFiles(t, dir); !slices.Equal(got, tt.wantFiles) {
				t.Fatalf("files %v, want %v", got, tt.wantFiles)
			}
			want := all[:tt.last]
			checkEntries(t, l, want)
			if _, err := l.Entry(tt.last + 1); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Entry(last+1): %v", err)
			}
			if got := dirBytes(t, dir); l.Bytes() != got {
				t.Fatalf("Bytes %d, on disk %d", l.Bytes(), got)
			}
			// Replace the suffix with a new term, then reopen.
			want = append(want, appendRange(t, l, nil, 2, tt.last+1, 42)...)
			checkEntries(t, l, want)
			l.Close()
			l2 := openT(t, dir, 500)
			checkEntries(t, l2, want)
			if _, err := Verify(context.Background(), dir, VerifyOptions{}); err == nil {
				// The fake signatures must fail verification, proving Verify read them.
				t.Fatal("Verify accepted fake signatures")
			}
		})
	}
}

func TestCommit(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, 500)
	appendRange(t, l, nil, 1, 1, 35)
	if err := l.Commit(25); err != nil {
		t.Fatal(err)
	}
	want := []string{"ledger_1-10.committed", "ledger_11-20.committed", "ledger_21-30", "ledger_31"}
	if got := chunkFiles(t, dir); !slices.Equal(got, want) {
		t.Fatalf("files %v, want %v", got, want)
	}
	if l.CommittedIndex() != 25 {
		t.Fatalf("CommittedIndex %d", l.CommittedIndex())
	}
	if err := l.Truncate(24); !errors.Is(err, ErrTruncateCommitted) {
		t.Fatalf("Truncate(24): %v", err)
	}
	if err := l.Commit(99); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Commit beyond last: %v", err)
	}
	if err := l.Commit(30); err != nil {
		t.Fatal(err)
	}
	if err := l.Commit(20); err != nil { // going back is a no-op
		t.Fatal(err)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	l.Close()
	l2 := openT(t, dir, 500)
	if l2.CommittedIndex() != 30 {
		t.Fatalf("CommittedIndex after reopen %d, want 30", l2.CommittedIndex())
	}
	if err := l2.Truncate(29); !errors.Is(err, ErrTruncateCommitted) {
		t.Fatalf("Truncate(29): %v", err)
	}
	if err := l2.Truncate(30); err != nil {
		t.Fatal(err)
	}
	want = []string{"ledger_1-10.committed", "ledger_11-20.committed", "ledger_21-30.committed"}
	if got := chunkFiles(t, dir); !slices.Equal(got, want) {
		t.Fatalf("files %v, want %v", got, want)
	}
}

// TestTornTail cuts the last record at every offset, and appends garbage
// after it: Open must drop exactly that record and keep the rest.
func TestTornTail(t *testing.T) {
	src := t.TempDir()
	l := openT(t, src, 500)
	all := appendRange(t, l, newSigner(t), 1, 1, 25)
	l.Close()
	path := lastChunk(t, src)
	recs := readRecords(t, path)
	lastOff := recs[len(recs)-1].off
	full, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	type tc struct {
		name string
		data []byte
		want int // entries kept
	}
	var cases []tc
	for cut := lastOff + 1; cut < int64(len(full)); cut++ {
		cases = append(cases, tc{"cut", full[:cut], 24})
	}
	cases = append(cases,
		tc{"cut at record start", full[:lastOff], 24},
		tc{"zeros after last", append(bytes.Clone(full), make([]byte, 300)...), 25},
		tc{"garbage after last", append(bytes.Clone(full), []byte("\x00\x00\x01\x00garbage garbage garbage")...), 25},
		tc{"short garbage after last", append(bytes.Clone(full), 1, 2, 3), 25},
		tc{"short zeros after last", append(bytes.Clone(full), 0, 0, 0), 25},
		tc{"torn record in zeros", slices.Concat(full, []byte{0, 0, 1, 0, 7, 7, 7, 7, 9, 9}, make([]byte, 300)), 25},
		tc{"zeros then garbage", slices.Concat(full, make([]byte, 20), []byte("xyz")), 25},
		tc{"bad CRC of last", func() []byte { b := bytes.Clone(full); b[lastOff+5] ^= 1; return b }(), 24},
		tc{"flip in last body", func() []byte { b := bytes.Clone(full); b[len(b)-1] ^= 1; return b }(), 24},
	)
	for _, c := range cases {
		dir := copyDir(t, src)
		p := filepath.Join(dir, filepath.Base(path))
		if err := os.WriteFile(p, c.data, 0o640); err != nil {
			t.Fatal(err)
		}
		// What follows the last whole record; nothing but zeros there is
		// the end of the chunk (preallocated space), not a torn tail.
		tail := c.data[min(len(c.data), len(full)):]
		if c.want == 24 {
			tail = c.data[lastOff:]
		}
		_, err := Verify(context.Background(), dir, VerifyOptions{})
		if torn := !allZero(tail); torn {
			if err == nil || !isVerifyErrorAt(err, filepath.Base(p)) {
				t.Fatalf("%s %d: Verify of torn tail: %v", c.name, len(c.data), err)
			}
		} else if err != nil {
			t.Fatalf("%s %d: Verify of a chunk ending in zeros: %v", c.name, len(c.data), err)
		}
		l, err := Open(Options{Dir: dir, ChunkSize: 500})
		if err != nil {
			t.Fatalf("%s at %d: Open: %v", c.name, len(c.data), err)
		}
		checkEntries(t, l, all[:c.want])
		// The tail is gone from disk, and appending continues cleanly.
		if err := l.Append(all[c.want:]...); err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := Verify(context.Background(), dir, VerifyOptions{}); err != nil && !isVerifyErrorReason(err, "signature") {
			t.Fatalf("%s %d: after Open: %v", c.name, len(c.data), err)
		}
	}
}

// TestPreallocation: the open chunk is zero-filled ahead of its records;
// a copy taken while it is open (as after a crash) opens and verifies
// cleanly with every entry, closing a chunk or the ledger drops the zeros,
// and Bytes counts records only.
func TestPreallocation(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, 1<<30)
	s := newSigner(t)
	want := appendRange(t, l, s, 1, 1, 25)
	st, err := os.Stat(lastChunk(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() < preallocStep || l.Bytes() != dirBytes(t, dir) || l.Bytes() >= st.Size() {
		t.Fatalf("open chunk: file %d bytes, records %d, Bytes %d", st.Size(), dirBytes(t, dir), l.Bytes())
	}

	crashed := copyDir(t, dir)
	if _, err := Verify(context.Background(), crashed, VerifyOptions{}); err != nil {
		t.Fatalf("Verify of an open, preallocated chunk: %v", err)
	}
	l2 := openT(t, crashed, 1<<30)
	checkEntries(t, l2, want)
	more := append(slices.Clone(want), appendRange(t, l2, s, 1, 26, 45)...)
	checkEntries(t, l2, more)
	if err := l2.Close(); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(lastChunk(t, crashed)); err != nil || st.Size() != dirBytes(t, crashed) {
		t.Fatalf("after Close: file %v (%v), records %d", st.Size(), err, dirBytes(t, crashed))
	}
	if _, err := Verify(context.Background(), crashed, VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
	l3 := openT(t, crashed, 1<<30)
	checkEntries(t, l3, more)
	l3.Close()

	// Closed chunks hold records only, also after a truncation reopened one
	// and it was filled and closed again.
	small := t.TempDir()
	l4 := openT(t, small, 500)
	appendRange(t, l4, nil, 1, 1, 35)
	if err := l4.Truncate(15); err != nil {
		t.Fatal(err)
	}
	appendRange(t, l4, nil, 2, 16, 35)
	for _, f := range chunkFiles(t, small)[:3] {
		p := filepath.Join(small, f)
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if n := recordBytes(t, p); st.Size() != n {
			t.Fatalf("closed chunk %s: %d bytes on disk, %d in records", f, st.Size(), n)
		}
	}
	l4.Close()
	l.Close()
}

// TestUnwrittenPage: a crash in the middle of a sync that overwrites
// preallocated zeros can persist a later page without an earlier one. The
// earlier page reads as zeros and what follows was never acknowledged, so
// Open cuts from the first damaged record; the same page holding anything
// but zeros, with valid records after it, is still corruption.
func TestUnwrittenPage(t *testing.T) {
	src := t.TempDir()
	l := openT(t, src, 1<<30)
	all := appendRange(t, l, nil, 1, 1, 150)
	crashed := copyDir(t, src) // as after a crash: open chunk, zeros ahead
	l.Close()
	path := lastChunk(t, crashed)
	recs := readRecords(t, path)
	if end := recs[len(recs)-1].off; end < 3*pageSize {
		t.Fatalf("records end at %d, want more than 3 pages", end)
	}
	kept := slices.IndexFunc(recs, func(r rawRecord) bool { return r.off+recordHeaderSize+int64(len(r.body)) > pageSize })
	full, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		fill byte
	}{{"zeros", 0}, {"garbage", 0xff}} {
		dir := copyDir(t, crashed)
		b := slices.Clone(full)
		for i := pageSize; i < 2*pageSize; i++ {
			b[i] = c.fill
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(path)), b, 0o600); err != nil {
			t.Fatal(err)
		}
		l, err := Open(Options{Dir: dir, ChunkSize: 1 << 30})
		var ce *CorruptError
		if c.fill != 0 {
			if !errors.As(err, &ce) || !strings.Contains(ce.Reason, "a valid record follows") {
				t.Fatalf("%s: Open: %v", c.name, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: Open: %v", c.name, err)
		}
		checkEntries(t, l, all[:kept])
		l.Close()
	}
}

func isVerifyErrorAt(err error, file string) bool {
	var ve *VerifyError
	return errors.As(err, &ve) && ve.File == file
}

func isVerifyErrorReason(err error, sub string) bool {
	var ve *VerifyError
	return errors.As(err, &ve) && bytes.Contains([]byte(ve.Reason), []byte(sub))
}

func TestOpenCorrupt(t *testing.T) {
	src := t.TempDir()
	l := openT(t, src, 500)
	appendRange(t, l, newSigner(t), 1, 1, 35) // ledger_1-10 ledger_11-20 ledger_21-30 ledger_31
	l.Close()
	rec := func(file string, i int) int64 { return readRecords(t, filepath.Join(src, file))[i].off }
	flip := func(file string, off int64) func(dir string) {
		return func(dir string) {
			p := filepath.Join(dir, file)
			b, _ := os.ReadFile(p)
			b[off] ^= 0x40
			os.WriteFile(p, b, 0o640)
		}
	}
	tests := []struct {
		name       string
		damage     func(dir string)
		wantFile   string
		wantOffset int64
		wantIndex  uint64
	}{
		{"flip in middle of open chunk", flip("ledger_31", rec("ledger_31", 2)+20), "ledger_31", rec("ledger_31", 2), 33},
		{"flip in closed chunk", flip("ledger_11-20", rec("ledger_11-20", 4)+50), "ledger_11-20", rec("ledger_11-20", 4), 15},
		{"flip in last record of closed chunk", flip("ledger_21-30", rec("ledger_21-30", 9)+9), "ledger_21-30", rec("ledger_21-30", 9), 30},
		{"flip length in open chunk", flip("ledger_31", rec("ledger_31", 1)+3), "ledger_31", rec("ledger_31", 1), 32},
		{"missing middle chunk", func(dir string) { os.Remove(filepath.Join(dir, "ledger_11-20")) }, "ledger_21-30", 0, 11},
		{"missing first chunk", func(dir string) { os.Remove(filepath.Join(dir, "ledger_1-10")) }, "ledger_11-20", 0, 1},
		{"truncated closed chunk", func(dir string) {
			os.Truncate(filepath.Join(dir, "ledger_11-20"), rec("ledger_11-20", 9)+5)
		}, "ledger_11-20", rec("ledger_11-20", 9), 20},
		{"closed chunk cut at record boundary", func(dir string) {
			os.Truncate(filepath.Join(dir, "ledger_11-20"), rec("ledger_11-20", 9))
		}, "ledger_11-20", rec("ledger_11-20", 9), 20},
		{"name disagrees with contents", func(dir string) {
			os.Rename(filepath.Join(dir, "ledger_11-20"), filepath.Join(dir, "ledger_11-19"))
		}, "ledger_11-19", rec("ledger_11-20", 9), 20},
		{"open chunk not last", func(dir string) {
			os.Rename(filepath.Join(dir, "ledger_11-20"), filepath.Join(dir, "ledger_11"))
		}, "ledger_11", 0, 11},
		{"bad name", func(dir string) { os.WriteFile(filepath.Join(dir, "ledger_x"), nil, 0o640) }, "ledger_x", 0, 0},
		{"swapped records", func(dir string) {
			p := filepath.Join(dir, "ledger_11-20")
			rs := readRecords(t, p)
			rs[3], rs[4] = rs[4], rs[3]
			writeRecords(t, p, rs)
		}, "ledger_11-20", rec("ledger_11-20", 3), 14},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := copyDir(t, src)
			tt.damage(dir)
			_, err := Open(Options{Dir: dir, ChunkSize: 500})
			var ce *CorruptError
			if !errors.As(err, &ce) {
				t.Fatalf("Open: %v, want *CorruptError", err)
			}
			if ce.File != tt.wantFile || ce.Offset != tt.wantOffset || ce.Index != tt.wantIndex {
				t.Fatalf("got %v; want file %s offset %d entry %d", ce, tt.wantFile, tt.wantOffset, tt.wantIndex)
			}
			_, verr := Verify(context.Background(), dir, VerifyOptions{})
			var ve *VerifyError
			if !errors.As(verr, &ve) || ve.File != ce.File || ve.Offset != ce.Offset || ve.Index != ce.Index {
				t.Fatalf("Verify: %v, want the same place as %v", verr, ce)
			}
		})
	}
}

func TestCorruptErrorFormat(t *testing.T) {
	e := &CorruptError{File: "ledger_1", Offset: 99, Index: 3, Reason: "CRC mismatch"}
	if got, want := e.Error(), "ledger: ledger_1 offset 99 (entry 3): CRC mismatch"; got != want {
		t.Fatalf("%q, want %q", got, want)
	}
}

// TestConcurrentReads runs readers against a writer; run with -race.
func TestConcurrentReads(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, 2000)
	appendRange(t, l, nil, 1, 1, 10)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				last := l.LastIndex()
				for i := uint64(1); i <= last; i += 7 {
					e, err := l.Entry(i)
					if errors.Is(err, ErrNotFound) {
						continue // truncated meanwhile
					}
					if err != nil {
						t.Error(err)
						return
					}
					if e.Index != i {
						t.Errorf("Entry(%d) returned %d", i, e.Index)
						return
					}
					_, _ = l.Term(i)
				}
				_ = l.Bytes()
			}
		}()
	}
	next := uint64(11)
	for round := 0; round < 200; round++ {
		// Unsynced appends force readers through the flush path too.
		es := []*Entry{txEntry(2, next, 300), txEntry(2, next+1, 300), {Kind: KindSignature, Term: 2, Index: next + 2, Public: []byte("{}")}}
		if err := l.Append(es...); err != nil {
			t.Fatal(err)
		}
		next += 3
		if round%10 == 9 {
			if err := l.Truncate(next - 5); err != nil {
				t.Fatal(err)
			}
			next -= 4
			if err := l.Sync(); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(stop)
	wg.Wait()
}

// TestReadUnflushed reads entries that are only in the write buffer and not
// in the cache (the cache is bypassed by clearing it).
func TestReadUnflushed(t *testing.T) {
	l := openT(t, t.TempDir(), 0)
	es := appendRange(t, l, nil, 1, 1, 3)
	more := []*Entry{txEntry(1, 4, 10), txEntry(1, 5, 10)}
	if err := l.Append(more...); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	l.cache, l.cacheHeld = [cacheSize]*Entry{}, 0
	l.mu.Unlock()
	checkEntries(t, l, append(es, more...))
}

// TestCacheBounded appends entries of several sizes, with truncations, and
// checks the cache stays within its count and byte bounds (the newest entry
// always cached, even alone above the byte bound), that its byte count
// matches what it holds, and that every entry reads back the same.
func TestCacheBounded(t *testing.T) {
	tests := []struct {
		name    string
		n       uint64
		size    func(i uint64) int
		truncAt []uint64 // after appending 1..n, append again from each of these
	}{
		{name: "small entries", n: cacheSize + 500, size: func(uint64) int { return 20 }},
		{name: "large entries", n: 100, size: func(uint64) int { return 8 << 10 }},
		{name: "one entry above the byte bound", n: 3, size: func(i uint64) int { return testCacheMax + int(i) }},
		{name: "mixed, with truncations", n: 150, size: func(i uint64) int { return int(i%5)<<12 + 10 }, truncAt: []uint64{120, 140, 30}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := openT(t, t.TempDir(), 0)
			l.cacheMax = testCacheMax // the real bound's sizes, scaled down
			var want []*Entry
			appendFrom := func(from, term uint64) {
				if from <= l.LastIndex() {
					if err := l.Truncate(from - 1); err != nil {
						t.Fatal(err)
					}
				}
				want = want[:from-1]
				for i := from; i <= tt.n; i++ {
					e := &Entry{Kind: KindTx, Term: term, Index: i, Public: bytes.Repeat([]byte{byte(i + term)}, tt.size(i))}
					if err := l.Append(e); err != nil {
						t.Fatal(err)
					}
					want = append(want, e)
					checkCache(t, l)
				}
			}
			appendFrom(1, 1)
			for k, at := range tt.truncAt {
				appendFrom(at, uint64(k+2))
			}
			if err := l.Sync(); err != nil {
				t.Fatal(err)
			}
			checkEntries(t, l, want)
		})
	}
}

// testCacheMax replaces cacheBytes in TestCacheBounded, so that entries of
// a few KB exercise the byte bound quickly.
const testCacheMax = 64 << 10

func checkCache(t *testing.T, l *Ledger) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	held, n := 0, 0
	for _, e := range l.cache {
		if e != nil {
			held += e.bodySize()
			n++
		}
	}
	if held != l.cacheHeld {
		t.Fatalf("cacheHeld %d, entries in the cache hold %d", l.cacheHeld, held)
	}
	if n > 1 && held > l.cacheMax {
		t.Fatalf("%d bytes cached in %d entries, bound %d", held, n, l.cacheMax)
	}
	last := uint64(len(l.slots))
	if e := l.cache[last%cacheSize]; e == nil || e.Index != last {
		t.Fatalf("newest entry %d is not cached", last)
	}
}

// BenchmarkAppendSync measures group commit as consensus does it: one
// Append of a 100-entry batch of 200-byte records' bodies, then one Sync.
func BenchmarkAppendSync(b *testing.B) {
	l := openT(b, b.TempDir(), 0)
	const batch = 100
	tmpl := txEntry(1, 1, 200-minBodySize)
	tmpl.Private = nil
	es := make([]*Entry, batch)
	for i := range es {
		e := *tmpl
		es[i] = &e
	}
	next := uint64(1)
	b.SetBytes(batch * (200 + recordHeaderSize))
	b.ReportAllocs()
	for b.Loop() {
		for _, e := range es {
			e.Index = next
			next++
		}
		if err := l.Append(es...); err != nil {
			b.Fatal(err)
		}
		if err := l.Sync(); err != nil {
			b.Fatal(err)
		}
	}
}
