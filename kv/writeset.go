package kv

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Write is one buffered change to a key: a put of Value, or a deletion.
type Write struct {
	Key     string
	Value   []byte // ignored when Deleted
	Deleted bool
}

// MapWrites is the writes to one map, sorted by Key with no duplicates.
type MapWrites struct {
	Name   string
	Writes []Write
}

// WriteSet is what a transaction changes: maps sorted by Name with no
// duplicates. It is what consensus replicates and the ledger stores, so its
// encoding is deterministic.
type WriteSet struct {
	Maps []MapWrites
}

// ErrMalformed is wrapped by UnmarshalWriteSet's errors.
var ErrMalformed = errors.New("kv: malformed write set")

// Encoding (format 1). All integers are unsigned LEB128 varints in their
// shortest form; strings and values are raw bytes.
//
//	writeset = 0x01 | count | map*            maps strictly ascending by name
//	map      = len | name | count | write*    count >= 1, keys strictly ascending
//	write    = len | key | 0x00 | len | value (put)
//	         | len | key | 0x01               (delete)
//
// Exactly one byte string encodes a given set of writes: ordering, duplicate
// and shortest-varint rules are enforced on decode, so a write set's digest
// in the ledger cannot be varied without changing its meaning. Empty maps are
// not encoded. "Empty value" (put of zero bytes) and "deleted" are distinct.
const (
	formatV1  byte = 1
	opPut     byte = 0
	opDelete  byte = 1
	minMapLen      = 4 // name len, count, and one write of key len + op
	minWrite       = 2
)

// Empty reports whether ws changes nothing.
func (ws *WriteSet) Empty() bool {
	if ws == nil {
		return true
	}
	for _, m := range ws.Maps {
		if len(m.Writes) > 0 {
			return false
		}
	}
	return true
}

// Find returns the write to key in mapName, if ws has one. ws must be
// sorted as a WriteSet is (Tx.WriteSet's and UnmarshalWriteSet's are).
func (ws *WriteSet) Find(mapName, key string) (Write, bool) {
	if ws == nil {
		return Write{}, false
	}
	for _, mw := range ws.Maps {
		if mw.Name != mapName {
			continue
		}
		if i, ok := slices.BinarySearchFunc(mw.Writes, key, func(w Write, k string) int { return strings.Compare(w.Key, k) }); ok {
			return mw.Writes[i], true
		}
		break
	}
	return Write{}, false
}

// Split separates ws into its public and private maps (by IsPublic). Each
// half shares MapWrites with ws; a half with no maps is an empty WriteSet,
// never nil.
func (ws *WriteSet) Split() (public, private *WriteSet) {
	public, private = &WriteSet{}, &WriteSet{}
	if ws == nil {
		return public, private
	}
	for _, m := range ws.Maps {
		if IsPublic(m.Name) {
			public.Maps = append(public.Maps, m)
		} else {
			private.Maps = append(private.Maps, m)
		}
	}
	return public, private
}

// MergeWriteSets returns the union of a and b, normally the public and
// private halves of one write set after the private half was unsealed. The
// halves have disjoint maps; if they do share a map, its writes are merged
// and b's write wins for a key in both. Either argument may be nil.
func MergeWriteSets(a, b *WriteSet) *WriteSet {
	out := &WriteSet{}
	var am, bm []MapWrites
	if a != nil {
		am = a.Maps
	}
	if b != nil {
		bm = b.Maps
	}
	if len(am)+len(bm) == 0 {
		return out
	}
	out.Maps = make([]MapWrites, 0, len(am)+len(bm))
	out.Maps = append(out.Maps, am...)
	out.Maps = append(out.Maps, bm...)
	if isCanonical(out) {
		return out
	}
	return canonicalize(out)
}

// Marshal encodes ws in the format above. A WriteSet that breaks the sorting
// rules (built by hand rather than by Tx.WriteSet) is encoded as its
// canonical form, the later write winning among duplicates, so equal
// contents always give equal bytes.
func (ws *WriteSet) Marshal() []byte {
	if ws == nil {
		ws = &WriteSet{}
	}
	if !isCanonical(ws) {
		ws = canonicalize(ws)
	}
	n := 1 + uvarintLen(uint64(len(ws.Maps)))
	for _, m := range ws.Maps {
		n += uvarintLen(uint64(len(m.Name))) + len(m.Name) + uvarintLen(uint64(len(m.Writes)))
		for _, w := range m.Writes {
			n += uvarintLen(uint64(len(w.Key))) + len(w.Key) + 1
			if !w.Deleted {
				n += uvarintLen(uint64(len(w.Value))) + len(w.Value)
			}
		}
	}
	b := make([]byte, 0, n)
	b = append(b, formatV1)
	b = binary.AppendUvarint(b, uint64(len(ws.Maps)))
	for _, m := range ws.Maps {
		b = appendString(b, m.Name)
		b = binary.AppendUvarint(b, uint64(len(m.Writes)))
		for _, w := range m.Writes {
			b = appendString(b, w.Key)
			if w.Deleted {
				b = append(b, opDelete)
				continue
			}
			b = append(b, opPut)
			b = binary.AppendUvarint(b, uint64(len(w.Value)))
			b = append(b, w.Value...)
		}
	}
	return b
}

// UnmarshalWriteSet decodes a write set encoded by Marshal. It is strict:
// anything Marshal would not produce (wrong format byte, unsorted or
// duplicate maps or keys, empty maps, bad op byte, non-shortest varints,
// lengths past the end, trailing bytes) is an error wrapping ErrMalformed.
// The result does not alias b.
func UnmarshalWriteSet(b []byte) (*WriteSet, error) {
	// One copy backs every value, so decoding costs one allocation for all
	// of them and the caller may reuse b.
	return UnmarshalWriteSetOwned(slices.Clone(b))
}

// UnmarshalWriteSetOwned is UnmarshalWriteSet for a buffer the caller
// hands over: the values of the result alias b, which the caller must not
// use or modify afterwards (Apply takes ownership of them). A freshly
// decrypted write set is decoded this way, without a second copy.
func UnmarshalWriteSetOwned(b []byte) (*WriteSet, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty input", ErrMalformed)
	}
	if b[0] != formatV1 {
		return nil, fmt.Errorf("%w: unknown format %d", ErrMalformed, b[0])
	}
	d := decoder{buf: b[1:]}
	nmaps, err := d.count(minMapLen)
	if err != nil {
		return nil, fmt.Errorf("map count: %w", err)
	}
	ws := &WriteSet{}
	if nmaps > 0 {
		ws.Maps = make([]MapWrites, 0, nmaps)
	}
	for i := range nmaps {
		name, err := d.bytes()
		if err != nil {
			return nil, fmt.Errorf("map %d name: %w", i, err)
		}
		if i > 0 && string(name) <= ws.Maps[i-1].Name {
			return nil, fmt.Errorf("%w: map %d not in ascending order", ErrMalformed, i)
		}
		nw, err := d.count(minWrite)
		if err != nil {
			return nil, fmt.Errorf("map %d write count: %w", i, err)
		}
		if nw == 0 {
			return nil, fmt.Errorf("%w: map %d has no writes", ErrMalformed, i)
		}
		m := MapWrites{Name: string(name), Writes: make([]Write, 0, nw)}
		for j := range nw {
			key, err := d.bytes()
			if err != nil {
				return nil, fmt.Errorf("map %d write %d key: %w", i, j, err)
			}
			if j > 0 && string(key) <= m.Writes[j-1].Key {
				return nil, fmt.Errorf("%w: map %d write %d not in ascending order", ErrMalformed, i, j)
			}
			w := Write{Key: string(key)}
			op, err := d.byte()
			if err != nil {
				return nil, fmt.Errorf("map %d write %d op: %w", i, j, err)
			}
			switch op {
			case opDelete:
				w.Deleted = true
			case opPut:
				v, err := d.bytes()
				if err != nil {
					return nil, fmt.Errorf("map %d write %d value: %w", i, j, err)
				}
				w.Value = v
			default:
				return nil, fmt.Errorf("%w: map %d write %d: unknown op %d", ErrMalformed, i, j, op)
			}
			m.Writes = append(m.Writes, w)
		}
		ws.Maps = append(ws.Maps, m)
	}
	if len(d.buf) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(d.buf))
	}
	return ws, nil
}

// decoder consumes buf from the front.
type decoder struct{ buf []byte }

func (d *decoder) uvarint() (uint64, error) {
	v, n := binary.Uvarint(d.buf)
	if n <= 0 {
		return 0, fmt.Errorf("%w: bad varint", ErrMalformed)
	}
	if n != uvarintLen(v) {
		return 0, fmt.Errorf("%w: non-shortest varint", ErrMalformed)
	}
	d.buf = d.buf[n:]
	return v, nil
}

// count reads an element count and rejects one that could not fit in the
// remaining input at minSize bytes per element, so a forged count cannot
// make us allocate more than the input justifies.
func (d *decoder) count(minSize int) (int, error) {
	v, err := d.uvarint()
	if err != nil {
		return 0, err
	}
	if v > uint64(len(d.buf)/minSize) {
		return 0, fmt.Errorf("%w: count %d exceeds input", ErrMalformed, v)
	}
	return int(v), nil
}

// bytes reads a length-prefixed byte string. The result's capacity is
// clipped so appending to one value cannot overwrite the next.
func (d *decoder) bytes() ([]byte, error) {
	v, err := d.uvarint()
	if err != nil {
		return nil, err
	}
	if v > uint64(len(d.buf)) {
		return nil, fmt.Errorf("%w: length %d exceeds input", ErrMalformed, v)
	}
	n := int(v)
	s := d.buf[:n:n]
	d.buf = d.buf[n:]
	return s, nil
}

func (d *decoder) byte() (byte, error) {
	if len(d.buf) == 0 {
		return 0, fmt.Errorf("%w: truncated", ErrMalformed)
	}
	c := d.buf[0]
	d.buf = d.buf[1:]
	return c, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// isCanonical reports whether ws already obeys the WriteSet sorting rules
// and has no empty maps, the common case worth checking before copying.
func isCanonical(ws *WriteSet) bool {
	for i, m := range ws.Maps {
		if len(m.Writes) == 0 || (i > 0 && ws.Maps[i-1].Name >= m.Name) {
			return false
		}
		for j := 1; j < len(m.Writes); j++ {
			if m.Writes[j-1].Key >= m.Writes[j].Key {
				return false
			}
		}
	}
	return true
}

// canonicalize returns a sorted, duplicate-free copy of ws without empty
// maps; among duplicates (maps or keys) the later one wins.
func canonicalize(ws *WriteSet) *WriteSet {
	maps := slices.Clone(ws.Maps)
	slices.SortStableFunc(maps, func(a, b MapWrites) int { return strings.Compare(a.Name, b.Name) })
	out := &WriteSet{}
	for i := 0; i < len(maps); {
		j := i + 1
		for j < len(maps) && maps[j].Name == maps[i].Name {
			j++
		}
		var writes []Write
		for _, m := range maps[i:j] {
			writes = append(writes, m.Writes...)
		}
		slices.SortStableFunc(writes, func(a, b Write) int { return cmp.Compare(a.Key, b.Key) })
		dedup := writes[:0]
		for k, w := range writes {
			if k+1 < len(writes) && writes[k+1].Key == w.Key {
				continue // a later write to the same key wins
			}
			dedup = append(dedup, w)
		}
		if len(dedup) > 0 {
			out.Maps = append(out.Maps, MapWrites{Name: maps[i].Name, Writes: dedup})
		}
		i = j
	}
	return out
}
