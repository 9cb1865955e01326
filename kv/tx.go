package kv

import (
	"fmt"
	"slices"
	"strings"
)

// readDedupThreshold is the read-set size above which Tx keeps a hash index
// to avoid recording a key twice; below it a linear scan is cheaper than the
// map allocation.
const readDedupThreshold = 16

type readKey struct{ mapName, key string }

// read is one key read from the snapshot and the version it had there
// (0 when absent).
type read struct {
	mapName, key string
	version      uint64
}

// txMap holds a transaction's own writes to one map, sorted by key so that
// WriteSet and Range need no sort. shared is set once the slice has been
// handed out (WriteSet, or a Range in progress); the next write then copies
// it, so what was handed out never changes underneath its holder.
type txMap struct {
	name   string
	writes []Write
	shared bool
}

// Tx is a transaction on one snapshot of a Store. It buffers its writes and
// records what it read for Store.Validate. A Tx is used by one goroutine.
type Tx struct {
	snap     *state
	readOnly bool

	maps     []txMap // sorted by name
	reads    []read
	readSeen map[readKey]struct{} // built once reads outgrows a linear scan
	ranged   []string

	// Inline backing for the common small transaction (one map, a few
	// reads), saving allocations on the hot path.
	mapsBuf  [1]txMap
	readsBuf [4]read
}

// Version returns the version of the transaction's snapshot.
func (tx *Tx) Version() uint64 { return tx.snap.version }

// ReadOnly reports whether tx was started with BeginReadOnly.
func (tx *Tx) ReadOnly() bool { return tx.readOnly }

// HasWrites reports whether tx has buffered any write (a delete of an absent
// key included).
func (tx *Tx) HasWrites() bool {
	for i := range tx.maps {
		if len(tx.maps[i].writes) > 0 {
			return true
		}
	}
	return false
}

// Get returns the value of key in mapName: the transaction's own write if it
// has one, otherwise the snapshot's. A read from the snapshot, present or
// absent, joins the read set. The returned slice is the caller's own copy.
func (tx *Tx) Get(mapName, key string) ([]byte, bool) {
	if tm := tx.findMap(mapName); tm != nil {
		if i, ok := tm.find(key); ok {
			w := tm.writes[i]
			if w.Deleted {
				return nil, false
			}
			return cloneBytes(w.Value), true
		}
	}
	var e entry
	var ok bool
	if ms, found := tx.snap.maps.Get(mapName); found {
		e, ok = ms.entries.get(key)
	}
	if !tx.readOnly {
		// A read-only tx is never validated, so it keeps no read set.
		tx.recordRead(mapName, key, e.version)
	}
	if !ok {
		return nil, false
	}
	return cloneBytes(e.value), true
}

// Put buffers a write of value to key in mapName. value is copied, so the
// caller may reuse it.
func (tx *Tx) Put(mapName, key string, value []byte) error {
	if tx.readOnly {
		return fmt.Errorf("kv: put in map %q: %w", mapName, ErrReadOnly)
	}
	tx.mapFor(mapName).set(Write{Key: key, Value: cloneBytes(value)})
	return nil
}

// Delete buffers a deletion of key in mapName. Deleting an absent key is
// still a write: it is in the write set and bumps the map's version, which is
// what a concurrent Range of the map must be validated against anyway.
func (tx *Tx) Delete(mapName, key string) error {
	if tx.readOnly {
		return fmt.Errorf("kv: delete in map %q: %w", mapName, ErrReadOnly)
	}
	tx.mapFor(mapName).set(Write{Key: key, Deleted: true})
	return nil
}

// Range calls fn for each key of mapName in ascending order, as the
// transaction sees it (snapshot merged with its own writes), until fn returns
// false. The whole map joins the read set: any later write to it, even of a
// key fn was not called for, conflicts. Values passed to fn are the caller's
// own copies. fn may write to tx; those writes are not visited.
func (tx *Tx) Range(mapName string, fn func(key string, value []byte) bool) {
	tx.RangeFrom(mapName, "", fn)
}

// RangeFrom is Range starting at the first key >= from. The whole map still
// joins the read set.
func (tx *Tx) RangeFrom(mapName, from string, fn func(key string, value []byte) bool) {
	if !tx.readOnly && !slices.Contains(tx.ranged, mapName) {
		tx.ranged = append(tx.ranged, mapName)
	}
	var own []Write
	if tm := tx.findMap(mapName); tm != nil {
		i, _ := tm.find(from)
		own = tm.writes[i:]
		tm.shared = true // writes from fn must not shift own under us
	}
	ms, _ := tx.snap.maps.Get(mapName)
	it := ms.entries.cursor(from)
	sk, se, sok := it.next()
	i := 0
	for sok || i < len(own) {
		if i < len(own) && (!sok || own[i].Key <= sk) {
			w := own[i]
			i++
			if sok && w.Key == sk {
				sk, se, sok = it.next() // own write shadows the snapshot
			}
			if w.Deleted {
				continue
			}
			if !fn(w.Key, cloneBytes(w.Value)) {
				return
			}
			continue
		}
		if !fn(sk, cloneBytes(se.value)) {
			return
		}
		sk, se, sok = it.next()
	}
}

// WriteSet returns tx's buffered writes, maps sorted by name and writes by
// key. It stays valid (unchanged) if tx is written to afterwards.
func (tx *Tx) WriteSet() *WriteSet {
	ws := &WriteSet{}
	for i := range tx.maps {
		tm := &tx.maps[i]
		if len(tm.writes) == 0 {
			continue
		}
		if ws.Maps == nil {
			ws.Maps = make([]MapWrites, 0, len(tx.maps)-i)
		}
		tm.shared = true
		ws.Maps = append(ws.Maps, MapWrites{Name: tm.name, Writes: tm.writes[:len(tm.writes):len(tm.writes)]})
	}
	return ws
}

func (tx *Tx) recordRead(mapName, key string, version uint64) {
	if tx.readSeen == nil {
		for _, r := range tx.reads {
			if r.key == key && r.mapName == mapName {
				return // same snapshot, same version: nothing new to check
			}
		}
		if len(tx.reads) >= readDedupThreshold {
			tx.readSeen = make(map[readKey]struct{}, 2*len(tx.reads))
			for _, r := range tx.reads {
				tx.readSeen[readKey{r.mapName, r.key}] = struct{}{}
			}
		}
	}
	if tx.readSeen != nil {
		k := readKey{mapName, key}
		if _, dup := tx.readSeen[k]; dup {
			return
		}
		tx.readSeen[k] = struct{}{}
	}
	tx.reads = append(tx.reads, read{mapName: mapName, key: key, version: version})
}

func (tx *Tx) findMap(name string) *txMap {
	i, ok := slices.BinarySearchFunc(tx.maps, name, func(m txMap, n string) int { return strings.Compare(m.name, n) })
	if !ok {
		return nil
	}
	return &tx.maps[i]
}

func (tx *Tx) mapFor(name string) *txMap {
	i, ok := slices.BinarySearchFunc(tx.maps, name, func(m txMap, n string) int { return strings.Compare(m.name, n) })
	if !ok {
		tx.maps = slices.Insert(tx.maps, i, txMap{name: name})
	}
	return &tx.maps[i]
}

func (tm *txMap) find(key string) (int, bool) {
	return slices.BinarySearchFunc(tm.writes, key, func(w Write, k string) int { return strings.Compare(w.Key, k) })
}

// set inserts or replaces w, keeping writes sorted. Appends in key order
// (the common bulk case) cost O(1); random inserts cost a shift.
func (tm *txMap) set(w Write) {
	if tm.shared {
		tm.writes = slices.Clone(tm.writes)
		tm.shared = false
	}
	i, ok := tm.find(w.Key)
	if ok {
		tm.writes[i] = w
		return
	}
	tm.writes = slices.Insert(tm.writes, i, w)
}

// cloneBytes copies b; a present value is never nil, even when empty, so
// callers can tell "empty" from "absent" without the bool.
func cloneBytes(b []byte) []byte {
	c := make([]byte, len(b))
	copy(c, b)
	return c
}
