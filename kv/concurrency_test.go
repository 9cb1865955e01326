package kv

import (
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
)

// TestConcurrentCounter runs the transaction life cycle under contention:
// workers increment one counter with Begin/Get/Put, a single committer (as
// the consensus loop) validates and applies, marking commits a few versions
// behind the head so read-only readers see a lagging committed state, and
// readers check the committed counter never goes backwards.
func TestConcurrentCounter(t *testing.T) {
	const (
		workers    = 8
		perWorker  = 200
		readers    = 4
		commitLag  = 3
		mapName    = "public:counter"
		counterKey = "n"
	)
	s := NewStore()

	type submission struct {
		tx    *Tx
		reply chan error
	}
	submit := make(chan submission)
	var commits atomic.Int64
	committerDone := make(chan struct{})
	go func() {
		defer close(committerDone)
		for sub := range submit {
			if err := s.Validate(sub.tx); err != nil {
				sub.reply <- err
				continue
			}
			v := s.Version() + 1
			if err := s.Apply(v, sub.tx.WriteSet()); err != nil {
				sub.reply <- err
				continue
			}
			commits.Add(1)
			if v > commitLag {
				if err := s.MarkCommitted(v - commitLag); err != nil {
					sub.reply <- err
					continue
				}
			}
			sub.reply <- nil
		}
		if err := s.MarkCommitted(s.Version()); err != nil {
			t.Error(err)
		}
	}()

	decode := func(b []byte, ok bool) uint64 {
		if !ok {
			return 0
		}
		return binary.BigEndian.Uint64(b)
	}

	stopReaders := make(chan struct{})
	var readersWG sync.WaitGroup
	for range readers {
		readersWG.Add(1)
		go func() {
			defer readersWG.Done()
			var last uint64
			for {
				select {
				case <-stopReaders:
					return
				default:
				}
				tx := s.BeginReadOnly()
				n := decode(tx.Get(mapName, counterKey))
				if n < last {
					t.Errorf("committed counter went back from %d to %d", last, n)
					return
				}
				// Every committed write set is one increment.
				if n != tx.Version() {
					t.Errorf("counter %d at committed version %d", n, tx.Version())
					return
				}
				last = n
			}
		}()
	}

	var workersWG sync.WaitGroup
	var conflicts atomic.Int64
	for range workers {
		workersWG.Add(1)
		go func() {
			defer workersWG.Done()
			reply := make(chan error, 1)
			for range perWorker {
				for {
					tx := s.Begin()
					n := decode(tx.Get(mapName, counterKey))
					if err := tx.Put(mapName, counterKey, binary.BigEndian.AppendUint64(nil, n+1)); err != nil {
						t.Error(err)
						return
					}
					submit <- submission{tx, reply}
					err := <-reply
					if err == nil {
						break
					}
					if !errors.Is(err, ErrConflict) {
						t.Error(err)
						return
					}
					conflicts.Add(1)
				}
			}
		}()
	}
	workersWG.Wait()
	close(submit)
	<-committerDone
	close(stopReaders)
	readersWG.Wait()

	got := decode(s.BeginReadOnly().Get(mapName, counterKey))
	if want := uint64(commits.Load()); got != want || want != workers*perWorker {
		t.Fatalf("counter %d, successful commits %d, want %d", got, want, workers*perWorker)
	}
	t.Logf("%d commits, %d conflicts", commits.Load(), conflicts.Load())
}
