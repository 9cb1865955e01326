package gov

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	cococrypto "github.com/cocoledger/coco/crypto"
	"github.com/cocoledger/coco/gov/constitution"
)

// More governance maps, named as in CCF. The member, service-config and
// constitution maps are the ones the constitution runtime reads and writes.
const (
	MembersCerts                = constitution.MembersCerts
	MembersInfo                 = constitution.MembersInfo
	MembersEncryptionPublicKeys = constitution.MembersEncryptionPublicKeys
	NodesMeasurements           = constitution.NodesMeasurements
	ServiceConfig               = constitution.ServiceConfig
	Constitution                = constitution.ConstitutionMap
	ConstitutionKey             = constitution.ConstitutionKey

	MembersAcks         = "public:ccf.gov.members.acks"          // member id -> JSON MemberAck
	Proposals           = "public:ccf.gov.proposals"             // proposal id -> the proposal JSON as signed
	ProposalsInfo       = "public:ccf.gov.proposals_info"        // proposal id -> JSON ProposalInfo
	COSERecentProposals = "public:ccf.gov.cose_recent_proposals" // WindowKey -> JSON govcose.Window
	COSEHistory         = "public:ccf.gov.cose_history"          // member id -> the member's last accepted signed request (COSE_Sign1)
	// COSERecentRequests is coco's, not CCF's: each member's recent
	// ballots, withdrawals and state-digest requests, so that a replay of
	// one is refused as a replayed proposal is.
	COSERecentRequests = "public:ccf.gov.cose_recent_requests" // member id -> JSON govcose.Window
)

// WindowKey is the only key of COSERecentProposals.
const WindowKey = "window"

// Member statuses.
const (
	MemberAccepted = constitution.MemberAccepted
	MemberActive   = constitution.MemberActive
)

// MemberInfo is the value of MembersInfo.
type MemberInfo struct {
	Status     string          `json:"status"`
	MemberData json.RawMessage `json:"member_data,omitempty"`
}

// MemberAck is the value of MembersAcks: the state digest a member was last
// given to acknowledge.
type MemberAck struct {
	StateDigest string `json:"state_digest"`
}

// ServiceConfiguration is the value of ServiceConfig.
type ServiceConfiguration struct {
	RecoveryThreshold int `json:"recovery_threshold,omitempty"`
}

// Proposal states. Open, Accepted and Rejected come from the
// constitution's resolve; the service sets the others.
const (
	ProposalOpen      = constitution.StateOpen
	ProposalAccepted  = constitution.StateAccepted
	ProposalRejected  = constitution.StateRejected
	ProposalWithdrawn = "Withdrawn"
	ProposalFailed    = "Failed"  // resolve or apply threw, timed out or returned nonsense
	ProposalDropped   = "Dropped" // still open when the constitution changed
)

// ProposalInfo is the value of ProposalsInfo.
type ProposalInfo struct {
	ProposerID string            `json:"proposer_id"`
	State      string            `json:"state"`
	Ballots    map[string]string `json:"ballots,omitempty"` // member id -> ballot source
	// Votes are the ballots' results, computed when each was submitted
	// (ballots see no kv, so the result cannot change later).
	Votes map[string]bool `json:"votes,omitempty"`
	// FinalVotes are the votes that decided the proposal, once it closed.
	FinalVotes map[string]bool `json:"final_votes,omitempty"`
	Failure    *Failure        `json:"failure,omitempty"`
}

// Failure says why a proposal Failed.
type Failure struct {
	Reason string `json:"reason"`
}

// Member is one genesis member of a new service.
type Member struct {
	Cert *x509.Certificate
	// EncryptionKeyPEM is the member's RSA public key for recovery shares
	// (PEM); empty for a member that takes no part in recovery.
	EncryptionKeyPEM []byte
	Data             json.RawMessage // member_data; may be nil
}

// Genesis is the governance state of a new service.
type Genesis struct {
	ServiceCert  *x509.Certificate
	Members      []Member
	Constitution string // the constitution's source
	// RecoveryThreshold is stored for the recovery issue; 0 means 1 when
	// any member holds an encryption key.
	RecoveryThreshold int
}

// KV is what the genesis and the governance endpoints read and write:
// *kv.Tx satisfies it.
type KV = constitution.KV

// WriteGenesis records a new service's governance state in tx: the
// service (Opening), its members (Accepted: each becomes Active by
// acknowledging the state digest), the constitution and the service
// configuration. It refuses a genesis nobody could ever govern.
func WriteGenesis(tx KV, g Genesis) error {
	if g.ServiceCert == nil {
		return errors.New("gov: a new service needs its service certificate")
	}
	if err := g.Check(); err != nil {
		return err
	}
	svc, err := json.Marshal(Service{Status: StatusOpening, Cert: string(cococrypto.EncodeCertPEM(g.ServiceCert))})
	if err != nil {
		return err
	}
	if err := tx.Put(ServiceInfo, ServiceKey, svc); err != nil {
		return err
	}
	recovery := 0
	for _, m := range g.Members {
		id := cococrypto.CertID(m.Cert)
		if err := tx.Put(MembersCerts, id, cococrypto.EncodeCertPEM(m.Cert)); err != nil {
			return err
		}
		info, err := json.Marshal(MemberInfo{Status: MemberAccepted, MemberData: m.Data})
		if err != nil {
			return fmt.Errorf("gov: member %s data: %w", id, err)
		}
		if err := tx.Put(MembersInfo, id, info); err != nil {
			return err
		}
		if len(m.EncryptionKeyPEM) > 0 {
			recovery++
			if err := tx.Put(MembersEncryptionPublicKeys, id, m.EncryptionKeyPEM); err != nil {
				return err
			}
		}
	}
	threshold := g.RecoveryThreshold
	if threshold == 0 && recovery > 0 {
		threshold = 1
	}
	cfg, err := json.Marshal(ServiceConfiguration{RecoveryThreshold: threshold})
	if err != nil {
		return err
	}
	if err := tx.Put(ServiceConfig, ServiceKey, cfg); err != nil {
		return err
	}
	return tx.Put(Constitution, ConstitutionKey, []byte(g.Constitution))
}

// Check refuses a genesis nobody could govern or recover: no members, a
// member without a certificate or given twice, a recovery threshold
// outside 0 to the number of members holding an encryption key, or a
// constitution that does not compile. It needs no service certificate, so
// a node checks its configuration before it creates anything.
func (g Genesis) Check() error {
	if len(g.Members) == 0 {
		return errors.New("gov: a new service needs at least one member")
	}
	seen := map[string]bool{}
	recovery := 0
	for i, m := range g.Members {
		if m.Cert == nil {
			return fmt.Errorf("gov: member %d has no certificate", i)
		}
		id := cococrypto.CertID(m.Cert)
		if seen[id] {
			return fmt.Errorf("gov: member %s is given twice", id)
		}
		seen[id] = true
		if len(m.EncryptionKeyPEM) > 0 {
			recovery++
		}
	}
	if g.RecoveryThreshold < 0 {
		return fmt.Errorf("gov: recovery threshold %d is negative", g.RecoveryThreshold)
	}
	if g.RecoveryThreshold > recovery {
		return fmt.Errorf("gov: recovery threshold %d is above the %d members holding an encryption key", g.RecoveryThreshold, recovery)
	}
	if _, err := constitution.Parse(g.Constitution); err != nil {
		return fmt.Errorf("gov: constitution: %w", err)
	}
	return nil
}

// digestMaps are the maps a state digest covers: who governs, who uses and
// who runs the service, and by which rules.
var digestMaps = []string{
	Constitution, MembersCerts, MembersInfo, MembersEncryptionPublicKeys,
	UsersCerts, UsersInfo, NodesInfo, NodesMeasurements, ServiceInfo, ServiceConfig,
}

// StateDigest is what a member acknowledges to become Active: lowercase hex
// SHA-256 over the governance maps' contents (each map name, key and value
// length-prefixed, keys in order).
func StateDigest(tx KV) string {
	h := sha256.New()
	var n [8]byte
	write := func(b []byte) {
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	for _, m := range digestMaps {
		write([]byte(m))
		tx.Range(m, func(k string, v []byte) bool {
			write([]byte(k))
			write(v)
			return true
		})
	}
	return hex.EncodeToString(h.Sum(nil))
}

func getJSON(tx KV, mapName, key string, v any) (bool, error) {
	b, ok := tx.Get(mapName, key)
	if !ok {
		return false, nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return true, fmt.Errorf("gov: %s[%q] is corrupt: %w", mapName, key, err)
	}
	return true, nil
}

func putJSON(tx KV, mapName, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.Put(mapName, key, b)
}
