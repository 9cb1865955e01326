package kv

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/benbjohnson/immutable"
)

// PublicPrefix marks a map as public: its writes go to the ledger in clear.
const PublicPrefix = "public:"

// IsPublic reports whether mapName names a public map.
func IsPublic(mapName string) bool { return strings.HasPrefix(mapName, PublicPrefix) }

var (
	// ErrConflict means something the transaction read (a key, or a map it
	// ranged over) was written after the transaction's snapshot, so its
	// writes may rest on stale data; the caller re-executes it.
	ErrConflict = errors.New("kv: transaction conflict")
	// ErrReadOnly means a write (or validation) was attempted on a read-only
	// transaction.
	ErrReadOnly = errors.New("kv: read-only transaction")
	// ErrVersion means a commit-path call named a version outside the range
	// the store can accept (for example Apply at or below the head).
	ErrVersion = errors.New("kv: version out of range")
)

// entry is one stored value and the version of the write that put it there.
type entry struct {
	value   []byte
	version uint64
}

// mapState is one map in one snapshot. version is the last version that
// wrote any key of the map (deletes included); a Range is validated against
// it, which is how inserts into a ranged map are caught.
type mapState struct {
	entries entries
	version uint64
}

// state is an immutable snapshot of the whole store. version is the version
// the snapshot stands for; after MarkCommitted or Rollback to a version that
// wrote nothing it can be above the newest write inside it.
//
// gen changes whenever a Rollback discards states. Versions are reused after
// a rollback (consensus re-applies different entries at the same seqnos), so
// comparing versions alone would let a transaction read a discarded state and
// still validate; a differing gen makes Validate refuse it.
type state struct {
	version uint64
	gen     uint64
	maps    *immutable.SortedMap[string, mapState]
}

// stringComparer orders keys and map names bytewise, the order of the
// encoding. A concrete comparer avoids the library's reflection-based default.
type stringComparer struct{}

func (stringComparer) Compare(a, b string) int { return strings.Compare(a, b) }

// Store is the transactional key-value store of one node.
type Store struct {
	// head and committed are read lock-free by transactions on any goroutine.
	head      atomic.Pointer[state]
	committed atomic.Pointer[state]

	// mu serialises the commit path; readers never take it.
	mu sync.Mutex
	// pending holds the states above the committed one, ascending by
	// version; its last element is the head unless it is empty, in which
	// case the head has the committed version.
	pending []*state
	// gen is the last generation handed out by Rollback.
	gen uint64
}

// NewStore returns an empty store at version 0 (which counts as committed).
func NewStore() *Store {
	s := &Store{}
	st := &state{maps: immutable.NewSortedMap[string, mapState](stringComparer{})}
	s.head.Store(st)
	s.committed.Store(st)
	return s
}

// Version returns the head version: the latest applied write set, which may
// not be committed yet.
func (s *Store) Version() uint64 { return s.head.Load().version }

// CommittedVersion returns the version of the committed state.
func (s *Store) CommittedVersion() uint64 { return s.committed.Load().version }

// Begin starts a read-write transaction on a snapshot of the head, so it sees
// this primary's own pending writes (as later transactions will be ordered
// after them).
func (s *Store) Begin() *Tx {
	tx := &Tx{snap: s.head.Load()}
	tx.maps, tx.reads = tx.mapsBuf[:0], tx.readsBuf[:0]
	return tx
}

// BeginReadOnly starts a read-only transaction on a snapshot of the committed
// state, so it never observes a write that could still be rolled back.
func (s *Store) BeginReadOnly() *Tx { return &Tx{snap: s.committed.Load(), readOnly: true} }

// Validate checks tx's read set against the head: it returns an error
// wrapping ErrConflict if any key tx read from its snapshot (absent keys
// included) or any map it ranged over was written after the snapshot, or if
// the snapshot was discarded by a Rollback. Validate and the Apply that
// follows it must run on the committer goroutine with nothing applied in
// between, or the check is meaningless.
func (s *Store) Validate(tx *Tx) error {
	if tx.readOnly {
		return fmt.Errorf("kv: validate: %w", ErrReadOnly)
	}
	head := s.head.Load()
	snap := tx.snap
	if head == snap {
		return nil
	}
	if head.gen != snap.gen {
		return fmt.Errorf("kv: snapshot %d was rolled back: %w", snap.version, ErrConflict)
	}
	if head.version == snap.version {
		// Same generation and version means no Apply in between.
		return nil
	}
	// Error messages name maps but never keys: keys of private maps are
	// private data and errors end up in logs.
	for _, name := range tx.ranged {
		if ms, ok := head.maps.Get(name); ok && ms.version > snap.version {
			return fmt.Errorf("kv: map %q written at %d after snapshot %d: %w", name, ms.version, snap.version, ErrConflict)
		}
	}
	for _, r := range tx.reads {
		var v uint64
		if ms, ok := head.maps.Get(r.mapName); ok {
			if e, ok := ms.entries.get(r.key); ok {
				v = e.version
			}
		}
		if v != r.version {
			return fmt.Errorf("kv: key in map %q written at %d after snapshot %d: %w", r.mapName, v, snap.version, ErrConflict)
		}
	}
	return nil
}

// Apply applies ws at version, which must be above the head; the result is
// the new head, pending until MarkCommitted. Apply takes ownership of the
// value slices in ws: the caller must not modify them afterwards (those from
// Tx.WriteSet and UnmarshalWriteSet are never modified by kv).
func (s *Store) Apply(version uint64, ws *WriteSet) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	head := s.head.Load()
	if version <= head.version {
		return fmt.Errorf("kv: apply at %d, head is %d: %w", version, head.version, ErrVersion)
	}
	maps := head.maps
	if ws != nil {
		for _, mw := range ws.Maps {
			if len(mw.Writes) == 0 {
				continue
			}
			ms, _ := maps.Get(mw.Name)
			entries := ms.entries.mutable()
			entries.apply(mw.Writes, version)
			maps = maps.Set(mw.Name, mapState{entries: entries, version: version})
		}
	}
	next := &state{version: version, gen: head.gen, maps: maps}
	s.pending = append(s.pending, next)
	s.head.Store(next)
	return nil
}

// MarkCommitted advances the committed state to version, which must lie
// between CommittedVersion and Version. Pending states at or below it are
// forgotten: they can no longer be rolled back to or read.
func (s *Store) MarkCommitted(version uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	head, committed := s.head.Load(), s.committed.Load()
	if version < committed.version || version > head.version {
		return fmt.Errorf("kv: mark committed %d outside [%d, %d]: %w", version, committed.version, head.version, ErrVersion)
	}
	if version == committed.version {
		return nil
	}
	base := s.stateAt(version, head, committed)
	if base.version != version {
		// version wrote nothing here (a gap in applied versions); label a
		// copy so CommittedVersion reports what consensus committed.
		c := *base
		c.version = version
		base = &c
	}
	n := 0
	for n < len(s.pending) && s.pending[n].version <= version {
		n++
	}
	s.pending = slices.Delete(s.pending, 0, n)
	s.committed.Store(base)
	return nil
}

// Rollback makes the state at version the head, discarding every pending
// state above it; version must lie between CommittedVersion and Version.
// Read-write transactions begun before a Rollback that discarded anything
// fail Validate.
func (s *Store) Rollback(version uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	head, committed := s.head.Load(), s.committed.Load()
	if version < committed.version || version > head.version {
		return fmt.Errorf("kv: rollback to %d outside [%d, %d]: %w", version, committed.version, head.version, ErrVersion)
	}
	if version == head.version {
		return nil
	}
	base := s.stateAt(version, head, committed)
	s.gen++
	next := &state{version: version, gen: s.gen, maps: base.maps}
	i := 0
	for i < len(s.pending) && s.pending[i].version < version {
		i++
	}
	clear(s.pending[i:]) // let discarded states be collected
	s.pending = s.pending[:i]
	if version > committed.version {
		s.pending = append(s.pending, next)
	}
	s.head.Store(next)
	return nil
}

// stateAt returns the newest state with version <= v. Caller holds s.mu and
// has checked committed.version <= v.
func (s *Store) stateAt(v uint64, head, committed *state) *state {
	if v >= head.version {
		return head
	}
	for i := len(s.pending) - 1; i >= 0; i-- {
		if s.pending[i].version <= v {
			return s.pending[i]
		}
	}
	return committed
}
