package constitution

// Governance maps the default constitution reads and writes (see js/maps.js,
// which must spell them the same way; a test checks). Named as in CCF.
// UsersCerts, UsersInfo, NodesInfo and ServiceInfo equal package gov's
// constants of the same name; they are repeated because gov will import
// this package to run proposals.
const (
	MembersCerts                = "public:ccf.gov.members.certs"                  // member id -> certificate PEM
	MembersInfo                 = "public:ccf.gov.members.info"                   // member id -> {"status":"Accepted"|"Active","member_data":...}
	MembersEncryptionPublicKeys = "public:ccf.gov.members.encryption_public_keys" // member id -> RSA public key PEM
	UsersCerts                  = "public:ccf.gov.users.certs"                    // user id -> certificate PEM
	UsersInfo                   = "public:ccf.gov.users.info"                     // user id -> {"user_data":...}
	NodesInfo                   = "public:ccf.gov.nodes.info"                     // node id -> gov.NodeInfo JSON
	NodesMeasurements           = "public:ccf.gov.nodes.measurements"             // hex measurement -> "AllowedToJoin"
	ServiceInfo                 = "public:ccf.gov.service.info"                   // ServiceKey -> gov.Service JSON
	ServiceConfig               = "public:ccf.gov.service.config"                 // ServiceKey -> {"recovery_threshold":n,...}
	ConstitutionMap             = "public:ccf.gov.constitution"                   // ConstitutionKey -> constitution source
)

// Keys of the single-entry maps.
const (
	ServiceKey      = "service" // ServiceInfo and ServiceConfig, as gov.ServiceKey
	ConstitutionKey = ""
)

// Member statuses: a member set by governance is Accepted and becomes
// Active by acknowledging the state digest; only Active members' votes count.
const (
	MemberAccepted = "Accepted"
	MemberActive   = "Active"
)

// MeasurementAllowed is the value of an allowed measurement, as CCF's.
const MeasurementAllowed = "AllowedToJoin"
