// Package gov owns the service's governance state: the public maps that hold
// members, users, nodes and the service itself, and (with the governance
// issue) proposals, ballots and the constitution that changes them.
package gov

// Governance maps, named as in CCF. All are public: anyone holding the
// ledger can audit who was allowed to do what.
const (
	UsersCerts  = "public:ccf.gov.users.certs"  // user id -> certificate PEM
	UsersInfo   = "public:ccf.gov.users.info"   // user id -> JSON {"user_data": ...}
	NodesInfo   = "public:ccf.gov.nodes.info"   // node id -> JSON NodeInfo
	ServiceInfo = "public:ccf.gov.service.info" // ServiceKey -> JSON Service
)

// ServiceKey is the only key of the ServiceInfo map.
const ServiceKey = "service"

// Service statuses, as CCF's.
const (
	StatusOpening                 = "Opening"
	StatusOpen                    = "Open"
	StatusWaitingForRecoveryShare = "WaitingForRecoveryShares"
	StatusRecovering              = "Recovering"
)

// Service is the value of ServiceInfo.
type Service struct {
	Status        string `json:"status"`
	Cert          string `json:"cert"` // service_cert.pem
	RecoveryCount uint64 `json:"recovery_count"`
	CreatedAt     string `json:"created_at,omitempty"` // transaction id of the genesis transaction's predecessor state
}

// Node statuses, as CCF's.
const (
	NodePending = "Pending"
	NodeTrusted = "Trusted"
	NodeRetired = "Retired"
)

// NodeInfo is the value of NodesInfo.
type NodeInfo struct {
	NodeID string `json:"node_id"`
	// RaftID is stored as a decimal string: the constitution's JavaScript
	// reads and rewrites node records, and a JSON number would lose the
	// low bits of a 64-bit id there.
	RaftID      uint64 `json:"raft_id,string"`
	Status      string `json:"status"`
	Cert        string `json:"cert"`
	RPCAddress  string `json:"rpc_address"`
	NodeAddress string `json:"node_address,omitempty"`
}
