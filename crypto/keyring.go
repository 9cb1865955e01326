package crypto

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
)

// Sealed data layout.
const (
	keyIDSize = 4
	nonceSize = 12
	tagSize   = 16
	// SealOverhead is how many bytes Seal adds to a plaintext.
	SealOverhead = keyIDSize + nonceSize + tagSize
)

// commitEvidenceInfo is the HKDF info that separates the commit evidence key
// from the sealing key, which is the secret itself.
const commitEvidenceInfo = "coco commit evidence"

// LedgerSecret is one AES-256 key of the service, in force from seqno From
// until the next secret's From.
type LedgerSecret struct {
	ID   uint32
	Key  [32]byte
	From uint64 // first seqno it seals
}

// NewLedgerSecret returns a secret with a random key.
func NewLedgerSecret(id uint32, from uint64) (LedgerSecret, error) {
	s := LedgerSecret{ID: id, From: from}
	if _, err := rand.Read(s.Key[:]); err != nil {
		return LedgerSecret{}, fmt.Errorf("new ledger secret: %w", err)
	}
	return s, nil
}

// String hides the key so that logging a secret does not leak it.
func (s LedgerSecret) String() string {
	return fmt.Sprintf("LedgerSecret{ID: %d, From: %d, Key: <redacted>}", s.ID, s.From)
}

// GoString hides the key from %#v as well.
func (s LedgerSecret) GoString() string { return s.String() }

// Keyring holds a service's ledger secrets. It is safe for concurrent use;
// readers (Seal, Open, CommitEvidence, SecretAt) take no lock, since the set
// of secrets is an immutable snapshot replaced as a whole by Add.
type Keyring struct {
	mu    sync.Mutex // serialises Add
	state atomic.Pointer[keyringState]
}

type keyringState struct {
	byFrom []*keyEntry // ascending From
	byID   map[uint32]*keyEntry
}

// keyEntry caches what is derived from a secret, so the per-transaction paths
// do no key schedule or HKDF.
type keyEntry struct {
	secret LedgerSecret
	aead   cipher.AEAD
	// macs pools HMAC-SHA256 states keyed with the commit evidence key;
	// Reset returns a used one to its keyed state, avoiding the key
	// schedule and allocations of hmac.New per call.
	macs sync.Pool
}

func newKeyEntry(s LedgerSecret) (*keyEntry, error) {
	block, err := aes.NewCipher(s.Key[:])
	if err != nil {
		return nil, fmt.Errorf("ledger secret %d: %w", s.ID, err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("ledger secret %d: %w", s.ID, err)
	}
	ceKey, err := hkdf.Key(sha256.New, s.Key[:], nil, commitEvidenceInfo, sha256.Size)
	if err != nil {
		return nil, fmt.Errorf("ledger secret %d: commit evidence key: %w", s.ID, err)
	}
	e := &keyEntry{secret: s, aead: aead}
	e.macs.New = func() any { return hmac.New(sha256.New, ceKey) }
	return e, nil
}

// NewKeyring returns a keyring of at least one secret, with distinct IDs and
// distinct From, in any order.
func NewKeyring(secrets ...LedgerSecret) (*Keyring, error) {
	if len(secrets) == 0 {
		return nil, errors.New("new keyring: no ledger secrets")
	}
	if err := checkSecrets(secrets); err != nil {
		return nil, fmt.Errorf("new keyring: %w", err)
	}
	st := &keyringState{byID: make(map[uint32]*keyEntry, len(secrets))}
	for _, s := range secrets {
		e, err := newKeyEntry(s)
		if err != nil {
			return nil, fmt.Errorf("new keyring: %w", err)
		}
		st.byFrom = append(st.byFrom, e)
		st.byID[s.ID] = e
	}
	sort.Slice(st.byFrom, func(i, j int) bool { return st.byFrom[i].secret.From < st.byFrom[j].secret.From })
	k := &Keyring{}
	k.state.Store(st)
	return k, nil
}

func checkSecrets(secrets []LedgerSecret) error {
	ids := make(map[uint32]bool, len(secrets))
	froms := make(map[uint64]bool, len(secrets))
	for _, s := range secrets {
		if ids[s.ID] {
			return fmt.Errorf("duplicate ledger secret id %d", s.ID)
		}
		if froms[s.From] {
			return fmt.Errorf("two ledger secrets from seqno %d", s.From)
		}
		ids[s.ID], froms[s.From] = true, true
	}
	return nil
}

// Add rotates to s: its From must exceed every existing From (secrets only
// take effect going forward) and its ID must be new.
func (k *Keyring) Add(s LedgerSecret) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	old, err := k.load()
	if err != nil {
		return fmt.Errorf("add ledger secret: %w", err)
	}
	if _, dup := old.byID[s.ID]; dup {
		return fmt.Errorf("add ledger secret: duplicate id %d", s.ID)
	}
	if last := old.byFrom[len(old.byFrom)-1].secret.From; s.From <= last {
		return fmt.Errorf("add ledger secret %d: from seqno %d must exceed %d, the latest secret's", s.ID, s.From, last)
	}
	e, err := newKeyEntry(s)
	if err != nil {
		return fmt.Errorf("add ledger secret: %w", err)
	}
	st := &keyringState{
		byFrom: append(slices.Clip(old.byFrom), e),
		byID:   make(map[uint32]*keyEntry, len(old.byID)+1),
	}
	for id, oe := range old.byID {
		st.byID[id] = oe
	}
	st.byID[s.ID] = e
	k.state.Store(st)
	return nil
}

// Secrets returns a copy of the secrets, ordered by From.
func (k *Keyring) Secrets() []LedgerSecret {
	st, err := k.load()
	if err != nil {
		return nil
	}
	out := make([]LedgerSecret, len(st.byFrom))
	for i, e := range st.byFrom {
		out[i] = e.secret
	}
	return out
}

// SecretAt returns the secret in force at seqno: the one with the largest
// From <= seqno, or ErrNoSecret.
func (k *Keyring) SecretAt(seqno uint64) (LedgerSecret, error) {
	e, err := k.entryAt(seqno)
	if err != nil {
		return LedgerSecret{}, err
	}
	return e.secret, nil
}

// errNoKeyring: a zero Keyring, which has no secrets and cannot get any.
var errNoKeyring = errors.New("keyring has no secrets (create it with NewKeyring)")

// load returns the current secrets; it guards against a zero Keyring so
// misuse is an error rather than a nil dereference.
func (k *Keyring) load() (*keyringState, error) {
	st := k.state.Load()
	if st == nil || len(st.byFrom) == 0 {
		return nil, errNoKeyring
	}
	return st, nil
}

func (k *Keyring) entryAt(seqno uint64) (*keyEntry, error) {
	st, err := k.load()
	if err != nil {
		return nil, err
	}
	es := st.byFrom
	// The number of secrets with From <= seqno; the last of them is in force.
	n := sort.Search(len(es), func(i int) bool { return es[i].secret.From > seqno })
	if n == 0 {
		return nil, fmt.Errorf("%w at seqno %d (earliest secret is from %d)", ErrNoSecret, seqno, es[0].secret.From)
	}
	return es[n-1], nil
}

// Seal encrypts plaintext with the secret in force at seqno, binding aad:
//
//	u32 BE key id || 12-byte random nonce || AES-256-GCM ciphertext || tag
//
// The nonce is random rather than derived from the seqno because a seqno can
// be sealed more than once with different content (a raft suffix rolled back
// and rewritten), and a repeated GCM nonce would be fatal. Random 96-bit
// nonces are safe for about 2^32 seals per secret, so secrets should be
// rotated well before that many transactions.
func (k *Keyring) Seal(seqno uint64, plaintext, aad []byte) ([]byte, error) {
	e, err := k.entryAt(seqno)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	out := make([]byte, keyIDSize+nonceSize, len(plaintext)+SealOverhead)
	binary.BigEndian.PutUint32(out, e.secret.ID)
	nonce := out[keyIDSize : keyIDSize+nonceSize]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal: nonce: %w", err)
	}
	return e.aead.Seal(out, nonce, plaintext, aad), nil
}

// Open decrypts what Seal produced with the secret it names. It fails with
// ErrUnknownKey if the keyring lacks that secret and ErrDecrypt if the data
// is truncated, tampered with or sealed with other aad.
func (k *Keyring) Open(sealed, aad []byte) ([]byte, error) {
	if len(sealed) < SealOverhead {
		return nil, fmt.Errorf("open: %w: %d bytes is shorter than the %d-byte overhead", ErrDecrypt, len(sealed), SealOverhead)
	}
	id := binary.BigEndian.Uint32(sealed)
	st, err := k.load()
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	e, ok := st.byID[id]
	if !ok {
		return nil, fmt.Errorf("open: %w %d", ErrUnknownKey, id)
	}
	nonce := sealed[keyIDSize : keyIDSize+nonceSize]
	pt, err := e.aead.Open(nil, nonce, sealed[keyIDSize+nonceSize:], aad)
	if err != nil {
		return nil, fmt.Errorf("open with ledger secret %d: %w", id, ErrDecrypt)
	}
	return pt, nil
}

// CommitEvidence returns the commit evidence of transaction view.seqno:
// "ce:v.s:" + hex(HMAC-SHA256(K, "v.s")), K derived by HKDF from the secret
// in force at seqno. Only the secret holders can compute it, so revealing it
// in a receipt proves the service committed the transaction.
func (k *Keyring) CommitEvidence(view, seqno uint64) (string, error) {
	if view == 0 || seqno == 0 {
		return "", fmt.Errorf("commit evidence: invalid transaction id %d.%d (view and seqno start at 1)", view, seqno)
	}
	e, err := k.entryAt(seqno)
	if err != nil {
		return "", fmt.Errorf("commit evidence: %w", err)
	}
	// "ce:" + two u64s + "." + ":" + 64 hex digits fits in 128 bytes, so
	// this stays on the stack until the final string conversion.
	var buf [128]byte
	b := append(buf[:0], "ce:"...)
	b = strconv.AppendUint(b, view, 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, seqno, 10)
	txid := b[len("ce:"):]

	mac := e.macs.Get().(hash.Hash)
	mac.Reset()
	mac.Write(txid)
	var sum [sha256.Size]byte
	mac.Sum(sum[:0])
	e.macs.Put(mac)

	b = append(b, ':')
	b = hex.AppendEncode(b, sum[:])
	return string(b), nil
}

// secretsFileVersion is the version of MarshalSecrets' format.
const secretsFileVersion = 1

type secretsFile struct {
	Version int          `json:"version"`
	Secrets []secretJSON `json:"secrets"`
}

type secretJSON struct {
	ID   uint32 `json:"id"`
	Key  string `json:"key"` // hex
	From uint64 `json:"from"`
}

// MarshalSecrets encodes secrets as JSON for the node's ledger secrets file:
//
//	{"version":1,"secrets":[{"id":1,"key":"<64 hex digits>","from":1}]}
//
// The result holds the keys in clear; write it 0600.
func MarshalSecrets(secrets []LedgerSecret) ([]byte, error) {
	if err := checkSecrets(secrets); err != nil {
		return nil, fmt.Errorf("marshal ledger secrets: %w", err)
	}
	f := secretsFile{Version: secretsFileVersion, Secrets: make([]secretJSON, len(secrets))}
	for i, s := range secrets {
		f.Secrets[i] = secretJSON{ID: s.ID, Key: hex.EncodeToString(s.Key[:]), From: s.From}
	}
	b, err := json.Marshal(f)
	if err != nil {
		return nil, fmt.Errorf("marshal ledger secrets: %w", err)
	}
	return b, nil
}

// UnmarshalSecrets decodes what MarshalSecrets produced, refusing unknown
// versions and fields, malformed keys and duplicate IDs or From.
func UnmarshalSecrets(b []byte) ([]LedgerSecret, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f secretsFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("unmarshal ledger secrets: %w", err)
	}
	if dec.More() {
		return nil, errors.New("unmarshal ledger secrets: trailing data after JSON object")
	}
	if f.Version != secretsFileVersion {
		return nil, fmt.Errorf("unmarshal ledger secrets: unsupported version %d (want %d)", f.Version, secretsFileVersion)
	}
	out := make([]LedgerSecret, len(f.Secrets))
	for i, sj := range f.Secrets {
		key, err := hex.DecodeString(sj.Key)
		if err != nil || len(key) != len(out[i].Key) {
			return nil, fmt.Errorf("unmarshal ledger secrets: secret %d: key must be %d hex digits", sj.ID, 2*len(out[i].Key))
		}
		out[i] = LedgerSecret{ID: sj.ID, From: sj.From}
		copy(out[i].Key[:], key)
	}
	if err := checkSecrets(out); err != nil {
		return nil, fmt.Errorf("unmarshal ledger secrets: %w", err)
	}
	return out, nil
}
