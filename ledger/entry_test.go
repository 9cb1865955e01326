package ledger

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
)

func TestEntryRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		e    *Entry
	}{
		{"tx", txEntry(3, 7, 100)},
		{"empty payloads", &Entry{Kind: KindTx, Term: 1, Index: 1}},
		{"internal", &Entry{Kind: KindInternal, RaftType: 1, Term: 2, Index: 9, Public: []byte{8, 1}}},
		{"signature", &Entry{Kind: KindSignature, Term: 1, Index: 2, Public: []byte(`{}`)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := tt.e.Marshal()
			if len(body) != tt.e.bodySize() {
				t.Fatalf("body %d bytes, bodySize %d", len(body), tt.e.bodySize())
			}
			got, err := UnmarshalEntry(body)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.e) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, tt.e)
			}
			if !bytes.Equal(got.Marshal(), body) {
				t.Fatal("re-marshal differs")
			}
			// Digest: SHA-256 of the body without the two digests.
			want := sha256.Sum256(append(append([]byte{}, body[:offDigests]...), body[offPublic:]...))
			if got.WriteSetDigest() != want {
				t.Fatal("write set digest")
			}
			wsd := got.WriteSetDigest()
			leaf := sha256.Sum256(append(append(wsd[:], got.CommitEvidenceDigest[:]...), got.ClaimsDigest[:]...))
			if got.Leaf() != leaf {
				t.Fatal("leaf")
			}
		})
	}
}

func TestEntryGolden(t *testing.T) {
	e := &Entry{Kind: KindTx, Term: 2, Index: 5, Public: []byte("ab"), Private: []byte("c")}
	e.CommitEvidenceDigest[0], e.ClaimsDigest[31] = 0xce, 0xc1
	var want []byte
	want = append(want, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 5)
	want = append(want, e.CommitEvidenceDigest[:]...)
	want = append(want, e.ClaimsDigest[:]...)
	want = append(want, 0, 0, 0, 2, 'a', 'b', 0, 0, 0, 1, 'c')
	if got := e.Marshal(); !bytes.Equal(got, want) {
		t.Fatalf("Marshal:\n got %x\nwant %x", got, want)
	}
	if e.TxID() != "2.5" {
		t.Fatalf("TxID %q", e.TxID())
	}
}

func TestUnmarshalEntryStrict(t *testing.T) {
	good := txEntry(1, 1, 10).Marshal()
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	tests := []struct {
		name string
		body []byte
	}{
		{"empty", nil},
		{"short", good[:minBodySize-1]},
		{"format", mod(func(b []byte) []byte { b[0] = 2; return b })},
		{"kind 0", mod(func(b []byte) []byte { b[offKind] = 0; return b })},
		{"kind 4", mod(func(b []byte) []byte { b[offKind] = 4; return b })},
		{"raft type on tx", mod(func(b []byte) []byte { b[offRaftType] = 1; return b })},
		{"term 0", mod(func(b []byte) []byte { binary.BigEndian.PutUint64(b[offTerm:], 0); return b })},
		{"index 0", mod(func(b []byte) []byte { binary.BigEndian.PutUint64(b[offIndex:], 0); return b })},
		{"public overruns", mod(func(b []byte) []byte { binary.BigEndian.PutUint32(b[offPublic:], 1<<31); return b })},
		{"trailing byte", append(bytes.Clone(good), 0)},
		{"truncated private", good[:len(good)-1]},
		{"internal with digest", (&Entry{Kind: KindInternal, Term: 1, Index: 1}).Marshal()[:0]},
	}
	internal := (&Entry{Kind: KindInternal, Term: 1, Index: 1}).Marshal()
	internal[offDigests] = 1
	tests[len(tests)-1].body = internal
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := UnmarshalEntry(tt.body); !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
			if _, err := UnmarshalEntryNoCopy(tt.body); !errors.Is(err, ErrMalformed) {
				t.Fatalf("NoCopy: err = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestUnmarshalEntryDoesNotAlias(t *testing.T) {
	body := txEntry(1, 1, 10).Marshal()
	e, err := UnmarshalEntry(body)
	if err != nil {
		t.Fatal(err)
	}
	before := bytes.Clone(e.Public)
	for i := range body {
		body[i] = 0xff
	}
	if !bytes.Equal(e.Public, before) {
		t.Fatal("entry aliases its input")
	}
}

// TestUnmarshalEntryNoCopy checks the aliasing decoder gives the same entry
// as the copying one, that its payloads share body, and that they have no
// capacity past their ends (an append must never write into body).
func TestUnmarshalEntryNoCopy(t *testing.T) {
	for _, e := range []*Entry{txEntry(2, 9, 300), {Kind: KindTx, Term: 1, Index: 1}} {
		body := e.Marshal()
		want, err := UnmarshalEntry(body)
		if err != nil {
			t.Fatal(err)
		}
		got, err := UnmarshalEntryNoCopy(body)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("NoCopy:\n got %+v\nwant %+v", got, want)
		}
		if len(got.Public) == 0 {
			continue
		}
		if &got.Public[0] != &body[offPublic+4] {
			t.Fatal("Public does not alias body")
		}
		if cap(got.Public) != len(got.Public) || cap(got.Private) != len(got.Private) {
			t.Fatal("a payload has room past its end: an append would write into body")
		}
	}
}

func TestSignatureEntry(t *testing.T) {
	s := &Signature{View: 2, Seqno: 10, TreeSize: 9, Root: "00", NodeID: "n", Cert: "c", Sig: []byte{1}, COSE: []byte{2}}
	e, err := NewSignatureEntry(2, 10, s)
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.Signature()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, s) {
		t.Fatalf("got %+v", got)
	}
	if _, err := NewSignatureEntry(2, 11, s); err == nil {
		t.Fatal("mismatched txid accepted")
	}
	if _, err := txEntry(1, 1, 1).Signature(); err == nil {
		t.Fatal("Signature() of a tx entry")
	}
	e.Public = append(e.Public, []byte(" {}")...)
	if _, err := e.Signature(); err == nil {
		t.Fatal("trailing data accepted")
	}
}

func FuzzUnmarshalEntry(f *testing.F) {
	f.Add(txEntry(1, 1, 10).Marshal())
	f.Add((&Entry{Kind: KindInternal, RaftType: 2, Term: 4, Index: 8, Public: []byte{1}}).Marshal())
	f.Add((&Entry{Kind: KindSignature, Term: 1, Index: 2, Public: []byte(`{"view":1}`)}).Marshal())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, body []byte) {
		e, err := UnmarshalEntry(body)
		nc, ncErr := UnmarshalEntryNoCopy(body)
		if (err == nil) != (ncErr == nil) || (err == nil && !reflect.DeepEqual(e, nc)) {
			t.Fatalf("UnmarshalEntry = %+v, %v; NoCopy = %+v, %v", e, err, nc, ncErr)
		}
		if err != nil {
			if e != nil {
				t.Fatal("entry with error")
			}
			return
		}
		// Strict: exactly one encoding per entry.
		if !bytes.Equal(e.Marshal(), body) {
			t.Fatalf("re-marshal differs:\n%x\n%x", e.Marshal(), body)
		}
		if err := e.validate(); err != nil {
			t.Fatalf("decoded entry fails validate: %v", err)
		}
		_ = e.Leaf()
		_, _ = e.Signature()
	})
}
