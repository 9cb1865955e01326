package crypto

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// fixedSecret returns a secret with a recognisable key, so tests are
// deterministic.
func fixedSecret(id uint32, from uint64) LedgerSecret {
	s := LedgerSecret{ID: id, From: from}
	for i := range s.Key {
		s.Key[i] = byte(id)*31 + byte(i)
	}
	return s
}

func mustKeyring(t testing.TB, secrets ...LedgerSecret) *Keyring {
	t.Helper()
	k, err := NewKeyring(secrets...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealOpen(t *testing.T) {
	k := mustKeyring(t, fixedSecret(1, 1), fixedSecret(2, 100))
	aad := []byte("public write set digest")
	sealed, err := k.Seal(5, []byte("private write set"), aad)
	if err != nil {
		t.Fatal(err)
	}
	other := mustKeyring(t, fixedSecret(7, 1))

	tests := []struct {
		name    string
		k       *Keyring
		sealed  func() []byte
		aad     []byte
		wantErr error
	}{
		{"round trip", k, func() []byte { return sealed }, aad, nil},
		{"wrong aad", k, func() []byte { return sealed }, []byte("other"), ErrDecrypt},
		{"nil aad", k, func() []byte { return sealed }, nil, ErrDecrypt},
		{"flipped ciphertext byte", k, flip(sealed, len(sealed)-20), aad, ErrDecrypt},
		{"flipped nonce byte", k, flip(sealed, 5), aad, ErrDecrypt},
		{"flipped tag byte", k, flip(sealed, len(sealed)-1), aad, ErrDecrypt},
		{"key id of another secret", k, flip(sealed, 3), aad, ErrUnknownKey}, // id 1 -> 0
		{"key id 2 exists but is wrong", k, setID(sealed, 2), aad, ErrDecrypt},
		{"unknown key id", other, func() []byte { return sealed }, aad, ErrUnknownKey},
		{"truncated", k, func() []byte { return sealed[:SealOverhead-1] }, aad, ErrDecrypt},
		{"empty", k, func() []byte { return nil }, aad, ErrDecrypt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pt, err := tt.k.Open(tt.sealed(), tt.aad)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil || string(pt) != "private write set" {
				t.Fatalf("got %q, %v", pt, err)
			}
		})
	}

	// Layout: key id, nonce, ciphertext and tag; nonces are fresh.
	if got := len(sealed); got != len("private write set")+SealOverhead {
		t.Fatalf("sealed length %d", got)
	}
	again, _ := k.Seal(5, []byte("private write set"), aad)
	if bytes.Equal(sealed[4:16], again[4:16]) {
		t.Fatal("nonce repeated")
	}
	empty, err := k.Seal(1, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := k.Open(empty, nil); err != nil || len(pt) != 0 {
		t.Fatalf("empty plaintext: %q, %v", pt, err)
	}
}

func flip(b []byte, i int) func() []byte {
	return func() []byte {
		c := bytes.Clone(b)
		c[i] ^= 1
		return c
	}
}

func setID(b []byte, id byte) func() []byte {
	return func() []byte {
		c := bytes.Clone(b)
		c[0], c[1], c[2], c[3] = 0, 0, 0, id
		return c
	}
}

func TestRotation(t *testing.T) {
	// Given out of order on purpose.
	k := mustKeyring(t, fixedSecret(2, 10), fixedSecret(1, 1))
	if err := k.Add(fixedSecret(3, 50)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		seqno  uint64
		wantID uint32
		noneOK bool
	}{
		{0, 0, true},
		{1, 1, false},
		{9, 1, false},
		{10, 2, false},
		{49, 2, false},
		{50, 3, false},
		{1 << 62, 3, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.seqno), func(t *testing.T) {
			s, err := k.SecretAt(tt.seqno)
			if tt.noneOK {
				if !errors.Is(err, ErrNoSecret) {
					t.Fatalf("err = %v, want ErrNoSecret", err)
				}
				if _, err := k.Seal(tt.seqno, nil, nil); !errors.Is(err, ErrNoSecret) {
					t.Fatalf("Seal err = %v", err)
				}
				return
			}
			if err != nil || s.ID != tt.wantID {
				t.Fatalf("SecretAt = %d, %v; want %d", s.ID, err, tt.wantID)
			}
			sealed, err := k.Seal(tt.seqno, []byte("x"), nil)
			if err != nil {
				t.Fatal(err)
			}
			if id := uint32(sealed[3]); id != tt.wantID {
				t.Fatalf("sealed with %d, want %d", id, tt.wantID)
			}
			// Every secret stays available for opening.
			if _, err := k.Open(sealed, nil); err != nil {
				t.Fatal(err)
			}
		})
	}
	var froms []uint64
	for _, s := range k.Secrets() {
		froms = append(froms, s.From)
	}
	if fmt.Sprint(froms) != "[1 10 50]" {
		t.Fatalf("Secrets() froms = %v", froms)
	}
}

func TestKeyringErrors(t *testing.T) {
	newTests := []struct {
		name    string
		secrets []LedgerSecret
		want    string
	}{
		{"none", nil, "no ledger secrets"},
		{"duplicate id", []LedgerSecret{fixedSecret(1, 1), fixedSecret(1, 5)}, "duplicate ledger secret id 1"},
		{"duplicate from", []LedgerSecret{fixedSecret(1, 1), fixedSecret(2, 1)}, "from seqno 1"},
	}
	for _, tt := range newTests {
		t.Run("new/"+tt.name, func(t *testing.T) {
			_, err := NewKeyring(tt.secrets...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}

	addTests := []struct {
		name string
		s    LedgerSecret
		want string
	}{
		{"from before latest", fixedSecret(3, 5), "must exceed 10"},
		{"from equal to latest", fixedSecret(3, 10), "must exceed 10"},
		{"from before first", fixedSecret(3, 0), "must exceed 10"},
		{"duplicate id", fixedSecret(1, 20), "duplicate id 1"},
		{"ok", fixedSecret(3, 11), ""},
	}
	for _, tt := range addTests {
		t.Run("add/"+tt.name, func(t *testing.T) {
			k := mustKeyring(t, fixedSecret(1, 1), fixedSecret(2, 10))
			err := k.Add(tt.s)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if n := len(k.Secrets()); n != 2 {
				t.Fatalf("failed Add changed the keyring: %d secrets", n)
			}
		})
	}
}

func TestCommitEvidence(t *testing.T) {
	s1, s2 := fixedSecret(1, 1), fixedSecret(2, 100)
	a := mustKeyring(t, s1, s2)
	b := mustKeyring(t, s1)
	if err := b.Add(s2); err != nil {
		t.Fatal(err)
	}
	c := mustKeyring(t, fixedSecret(9, 1))

	// Independent computation of the contract in docs/design.md.
	want := func(s LedgerSecret, view, seqno uint64) string {
		k, err := hkdf.Key(sha256.New, s.Key[:], nil, "coco commit evidence", 32)
		if err != nil {
			t.Fatal(err)
		}
		txid := fmt.Sprintf("%d.%d", view, seqno)
		m := hmac.New(sha256.New, k)
		m.Write([]byte(txid))
		return "ce:" + txid + ":" + hex.EncodeToString(m.Sum(nil))
	}
	tests := []struct {
		view, seqno uint64
		secret      LedgerSecret
	}{
		{1, 1, s1},
		{2, 99, s1},
		{2, 100, s2},
		{^uint64(0), ^uint64(0), s2},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d.%d", tt.view, tt.seqno), func(t *testing.T) {
			ea, err := a.CommitEvidence(tt.view, tt.seqno)
			if err != nil {
				t.Fatal(err)
			}
			if w := want(tt.secret, tt.view, tt.seqno); ea != w {
				t.Fatalf("got %s, want %s", ea, w)
			}
			// Deterministic across keyrings and calls (the HMAC pool is reused).
			for range 3 {
				if eb, _ := b.CommitEvidence(tt.view, tt.seqno); eb != ea {
					t.Fatalf("keyrings disagree: %s vs %s", ea, eb)
				}
			}
			if ec, _ := c.CommitEvidence(tt.view, tt.seqno); ec == ea {
				t.Fatal("different secrets gave the same evidence")
			}
		})
	}
	// A different view at the same seqno is different evidence.
	x, _ := a.CommitEvidence(1, 5)
	y, _ := a.CommitEvidence(2, 5)
	if x == y {
		t.Fatal("view not bound")
	}
	for _, id := range [][2]uint64{{0, 1}, {1, 0}} {
		if _, err := a.CommitEvidence(id[0], id[1]); err == nil {
			t.Fatalf("accepted %d.%d", id[0], id[1])
		}
	}
	if _, err := mustKeyring(t, fixedSecret(1, 10)).CommitEvidence(1, 5); !errors.Is(err, ErrNoSecret) {
		t.Fatalf("before first secret: %v", err)
	}
}

func TestKeyringConcurrent(t *testing.T) {
	k := mustKeyring(t, fixedSecret(1, 1))
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				seqno := uint64(i + 1)
				sealed, err := k.Seal(seqno, []byte("v"), nil)
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := k.Open(sealed, nil); err != nil {
					t.Error(err)
					return
				}
				if _, err := k.CommitEvidence(uint64(g+1), seqno); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for i := range 20 {
		if err := k.Add(fixedSecret(uint32(i+2), uint64(10*(i+1)))); err != nil {
			t.Fatal(err)
		}
		_ = k.Secrets()
	}
	wg.Wait()
}

func TestSecretsJSON(t *testing.T) {
	fresh, err := NewLedgerSecret(3, 7)
	if err != nil {
		t.Fatal(err)
	}
	if fresh.Key == ([32]byte{}) {
		t.Fatal("zero key")
	}
	in := []LedgerSecret{fixedSecret(1, 1), fixedSecret(2, 100), fresh}
	b, err := MarshalSecrets(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := UnmarshalSecrets(b)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(keysOf(out)) != fmt.Sprint(keysOf(in)) {
		t.Fatalf("round trip changed secrets: %s", b)
	}

	key := strings.Repeat("ab", 32)
	tests := []struct {
		name, in, want string
	}{
		{"not JSON", "nope", "invalid character"},
		{"version", `{"version":2,"secrets":[]}`, "unsupported version 2"},
		{"no version", `{"secrets":[]}`, "unsupported version 0"},
		{"unknown field", `{"version":1,"secrets":[],"x":1}`, "unknown field"},
		{"short key", `{"version":1,"secrets":[{"id":1,"key":"abcd","from":1}]}`, "64 hex digits"},
		{"bad hex", `{"version":1,"secrets":[{"id":1,"key":"` + strings.Repeat("zz", 32) + `","from":1}]}`, "64 hex digits"},
		{"duplicate id", `{"version":1,"secrets":[{"id":1,"key":"` + key + `","from":1},{"id":1,"key":"` + key + `","from":2}]}`, "duplicate"},
		{"trailing", `{"version":1,"secrets":[]} x`, "trailing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := UnmarshalSecrets([]byte(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
	if _, err := MarshalSecrets([]LedgerSecret{fixedSecret(1, 1), fixedSecret(1, 2)}); err == nil {
		t.Fatal("marshalled duplicate ids")
	}
}

func TestLedgerSecretRedacted(t *testing.T) {
	s := fixedSecret(1, 1)
	hexKey := hex.EncodeToString(s.Key[:])
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		out := fmt.Sprintf(f, s)
		if strings.Contains(out, hexKey) || strings.Contains(out, fmt.Sprint(s.Key[0], " ", s.Key[1])) {
			t.Fatalf("%s leaks the key: %s", f, out)
		}
	}
}

func keysOf(ss []LedgerSecret) []string {
	var out []string
	for _, s := range ss {
		out = append(out, fmt.Sprintf("%d/%d/%x", s.ID, s.From, s.Key))
	}
	return out
}

func TestZeroKeyring(t *testing.T) {
	var k Keyring
	if _, err := k.Seal(1, nil, nil); err == nil {
		t.Error("Seal on zero keyring")
	}
	if _, err := k.Open(make([]byte, SealOverhead), nil); err == nil {
		t.Error("Open on zero keyring")
	}
	if _, err := k.CommitEvidence(1, 1); err == nil {
		t.Error("CommitEvidence on zero keyring")
	}
	if err := k.Add(fixedSecret(1, 1)); err == nil {
		t.Error("Add on zero keyring")
	}
	if k.Secrets() != nil {
		t.Error("Secrets on zero keyring")
	}
}
