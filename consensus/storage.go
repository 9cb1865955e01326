package consensus

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cocoledger/coco/ledger"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
)

// tailCacheSize is how many recent raft entries storage keeps decoded. Raft
// re-reads every entry once more when it is committed, and followers that lag
// a little read the recent tail; older entries are read from the ledger.
// tailCacheBytes bounds the same cache by the size of the entries' data:
// entries of batched ERC-20 transactions are 100-600 KB each, and 16,384 of
// them (several GB) once made up most of a node's memory.
const (
	tailCacheSize  = 1 << 14
	tailCacheBytes = 64 << 20
)

// storage implements raft.Storage over the ledger. Raft calls it from the
// loop goroutine; status readers may call it from others, hence the lock.
type storage struct {
	mu   sync.Mutex
	led  *ledger.Ledger
	hs   *pb.HardState
	cs   *pb.ConfState
	tail map[uint64]*pb.Entry // index -> entry, for indexes > LastIndex-tailCacheSize
	// tailLow is the lowest index that may still be in tail.
	tailLow uint64
	// tailBytes is the size of the data of the entries in tail, at most
	// tailMax (tailCacheBytes; tests lower it) unless tail holds one entry.
	tailBytes, tailMax int
}

var _ raft.Storage = (*storage)(nil)

func newStorage(led *ledger.Ledger, hs *pb.HardState, cs *pb.ConfState) *storage {
	// Nothing is cached yet: eviction starts from the first entry appended.
	return &storage{led: led, hs: hs, cs: cs, tail: make(map[uint64]*pb.Entry, tailCacheSize), tailLow: led.LastIndex() + 1, tailMax: tailCacheBytes}
}

// InitialState returns the HardState and ConfState loaded at start-up.
func (s *storage) InitialState() (*pb.HardState, *pb.ConfState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hs, s.cs, nil
}

// Entries returns log entries [lo, hi) up to maxSize bytes (at least one).
func (s *storage) Entries(lo, hi, maxSize uint64) ([]*pb.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	last := s.led.LastIndex()
	if lo < s.led.FirstIndex() {
		return nil, raft.ErrCompacted
	}
	if hi > last+1 {
		return nil, fmt.Errorf("consensus: entries [%d,%d) beyond last index %d: %w", lo, hi, last, raft.ErrUnavailable)
	}
	out := make([]*pb.Entry, 0, min(hi-lo, 256))
	var size uint64
	for i := lo; i < hi; i++ {
		e, err := s.entryLocked(i)
		if err != nil {
			return nil, err
		}
		size += uint64(len(e.GetData())) + 24
		if len(out) > 0 && size > maxSize {
			break
		}
		out = append(out, e)
	}
	return out, nil
}

func (s *storage) entryLocked(i uint64) (*pb.Entry, error) {
	if e, ok := s.tail[i]; ok {
		return e, nil
	}
	le, err := s.led.Entry(i)
	if err != nil {
		if errors.Is(err, ledger.ErrNotFound) {
			return nil, raft.ErrUnavailable
		}
		return nil, err
	}
	return raftEntry(le), nil
}

// Term returns the term of entry i; 0 for index 0 (the empty log's dummy entry).
func (s *storage) Term(i uint64) (uint64, error) {
	if i == 0 {
		return 0, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.tail[i]; ok {
		return e.GetTerm(), nil
	}
	if i > s.led.LastIndex() {
		return 0, raft.ErrUnavailable
	}
	t, err := s.led.Term(i)
	if errors.Is(err, ledger.ErrNotFound) {
		return 0, raft.ErrUnavailable
	}
	return t, err
}

// LastIndex returns the index of the last persisted entry.
func (s *storage) LastIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.led.LastIndex(), nil
}

// FirstIndex returns the first index available; coco keeps the whole log.
func (s *storage) FirstIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.led.FirstIndex(), nil
}

// Snapshot is not used yet: coco keeps the full log, so raft never needs one.
// Snapshots arrive with the recovery work (see the roadmap).
func (s *storage) Snapshot() (*pb.Snapshot, error) {
	return pb.EnsureSnapshot(nil), nil
}

// append persists entries (buffered; the caller syncs), truncating any
// conflicting suffix first, and caches them.
func (s *storage) append(raftEnts []*pb.Entry, ledEnts []*ledger.Entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	first := raftEnts[0].GetIndex()
	if last := s.led.LastIndex(); first <= last {
		if err := s.led.Truncate(first - 1); err != nil {
			return fmt.Errorf("consensus: truncate log to %d: %w", first-1, err)
		}
		for i := first; i <= last; i++ {
			s.evict(i)
		}
	}
	if err := s.led.Append(ledEnts...); err != nil {
		return fmt.Errorf("consensus: append to ledger: %w", err)
	}
	for _, e := range raftEnts {
		s.tail[e.GetIndex()] = e
		s.tailBytes += len(e.GetData())
	}
	// A truncation can re-add entries below the eviction mark.
	s.tailLow = min(s.tailLow, first)
	// Entries are appended in order, so evicting from the oldest keeps the
	// map within its count and its bytes; the newest entry always stays.
	newLast := raftEnts[len(raftEnts)-1].GetIndex()
	for s.tailLow < newLast && (newLast-s.tailLow >= tailCacheSize || s.tailBytes > s.tailMax) {
		s.evict(s.tailLow)
		s.tailLow++
	}
	return nil
}

// evict drops entry i from the tail cache, if it is there. Caller holds s.mu.
func (s *storage) evict(i uint64) {
	if e, ok := s.tail[i]; ok {
		s.tailBytes -= len(e.GetData())
		delete(s.tail, i)
	}
}

func (s *storage) setHardState(hs *pb.HardState) {
	s.mu.Lock()
	s.hs = hs
	s.mu.Unlock()
}

func (s *storage) setConfState(cs *pb.ConfState) {
	s.mu.Lock()
	s.cs = cs
	s.mu.Unlock()
}

// raftEntry converts a ledger entry back to the raft entry it was made from.
func raftEntry(le *ledger.Entry) *pb.Entry {
	e := &pb.Entry{Term: new(le.Term), Index: new(le.Index)}
	if le.Kind == ledger.KindInternal {
		e.Type = new(pb.EntryType(le.RaftType))
		e.Data = le.Public
		return e
	}
	e.Type = new(pb.EntryNormal)
	e.Data = le.Marshal()
	return e
}

// ledgerEntry converts a raft entry into the ledger entry to persist. coco's
// own entries carry a marshalled ledger entry as data; raft's own entries
// (the empty entry of a new leader, configuration changes) are wrapped.
func ledgerEntry(e *pb.Entry) (*ledger.Entry, error) {
	if e.GetType() == pb.EntryNormal && len(e.GetData()) > 0 {
		// Raft entry data is never modified (not by raft, not by coco), so
		// the ledger entry may alias it.
		le, err := ledger.UnmarshalEntryNoCopy(e.GetData())
		if err != nil {
			return nil, fmt.Errorf("consensus: raft entry %d.%d: %w", e.GetTerm(), e.GetIndex(), err)
		}
		if le.Term != e.GetTerm() || le.Index != e.GetIndex() {
			return nil, fmt.Errorf("consensus: raft entry %d.%d carries transaction %s", e.GetTerm(), e.GetIndex(), le.TxID())
		}
		return le, nil
	}
	return &ledger.Entry{
		Kind:     ledger.KindInternal,
		RaftType: uint8(e.GetType()),
		Term:     e.GetTerm(),
		Index:    e.GetIndex(),
		Public:   e.GetData(),
	}, nil
}
