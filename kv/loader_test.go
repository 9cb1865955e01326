package kv

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
)

// dumpState is every map of st: its version and its keys' values and versions.
func dumpState(st *state) map[string]any {
	out := map[string]any{"@version": st.version}
	it := st.maps.Iterator()
	for !it.Done() {
		name, ms, _ := it.Next()
		keys := map[string]string{}
		c := ms.entries.cursor("")
		for k, e, ok := c.next(); ok; k, e, ok = c.next() {
			keys[k] = fmt.Sprintf("%x@%d", e.value, e.version)
		}
		out[name] = map[string]any{"version": ms.version, "keys": keys}
	}
	return out
}

// randomWriteSets returns n write sets over a few maps and keys, with
// deletes, empty write sets and maps emptied by deletes.
func randomWriteSets(seed uint64, n int) []*WriteSet {
	r := rand.New(rand.NewPCG(seed, 1))
	out := make([]*WriteSet, n)
	for i := range out {
		tx := NewStore().Begin()
		for range r.IntN(6) {
			m := fmt.Sprintf("m%d", r.IntN(3))
			k := fmt.Sprintf("k%03d", r.IntN(40))
			if r.IntN(4) == 0 {
				_ = tx.Delete(m, k)
			} else {
				_ = tx.Put(m, k, []byte(fmt.Sprintf("v%d", i)))
			}
		}
		out[i] = tx.WriteSet()
	}
	return out
}

// TestLoaderMatchesApply checks a Loader ends in the same state as Apply and
// MarkCommitted of the same write sets one by one, whatever the Flush points,
// and that what a Flush published never changes afterwards.
func TestLoaderMatchesApply(t *testing.T) {
	tests := []struct {
		name    string
		n       int
		flushAt []int // after these many write sets, besides the end
		start   int   // write sets applied with Store.Apply before the loader
	}{
		{name: "one flush", n: 300},
		{name: "flushes", n: 300, flushAt: []int{1, 2, 50, 51, 299}},
		{name: "on a store with history", n: 200, flushAt: []int{100}, start: 40},
		{name: "nothing to load", n: 0},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wss := randomWriteSets(uint64(i), tt.start+tt.n)
			ref, got := NewStore(), NewStore()
			for v, ws := range wss {
				if err := ref.Apply(uint64(v+1), ws); err != nil {
					t.Fatal(err)
				}
				if err := ref.MarkCommitted(uint64(v + 1)); err != nil {
					t.Fatal(err)
				}
				if v < tt.start {
					if err := got.Apply(uint64(v+1), ws); err != nil {
						t.Fatal(err)
					}
					if err := got.MarkCommitted(uint64(v + 1)); err != nil {
						t.Fatal(err)
					}
				}
			}
			l, err := got.NewLoader()
			if err != nil {
				t.Fatal(err)
			}
			type published struct {
				st   *state
				dump map[string]any
			}
			var seen []published
			flush := func() {
				if err := l.Flush(); err != nil {
					t.Fatal(err)
				}
				st := got.committed.Load()
				if got.head.Load() != st {
					t.Fatal("head and committed differ after Flush")
				}
				seen = append(seen, published{st, dumpState(st)})
			}
			for j, ws := range wss[tt.start:] {
				if err := l.Apply(uint64(tt.start+j+1), ws); err != nil {
					t.Fatal(err)
				}
				for _, at := range tt.flushAt {
					if at == j+1 {
						flush()
					}
				}
			}
			flush()
			if want, have := dumpState(ref.committed.Load()), dumpState(got.committed.Load()); !reflect.DeepEqual(have, want) {
				t.Fatalf("loaded state differs:\n got %v\nwant %v", have, want)
			}
			for k, p := range seen {
				if !reflect.DeepEqual(dumpState(p.st), p.dump) {
					t.Fatalf("state published by flush %d changed afterwards", k)
				}
			}
			// The store works on as usual after loading.
			v := got.Version() + 1
			if err := got.Apply(v, randomWriteSets(99, 1)[0]); err != nil {
				t.Fatal(err)
			}
			if err := got.MarkCommitted(v); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestLoaderRefuses(t *testing.T) {
	ws := randomWriteSets(7, 1)[0]
	t.Run("pending versions", func(t *testing.T) {
		s := NewStore()
		if err := s.Apply(1, ws); err != nil {
			t.Fatal(err)
		}
		if _, err := s.NewLoader(); !errors.Is(err, ErrVersion) {
			t.Fatalf("NewLoader with a pending version: %v, want ErrVersion", err)
		}
	})
	t.Run("version not increasing", func(t *testing.T) {
		l, err := NewStore().NewLoader()
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Apply(2, ws); err != nil {
			t.Fatal(err)
		}
		for _, v := range []uint64{1, 2} {
			if err := l.Apply(v, ws); !errors.Is(err, ErrVersion) {
				t.Fatalf("Apply(%d) after 2: %v, want ErrVersion", v, err)
			}
		}
	})
	t.Run("store changed underneath", func(t *testing.T) {
		s := NewStore()
		l, err := s.NewLoader()
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Apply(1, ws); err != nil {
			t.Fatal(err)
		}
		if err := s.Apply(1, ws); err != nil {
			t.Fatal(err)
		}
		if err := l.Flush(); !errors.Is(err, ErrVersion) {
			t.Fatalf("Flush after the store moved: %v, want ErrVersion", err)
		}
		if s.CommittedVersion() != 0 {
			t.Fatal("a refused Flush published something")
		}
	})
}
