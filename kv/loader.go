package kv

import "fmt"

// Loader applies the write sets of committed versions to a store in place,
// for rebuilding the store from its ledger before anything reads it (a
// node's start-up replay). Store.Apply publishes a snapshot per write set,
// so each one copies every tree node it touches; a Loader copies a map's
// nodes once between two Flushes and then writes to them in place, which
// on a long ledger is most of the replay's cost. Nothing it applies is
// visible until Flush publishes it as the head and committed state.
//
// A Loader is used from one goroutine, and nothing else may change the store
// between NewLoader and Flush: Flush refuses if something did.
type Loader struct {
	s       *Store
	base    *state               // the published state the loader builds on
	dirty   map[string]*mapState // maps written since the last Flush; their trees are the loader's alone
	version uint64               // the last version applied
}

// NewLoader returns a Loader on s, which must have nothing pending (its head
// committed).
func (s *Store) NewLoader() (*Loader, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) > 0 {
		return nil, fmt.Errorf("kv: loader on a store with %d pending versions: %w", len(s.pending), ErrVersion)
	}
	head := s.head.Load()
	return &Loader{s: s, base: head, dirty: make(map[string]*mapState), version: head.version}, nil
}

// Apply applies ws at version, which must be above every version applied
// before. Like Store.Apply it takes ownership of the value slices in ws.
func (l *Loader) Apply(version uint64, ws *WriteSet) error {
	if version <= l.version {
		return fmt.Errorf("kv: load at %d, last loaded %d: %w", version, l.version, ErrVersion)
	}
	if ws != nil {
		for _, mw := range ws.Maps {
			if len(mw.Writes) == 0 {
				continue
			}
			ms, ok := l.dirty[mw.Name]
			if !ok {
				published, _ := l.base.maps.Get(mw.Name)
				ms = &mapState{entries: published.entries.mutable()}
				l.dirty[mw.Name] = ms
			}
			ms.entries.apply(mw.Writes, version)
			ms.version = version
		}
	}
	l.version = version
	return nil
}

// Flush publishes everything applied as the store's head and committed
// state. The Loader may go on applying afterwards.
func (l *Loader) Flush() error {
	s := l.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.head.Load() != l.base || len(s.pending) > 0 {
		return fmt.Errorf("kv: the store changed while a loader was applying to it: %w", ErrVersion)
	}
	if l.version == l.base.version {
		return nil
	}
	maps := l.base.maps
	for name, ms := range l.dirty {
		maps = maps.Set(name, *ms)
	}
	next := &state{version: l.version, gen: l.base.gen, maps: maps}
	s.head.Store(next)
	s.committed.Store(next)
	l.base = next
	// Published trees are never written again: the next Apply to a map
	// takes a fresh copy of it.
	clear(l.dirty)
	return nil
}
