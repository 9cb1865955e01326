package kv

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

// TestSnapshotsSurviveLaterApplies checks copy-on-write: big write sets
// (inserts, overwrites and deletes over trees many levels deep) applied
// on top of a snapshot never change what the snapshot reads, while
// readers run concurrently (run with -race). Every snapshot is compared
// with a plain Go map model, by Get and by Range.
func TestSnapshotsSurviveLaterApplies(t *testing.T) {
	const rounds, keys = 12, 3000
	rng := rand.New(rand.NewPCG(1, 2))
	store := NewStore()
	model := map[string]string{}
	type snap struct {
		tx    *Tx
		model map[string]string
	}
	var snaps []snap
	var wg sync.WaitGroup
	stop := make(chan struct{})
	check := func(s snap) error {
		for k, v := range s.model {
			got, ok := s.tx.Get("m", k)
			if !ok || string(got) != v {
				return fmt.Errorf("Get(%q) = %q, %v; want %q", k, got, ok, v)
			}
		}
		var ranged []string
		s.tx.Range("m", func(k string, v []byte) bool {
			if s.model[k] != string(v) {
				ranged = append(ranged, "bad value for "+k)
			}
			ranged = append(ranged, k)
			return true
		})
		if want := slices.Sorted(maps.Keys(s.model)); !slices.Equal(ranged, want) {
			return fmt.Errorf("Range gave %d keys, want %d (first difference matters)", len(ranged), len(want))
		}
		return nil
	}
	for r := 1; r <= rounds; r++ {
		tx := store.Begin()
		for range keys {
			k := fmt.Sprintf("k%05d", rng.IntN(2*keys))
			if rng.IntN(4) == 0 {
				if err := tx.Delete("m", k); err != nil {
					t.Fatal(err)
				}
				delete(model, k)
				continue
			}
			v := fmt.Sprintf("v%d-%d", r, rng.IntN(1000))
			if err := tx.Put("m", k, []byte(v)); err != nil {
				t.Fatal(err)
			}
			model[k] = v
		}
		if err := store.Apply(uint64(r), tx.WriteSet()); err != nil {
			t.Fatal(err)
		}
		s := snap{tx: store.Begin(), model: maps.Clone(model)}
		snaps = append(snaps, s)
		// A reader of this snapshot runs while later rounds apply.
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := check(s); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	close(stop)
	wg.Wait()
	for i, s := range snaps {
		if err := check(s); err != nil {
			t.Fatalf("snapshot %d: %v", i+1, err)
		}
	}
}
