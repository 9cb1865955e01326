// Package crypto owns coco's identities and secrets: ECDSA key pairs and X.509
// certificates (the service identity, node certificates endorsed by it, member
// and user certificates), the ids derived from them, PEM key and certificate
// files, members' RSA encryption keys (used to wrap recovery shares), users'
// Ethereum keys, and the ledger secrets that seal private write sets and
// derive commit evidence.
//
// Importers alias it cococrypto, because it shadows the standard library's
// crypto package.
//
// # Ids
//
// Member and user ids are CertID: lowercase hex SHA-256 of the DER
// certificate. Node ids and COSE kids are KeyID: lowercase hex SHA-256 of the
// DER SubjectPublicKeyInfo, so a node keeps its id when its certificate is
// re-issued.
//
// # Files
//
// The only I/O the package does is reading and writing key and certificate
// files. Every write is atomic (temporary file in the same directory, fsync,
// rename, fsync of the directory), so a crash leaves either the old file or
// the new one, never a torn key. Private keys are written 0600, and
// ReadKeyFile refuses a key that other users can read.
//
// # Ledger secrets
//
// A Keyring holds the ledger secrets of a service. The secret in force for
// seqno s is the one with the largest From <= s. Seal produces
//
//	u32 BE key id || 12-byte random nonce || AES-256-GCM ciphertext || tag
//
// and Open picks the key by id, so old entries stay readable after rotation.
// Commit evidence for transaction v.s is
//
//	"ce:v.s:" + hex(HMAC-SHA256(K, "v.s"))
//	K = HKDF-SHA256(secret in force at s, salt nil, info "coco commit evidence")
//
// The AEAD and HMAC keys are derived once per secret and cached, since Seal
// and CommitEvidence run for every transaction.
package crypto
