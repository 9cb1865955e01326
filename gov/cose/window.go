package govcose

import (
	"bytes"
	"cmp"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
)

// DefaultWindowSize is how many recent proposals CCF remembers by default.
const DefaultWindowSize = 100

// Window remembers the most recent accepted proposals, to refuse replays
// without a clock, as CCF does (validate_proposal_submission_time):
//
//   - a request whose Digest is in the window is a replay;
//   - a request created before the median created_at of the window is too
//     old: its twin could have been evicted already, so it cannot be told
//     apart from a replay;
//   - beyond the size, the entries with the lowest created_at are evicted
//     (not the first added), so every evicted entry is at or below the
//     median. That alone does not refuse its replay: created_at may tie
//     with the median (several proposals in one second), and a request at
//     the median is accepted. So the window also remembers the highest
//     created_at it ever evicted, and refuses any request at or below it
//     as too old: a replay of an evicted entry always is.
//
// Entries are kept sorted by (created_at, digest), which makes the state,
// and its JSON, independent of the order requests arrived in: the same set
// of requests gives the same bytes on every node.
//
// The zero Window is an empty window of DefaultWindowSize. A Window is plain
// data: not safe for concurrent use; the caller loads it from the kv, calls
// Check then Add, and stores it, inside one transaction.
type Window struct {
	size    int
	entries []windowEntry // sorted by (createdAt, digest), no duplicates
	// evicted reports whether any entry was ever evicted, and evictedMax
	// is then the highest created_at evicted: nothing at or below it may
	// be accepted.
	evicted    bool
	evictedMax int64
}

type windowEntry struct {
	createdAt int64
	digest    [32]byte
}

func compareEntries(a, b windowEntry) int {
	if c := cmp.Compare(a.createdAt, b.createdAt); c != 0 {
		return c
	}
	return bytes.Compare(a.digest[:], b.digest[:])
}

// NewWindow returns an empty window keeping at most size entries; size <= 0
// means DefaultWindowSize (CCF's default, and a size of 0 would never
// remember anything).
func NewWindow(size int) *Window {
	if size <= 0 {
		size = DefaultWindowSize
	}
	return &Window{size: size}
}

// Size is the most entries the window keeps.
func (w *Window) Size() int {
	if w.size <= 0 {
		return DefaultWindowSize
	}
	return w.size
}

// Len is how many entries the window holds.
func (w *Window) Len() int { return len(w.entries) }

// Check reports whether a request with this digest and created_at may be
// accepted: ErrReplay if the digest is in the window, ErrTooOld if createdAt
// is before the window's median or at or below the highest created_at
// ever evicted, else nil. It does not record the request:
// call Add once the request is accepted.
//
// As in CCF, the median is that of the entries held (the upper median,
// entries[n/2]) whenever the window is not empty, not only once it is full:
// a service's first proposals get the same protection as later ones.
// createdAt equal to the median is accepted, so that members may submit
// several proposals within the same second, unless an entry of that second
// was evicted already: its replay could not be told apart.
func (w *Window) Check(digest [32]byte, createdAt int64) error {
	// By digest alone, not (created_at, digest) as CCF keys it: the digest
	// covers the signed created_at, so this is the same test, and it does
	// not depend on the caller passing the right created_at.
	if slices.ContainsFunc(w.entries, func(e windowEntry) bool { return e.digest == digest }) {
		return fmt.Errorf("%w: request %x is already in the recent proposals window", ErrReplay, digest)
	}
	if w.evicted && createdAt <= w.evictedMax {
		return fmt.Errorf("%w: created_at %d is at or before %d, the latest created_at evicted from the recent proposals window", ErrTooOld, createdAt, w.evictedMax)
	}
	if n := len(w.entries); n > 0 {
		if median := w.entries[n/2].createdAt; createdAt < median {
			return fmt.Errorf("%w: created_at %d is before %d, the median of the %d most recent proposals", ErrTooOld, createdAt, median, n)
		}
	}
	return nil
}

// CheckReplay is Check without the median rule: ErrReplay if the digest
// is in the window, ErrTooOld if createdAt is at or below the highest
// created_at ever evicted, else nil. It suits a window of one signer's
// requests, which that signer may sign in one order and send in another,
// and where one request dated ahead must not make every later one "too
// old"; what it forgets by eviction it still refuses by createdAt.
func (w *Window) CheckReplay(digest [32]byte, createdAt int64) error {
	if slices.ContainsFunc(w.entries, func(e windowEntry) bool { return e.digest == digest }) {
		return fmt.Errorf("%w: request %x is already in the window", ErrReplay, digest)
	}
	if w.evicted && createdAt <= w.evictedMax {
		return fmt.Errorf("%w: created_at %d is at or before %d, the latest created_at evicted from the window", ErrTooOld, createdAt, w.evictedMax)
	}
	return nil
}

// Add records an accepted request, evicting the entries with the lowest
// created_at beyond Size. Adding a request already in the window changes
// nothing.
func (w *Window) Add(digest [32]byte, createdAt int64) {
	e := windowEntry{createdAt: createdAt, digest: digest}
	i, found := slices.BinarySearchFunc(w.entries, e, compareEntries)
	if found {
		return
	}
	w.entries = slices.Insert(w.entries, i, e)
	if extra := len(w.entries) - w.Size(); extra > 0 {
		// Sorted, so the last evicted has the highest created_at of them.
		if last := w.entries[extra-1].createdAt; !w.evicted || last > w.evictedMax {
			w.evicted, w.evictedMax = true, last
		}
		w.entries = slices.Delete(w.entries, 0, extra)
	}
}

// windowJSON is the stored form of a Window (snake_case, like the other
// values in coco's public governance maps).
type windowJSON struct {
	Size    int               `json:"size"`
	Entries []windowEntryJSON `json:"entries"`
	// EvictedMax is the highest created_at ever evicted; absent until the
	// first eviction.
	EvictedMax *int64 `json:"evicted_max,omitempty"`
}

type windowEntryJSON struct {
	CreatedAt int64  `json:"created_at"`
	Digest    string `json:"digest"` // lowercase hex
}

// MarshalJSON encodes the window as
// {"size":n,"entries":[{"created_at":s,"digest":hex},...],"evicted_max":s},
// entries sorted, evicted_max present once an entry has been evicted.
// Value receiver, so a Window value marshals the same as a pointer.
func (w Window) MarshalJSON() ([]byte, error) {
	out := windowJSON{Size: w.Size(), Entries: make([]windowEntryJSON, len(w.entries))}
	for i, e := range w.entries {
		out.Entries[i] = windowEntryJSON{CreatedAt: e.createdAt, Digest: hex.EncodeToString(e.digest[:])}
	}
	if w.evicted {
		m := w.evictedMax
		out.EvictedMax = &m
	}
	return json.Marshal(out)
}

// UnmarshalJSON decodes what MarshalJSON wrote. It refuses, rather than
// repairs, state that MarshalJSON could not have written (unsorted,
// duplicated, over-full): a window that silently lost or reordered entries
// would let replays through.
func (w *Window) UnmarshalJSON(b []byte) error {
	var in windowJSON
	if err := json.Unmarshal(b, &in); err != nil {
		return fmt.Errorf("%w: window state: %w", ErrMalformed, err)
	}
	if in.Size <= 0 {
		return malformedf("window state: size %d, want at least 1", in.Size)
	}
	if len(in.Entries) > in.Size {
		return malformedf("window state: %d entries, more than its size %d", len(in.Entries), in.Size)
	}
	entries := make([]windowEntry, len(in.Entries))
	for i, je := range in.Entries {
		if err := checkCreatedAt(je.CreatedAt); err != nil {
			return fmt.Errorf("window state: entry %d: %w", i, err)
		}
		d, err := hex.DecodeString(je.Digest)
		if err != nil || len(d) != 32 || hex.EncodeToString(d) != je.Digest {
			return malformedf("window state: entry %d: digest %s is not 64 lowercase hex characters", i, quote(je.Digest))
		}
		entries[i].createdAt = je.CreatedAt
		copy(entries[i].digest[:], d)
		if i > 0 && compareEntries(entries[i-1], entries[i]) >= 0 {
			return malformedf("window state: entry %d is out of order or duplicated", i)
		}
	}
	nw := Window{size: in.Size, entries: entries}
	if in.EvictedMax != nil {
		// Eviction happens only when full and takes the lowest entries,
		// so what remains is a full window at or above evicted_max.
		if err := checkCreatedAt(*in.EvictedMax); err != nil {
			return fmt.Errorf("window state: evicted_max: %w", err)
		}
		if len(entries) != in.Size || *in.EvictedMax > entries[0].createdAt {
			return malformedf("window state: evicted_max %d does not fit its entries", *in.EvictedMax)
		}
		nw.evicted, nw.evictedMax = true, *in.EvictedMax
	}
	*w = nw
	return nil
}
