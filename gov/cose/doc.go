// Package govcose owns the wire format of signed governance requests and the
// replay window that guards them, as CCF does it (governance API version
// 2024-07-01).
//
// Every governance write is a tagged COSE_Sign1 (RFC 9052) whose attached
// payload is the JSON body and whose protected header carries:
//
//	alg (1)                    ES256 (P-256) or ES384 (P-384)
//	kid (4)                    member id: lowercase hex SHA-256 of the DER
//	                           certificate, as a byte string
//	"ccf.gov.msg.type"         proposal|ballot|withdrawal|ack|state_digest|recovery_share
//	"ccf.gov.msg.created_at"   integer seconds since the epoch, chosen by the signer
//	"ccf.gov.msg.proposal_id"  text; for ballots and withdrawals only
//
// Parse checks the shape and nothing else, so it needs no state; Verify binds
// a parsed request to a member certificate. The caller looks the certificate
// up by Request.MemberID in between.
//
// Window is CCF's defence against replayed proposals without a clock (so
// members may sign offline or on an HSM): the service remembers its most
// recent proposals and refuses one it has seen, or one created before the
// median of those it remembers. It is plain data meant to be stored as JSON
// in a public kv map and updated in the same transaction that records the
// proposal.
//
// The package does no I/O and holds no global mutable state.
package govcose
