package node

import (
	"fmt"
	"sort"
	"sync"

	"github.com/cocoledger/coco/app"
	"github.com/cocoledger/coco/kv"
)

// historyIndex remembers, for the maps applications asked to index, the
// seqnos at which each key was written, so a historical read fetches the
// one ledger entry it needs. It is rebuilt from the ledger at start-up (the
// replay feeds it through OnCommit) and lives in memory: about 8 bytes per
// write plus the key.
type historyIndex struct {
	mu      sync.RWMutex
	indexed map[string]bool
	writes  map[string]map[string][]uint64 // map -> key -> ascending seqnos
}

func newHistoryIndex(apps []app.Application) *historyIndex {
	h := &historyIndex{indexed: map[string]bool{}, writes: map[string]map[string][]uint64{}}
	for _, a := range apps {
		for _, m := range a.IndexedMaps() {
			h.indexed[m] = true
			h.writes[m] = map[string][]uint64{}
		}
	}
	return h
}

// record is called in seqno order for every committed transaction.
func (h *historyIndex) record(seqno uint64, ws *kv.WriteSet) {
	if ws == nil {
		return
	}
	for _, mw := range ws.Maps {
		if !h.indexed[mw.Name] {
			continue
		}
		h.mu.Lock()
		keys := h.writes[mw.Name]
		for _, w := range mw.Writes {
			keys[w.Key] = append(keys[w.Key], seqno)
		}
		h.mu.Unlock()
	}
}

// lastWrite returns the seqno of the last write to key at or before seqno.
func (h *historyIndex) lastWrite(mapName, key string, seqno uint64) (uint64, bool, error) {
	if !h.indexed[mapName] {
		return 0, false, fmt.Errorf("node: map %q is not indexed for historical queries", mapName)
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	seqs := h.writes[mapName][key]
	i := sort.Search(len(seqs), func(i int) bool { return seqs[i] > seqno })
	if i == 0 {
		return 0, false, nil
	}
	return seqs[i-1], true, nil
}

// historicalState is the committed state as of one seqno.
type historicalState struct {
	n     *Node
	seqno uint64
}

var _ app.HistoricalState = (*historicalState)(nil)

func (s *historicalState) Get(mapName, key string) ([]byte, bool, error) {
	w, ok, err := s.n.hist.lastWrite(mapName, key, s.seqno)
	if err != nil || !ok {
		return nil, false, err
	}
	ws, err := s.n.entryWrites(w)
	if err != nil {
		return nil, false, fmt.Errorf("node: historical entry %d: %w", w, err)
	}
	if wr, ok := ws.Find(mapName, key); ok {
		if wr.Deleted {
			return nil, false, nil
		}
		return wr.Value, true, nil
	}
	return nil, false, fmt.Errorf("node: index says entry %d wrote %s but it did not", w, mapName)
}
