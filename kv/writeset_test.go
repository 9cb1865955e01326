package kv

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"testing"
)

func sampleWriteSet() *WriteSet {
	return &WriteSet{Maps: []MapWrites{
		{Name: "public:ccf.gov.users.certs", Writes: []Write{
			{Key: "u1", Value: []byte("cert1")},
			{Key: "u2", Deleted: true},
		}},
		{Name: "records", Writes: []Write{
			{Key: "", Value: []byte("empty key")},
			{Key: "\x00\x01\xff", Value: []byte{0, 0, 0}},
			{Key: "e", Value: []byte{}}, // empty value, not a delete
			{Key: "gone", Deleted: true},
		}},
	}}
}

func TestMarshalGolden(t *testing.T) {
	ws := &WriteSet{Maps: []MapWrites{{Name: "m", Writes: []Write{
		{Key: "a", Value: []byte("xy")},
		{Key: "b", Deleted: true},
		{Key: "c", Value: nil},
	}}}}
	// format 1, 1 map, "m", 3 writes: "a" put "xy", "b" delete, "c" put "".
	const want = "01" + "01" + "016d" + "03" + "0161" + "00" + "027879" + "0162" + "01" + "0163" + "00" + "00"
	if got := hex.EncodeToString(ws.Marshal()); got != want {
		t.Fatalf("Marshal = %s, want %s", got, want)
	}
}

func TestRoundTrip(t *testing.T) {
	tests := map[string]*WriteSet{
		"empty":  {},
		"sample": sampleWriteSet(),
		"long value": {Maps: []MapWrites{{Name: "m", Writes: []Write{
			{Key: "k", Value: bytes.Repeat([]byte{7}, 70000)}, // multi-byte varint
		}}}},
	}
	for name, ws := range tests {
		t.Run(name, func(t *testing.T) {
			b := ws.Marshal()
			got, err := UnmarshalWriteSet(b)
			if err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if !equalMaps(got.Maps, ws.Maps) {
				t.Fatalf("round trip = %+v, want %+v", got.Maps, ws.Maps)
			}
			for _, m := range got.Maps {
				for _, w := range m.Writes {
					if !w.Deleted && w.Value == nil {
						t.Errorf("put of %q decoded with nil value", w.Key)
					}
					if w.Deleted && w.Value != nil {
						t.Errorf("delete of %q decoded with a value", w.Key)
					}
				}
			}
			if !bytes.Equal(got.Marshal(), b) {
				t.Fatal("re-encoding differs")
			}
			owned, err := UnmarshalWriteSetOwned(bytes.Clone(b))
			if err != nil {
				t.Fatalf("UnmarshalOwned: %v", err)
			}
			if !equalMaps(owned.Maps, ws.Maps) {
				t.Fatalf("owned round trip = %+v, want %+v", owned.Maps, ws.Maps)
			}
			b[len(b)-1] ^= 0xff // decoded values must not alias the input
			if !equalMaps(got.Maps, ws.Maps) {
				t.Fatal("decoded write set aliases input")
			}
		})
	}
}

func TestDeterminism(t *testing.T) {
	type op struct {
		m, k, v string
		del     bool
	}
	ops := []op{
		{"records", "b", "1", false}, {"public:x", "k", "", false}, {"records", "a", "2", false},
		{"records", "c", "", true}, {"public:x", "\x00", "bin", false}, {"z", "q", "3", false},
	}
	var want []byte
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 50 {
		rng.Shuffle(len(ops), func(i, j int) { ops[i], ops[j] = ops[j], ops[i] })
		tx := NewStore().Begin()
		for _, o := range ops {
			if o.del {
				_ = tx.Delete(o.m, o.k)
			} else {
				_ = tx.Put(o.m, o.k, []byte(o.v))
			}
		}
		got := tx.WriteSet().Marshal()
		if i == 0 {
			want = got
		} else if !bytes.Equal(got, want) {
			t.Fatalf("order %d encodes differently:\n%x\n%x", i, got, want)
		}
	}
}

func TestMarshalCanonicalizesHandBuilt(t *testing.T) {
	unsorted := &WriteSet{Maps: []MapWrites{
		{Name: "b", Writes: []Write{{Key: "y", Value: []byte("1")}, {Key: "x", Value: []byte("old")}}},
		{Name: "a", Writes: []Write{{Key: "k", Deleted: true}}},
		{Name: "empty"},
		{Name: "b", Writes: []Write{{Key: "x", Value: []byte("new")}}},
	}}
	want := &WriteSet{Maps: []MapWrites{
		{Name: "a", Writes: []Write{{Key: "k", Deleted: true}}},
		{Name: "b", Writes: []Write{{Key: "x", Value: []byte("new")}, {Key: "y", Value: []byte("1")}}},
	}}
	if !bytes.Equal(unsorted.Marshal(), want.Marshal()) {
		t.Fatal("unsorted write set not encoded canonically")
	}
}

func TestSplitMerge(t *testing.T) {
	ws := sampleWriteSet()
	pub, priv := ws.Split()
	if len(pub.Maps) != 1 || pub.Maps[0].Name != "public:ccf.gov.users.certs" {
		t.Fatalf("public half %+v", pub.Maps)
	}
	if len(priv.Maps) != 1 || priv.Maps[0].Name != "records" {
		t.Fatalf("private half %+v", priv.Maps)
	}
	// Merge in either order restores the original (sorted) write set.
	for _, m := range []*WriteSet{MergeWriteSets(pub, priv), MergeWriteSets(priv, pub)} {
		if !bytes.Equal(m.Marshal(), ws.Marshal()) || !equalMaps(m.Maps, ws.Maps) {
			t.Fatalf("merge = %+v", m.Maps)
		}
	}
	pubOnly := &WriteSet{Maps: ws.Maps[:1]}
	p, q := pubOnly.Split()
	if q == nil || !q.Empty() || len(q.Maps) != 0 || p.Empty() {
		t.Fatalf("split of public-only: %+v / %+v", p, q)
	}
	if !bytes.Equal(q.Marshal(), (&WriteSet{}).Marshal()) {
		t.Fatal("empty half encodes differently from an empty write set")
	}
	if m := MergeWriteSets(nil, nil); m == nil || !m.Empty() {
		t.Fatal("merge of nils")
	}
	// Overlapping maps: b wins on a shared key.
	a := &WriteSet{Maps: []MapWrites{{Name: "m", Writes: []Write{{Key: "k", Value: []byte("a")}, {Key: "x", Value: []byte("a")}}}}}
	b := &WriteSet{Maps: []MapWrites{{Name: "m", Writes: []Write{{Key: "k", Value: []byte("b")}}}}}
	want := []MapWrites{{Name: "m", Writes: []Write{{Key: "k", Value: []byte("b")}, {Key: "x", Value: []byte("a")}}}}
	if got := MergeWriteSets(a, b); !equalMaps(got.Maps, want) {
		t.Fatalf("overlapping merge = %+v", got.Maps)
	}
}

func TestEmpty(t *testing.T) {
	var nilWS *WriteSet
	for name, tc := range map[string]struct {
		ws   *WriteSet
		want bool
	}{
		"nil":         {nilWS, true},
		"no maps":     {&WriteSet{}, true},
		"empty map":   {&WriteSet{Maps: []MapWrites{{Name: "m"}}}, true},
		"delete only": {&WriteSet{Maps: []MapWrites{{Name: "m", Writes: []Write{{Key: "k", Deleted: true}}}}}, false},
	} {
		if got := tc.ws.Empty(); got != tc.want {
			t.Errorf("%s: Empty() = %v", name, got)
		}
	}
}

func TestUnmarshalRejects(t *testing.T) {
	tests := map[string]string{
		"empty":                "",
		"unknown format":       "02" + "00",
		"truncated count":      "01",
		"trailing bytes":       "01" + "00" + "00",
		"count beyond input":   "01" + "05" + "016d",
		"non-shortest varint":  "01" + "8000",
		"varint overflow":      "01" + "ffffffffffffffffffff01",
		"map with no writes":   "01" + "01" + "016d" + "00",
		"name past end":        "01" + "01" + "056d" + "01" + "0161" + "01",
		"bad op":               "01" + "01" + "016d" + "01" + "0161" + "02",
		"missing op":           "01" + "01" + "016d" + "01" + "0161",
		"value past end":       "01" + "01" + "016d" + "01" + "0161" + "00" + "05" + "78",
		"duplicate key":        "01" + "01" + "016d" + "02" + "0161" + "01" + "0161" + "01",
		"keys descending":      "01" + "01" + "016d" + "02" + "0162" + "01" + "0161" + "01",
		"duplicate map":        "01" + "02" + "016d" + "01" + "0161" + "01" + "016d" + "01" + "0161" + "01",
		"maps descending":      "01" + "02" + "016e" + "01" + "0161" + "01" + "016d" + "01" + "0161" + "01",
		"non-shortest length":  "01" + "01" + "81006d" + "01" + "0161" + "01",
		"huge write count":     "01" + "01" + "016d" + "ffffffff0f",
		"write count too high": "01" + "01" + "016d" + "02" + "0161" + "01",
	}
	for name, h := range tests {
		t.Run(name, func(t *testing.T) {
			b, err := hex.DecodeString(h)
			if err != nil {
				t.Fatal(err)
			}
			ws, err := UnmarshalWriteSet(b)
			if !errors.Is(err, ErrMalformed) || ws != nil {
				t.Fatalf("UnmarshalWriteSet(%s) = %v, %v; want ErrMalformed", h, ws, err)
			}
			ws, err = UnmarshalWriteSetOwned(b)
			if !errors.Is(err, ErrMalformed) || ws != nil {
				t.Fatalf("UnmarshalWriteSetOwned(%s) = %v, %v; want ErrMalformed", h, ws, err)
			}
		})
	}
}

// FuzzUnmarshalWriteSet checks the decoder never panics and that the format
// has one encoding per write set: whatever decodes re-encodes to the same
// bytes.
func FuzzUnmarshalWriteSet(f *testing.F) {
	f.Add(sampleWriteSet().Marshal())
	f.Add((&WriteSet{}).Marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		ws, err := UnmarshalWriteSet(b)
		owned, ownedErr := UnmarshalWriteSetOwned(bytes.Clone(b))
		if (err == nil) != (ownedErr == nil) || (err == nil && !equalMaps(ws.Maps, owned.Maps)) {
			t.Fatalf("UnmarshalWriteSet = %v, %v; Owned = %v, %v", ws, err, owned, ownedErr)
		}
		if err != nil {
			if ws != nil {
				t.Fatal("non-nil write set with error")
			}
			return
		}
		if got := ws.Marshal(); !bytes.Equal(got, b) {
			t.Fatalf("re-encoding differs:\n in  %x\n out %x", b, got)
		}
		// A decoded write set must be applicable.
		if err := NewStore().Apply(1, ws); err != nil {
			t.Fatal(err)
		}
	})
}

func TestFind(t *testing.T) {
	ws := sampleWriteSet()
	for _, c := range []struct {
		mapName, key string
		found        bool
		want         Write
	}{
		{"records", "", true, Write{Key: "", Value: []byte("empty key")}},
		{"records", "e", true, Write{Key: "e", Value: []byte{}}},
		{"records", "gone", true, Write{Key: "gone", Deleted: true}},
		{"public:ccf.gov.users.certs", "u2", true, Write{Key: "u2", Deleted: true}},
		{"records", "f", false, Write{}},
		{"records", "zzz", false, Write{}},
		{"other", "u1", false, Write{}},
	} {
		got, ok := ws.Find(c.mapName, c.key)
		if ok != c.found || got.Key != c.want.Key || got.Deleted != c.want.Deleted || !bytes.Equal(got.Value, c.want.Value) {
			t.Errorf("Find(%q, %q) = %+v, %v; want %+v, %v", c.mapName, c.key, got, ok, c.want, c.found)
		}
	}
	if _, ok := (*WriteSet)(nil).Find("records", ""); ok {
		t.Error("a nil write set found a write")
	}
}
