package gov_test

import (
	"encoding/json"
	"strings"
	"testing"

	cococrypto "github.com/cocoledger/coco/crypto"
	"github.com/cocoledger/coco/gov"
	"github.com/cocoledger/coco/gov/constitution"
	"github.com/cocoledger/coco/kv"
)

// TestWriteGenesisRefuses checks that WriteGenesis refuses a genesis
// nobody could govern (or that could never be recovered).
func TestWriteGenesisRefuses(t *testing.T) {
	a, b := newMember(t, "a"), newMember(t, "b")
	svc := newMember(t, "service").cert
	key := encKey(t)
	tests := []struct {
		name string
		g    gov.Genesis
		want string // in the error
	}{
		{"no members", gov.Genesis{ServiceCert: svc, Constitution: constitution.Default()}, "at least one member"},
		{"member given twice", gov.Genesis{ServiceCert: svc, Constitution: constitution.Default(),
			Members: []gov.Member{{Cert: a.cert}, {Cert: b.cert}, {Cert: a.cert}}}, a.id},
		{"threshold above recovery members", gov.Genesis{ServiceCert: svc, Constitution: constitution.Default(),
			Members: []gov.Member{{Cert: a.cert, EncryptionKeyPEM: key}, {Cert: b.cert}}, RecoveryThreshold: 2}, "recovery threshold 2"},
		{"threshold without recovery members", gov.Genesis{ServiceCert: svc, Constitution: constitution.Default(),
			Members: []gov.Member{{Cert: a.cert}}, RecoveryThreshold: 1}, "recovery threshold 1"},
		{"negative threshold", gov.Genesis{ServiceCert: svc, Constitution: constitution.Default(),
			Members: []gov.Member{{Cert: a.cert, EncryptionKeyPEM: key}}, RecoveryThreshold: -1}, "threshold"},
		{"constitution does not compile", gov.Genesis{ServiceCert: svc, Constitution: "export function validate( {",
			Members: []gov.Member{{Cert: a.cert}}}, "constitution"},
		{"constitution without apply", gov.Genesis{ServiceCert: svc,
			Constitution: "export function validate(p) { return {valid: true} }\nexport function resolve() { return \"Open\" }",
			Members:      []gov.Member{{Cert: a.cert}}}, "apply"},
		{"constitution empty", gov.Genesis{ServiceCert: svc, Members: []gov.Member{{Cert: a.cert}}}, "constitution"},
		{"member without certificate", gov.Genesis{ServiceCert: svc, Constitution: constitution.Default(),
			Members: []gov.Member{{}}}, "certificate"},
		{"no service certificate", gov.Genesis{Constitution: constitution.Default(),
			Members: []gov.Member{{Cert: a.cert}}}, "certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := gov.WriteGenesis(kv.NewStore().Begin(), tc.g)
			if err == nil {
				t.Fatal("WriteGenesis accepted it")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

// TestWriteGenesis checks what a genesis records.
func TestWriteGenesis(t *testing.T) {
	a, b, c := newMember(t, "a"), newMember(t, "b"), newMember(t, "c")
	svc := newMember(t, "service").cert
	key := encKey(t)
	tests := []struct {
		name      string
		members   []gov.Member
		threshold int
		want      int // the recovery threshold recorded
	}{
		{"no recovery members", []gov.Member{{Cert: a.cert}}, 0, 0},
		{"threshold defaults to 1", []gov.Member{{Cert: a.cert, EncryptionKeyPEM: key}, {Cert: b.cert}}, 0, 1},
		{"threshold as given", []gov.Member{{Cert: a.cert, EncryptionKeyPEM: key}, {Cert: b.cert, EncryptionKeyPEM: key}, {Cert: c.cert}}, 2, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tx := kv.NewStore().Begin()
			tc.members[0].Data = json.RawMessage(`{"role":"operator"}`)
			if err := gov.WriteGenesis(tx, gov.Genesis{ServiceCert: svc, Members: tc.members, Constitution: constitution.Default(), RecoveryThreshold: tc.threshold}); err != nil {
				t.Fatal(err)
			}
			var s gov.Service
			readJSON(t, tx, gov.ServiceInfo, gov.ServiceKey, &s)
			if s.Status != gov.StatusOpening || s.Cert != string(cococrypto.EncodeCertPEM(svc)) {
				t.Errorf("service %+v", s)
			}
			var cfg gov.ServiceConfiguration
			readJSON(t, tx, gov.ServiceConfig, gov.ServiceKey, &cfg)
			if cfg.RecoveryThreshold != tc.want {
				t.Errorf("recovery threshold %d, want %d", cfg.RecoveryThreshold, tc.want)
			}
			for i, m := range tc.members {
				id := cococrypto.CertID(m.Cert)
				if pem, ok := tx.Get(gov.MembersCerts, id); !ok || string(pem) != string(cococrypto.EncodeCertPEM(m.Cert)) {
					t.Errorf("member %d certificate not recorded", i)
				}
				var info gov.MemberInfo
				readJSON(t, tx, gov.MembersInfo, id, &info)
				if info.Status != gov.MemberAccepted || string(info.MemberData) != string(m.Data) {
					t.Errorf("member %d: %+v", i, info)
				}
				if k, ok := tx.Get(gov.MembersEncryptionPublicKeys, id); ok != (m.EncryptionKeyPEM != nil) || string(k) != string(m.EncryptionKeyPEM) {
					t.Errorf("member %d encryption key recorded = %v", i, ok)
				}
			}
			if src, _ := tx.Get(gov.Constitution, gov.ConstitutionKey); string(src) != constitution.Default() {
				t.Error("the constitution is not recorded")
			}
		})
	}
}

func readJSON(t *testing.T, tx *kv.Tx, mapName, key string, v any) {
	t.Helper()
	b, ok := tx.Get(mapName, key)
	if !ok {
		t.Fatalf("%s[%q] missing", mapName, key)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s[%q]: %v", mapName, key, err)
	}
}

// TestStateDigest checks what the state digest covers: every map that says
// who governs, uses and runs the service and by which rules, and nothing
// that changes with each request (proposals, acks, history).
func TestStateDigestCovers(t *testing.T) {
	covered := []string{
		gov.Constitution, gov.MembersCerts, gov.MembersInfo, gov.MembersEncryptionPublicKeys,
		gov.UsersCerts, gov.UsersInfo, gov.NodesInfo, gov.NodesMeasurements, gov.ServiceInfo, gov.ServiceConfig,
	}
	notCovered := []string{gov.MembersAcks, gov.Proposals, gov.ProposalsInfo, gov.COSERecentProposals, gov.COSEHistory, "public:app.data"}
	base := func() *kv.Tx {
		tx := kv.NewStore().Begin()
		for _, m := range covered {
			_ = tx.Put(m, "k", []byte("v"))
		}
		return tx
	}
	d0 := gov.StateDigest(base())
	if d0 != gov.StateDigest(base()) {
		t.Fatal("the digest of the same state differs")
	}
	if len(d0) != 64 || strings.ToLower(d0) != d0 {
		t.Errorf("digest %q is not lowercase hex SHA-256", d0)
	}
	for _, m := range covered {
		for name, change := range map[string]func(tx *kv.Tx){
			"value":   func(tx *kv.Tx) { _ = tx.Put(m, "k", []byte("w")) },
			"new key": func(tx *kv.Tx) { _ = tx.Put(m, "k2", []byte("v")) },
			"delete":  func(tx *kv.Tx) { _ = tx.Delete(m, "k") },
			// Length prefixes: moving a byte from key to value is a change.
			"boundary": func(tx *kv.Tx) { _ = tx.Delete(m, "k"); _ = tx.Put(m, "kv", nil) },
		} {
			tx := base()
			change(tx)
			if gov.StateDigest(tx) == d0 {
				t.Errorf("%s: a changed %s does not change the digest", m, name)
			}
		}
	}
	for _, m := range notCovered {
		tx := base()
		_ = tx.Put(m, "k", []byte("v"))
		if gov.StateDigest(tx) != d0 {
			t.Errorf("%s changes the digest", m)
		}
	}
}
