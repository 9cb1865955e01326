package constitution

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	cococrypto "github.com/cocoledger/coco/crypto"
	"github.com/cocoledger/coco/kv"
)

var _ KV = (*kv.Tx)(nil)

// newCert returns a fresh certificate PEM and its id.
func newCert(t *testing.T, cn string) (string, string) {
	t.Helper()
	key, err := cococrypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := cococrypto.SelfSignedCert(key, cn, time.Hour, false)
	if err != nil {
		t.Fatal(err)
	}
	return string(cococrypto.EncodeCertPEM(cert)), cococrypto.CertID(cert)
}

func newEncKeyPEM(t *testing.T) string {
	t.Helper()
	k, err := cococrypto.GenerateEncryptionKey()
	if err != nil {
		t.Fatal(err)
	}
	p, err := cococrypto.EncodePublicKeyPEM(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(p)
}

type action struct {
	Name string `json:"name"`
	Args any    `json:"args,omitempty"`
}

func proposal(t *testing.T, actions ...action) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{"actions": actions})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustParse(t *testing.T, src string) *Constitution {
	t.Helper()
	c, err := Parse(src)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c
}

func defaultConstitution(t *testing.T) *Constitution { return mustParse(t, Default()) }

// putJSON writes v as JSON, failing the test on error.
func putJSON(t *testing.T, tx KV, m, k string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Put(m, k, b); err != nil {
		t.Fatal(err)
	}
}

func getJSON(t *testing.T, tx KV, m, k string) map[string]any {
	t.Helper()
	b, ok := tx.Get(m, k)
	if !ok {
		t.Fatalf("%s[%q] is absent", m, k)
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s[%q] = %q: %v", m, k, b, err)
	}
	return v
}

// hexID returns a syntactically valid id made of c.
func hexID(c string) string { return strings.Repeat(c, 64) }

// addMembers writes n members with the given status and returns their ids.
func addMembers(t *testing.T, tx KV, n int, status string) []string {
	t.Helper()
	var ids []string
	for i := range n {
		id := hexID(string("0123456789abcdef"[i%16])) // distinct for n <= 16
		putJSON(t, tx, MembersInfo, id, map[string]any{"status": status})
		ids = append(ids, id)
	}
	return ids
}

// commit applies tx to store and returns a new transaction on the result.
func commit(t *testing.T, store *kv.Store, tx *kv.Tx) *kv.Tx {
	t.Helper()
	if err := store.Validate(tx); err != nil {
		t.Fatal(err)
	}
	if err := store.Apply(store.Version()+1, tx.WriteSet()); err != nil {
		t.Fatal(err)
	}
	return store.Begin()
}
