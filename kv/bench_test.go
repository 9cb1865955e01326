package kv

import (
	"strconv"
	"testing"
)

func populated(b *testing.B, keys int) *Store {
	b.Helper()
	s := NewStore()
	tx := s.Begin()
	for i := range keys {
		if err := tx.Put("records", strconv.Itoa(i), []byte("some value of modest size")); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Apply(1, tx.WriteSet()); err != nil {
		b.Fatal(err)
	}
	if err := s.MarkCommitted(1); err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkCommitSmallTx is the primary's hot path for one small write:
// Begin, Get, Put, Validate, Apply, MarkCommitted.
func BenchmarkCommitSmallTx(b *testing.B) {
	s := populated(b, 10000)
	val := []byte("value-0123456789")
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		tx := s.Begin()
		key := strconv.Itoa(i % 10000)
		tx.Get("records", key)
		if err := tx.Put("records", key, val); err != nil {
			b.Fatal(err)
		}
		if err := s.Validate(tx); err != nil {
			b.Fatal(err)
		}
		v := s.Version() + 1
		if err := s.Apply(v, tx.WriteSet()); err != nil {
			b.Fatal(err)
		}
		if err := s.MarkCommitted(v); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadOnlyGet is a read-only endpoint: BeginReadOnly and one Get.
func BenchmarkReadOnlyGet(b *testing.B) {
	s := populated(b, 10000)
	keys := make([]string, 10000)
	for i := range keys {
		keys[i] = strconv.Itoa(i)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		tx := s.BeginReadOnly()
		if _, ok := tx.Get("records", keys[i%len(keys)]); !ok {
			b.Fatal("missing key")
		}
	}
}

func BenchmarkReadOnlyGetParallel(b *testing.B) {
	s := populated(b, 10000)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			tx := s.BeginReadOnly()
			if _, ok := tx.Get("records", "42"); !ok {
				b.Fatal("missing key")
			}
			i++
		}
	})
}

func BenchmarkMarshal(b *testing.B) {
	ws := sampleWriteSet()
	b.ReportAllocs()
	for b.Loop() {
		_ = ws.Marshal()
	}
}

func BenchmarkUnmarshal(b *testing.B) {
	enc := sampleWriteSet().Marshal()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := UnmarshalWriteSet(enc); err != nil {
			b.Fatal(err)
		}
	}
}
