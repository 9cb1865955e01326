package govcose

import (
	"bytes"
	"crypto/elliptic"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func digestOf(i int) [32]byte {
	var d [32]byte
	d[0], d[1], d[31] = byte(i>>8), byte(i), 0xee
	return d
}

func mustCheckAdd(t *testing.T, w *Window, d [32]byte, createdAt int64) {
	t.Helper()
	if err := w.Check(d, createdAt); err != nil {
		t.Fatalf("Check(%x, %d): %v", d[:2], createdAt, err)
	}
	w.Add(d, createdAt)
}

func TestWindowReplay(t *testing.T) {
	w := NewWindow(3)
	mustCheckAdd(t, w, digestOf(1), 100)
	if err := w.Check(digestOf(1), 100); !errors.Is(err, ErrReplay) {
		t.Fatalf("Check: %v, want ErrReplay", err)
	}
	// The digest alone decides: a caller passing another created_at for the
	// same request still sees a replay, not a new request.
	if err := w.Check(digestOf(1), 500); !errors.Is(err, ErrReplay) {
		t.Fatalf("Check with another created_at: %v, want ErrReplay", err)
	}
	// Same second, different request: accepted (members may submit several
	// proposals within a second).
	if err := w.Check(digestOf(2), 100); err != nil {
		t.Fatalf("Check: %v", err)
	}
}

func TestWindowTooOldOnceFull(t *testing.T) {
	w := NewWindow(4)
	for i, at := range []int64{100, 101, 102, 103} {
		mustCheckAdd(t, w, digestOf(i), at)
	}
	if w.Len() != 4 {
		t.Fatalf("Len %d", w.Len())
	}
	// Sorted 100 101 102 103: the median is entries[4/2] = 102.
	for at, want := range map[int64]error{0: ErrTooOld, 100: ErrTooOld, 101: ErrTooOld, 102: nil, 103: nil, 5000: nil} {
		if err := w.Check(digestOf(99), at); !errors.Is(err, want) || (want == nil && err != nil) {
			t.Errorf("Check(created_at %d): %v, want %v", at, err, want)
		}
	}
	err := w.Check(digestOf(99), 50)
	if !strings.Contains(err.Error(), "102") {
		t.Fatalf("error %q does not name the median", err)
	}
}

// As CCF: the median applies as soon as the window holds anything, so a
// proposal older than the first one is refused.
func TestWindowMedianAppliesBeforeFull(t *testing.T) {
	w := NewWindow(DefaultWindowSize)
	if err := w.Check(digestOf(1), 0); err != nil {
		t.Fatalf("empty window: %v", err)
	}
	mustCheckAdd(t, w, digestOf(1), 1000)
	if err := w.Check(digestOf(2), 999); !errors.Is(err, ErrTooOld) {
		t.Fatalf("Check: %v, want ErrTooOld", err)
	}
	mustCheckAdd(t, w, digestOf(3), 1000)
	mustCheckAdd(t, w, digestOf(4), 2000)
}

func TestWindowEviction(t *testing.T) {
	w := NewWindow(3)
	for i := range 5 {
		mustCheckAdd(t, w, digestOf(i), int64(10*(i+1))) // 10 .. 50
	}
	if w.Len() != 3 {
		t.Fatalf("Len %d, want 3", w.Len())
	}
	// 10 and 20 are gone from the window, but a replay of them is still
	// refused, now as too old: that is why eviction goes by created_at.
	for i := range 2 {
		if err := w.Check(digestOf(i), int64(10*(i+1))); !errors.Is(err, ErrTooOld) {
			t.Fatalf("replay of evicted %d: %v, want ErrTooOld", i, err)
		}
	}
	for i := 2; i < 5; i++ {
		if err := w.Check(digestOf(i), int64(10*(i+1))); !errors.Is(err, ErrReplay) {
			t.Fatalf("replay of kept %d: %v, want ErrReplay", i, err)
		}
	}
	// The lowest created_at goes first, whatever the order of arrival: an
	// entry older than all others is evicted at once.
	w.Add(digestOf(9), 35)
	w.Add(digestOf(8), 1)
	if got := entryTimes(w); !slices.Equal(got, []int64{35, 40, 50}) {
		t.Fatalf("entries %v, want [35 40 50]", got)
	}
	// Adding what is already there changes nothing.
	w.Add(digestOf(9), 35)
	if w.Len() != 3 {
		t.Fatalf("Len %d after a repeated Add", w.Len())
	}
}

func entryTimes(w *Window) []int64 {
	var out []int64
	for _, e := range w.entries {
		out = append(out, e.createdAt)
	}
	return out
}

func TestWindowDefaults(t *testing.T) {
	if got := NewWindow(0).Size(); got != DefaultWindowSize {
		t.Fatalf("NewWindow(0).Size() = %d", got)
	}
	if got := NewWindow(-5).Size(); got != DefaultWindowSize {
		t.Fatalf("NewWindow(-5).Size() = %d", got)
	}
	var w Window // the zero value is usable
	for i := range DefaultWindowSize + 10 {
		mustCheckAdd(t, &w, digestOf(i), int64(i))
	}
	if w.Len() != DefaultWindowSize {
		t.Fatalf("Len %d", w.Len())
	}
}

// Nodes store the window in the kv; its bytes must depend only on the set
// of requests, and the same requests in any order leave the same window.
func TestWindowOrderIndependent(t *testing.T) {
	const n = 40
	type req struct {
		d  [32]byte
		at int64
	}
	reqs := make([]req, n)
	for i := range reqs {
		reqs[i] = req{digestOf(i), int64(1000 + i/3)} // several per second
	}
	var first []byte
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 20 {
		rng.Shuffle(len(reqs), func(i, j int) { reqs[i], reqs[j] = reqs[j], reqs[i] })
		w := NewWindow(7)
		for _, r := range reqs {
			w.Add(r.d, r.at)
		}
		b, err := json.Marshal(w)
		if err != nil {
			t.Fatal(err)
		}
		if round == 0 {
			first = b
		} else if !bytes.Equal(b, first) {
			t.Fatalf("round %d: %s\nwant %s", round, b, first)
		}
	}
}

func TestWindowJSONRoundTrip(t *testing.T) {
	w := NewWindow(3)
	mustCheckAdd(t, w, digestOf(1), 7)
	mustCheckAdd(t, w, digestOf(2), 9)
	b, err := json.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	golden := `{"size":3,"entries":[` +
		`{"created_at":7,"digest":"0001` + strings.Repeat("0", 58) + `ee"},` +
		`{"created_at":9,"digest":"0002` + strings.Repeat("0", 58) + `ee"}]}`
	if string(b) != golden {
		t.Fatalf("JSON\n got %s\nwant %s", b, golden)
	}
	// A Window value (not a pointer) marshals the same.
	if bv, err := json.Marshal(*w); err != nil || !bytes.Equal(bv, b) {
		t.Fatalf("value marshal %s, %v", bv, err)
	}
	var back Window
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Size() != 3 || back.Len() != 2 {
		t.Fatalf("size %d len %d", back.Size(), back.Len())
	}
	if err := back.Check(digestOf(1), 7); !errors.Is(err, ErrReplay) {
		t.Fatalf("restored window forgot a request: %v", err)
	}
	if err := back.Check(digestOf(3), 8); !errors.Is(err, ErrTooOld) {
		t.Fatalf("restored window lost its median: %v", err)
	}
	b2, _ := json.Marshal(&back)
	if !bytes.Equal(b, b2) {
		t.Fatalf("re-marshal %s", b2)
	}
	var empty bytes.Buffer
	if err := json.NewEncoder(&empty).Encode(NewWindow(0)); err != nil || strings.TrimSpace(empty.String()) != `{"size":100,"entries":[]}` {
		t.Fatalf("empty window %q, %v", empty.String(), err)
	}
}

func TestWindowJSONRejects(t *testing.T) {
	d := func(i int) string { x := digestOf(i); return hex.EncodeToString(x[:]) }
	cases := map[string]string{
		"size zero":       `{"size":0,"entries":[]}`,
		"size negative":   `{"size":-1,"entries":[]}`,
		"over full":       `{"size":1,"entries":[{"created_at":1,"digest":"` + d(1) + `"},{"created_at":2,"digest":"` + d(2) + `"}]}`,
		"unsorted":        `{"size":5,"entries":[{"created_at":2,"digest":"` + d(1) + `"},{"created_at":1,"digest":"` + d(2) + `"}]}`,
		"duplicate":       `{"size":5,"entries":[{"created_at":1,"digest":"` + d(1) + `"},{"created_at":1,"digest":"` + d(1) + `"}]}`,
		"short digest":    `{"size":5,"entries":[{"created_at":1,"digest":"00ff"}]}`,
		"upper digest":    `{"size":5,"entries":[{"created_at":1,"digest":"` + strings.ToUpper(d(1)[:62]) + `EE"}]}`,
		"non-hex digest":  `{"size":5,"entries":[{"created_at":1,"digest":"` + strings.Repeat("zz", 32) + `"}]}`,
		"negative time":   `{"size":5,"entries":[{"created_at":-1,"digest":"` + d(1) + `"}]}`,
		"time as string":  `{"size":5,"entries":[{"created_at":"1","digest":"` + d(1) + `"}]}`,
		"entries wrongly": `{"size":5,"entries":{}}`,
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			var w Window
			if err := json.Unmarshal([]byte(in), &w); !errors.Is(err, ErrMalformed) {
				t.Fatalf("Unmarshal: %v, want ErrMalformed", err)
			}
		})
	}
}

// End to end: the window over real signed requests.
func TestWindowWithRequests(t *testing.T) {
	m := newMember(t, elliptic.P256())
	w := NewWindow(2)
	var reqs []*Request
	for i := range 3 {
		r, err := Parse(mustSign(t, m, MsgProposal, testCreatedAt+int64(i), "", []byte(`{"actions":[]}`)))
		if err != nil {
			t.Fatal(err)
		}
		mustCheckAdd(t, w, r.Digest, r.CreatedAt)
		reqs = append(reqs, r)
	}
	if err := w.Check(reqs[0].Digest, reqs[0].CreatedAt); !errors.Is(err, ErrTooOld) {
		t.Fatalf("evicted replay: %v", err)
	}
	if err := w.Check(reqs[2].Digest, reqs[2].CreatedAt); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay: %v", err)
	}
}

// An evicted entry whose created_at ties with the median used to be
// accepted again: the size-3 case {a,b,c}@10 then d@11.
func TestWindowEvictedTieReplay(t *testing.T) {
	w := NewWindow(3)
	for i := range 3 {
		mustCheckAdd(t, w, digestOf(i), 10)
	}
	mustCheckAdd(t, w, digestOf(3), 11)
	// digestOf(0), the lowest of the three at 10, was evicted.
	if err := w.Check(digestOf(0), 10); !errors.Is(err, ErrTooOld) {
		t.Fatalf("replay of the evicted entry: %v, want ErrTooOld", err)
	}
	for i := 1; i < 4; i++ {
		at := int64(10)
		if i == 3 {
			at = 11
		}
		if err := w.Check(digestOf(i), at); !errors.Is(err, ErrReplay) {
			t.Fatalf("replay of kept %d: %v, want ErrReplay", i, err)
		}
	}
	// The state survives a JSON round trip.
	b, err := json.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"evicted_max":10`) {
		t.Fatalf("JSON %s does not record evicted_max", b)
	}
	var back Window
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if err := back.Check(digestOf(0), 10); !errors.Is(err, ErrTooOld) {
		t.Fatalf("restored window: replay of the evicted entry: %v, want ErrTooOld", err)
	}
	if b2, _ := json.Marshal(&back); !bytes.Equal(b, b2) {
		t.Fatalf("re-marshal %s, want %s", b2, b)
	}
	// Later seconds are still accepted.
	mustCheckAdd(t, w, digestOf(9), 11)
}

// 101 proposals in the same second with the default size: the one evicted
// cannot be replayed, nor can any of the others.
func TestWindowSameSecondOverflow(t *testing.T) {
	w := NewWindow(DefaultWindowSize)
	const at = 5000
	for i := range DefaultWindowSize + 1 {
		mustCheckAdd(t, w, digestOf(i), at)
	}
	for i := range DefaultWindowSize + 1 {
		if err := w.Check(digestOf(i), at); err == nil {
			t.Fatalf("replay of proposal %d accepted", i)
		}
	}
	if err := w.Check(digestOf(0), at); !errors.Is(err, ErrTooOld) {
		t.Fatalf("replay of the evicted proposal: %v, want ErrTooOld", err)
	}
	mustCheckAdd(t, w, digestOf(500), at+1)
}

func TestWindowJSONRejectsBadEvictedMax(t *testing.T) {
	d := func(i int) string { x := digestOf(i); return hex.EncodeToString(x[:]) }
	for name, in := range map[string]string{
		"not full":       `{"size":2,"entries":[{"created_at":5,"digest":"` + d(1) + `"}],"evicted_max":3}`,
		"above entries":  `{"size":1,"entries":[{"created_at":5,"digest":"` + d(1) + `"}],"evicted_max":6}`,
		"negative":       `{"size":1,"entries":[{"created_at":5,"digest":"` + d(1) + `"}],"evicted_max":-1}`,
		"empty evicted":  `{"size":1,"entries":[],"evicted_max":1}`,
		"string evicted": `{"size":1,"entries":[{"created_at":5,"digest":"` + d(1) + `"}],"evicted_max":"1"}`,
	} {
		t.Run(name, func(t *testing.T) {
			var w Window
			if err := json.Unmarshal([]byte(in), &w); !errors.Is(err, ErrMalformed) {
				t.Fatalf("Unmarshal: %v, want ErrMalformed", err)
			}
		})
	}
	var w Window
	if err := json.Unmarshal([]byte(`{"size":1,"entries":[{"created_at":5,"digest":"`+d(1)+`"}],"evicted_max":5}`), &w); err != nil {
		t.Fatal(err)
	}
}

func TestCheckReplay(t *testing.T) {
	w := NewWindow(3)
	d := func(i byte) [32]byte { return [32]byte{i} }
	w.Add(d(1), 1000)
	w.Add(d(2), 50) // dated behind: no median rule
	if err := w.CheckReplay(d(3), 10); err != nil {
		t.Errorf("an older, new request: %v", err)
	}
	if err := w.CheckReplay(d(1), 1000); !errors.Is(err, ErrReplay) {
		t.Errorf("a replay: %v", err)
	}
	w.Add(d(3), 10)
	w.Add(d(4), 20) // evicts 10
	if err := w.CheckReplay(d(5), 10); !errors.Is(err, ErrTooOld) {
		t.Errorf("at the evicted created_at: %v", err)
	}
	if err := w.CheckReplay(d(5), 11); err != nil {
		t.Errorf("after the evicted created_at: %v", err)
	}
}
