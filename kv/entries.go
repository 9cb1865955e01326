package kv

import "github.com/tidwall/btree"

// entries is one map's keys in one snapshot: a copy-on-write B-tree
// (github.com/tidwall/btree). A published tree is never modified. Apply
// takes a copy (constant time), which copies each node the first time it
// writes to it and then writes to that node in place: a write set of many
// keys pays for each node it touches once, not for a whole path per key.
type entries struct{ t *btree.BTreeG[item] }

// item is one key and its entry.
type item struct {
	key string
	entry
}

// entriesDegree sizes the B-tree nodes (at most 2*degree-1 items). Measured
// with kv's BenchmarkCommitSmallTx and evm's BenchmarkBuildERC20Transfers:
// 16 made one-key commits 1.7x slower (a bigger node to copy per write);
// 4 and 8 were alike, and 8 keeps trees shallower for reads.
const entriesDegree = 8

func itemLess(a, b item) bool { return a.key < b.key }

func newEntries() entries {
	return entries{btree.NewBTreeGOptions(itemLess, btree.Options{Degree: entriesDegree, NoLocks: true})}
}

func (m entries) get(key string) (entry, bool) {
	if m.t == nil {
		return entry{}, false
	}
	it, ok := m.t.Get(item{key: key})
	return it.entry, ok
}

// mutable returns a copy of m that Apply may write to; m is unchanged.
func (m entries) mutable() entries {
	if m.t == nil {
		return newEntries()
	}
	// Copy assigns the source tree a new isolation id, a write: make it on
	// a private shallow copy so that the published tree, which readers use
	// concurrently, is never written to.
	shadow := *m.t
	return entries{shadow.Copy()}
}

func (m entries) set(key string, e entry) { m.t.Set(item{key: key, entry: e}) }

func (m entries) delete(key string) { m.t.Delete(item{key: key}) }

// apply makes writes, made at version, to m (which must be mutable).
func (m entries) apply(writes []Write, version uint64) {
	for _, w := range writes {
		if w.Deleted {
			m.delete(w.Key)
		} else {
			m.set(w.Key, entry{value: w.Value, version: version})
		}
	}
}

// cursor walks the keys of m that are >= from, in order.
type cursor struct {
	it      btree.IterG[item]
	from    string
	started bool
	done    bool
}

func (m entries) cursor(from string) *cursor {
	c := &cursor{from: from, done: m.t == nil}
	if !c.done {
		c.it = m.t.Iter()
	}
	return c
}

// next returns the next key and its entry, or ok false at the end.
func (c *cursor) next() (key string, e entry, ok bool) {
	if c.done {
		return "", entry{}, false
	}
	if !c.started {
		c.started = true
		ok = c.it.Seek(item{key: c.from})
	} else {
		ok = c.it.Next()
	}
	if !ok {
		c.done = true
		c.it.Release()
		return "", entry{}, false
	}
	it := c.it.Item()
	return it.key, it.entry, true
}
