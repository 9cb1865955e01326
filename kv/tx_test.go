package kv

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"
)

// commit validates tx and applies its write set at the next version, the
// way the consensus loop does, then marks it committed.
func commit(t *testing.T, s *Store, tx *Tx) uint64 {
	t.Helper()
	if err := s.Validate(tx); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	v := s.Version() + 1
	if err := s.Apply(v, tx.WriteSet()); err != nil {
		t.Fatalf("Apply(%d): %v", v, err)
	}
	if err := s.MarkCommitted(v); err != nil {
		t.Fatalf("MarkCommitted(%d): %v", v, err)
	}
	return v
}

func put(t *testing.T, s *Store, m, k, v string) uint64 {
	t.Helper()
	tx := s.Begin()
	if err := tx.Put(m, k, []byte(v)); err != nil {
		t.Fatal(err)
	}
	return commit(t, s, tx)
}

func get(tx *Tx, m, k string) string {
	v, ok := tx.Get(m, k)
	if !ok {
		return "<absent>"
	}
	return string(v)
}

func rangeAll(tx *Tx, m string) []string {
	var out []string
	tx.Range(m, func(k string, v []byte) bool {
		out = append(out, k+"="+string(v))
		return true
	})
	return out
}

func TestIsPublic(t *testing.T) {
	for name, want := range map[string]bool{
		"public:ccf.gov.users.certs": true,
		"public:":                    true,
		"records":                    false,
		"Public:x":                   false,
		"":                           false,
	} {
		if got := IsPublic(name); got != want {
			t.Errorf("IsPublic(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestTxReadsAndWrites(t *testing.T) {
	tests := []struct {
		name string
		do   func(tx *Tx) error // operations inside the tx
		m, k string
		want string // what tx.Get returns afterwards
	}{
		{"snapshot value", func(*Tx) error { return nil }, "m", "a", "1"},
		{"absent key", func(*Tx) error { return nil }, "m", "zz", "<absent>"},
		{"absent map", func(*Tx) error { return nil }, "nope", "a", "<absent>"},
		{"own put overrides", func(tx *Tx) error { return tx.Put("m", "a", []byte("x")) }, "m", "a", "x"},
		{"own insert", func(tx *Tx) error { return tx.Put("m", "new", []byte("n")) }, "m", "new", "n"},
		{"own delete hides", func(tx *Tx) error { return tx.Delete("m", "a") }, "m", "a", "<absent>"},
		{"put after delete", func(tx *Tx) error {
			if err := tx.Delete("m", "a"); err != nil {
				return err
			}
			return tx.Put("m", "a", []byte("back"))
		}, "m", "a", "back"},
		{"empty value is present", func(tx *Tx) error { return tx.Put("m", "e", nil) }, "m", "e", ""},
		{"other map untouched", func(tx *Tx) error { return tx.Put("m2", "a", []byte("y")) }, "m", "a", "1"},
		{"binary key", func(tx *Tx) error { return tx.Put("m", "\x00\xff", []byte{0}) }, "m", "\x00\xff", "\x00"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := NewStore()
			put(t, s, "m", "a", "1")
			put(t, s, "m", "b", "2")
			tx := s.Begin()
			if err := tc.do(tx); err != nil {
				t.Fatal(err)
			}
			if got := get(tx, tc.m, tc.k); got != tc.want {
				t.Errorf("Get(%q, %q) = %q, want %q", tc.m, tc.k, got, tc.want)
			}
		})
	}
}

func TestValuesDoNotAlias(t *testing.T) {
	s := NewStore()
	buf := []byte("orig")
	tx := s.Begin()
	if err := tx.Put("m", "k", buf); err != nil {
		t.Fatal(err)
	}
	buf[0] = 'X' // caller reuses its buffer after Put
	if got := get(tx, "m", "k"); got != "orig" {
		t.Fatalf("own write changed by caller's buffer: %q", got)
	}
	v, _ := tx.Get("m", "k")
	v[0] = 'Y'
	commit(t, s, tx)
	r := s.BeginReadOnly()
	v, _ = r.Get("m", "k")
	v[0] = 'Z'
	r.Range("m", func(_ string, v []byte) bool { v[0] = 'W'; return true })
	if got := get(s.BeginReadOnly(), "m", "k"); got != "orig" {
		t.Fatalf("store mutated through returned value: %q", got)
	}
}

func TestDeleteAbsentIsWrite(t *testing.T) {
	s := NewStore()
	tx := s.Begin()
	if tx.HasWrites() {
		t.Fatal("fresh tx has writes")
	}
	if err := tx.Delete("m", "ghost"); err != nil {
		t.Fatal(err)
	}
	if !tx.HasWrites() {
		t.Fatal("delete of absent key not recorded")
	}
	ws := tx.WriteSet()
	want := []MapWrites{{Name: "m", Writes: []Write{{Key: "ghost", Deleted: true}}}}
	if !equalMaps(ws.Maps, want) {
		t.Fatalf("WriteSet = %+v, want %+v", ws.Maps, want)
	}
	commit(t, s, tx)
	if got := get(s.BeginReadOnly(), "m", "ghost"); got != "<absent>" {
		t.Fatalf("got %q", got)
	}
}

func TestDeleteCommitted(t *testing.T) {
	s := NewStore()
	put(t, s, "m", "a", "1")
	tx := s.Begin()
	if err := tx.Delete("m", "a"); err != nil {
		t.Fatal(err)
	}
	commit(t, s, tx)
	r := s.BeginReadOnly()
	if got := get(r, "m", "a"); got != "<absent>" {
		t.Fatalf("after delete Get = %q", got)
	}
	if got := rangeAll(r, "m"); len(got) != 0 {
		t.Fatalf("after delete Range = %v", got)
	}
}

func TestRangeMerge(t *testing.T) {
	s := NewStore()
	for _, k := range []string{"b", "d", "f", "h"} {
		put(t, s, "m", k, "s"+k)
	}
	put(t, s, "other", "c", "x")
	tx := s.Begin()
	for _, op := range []struct {
		k   string
		del bool
	}{{"a", false}, {"d", true}, {"e", false}, {"f", false}, {"z", true}, {"i", false}} {
		var err error
		if op.del {
			err = tx.Delete("m", op.k)
		} else {
			err = tx.Put("m", op.k, []byte("o"+op.k))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"a=oa", "b=sb", "e=oe", "f=of", "h=sh", "i=oi"}
	if got := rangeAll(tx, "m"); !slices.Equal(got, want) {
		t.Fatalf("Range = %v, want %v", got, want)
	}
	// Early stop.
	var n int
	tx.Range("m", func(string, []byte) bool { n++; return n < 3 })
	if n != 3 {
		t.Fatalf("Range visited %d after stop at 3", n)
	}
	// Writes from the callback do not disturb the iteration in progress.
	var seen []string
	tx.Range("m", func(k string, _ []byte) bool {
		seen = append(seen, k)
		if err := tx.Put("m", "c", []byte("cb")); err != nil {
			t.Fatal(err)
		}
		if err := tx.Delete("m", "h"); err != nil {
			t.Fatal(err)
		}
		return true
	})
	if want := []string{"a", "b", "e", "f", "h", "i"}; !slices.Equal(seen, want) {
		t.Fatalf("Range with writes in callback = %v, want %v", seen, want)
	}
	if got, want := rangeAll(tx, "m"), []string{"a=oa", "b=sb", "c=cb", "e=oe", "f=of", "i=oi"}; !slices.Equal(got, want) {
		t.Fatalf("Range after callback writes = %v, want %v", got, want)
	}
	if got := rangeAll(tx, "empty"); len(got) != 0 {
		t.Fatalf("Range of absent map = %v", got)
	}
}

func TestRangeFrom(t *testing.T) {
	s := NewStore()
	for _, k := range []string{"b", "d", "f", "h"} {
		put(t, s, "m", k, "s"+k)
	}
	tx := s.Begin()
	for _, k := range []string{"a", "e", "g"} {
		if err := tx.Put("m", k, []byte("o"+k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Delete("m", "f"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		from string
		want []string
	}{
		{"", []string{"a", "b", "d", "e", "g", "h"}},
		{"a", []string{"a", "b", "d", "e", "g", "h"}},
		{"c", []string{"d", "e", "g", "h"}},
		{"e", []string{"e", "g", "h"}},
		{"f", []string{"g", "h"}},
		{"h", []string{"h"}},
		{"i", nil},
	} {
		var got []string
		tx.RangeFrom("m", tc.from, func(k string, _ []byte) bool { got = append(got, k); return true })
		if !slices.Equal(got, tc.want) {
			t.Errorf("RangeFrom(%q) = %v, want %v", tc.from, got, tc.want)
		}
	}
	// The whole map joins the read set, whatever the start.
	put(t, s, "m", "a0", "x")
	if err := s.Validate(tx); !errors.Is(err, ErrConflict) {
		t.Errorf("Validate after a write before the range start: %v, want ErrConflict", err)
	}
}

func TestReadOnly(t *testing.T) {
	s := NewStore()
	put(t, s, "m", "a", "1")
	r := s.BeginReadOnly()
	if !r.ReadOnly() || s.Begin().ReadOnly() {
		t.Fatal("ReadOnly() wrong")
	}
	if err := r.Put("m", "a", []byte("x")); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Put: %v, want ErrReadOnly", err)
	}
	if err := r.Delete("m", "a"); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Delete: %v, want ErrReadOnly", err)
	}
	if err := s.Validate(r); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Validate: %v, want ErrReadOnly", err)
	}
	if r.HasWrites() || !r.WriteSet().Empty() {
		t.Error("read-only tx has writes")
	}
	if got := get(r, "m", "a"); got != "1" {
		t.Errorf("Get = %q", got)
	}
}

func TestCommittedVersusHead(t *testing.T) {
	s := NewStore()
	put(t, s, "m", "a", "1") // committed at 1
	tx := s.Begin()
	if err := tx.Put("m", "a", []byte("2")); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(2, tx.WriteSet()); err != nil {
		t.Fatal(err)
	}
	if s.Version() != 2 || s.CommittedVersion() != 1 {
		t.Fatalf("versions head %d committed %d", s.Version(), s.CommittedVersion())
	}
	ro, rw := s.BeginReadOnly(), s.Begin()
	if ro.Version() != 1 || rw.Version() != 2 {
		t.Fatalf("tx versions ro %d rw %d", ro.Version(), rw.Version())
	}
	if got := get(ro, "m", "a"); got != "1" {
		t.Errorf("read-only sees %q, want committed 1", got)
	}
	if got := get(rw, "m", "a"); got != "2" {
		t.Errorf("read-write sees %q, want head 2", got)
	}
	if err := s.MarkCommitted(2); err != nil {
		t.Fatal(err)
	}
	if got := get(ro, "m", "a"); got != "1" {
		t.Errorf("old read-only snapshot changed to %q", got)
	}
	if got := get(s.BeginReadOnly(), "m", "a"); got != "2" {
		t.Errorf("new read-only sees %q", got)
	}
}

func TestApplyGapsAndMarkCommittedBetween(t *testing.T) {
	s := NewStore()
	apply := func(v uint64, val string) {
		t.Helper()
		ws := &WriteSet{Maps: []MapWrites{{Name: "m", Writes: []Write{{Key: "k", Value: []byte(val)}}}}}
		if err := s.Apply(v, ws); err != nil {
			t.Fatal(err)
		}
	}
	apply(10, "ten")
	apply(15, "fifteen")
	// Commit a version that wrote nothing here: the state as of 12 is 10's.
	if err := s.MarkCommitted(12); err != nil {
		t.Fatal(err)
	}
	r := s.BeginReadOnly()
	if r.Version() != 12 || s.CommittedVersion() != 12 || get(r, "m", "k") != "ten" {
		t.Fatalf("committed %d/%d value %q", r.Version(), s.CommittedVersion(), get(r, "m", "k"))
	}
	if err := s.Apply(15, nil); !errors.Is(err, ErrVersion) {
		t.Fatalf("Apply at head: %v, want ErrVersion", err)
	}
	if err := s.Rollback(13); err != nil {
		t.Fatal(err)
	}
	if s.Version() != 13 || get(s.Begin(), "m", "k") != "ten" {
		t.Fatalf("after rollback head %d value %q", s.Version(), get(s.Begin(), "m", "k"))
	}
	if err := s.Apply(13, nil); !errors.Is(err, ErrVersion) {
		t.Fatalf("Apply at rolled-back head: %v", err)
	}
	apply(14, "fourteen")
	if err := s.MarkCommitted(14); err != nil {
		t.Fatal(err)
	}
	if got := get(s.BeginReadOnly(), "m", "k"); got != "fourteen" {
		t.Fatalf("got %q", got)
	}
}

func TestRollback(t *testing.T) {
	s := NewStore()
	put(t, s, "m", "a", "1") // v1 committed
	for _, val := range []string{"2", "3", "4"} {
		tx := s.Begin()
		if err := tx.Put("m", "a", []byte(val)); err != nil {
			t.Fatal(err)
		}
		if err := s.Apply(s.Version()+1, tx.WriteSet()); err != nil {
			t.Fatal(err)
		}
	}
	if s.Version() != 4 || s.CommittedVersion() != 1 {
		t.Fatalf("head %d committed %d", s.Version(), s.CommittedVersion())
	}
	stale := s.Begin() // snapshot at 4, about to be discarded
	_ = get(stale, "m", "a")
	if err := stale.Put("m", "b", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkCommitted(2); err != nil {
		t.Fatal(err)
	}
	if err := s.Rollback(3); err != nil {
		t.Fatal(err)
	}
	if s.Version() != 3 || get(s.Begin(), "m", "a") != "3" {
		t.Fatalf("after Rollback(3): head %d value %q", s.Version(), get(s.Begin(), "m", "a"))
	}
	// Version 4 is reused by a different write set; the stale tx read the
	// discarded version 4 and must not validate.
	if err := s.Apply(4, &WriteSet{Maps: []MapWrites{{Name: "m", Writes: []Write{{Key: "a", Value: []byte("4'")}}}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(stale); !errors.Is(err, ErrConflict) {
		t.Fatalf("Validate of tx on discarded state: %v, want ErrConflict", err)
	}
	if err := s.Rollback(2); err != nil {
		t.Fatal(err)
	}
	if got := get(s.Begin(), "m", "a"); got != "2" {
		t.Fatalf("after Rollback(2) value %q", got)
	}
	if got := get(s.BeginReadOnly(), "m", "a"); got != "2" {
		t.Fatalf("committed value %q", got)
	}
	if err := s.Rollback(2); err != nil {
		t.Fatalf("Rollback to head: %v", err)
	}
}

func TestCommitPathBounds(t *testing.T) {
	s := NewStore()
	for v := uint64(1); v <= 5; v++ {
		if err := s.Apply(v, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.MarkCommitted(3); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		call func() error
		ok   bool
	}{
		{"MarkCommitted above head", func() error { return s.MarkCommitted(6) }, false},
		{"MarkCommitted below committed", func() error { return s.MarkCommitted(2) }, false},
		{"MarkCommitted at committed", func() error { return s.MarkCommitted(3) }, true},
		{"Rollback below committed", func() error { return s.Rollback(2) }, false},
		{"Rollback above head", func() error { return s.Rollback(6) }, false},
		{"Apply at head", func() error { return s.Apply(5, nil) }, false},
		{"Apply below head", func() error { return s.Apply(1, nil) }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if tc.ok && err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrVersion) {
				t.Fatalf("got %v, want ErrVersion", err)
			}
			if s.Version() != 5 || s.CommittedVersion() != 3 {
				t.Fatalf("state changed: head %d committed %d", s.Version(), s.CommittedVersion())
			}
		})
	}
}

func TestOCC(t *testing.T) {
	tests := []struct {
		name     string
		tx       func(tx *Tx) error // the transaction under test, begun first
		other    func(tx *Tx) error // a concurrent transaction committed first
		conflict bool
	}{
		{
			name:     "read then concurrent write",
			tx:       func(tx *Tx) error { tx.Get("m", "a"); return tx.Put("m", "a", []byte("t")) },
			other:    func(tx *Tx) error { return tx.Put("m", "a", []byte("o")) },
			conflict: true,
		},
		{
			name:     "read then concurrent delete",
			tx:       func(tx *Tx) error { tx.Get("m", "a"); return tx.Put("m", "z", nil) },
			other:    func(tx *Tx) error { return tx.Delete("m", "a") },
			conflict: true,
		},
		{
			name:     "absent read then concurrent insert",
			tx:       func(tx *Tx) error { tx.Get("m", "new"); return tx.Put("m", "new", []byte("t")) },
			other:    func(tx *Tx) error { return tx.Put("m", "new", []byte("o")) },
			conflict: true,
		},
		{
			name:     "absent map read then concurrent insert",
			tx:       func(tx *Tx) error { tx.Get("fresh", "k"); return tx.Put("x", "k", nil) },
			other:    func(tx *Tx) error { return tx.Put("fresh", "k", nil) },
			conflict: true,
		},
		{
			name: "range then concurrent insert",
			tx: func(tx *Tx) error {
				tx.Range("m", func(string, []byte) bool { return true })
				return tx.Put("x", "count", []byte("1"))
			},
			other:    func(tx *Tx) error { return tx.Put("m", "zzz", nil) },
			conflict: true,
		},
		{
			name: "range stopped early then insert past the stop",
			tx: func(tx *Tx) error {
				tx.Range("m", func(string, []byte) bool { return false })
				return tx.Put("x", "k", nil)
			},
			other:    func(tx *Tx) error { return tx.Put("m", "zzz", nil) },
			conflict: true,
		},
		{
			name: "range of absent map then insert",
			tx: func(tx *Tx) error {
				tx.Range("fresh", func(string, []byte) bool { return true })
				return tx.Put("x", "k", nil)
			},
			other:    func(tx *Tx) error { return tx.Put("fresh", "a", nil) },
			conflict: true,
		},
		{
			name:  "blind write",
			tx:    func(tx *Tx) error { return tx.Put("m", "a", []byte("t")) },
			other: func(tx *Tx) error { return tx.Put("m", "a", []byte("o")) },
		},
		{
			name:  "disjoint keys",
			tx:    func(tx *Tx) error { tx.Get("m", "a"); return tx.Put("m", "a", []byte("t")) },
			other: func(tx *Tx) error { tx.Get("m", "b"); return tx.Put("m", "b", []byte("o")) },
		},
		{
			name: "range of another map",
			tx: func(tx *Tx) error {
				tx.Range("m", func(string, []byte) bool { return true })
				return tx.Put("m", "q", nil)
			},
			other: func(tx *Tx) error { return tx.Put("m2", "a", nil) },
		},
		{
			name:  "read own write only",
			tx:    func(tx *Tx) error { _ = tx.Put("m", "a", []byte("t")); tx.Get("m", "a"); return nil },
			other: func(tx *Tx) error { return tx.Put("m", "a", []byte("o")) },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := NewStore()
			put(t, s, "m", "a", "1")
			put(t, s, "m", "b", "2")
			tx := s.Begin()
			if err := tc.tx(tx); err != nil {
				t.Fatal(err)
			}
			other := s.Begin()
			if err := tc.other(other); err != nil {
				t.Fatal(err)
			}
			commit(t, s, other)
			err := s.Validate(tx)
			if tc.conflict && !errors.Is(err, ErrConflict) {
				t.Fatalf("Validate = %v, want ErrConflict", err)
			}
			if !tc.conflict && err != nil {
				t.Fatalf("Validate = %v, want nil", err)
			}
		})
	}
}

func TestManyReadsDedup(t *testing.T) {
	s := NewStore()
	tx := s.Begin()
	for i := range 100 {
		for range 3 {
			tx.Get("m", fmt.Sprint(i))
		}
	}
	if len(tx.reads) != 100 {
		t.Fatalf("read set has %d entries, want 100", len(tx.reads))
	}
	put(t, s, "m", "57", "x")
	if err := s.Validate(tx); !errors.Is(err, ErrConflict) {
		t.Fatalf("Validate = %v, want ErrConflict", err)
	}
}

func TestWriteSetStableAfterLaterWrites(t *testing.T) {
	s := NewStore()
	tx := s.Begin()
	for _, k := range []string{"c", "a"} {
		if err := tx.Put("m", k, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	ws := tx.WriteSet()
	before := ws.Marshal()
	_ = tx.Put("m", "b", []byte("b"))
	_ = tx.Put("m", "a", []byte("A"))
	_ = tx.Delete("m", "c")
	if !bytes.Equal(ws.Marshal(), before) {
		t.Fatal("WriteSet changed by later writes")
	}
}

func equalMaps(a, b []MapWrites) bool {
	return slices.EqualFunc(a, b, func(x, y MapWrites) bool {
		return x.Name == y.Name && slices.EqualFunc(x.Writes, y.Writes, func(p, q Write) bool {
			return p.Key == q.Key && p.Deleted == q.Deleted && bytes.Equal(p.Value, q.Value)
		})
	})
}
