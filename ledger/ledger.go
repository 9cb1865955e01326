package ledger

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
)

const (
	// DefaultChunkSize is the size past which a chunk is closed at the next
	// signature entry (CCF's default).
	DefaultChunkSize = 4 << 20

	// cacheSize recent entries are kept decoded: raft re-reads the tail
	// (to send to followers and to apply on commit) right after appending.
	// It is larger than the number of records the write buffer can hold
	// (writeBufSize / minimum record size), so unflushed entries are
	// normally served from the cache without forcing a flush.
	cacheSize    = 4096
	writeBufSize = 256 << 10
	// cacheBytes bounds the cache by the size of its entries too (it is far
	// above writeBufSize): an ERC-20 batch makes one entry of 100-600 KB,
	// and 4096 of those would hold gigabytes.
	cacheBytes = 32 << 20

	// preallocStep is how far past the last record the open chunk is
	// zero-filled, in advance, so that appends overwrite blocks the file
	// already has instead of growing it. An fsync after a write that grows
	// a file must also commit the new size and block allocation through
	// the file system's journal; one that only overwrites flushes the data.
	// On this project's virtual disks that halves the wall time and CPU of
	// each fsync (a 8 KiB append + fsync: 360-750 us and 190-290 us of CPU
	// growing, 220-350 us and 130-180 us overwriting). PostgreSQL zero-fills
	// its WAL segments for the same reason; fallocate alone does not help,
	// because ext4 then converts an unwritten extent on the first write.
	preallocStep = 1 << 20
	// preallocMaxSync: a sync of more new bytes than this does not
	// preallocate. The journal commit it would save is paid once per
	// fsync, the zeros per byte: with ERC-20 batches (100-600 KB per
	// sync) zero-filling cost ~4% more CPU per transfer than it saved,
	// with small writes (a few KB per sync) it saves ~40% of fsync CPU.
	preallocMaxSync = 64 << 10
)

// Options configures Open.
type Options struct {
	Dir       string       // the ledger directory itself (DATA/ledger)
	ChunkSize int64        // default DefaultChunkSize
	Logger    *slog.Logger // default: discard
}

// chunk is one file of the ledger, as the Ledger currently has it.
type chunk struct {
	name              string
	start, end        uint64 // entries held; end = start-1 when empty
	closed, committed bool
	size              int64 // bytes, including any still in the write buffer
}

// slot locates one entry: 24 bytes per index, so the whole index of a
// long-lived ledger stays small and Entry/Term are O(1).
type slot struct {
	term  uint64
	off   int64  // record offset in its chunk file
	size  uint32 // body size
	chunk uint32 // position in Ledger.chunks
}

// Ledger is the append-only chunked ledger of one node. One goroutine
// writes (Append, Sync, Truncate, Commit); reads (Entry, Entries, Term,
// Bytes, the index getters) may come from any goroutine.
type Ledger struct {
	dir       string
	chunkSize int64
	log       *slog.Logger

	mu          sync.RWMutex
	chunks      []*chunk
	slots       []slot // slots[i] is entry i+1
	committed   uint64
	committedN  int           // chunks[:committedN] are all committed
	f           *os.File      // the open chunk, nil if none
	w           *bufio.Writer // buffers writes to f
	closedBytes int64         // bytes in chunks other than the open one
	zeroed      int64         // f's bytes are zeros from the open chunk's size up to here (preallocation)
	synced      int64         // the open chunk's size at the last Sync
	zeros       []byte        // a buffer of zeros for preallocate
	dirty       bool          // f has writes not yet fsynced
	dirDirty    bool          // files created, renamed or removed since the last dir fsync
	cache       [cacheSize]*Entry
	cacheHeld   int    // bytes of the entries in cache
	cacheMax    int    // bound on cacheHeld: cacheBytes (tests lower it)
	cacheLow    uint64 // entries below it are not in cache
	err         error  // sticky: a failed write leaves the files in an unknown state
	isClosed    bool
}

// Open opens (creating if needed) the ledger in opts.Dir. It checks every
// record, cuts a torn tail (logging a warning), and refuses any other damage
// with a *CorruptError.
func Open(opts Options) (*Ledger, error) {
	if opts.Dir == "" {
		return nil, errors.New("ledger: Options.Dir is empty")
	}
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = DefaultChunkSize
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	l := &Ledger{dir: opts.Dir, chunkSize: opts.ChunkSize, log: opts.Logger, cacheMax: cacheBytes}
	scanned, torn, err := scanDir(context.Background(), l.dir, func(_ string, off int64, bi bodyInfo, body []byte) error {
		l.slots = append(l.slots, slot{term: bi.term, off: off, size: uint32(len(body))})
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i, sc := range scanned {
		c := &chunk{name: sc.name, start: sc.first, end: sc.last, closed: sc.closed, committed: sc.committed, size: sc.size}
		for idx := sc.first; idx <= sc.last; idx++ {
			l.slots[idx-1].chunk = uint32(i)
		}
		if c.committed {
			l.committed = max(l.committed, c.end)
			if l.committedN == i {
				l.committedN++
			}
		}
		if c.closed {
			l.closedBytes += c.size
		}
		l.chunks = append(l.chunks, c)
	}
	if n := len(l.chunks); n > 0 && !l.chunks[n-1].closed {
		c := l.chunks[n-1]
		f, err := os.OpenFile(filepath.Join(l.dir, c.name), os.O_RDWR, 0)
		if err != nil {
			return nil, fmt.Errorf("ledger: %w", err)
		}
		if torn != nil {
			// Never fsynced, so never acknowledged: safe to drop, and it must
			// go before anything is appended after it.
			l.log.Warn("ledger: cutting torn tail", "file", torn.File, "offset", torn.Offset, "entry", torn.Index, "reason", torn.Reason)
			if err := f.Truncate(c.size); err != nil {
				f.Close()
				return nil, fmt.Errorf("ledger: cut torn tail of %s: %w", c.name, err)
			}
			if err := f.Sync(); err != nil {
				f.Close()
				return nil, fmt.Errorf("ledger: cut torn tail of %s: %w", c.name, err)
			}
		}
		if _, err := f.Seek(c.size, io.SeekStart); err != nil {
			f.Close()
			return nil, fmt.Errorf("ledger: %w", err)
		}
		// scanDir accepted what follows c.size as zeros (an earlier run's
		// preallocation) or it was cut above.
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("ledger: %w", err)
		}
		l.f, l.w, l.zeroed, l.synced = f, bufio.NewWriterSize(f, writeBufSize), st.Size(), c.size
	}
	l.log.Debug("ledger opened", "dir", l.dir, "chunks", len(l.chunks), "last", l.LastIndex(), "committed", l.committed)
	return l, nil
}

func (l *Ledger) usable() error {
	if l.isClosed {
		return ErrClosed
	}
	if l.err != nil {
		return fmt.Errorf("ledger: unusable after an earlier write error: %w", l.err)
	}
	return nil
}

// fail records a write error; the in-memory index may no longer match the
// files, so every later write is refused (reopen to recover).
func (l *Ledger) fail(err error) error {
	l.err = err
	l.log.Error("ledger write failed; refusing further writes", "err", err)
	return err
}

func (l *Ledger) lastTerm() uint64 {
	if len(l.slots) == 0 {
		return 0
	}
	return l.slots[len(l.slots)-1].term
}

// Append buffers entries at the end of the ledger. entries[0].Index must be
// LastIndex()+1, indexes contiguous and terms non-decreasing. Nothing is
// durable until Sync. The ledger keeps no reference to the entries.
func (l *Ledger) Append(entries ...*Entry) error {
	if len(entries) == 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return err
	}
	next, term := uint64(len(l.slots))+1, l.lastTerm()
	for i, e := range entries {
		if e == nil {
			return fmt.Errorf("ledger: append: entry %d of %d is nil", i, len(entries))
		}
		if err := e.validate(); err != nil {
			return fmt.Errorf("ledger: append: %w", err)
		}
		if e.Index != next+uint64(i) {
			return fmt.Errorf("ledger: append: entry %d, expected %d", e.Index, next+uint64(i))
		}
		if e.Term < term {
			return fmt.Errorf("ledger: append: entry %s has a lower term than %d", e.TxID(), term)
		}
		term = e.Term
	}
	for _, e := range entries {
		if err := l.appendOne(e); err != nil {
			return l.fail(err)
		}
	}
	return nil
}

func (l *Ledger) appendOne(e *Entry) error {
	if l.f == nil {
		if err := l.createChunk(e.Index); err != nil {
			return err
		}
	}
	c := l.chunks[len(l.chunks)-1]
	// A fresh buffer per record: the cached entry aliases it.
	rec := e.appendRecord(make([]byte, 0, recordHeaderSize+e.bodySize()))
	if _, err := l.w.Write(rec); err != nil {
		return fmt.Errorf("ledger: write %s: %w", c.name, err)
	}
	l.slots = append(l.slots, slot{term: e.Term, off: c.size, size: uint32(len(rec) - recordHeaderSize), chunk: uint32(len(l.chunks) - 1)})
	c.size += int64(len(rec))
	c.end = e.Index
	l.dirty = true

	cached := *e
	pub := recordHeaderSize + offPublic + 4
	priv := pub + len(e.Public) + 4
	cached.Public = nilIfEmpty(rec[pub : pub+len(e.Public) : pub+len(e.Public)])
	cached.Private = nilIfEmpty(rec[priv:len(rec):len(rec)])
	l.cachePut(&cached)

	if e.Kind == KindSignature && c.size >= l.chunkSize {
		return l.rotate()
	}
	return nil
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

func (l *Ledger) createChunk(start uint64) error {
	name := openChunkName(start)
	f, err := os.OpenFile(filepath.Join(l.dir, name), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600) // owner only, like every file a node writes
	if err != nil {
		return fmt.Errorf("ledger: create chunk: %w", err)
	}
	l.chunks = append(l.chunks, &chunk{name: name, start: start, end: start - 1})
	l.f, l.zeroed, l.synced = f, 0, 0
	if l.w == nil {
		l.w = bufio.NewWriterSize(f, writeBufSize)
	} else {
		l.w.Reset(f)
	}
	l.dirDirty = true
	return nil
}

// rotate closes the open chunk. Its data is fsynced before the rename and
// the rename before the next chunk is created, so after a crash a closed
// name always means complete contents, and an open chunk is always last.
func (l *Ledger) rotate() error {
	c := l.chunks[len(l.chunks)-1]
	if err := l.w.Flush(); err != nil {
		return fmt.Errorf("ledger: flush %s: %w", c.name, err)
	}
	// A closed chunk holds records only: its preallocated zeros go.
	if err := l.cutPrealloc(true); err != nil {
		return err
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("ledger: fsync %s: %w", c.name, err)
	}
	name := closedChunkName(c.start, c.end, false)
	if err := os.Rename(filepath.Join(l.dir, c.name), filepath.Join(l.dir, name)); err != nil {
		return fmt.Errorf("ledger: close chunk: %w", err)
	}
	if err := syncDir(l.dir); err != nil {
		return err
	}
	if err := l.f.Close(); err != nil {
		return fmt.Errorf("ledger: close %s: %w", c.name, err)
	}
	l.log.Debug("ledger chunk closed", "file", name)
	c.name, c.closed = name, true
	l.closedBytes += c.size
	l.f, l.zeroed = nil, 0
	l.dirty, l.dirDirty = false, false
	return nil
}

// preallocRange is the range of the open chunk to zero-fill ahead of its
// last record before this sync (from == to for none): when less than a
// quarter of preallocStep is left and this sync is small, so that the
// records the next syncs cover overwrite zeros instead of growing the file
// (see preallocStep). It starts past everything appended, buffered records
// included. Called with l.mu held.
func (l *Ledger) preallocRange() (from, to int64) {
	c := l.chunks[len(l.chunks)-1]
	if l.zeroed-c.size >= preallocStep/4 || c.size-l.synced > preallocMaxSync {
		return 0, 0
	}
	return max(l.zeroed, c.size), c.size + preallocStep
}

// preallocate writes zeros over [from, to) of f, the open chunk; they
// become durable with the fsync that follows, which pays once for the new
// size. It runs without l.mu: only the writing goroutine touches the file
// at or past the chunk's size, and readers read below it. A failure is not
// fatal (no record was touched; appends then grow the file as before), but
// l.zeroed must cover every zero written, so that closing the chunk cuts
// them.
func (l *Ledger) preallocate(f *os.File, from, to int64) {
	if l.zeros == nil {
		l.zeros = make([]byte, 64<<10)
	}
	off := from
	var err error
	for off < to && err == nil {
		var n int
		n, err = f.WriteAt(l.zeros[:min(int64(len(l.zeros)), to-off)], off)
		off += int64(n)
	}
	if err != nil {
		l.log.Warn("ledger: zero-filling ahead of the records failed; appends grow the file instead", "file", f.Name(), "err", err)
	}
	l.mu.Lock()
	l.zeroed = max(l.zeroed, off)
	l.mu.Unlock()
}

// cutPrealloc truncates the open chunk's file to its records, dropping
// preallocated zeros (always when force, else only if there are some). The
// buffer must have been flushed. Called with l.mu held.
func (l *Ledger) cutPrealloc(force bool) error {
	c := l.chunks[len(l.chunks)-1]
	if l.zeroed <= c.size && !force {
		return nil
	}
	if err := l.f.Truncate(c.size); err != nil {
		return fmt.Errorf("ledger: truncate %s: %w", c.name, err)
	}
	l.zeroed = c.size
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("ledger: fsync dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("ledger: fsync dir: %w", err)
	}
	return nil
}

// Sync makes every appended entry durable: it flushes the write buffer,
// fsyncs the open chunk and, when files were created, renamed or removed,
// the directory.
//
// The buffer is flushed under the lock but preallocation and the fsyncs run
// outside it, so readers (raft's storage calls on the consensus loop,
// receipts) are not held up for disk writes. That is safe because only the
// writing goroutine calls Append, Truncate and Sync, so the open chunk
// cannot change meanwhile.
func (l *Ledger) Sync() error {
	l.mu.Lock()
	if err := l.usable(); err != nil {
		l.mu.Unlock()
		return err
	}
	var f *os.File
	var zfrom, zto int64
	if l.f != nil && l.dirty {
		zfrom, zto = l.preallocRange()
		l.synced = l.chunks[len(l.chunks)-1].size
		if err := l.w.Flush(); err != nil {
			err = l.fail(fmt.Errorf("ledger: flush: %w", err))
			l.mu.Unlock()
			return err
		}
		f = l.f
		l.dirty = false
	}
	dirDirty := l.dirDirty
	l.dirDirty = false
	l.mu.Unlock()

	var err error
	if f != nil {
		if zto > zfrom {
			l.preallocate(f, zfrom, zto)
		}
		if e := f.Sync(); e != nil {
			err = fmt.Errorf("ledger: fsync: %w", e)
		}
	}
	if err == nil && dirDirty {
		err = syncDir(l.dir)
	}
	if err != nil {
		// A failed fsync leaves the file in an unknown state: the ledger
		// refuses all further use rather than risk acknowledging lost data.
		l.mu.Lock()
		err = l.fail(err)
		l.mu.Unlock()
	}
	return err
}

func (l *Ledger) syncLocked() error {
	if l.f != nil && l.dirty {
		if err := l.w.Flush(); err != nil {
			return l.fail(fmt.Errorf("ledger: flush: %w", err))
		}
		if err := l.f.Sync(); err != nil {
			return l.fail(fmt.Errorf("ledger: fsync: %w", err))
		}
		l.dirty = false
	}
	if l.dirDirty {
		if err := syncDir(l.dir); err != nil {
			return l.fail(err)
		}
		l.dirDirty = false
	}
	return nil
}

// Truncate drops every entry after last (a raft suffix being replaced).
// Truncating into a closed chunk reopens it. Committed entries are never
// dropped: last < CommittedIndex() returns ErrTruncateCommitted.
func (l *Ledger) Truncate(last uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return err
	}
	if last < l.committed {
		return fmt.Errorf("ledger: truncate to %d, committed %d: %w", last, l.committed, ErrTruncateCommitted)
	}
	if last >= uint64(len(l.slots)) {
		return nil
	}
	if err := l.truncateLocked(last); err != nil {
		return l.fail(err)
	}
	return nil
}

func (l *Ledger) truncateLocked(last uint64) error {
	if l.f != nil {
		if err := l.w.Flush(); err != nil {
			return fmt.Errorf("ledger: flush: %w", err)
		}
	}
	// Remove whole chunks newest first, so that an interrupted truncation
	// leaves a shorter but gap-free ledger.
	for n := len(l.chunks); n > 0 && l.chunks[n-1].start > last; n = len(l.chunks) {
		c := l.chunks[n-1]
		if !c.closed {
			if err := l.f.Close(); err != nil {
				return fmt.Errorf("ledger: close %s: %w", c.name, err)
			}
			l.f = nil
		} else {
			l.closedBytes -= c.size
		}
		if err := os.Remove(filepath.Join(l.dir, c.name)); err != nil {
			return fmt.Errorf("ledger: truncate: %w", err)
		}
		l.dirDirty = true
		l.chunks = l.chunks[:n-1]
	}
	if n := len(l.chunks); n > 0 && l.chunks[n-1].end > last {
		c := l.chunks[n-1]
		if c.closed {
			// A closed name promises complete contents: rename back to open
			// before cutting, never the other way round.
			name := openChunkName(c.start)
			if err := os.Rename(filepath.Join(l.dir, c.name), filepath.Join(l.dir, name)); err != nil {
				return fmt.Errorf("ledger: reopen chunk: %w", err)
			}
			f, err := os.OpenFile(filepath.Join(l.dir, name), os.O_RDWR, 0)
			if err != nil {
				return fmt.Errorf("ledger: reopen chunk: %w", err)
			}
			l.log.Debug("ledger chunk reopened", "file", name, "from", c.name)
			l.closedBytes -= c.size
			c.name, c.closed, l.f = name, false, f
			if l.w == nil {
				l.w = bufio.NewWriterSize(f, writeBufSize)
			}
			l.dirDirty = true
		}
		if l.dirDirty {
			// Make removals and the rename durable before cutting data.
			if err := syncDir(l.dir); err != nil {
				return err
			}
			l.dirDirty = false
		}
		cut := l.slots[last].off // record of entry last+1
		if err := l.f.Truncate(cut); err != nil {
			return fmt.Errorf("ledger: truncate %s: %w", c.name, err)
		}
		if _, err := l.f.Seek(cut, io.SeekStart); err != nil {
			return fmt.Errorf("ledger: truncate %s: %w", c.name, err)
		}
		l.w.Reset(l.f)
		c.size, c.end = cut, last
		l.zeroed, l.synced = cut, cut
		l.dirty = true
	}
	for i := last + 1; i <= uint64(len(l.slots)); i++ {
		l.cacheDrop(i)
	}
	l.cacheLow = min(l.cacheLow, last+1)
	l.slots = l.slots[:last]
	l.log.Debug("ledger truncated", "last", last)
	return nil
}

// Commit records that entries up to index are committed and renames the
// closed chunks that hold only committed entries to .committed.
func (l *Ledger) Commit(index uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return err
	}
	if index > uint64(len(l.slots)) {
		return fmt.Errorf("ledger: commit %d beyond last index %d: %w", index, len(l.slots), ErrNotFound)
	}
	if index <= l.committed {
		return nil
	}
	l.committed = index
	for ; l.committedN < len(l.chunks); l.committedN++ {
		c := l.chunks[l.committedN]
		if !c.closed || c.end > index {
			break
		}
		if c.committed {
			continue
		}
		name := closedChunkName(c.start, c.end, true)
		if err := os.Rename(filepath.Join(l.dir, c.name), filepath.Join(l.dir, name)); err != nil {
			return l.fail(fmt.Errorf("ledger: commit chunk: %w", err))
		}
		c.name, c.committed = name, true
		l.dirDirty = true
	}
	return nil
}

// FirstIndex is the first entry held: always 1, coco keeps the whole log.
func (l *Ledger) FirstIndex() uint64 { return 1 }

// LastIndex is the last entry appended (durable or not); 0 when empty.
func (l *Ledger) LastIndex() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return uint64(len(l.slots))
}

// CommittedIndex is the highest index known committed, from Commit or, after
// Open, from the .committed chunk files.
func (l *Ledger) CommittedIndex() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.committed
}

// Term returns the term of entry index.
func (l *Ledger) Term(index uint64) (uint64, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.isClosed {
		return 0, ErrClosed
	}
	if index == 0 || index > uint64(len(l.slots)) {
		return 0, fmt.Errorf("ledger: term of %d (last %d): %w", index, len(l.slots), ErrNotFound)
	}
	return l.slots[index-1].term, nil
}

// Bytes is the total size of the ledger's records, including those still in
// the write buffer.
func (l *Ledger) Bytes() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	n := l.closedBytes
	if k := len(l.chunks); k > 0 && !l.chunks[k-1].closed {
		n += l.chunks[k-1].size
	}
	return n
}

// Entry returns entry index. The result's byte slices may be shared with
// the ledger's cache: do not modify them.
func (l *Ledger) Entry(index uint64) (*Entry, error) {
	es, err := l.Entries(index, index+1)
	if err != nil {
		return nil, err
	}
	return es[0], nil
}

// Entries returns entries [lo, hi). Like Entry, results must not be
// modified.
func (l *Ledger) Entries(lo, hi uint64) ([]*Entry, error) {
	if err := l.rlockFlushed(lo, hi); err != nil {
		return nil, err
	}
	defer l.mu.RUnlock()
	if lo == 0 || lo > hi || hi > uint64(len(l.slots))+1 {
		return nil, fmt.Errorf("ledger: entries [%d,%d) (last %d): %w", lo, hi, len(l.slots), ErrNotFound)
	}
	out := make([]*Entry, 0, hi-lo)
	for i := lo; i < hi; {
		if e := l.cached(i); e != nil {
			out = append(out, e)
			i++
			continue
		}
		j := i + 1
		for j < hi && l.slots[j-1].chunk == l.slots[i-1].chunk && l.cached(j) == nil {
			j++
		}
		es, err := l.readRun(i, j)
		if err != nil {
			return nil, err
		}
		out = append(out, es...)
		i = j
	}
	return out, nil
}

// rlockFlushed takes the read lock with entries [lo, hi) readable from the
// files: if any is still in the write buffer (and not cached), it flushes
// under the write lock first.
func (l *Ledger) rlockFlushed(lo, hi uint64) error {
	for {
		l.mu.RLock()
		if l.isClosed {
			l.mu.RUnlock()
			return ErrClosed
		}
		if !l.needsFlush(lo, hi) {
			return nil
		}
		l.mu.RUnlock()
		l.mu.Lock()
		var err error
		if l.needsFlush(lo, hi) {
			if err = l.w.Flush(); err != nil {
				err = l.fail(fmt.Errorf("ledger: flush: %w", err))
			}
		}
		l.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

func (l *Ledger) needsFlush(lo, hi uint64) bool {
	n := len(l.chunks)
	if l.f == nil || n == 0 || l.w.Buffered() == 0 || l.err != nil {
		return false
	}
	c := l.chunks[n-1]
	flushed := c.size - int64(l.w.Buffered())
	for i := max(lo, c.start); i < hi && i <= uint64(len(l.slots)); i++ {
		s := l.slots[i-1]
		if s.off+recordHeaderSize+int64(s.size) > flushed && l.cached(i) == nil {
			return true
		}
	}
	return false
}

// cachePut caches e, the newest entry, and evicts the oldest entries while
// the cache holds more than cacheMax bytes (e itself always stays).
func (l *Ledger) cachePut(e *Entry) {
	p := &l.cache[e.Index%cacheSize]
	if *p != nil {
		l.cacheHeld -= (*p).bodySize()
	}
	*p = e
	l.cacheHeld += e.bodySize()
	if e.Index >= cacheSize {
		l.cacheLow = max(l.cacheLow, e.Index-cacheSize+1)
	}
	for ; l.cacheHeld > l.cacheMax && l.cacheLow < e.Index; l.cacheLow++ {
		l.cacheDrop(l.cacheLow)
	}
}

// cacheDrop removes entry index from the cache, if it is there.
func (l *Ledger) cacheDrop(index uint64) {
	if p := &l.cache[index%cacheSize]; *p != nil && (*p).Index == index {
		l.cacheHeld -= (*p).bodySize()
		*p = nil
	}
}

// cached returns a copy of the cached entry index, or nil.
func (l *Ledger) cached(index uint64) *Entry {
	e := l.cache[index%cacheSize]
	if e == nil || e.Index != index || e.Term != l.slots[index-1].term {
		return nil
	}
	cp := *e
	return &cp
}

// readRun reads entries [lo, hi), all in one chunk, with one pread, and
// checks them again: the files may have been damaged since Open.
func (l *Ledger) readRun(lo, hi uint64) ([]*Entry, error) {
	first, lastSlot := l.slots[lo-1], l.slots[hi-2]
	c := l.chunks[first.chunk]
	f := l.f
	if c.closed || f == nil {
		var err error
		if f, err = os.Open(filepath.Join(l.dir, c.name)); err != nil {
			return nil, fmt.Errorf("ledger: %w", err)
		}
		defer f.Close()
	}
	buf := make([]byte, lastSlot.off+recordHeaderSize+int64(lastSlot.size)-first.off)
	if _, err := f.ReadAt(buf, first.off); err != nil {
		return nil, fmt.Errorf("ledger: read %s at %d: %w", c.name, first.off, err)
	}
	out := make([]*Entry, 0, hi-lo)
	for i := lo; i < hi; i++ {
		s := l.slots[i-1]
		rec := buf[s.off-first.off : s.off-first.off+recordHeaderSize+int64(s.size)]
		corrupt := func(reason string) error {
			return &CorruptError{File: c.name, Offset: s.off, Index: i, Reason: reason}
		}
		if binary.BigEndian.Uint32(rec) != s.size {
			return nil, corrupt("record length changed on disk")
		}
		body := rec[recordHeaderSize:]
		if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(rec[4:]) {
			return nil, corrupt("CRC mismatch")
		}
		bi, err := parseBody(body)
		if err != nil {
			return nil, corrupt(err.Error())
		}
		if bi.index != i || bi.term != s.term {
			return nil, corrupt(fmt.Sprintf("found entry %d.%d on disk", bi.term, bi.index))
		}
		out = append(out, entryFromBody(body, bi, false))
	}
	return out, nil
}

// Close flushes and fsyncs the ledger and closes its files. Later calls
// return ErrClosed.
func (l *Ledger) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.isClosed {
		return nil
	}
	var err error
	if l.err == nil && l.f != nil && l.zeroed > l.chunks[len(l.chunks)-1].size {
		// A cleanly closed ledger leaves no preallocated zeros behind.
		if err = l.w.Flush(); err == nil {
			err = l.cutPrealloc(false)
		}
		l.dirty = true
	}
	if l.err == nil && err == nil {
		err = l.syncLocked()
	}
	if l.f != nil {
		err = errors.Join(err, l.f.Close())
		l.f = nil
	}
	l.isClosed = true
	l.cache, l.cacheHeld = [cacheSize]*Entry{}, 0
	return err
}
