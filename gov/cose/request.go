package govcose

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"

	cococrypto "github.com/cocoledger/coco/crypto"
	"github.com/fxamacker/cbor/v2"
	"github.com/veraison/go-cose"

	"github.com/cocoledger/coco/internal/coseutil"
)

// Errors returned (wrapped) by this package.
var (
	// ErrMalformed: the bytes are not a well-formed governance request (or
	// a Window's stored state is corrupt). HTTP: 400.
	ErrMalformed = errors.New("malformed governance request")
	// ErrBadSignature: the request does not verify with the member's
	// certificate (wrong alg for its key, or a bad signature). HTTP: 401.
	ErrBadSignature = errors.New("bad governance request signature")
	// ErrWrongKid: the kid is not the id of the certificate given to
	// Verify. HTTP: 401.
	ErrWrongKid = errors.New("governance request kid does not match the member certificate")
	// ErrReplay: the request is already in the replay window. HTTP: 400
	// ProposalReplay.
	ErrReplay = errors.New("governance request replayed")
	// ErrTooOld: created_at is older than the window's median. HTTP: 400
	// ProposalCreatedTooLongAgo.
	ErrTooOld = errors.New("governance request created too long ago")
)

// Protected header labels of CCF's governance messages. go-cose decodes text
// labels as string and integer labels as int64, so these are typed to match.
const (
	HeaderMsgType    string = "ccf.gov.msg.type"
	HeaderCreatedAt  string = "ccf.gov.msg.created_at"
	HeaderProposalID string = "ccf.gov.msg.proposal_id"
)

// MaxCreatedAt is the largest created_at accepted. CCF stores created_at as a
// zero-padded 10-digit decimal string and refuses larger values (until the
// year 2286); refusing them here too keeps coco's ledger readable by the same
// rules.
const MaxCreatedAt int64 = 9_999_999_999

// cborTagSign1 starts every tagged COSE_Sign1: tag 18 in one byte.
const cborTagSign1 = 0xd2

// MsgType is the value of the ccf.gov.msg.type header: what the signer meant
// the request for. Verifying it against the endpoint stops a ballot from
// being replayed as, say, a withdrawal.
type MsgType string

// The governance message types of CCF's API version 2024-07-01.
const (
	MsgProposal      MsgType = "proposal"
	MsgBallot        MsgType = "ballot"
	MsgWithdrawal    MsgType = "withdrawal"
	MsgAck           MsgType = "ack"
	MsgStateDigest   MsgType = "state_digest"
	MsgRecoveryShare MsgType = "recovery_share"
)

// Known reports whether t is one of the six message types.
func (t MsgType) Known() bool {
	switch t {
	case MsgProposal, MsgBallot, MsgWithdrawal, MsgAck, MsgStateDigest, MsgRecoveryShare:
		return true
	}
	return false
}

// needsProposalID reports whether t names a proposal: ballots and
// withdrawals sign the proposal id so they cannot be moved to another one.
func (t MsgType) needsProposalID() bool {
	return t == MsgBallot || t == MsgWithdrawal
}

// Request is a parsed governance request. The exported fields are copies of
// what Parse read; Verify checks them against the signed message, so a
// caller that changed one after Parse gets an error rather than a request
// that verifies with different contents.
type Request struct {
	MemberID   string  // from kid: lowercase hex SHA-256 of the member's DER certificate
	Type       MsgType // ccf.gov.msg.type
	CreatedAt  int64   // ccf.gov.msg.created_at, seconds
	ProposalID string  // ccf.gov.msg.proposal_id; "" unless Type is ballot or withdrawal
	Payload    []byte  // the JSON body (attached payload; may be empty, never nil)
	Raw        []byte  // the whole COSE_Sign1 as received, to record in the ledger

	// Digest identifies the request for replay detection: SHA-256 of the
	// COSE ToBeSigned bytes (the Sig_structure over the protected header
	// and payload), not of Raw. Raw also holds bytes nobody signed (the
	// unprotected header, the CBOR length encodings, the ECDSA signature,
	// where (r, s) and (r, n-s) both verify), so anyone who can read the
	// ledger could turn one recorded request into many "different" ones
	// with the same signed content. Over the signed bytes, every variant of
	// a request has one digest.
	Digest [32]byte

	msg *cose.Sign1Message
	alg cose.Algorithm
}

func malformedf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// quote shows an attacker-chosen value in an error without letting it flood
// a log line.
func quote(v any) string {
	s := fmt.Sprintf("%v", v)
	if b, ok := v.([]byte); ok {
		s = string(b)
	}
	const limit = 80
	if len(s) > limit {
		return fmt.Sprintf("%q...", s[:limit])
	}
	return fmt.Sprintf("%q", s)
}

// Parse decodes a governance request and checks its shape strictly: a tagged
// COSE_Sign1 with an attached payload and every required header present,
// protected and of the right type. It does not verify the signature: that
// needs the member's certificate, which the caller finds by MemberID, then
// calls Verify.
func Parse(b []byte) (*Request, error) {
	if len(b) == 0 {
		return nil, malformedf("empty body, want a COSE_Sign1")
	}
	// go-cose says only "invalid COSE_Sign1_Tagged object"; an untagged
	// message is a common client mistake worth naming.
	if b[0] != cborTagSign1 {
		return nil, malformedf("not a tagged COSE_Sign1 (want CBOR tag 18, first byte 0x%02x)", b[0])
	}
	var msg cose.Sign1Message
	if err := msg.UnmarshalCBOR(b); err != nil {
		return nil, fmt.Errorf("%w: COSE_Sign1: %w", ErrMalformed, err)
	}
	if msg.Payload == nil {
		return nil, malformedf("detached payload: the JSON body must be attached")
	}
	r := &Request{msg: &msg}
	if err := r.readHeaders(msg.Headers); err != nil {
		return nil, err
	}
	digest, err := toBeSignedDigest(msg.Headers.RawProtected, msg.Payload)
	if err != nil {
		return nil, err
	}
	r.Digest = digest
	r.Payload = bytes.Clone(msg.Payload)
	r.Raw = bytes.Clone(b)
	return r, nil
}

// readHeaders fills r from the protected header and refuses anything a
// governance request must not carry.
func (r *Request) readHeaders(h cose.Headers) error {
	ph := h.Protected
	// A governance header in the unprotected bucket is unsigned: a verifier
	// that read it there could be told anything.
	for _, l := range []any{cose.HeaderLabelAlgorithm, cose.HeaderLabelKeyID, HeaderMsgType, HeaderCreatedAt, HeaderProposalID} {
		if _, ok := h.Unprotected[l]; ok {
			return malformedf("header %v must be protected, found in the unprotected header", l)
		}
	}
	if err := checkCritical(ph); err != nil {
		return err
	}

	if _, ok := ph[cose.HeaderLabelAlgorithm]; !ok {
		return malformedf("protected header alg (1): missing")
	}
	alg, err := ph.Algorithm()
	if err != nil {
		return fmt.Errorf("%w: protected header alg (1): %w", ErrMalformed, err)
	}
	if alg != cose.AlgorithmES256 && alg != cose.AlgorithmES384 {
		return malformedf("protected header alg (1): %v, want ES256 (-7) or ES384 (-35)", alg)
	}
	r.alg = alg

	kidv, ok := ph[cose.HeaderLabelKeyID]
	if !ok {
		return malformedf("protected header kid (4): missing")
	}
	kid, ok := kidv.([]byte)
	if !ok {
		return malformedf("protected header kid (4): %T, want a byte string", kidv)
	}
	if !isMemberID(kid) {
		return malformedf("protected header kid (4): %s is not a member id (64 lowercase hex characters)", quote(kid))
	}
	r.MemberID = string(kid)

	tv, ok := ph[HeaderMsgType]
	if !ok {
		return malformedf("protected header %q: missing", HeaderMsgType)
	}
	ts, ok := tv.(string)
	if !ok {
		return malformedf("protected header %q: %T, want text", HeaderMsgType, tv)
	}
	r.Type = MsgType(ts)
	if !r.Type.Known() {
		return malformedf("protected header %q: unknown message type %s", HeaderMsgType, quote(ts))
	}

	cv, ok := ph[HeaderCreatedAt]
	if !ok {
		return malformedf("protected header %q: missing", HeaderCreatedAt)
	}
	// go-cose decodes CBOR integers that fit as int64, larger negatives as
	// big.Int, and refuses larger positives; only int64 can be valid.
	created, ok := cv.(int64)
	if !ok {
		return malformedf("protected header %q: %T, want an integer", HeaderCreatedAt, cv)
	}
	if err := checkCreatedAt(created); err != nil {
		return err
	}
	r.CreatedAt = created

	pv, has := ph[HeaderProposalID]
	switch {
	case r.Type.needsProposalID() && !has:
		return malformedf("protected header %q: missing, required for a %s", HeaderProposalID, r.Type)
	case !r.Type.needsProposalID() && has:
		return malformedf("protected header %q: not allowed on a %s", HeaderProposalID, r.Type)
	case has:
		pid, ok := pv.(string)
		if !ok {
			return malformedf("protected header %q: %T, want text", HeaderProposalID, pv)
		}
		if pid == "" {
			return malformedf("protected header %q: empty", HeaderProposalID)
		}
		r.ProposalID = pid
	}
	return nil
}

func checkCreatedAt(created int64) error {
	if created < 0 {
		return malformedf("protected header %q: %d is negative", HeaderCreatedAt, created)
	}
	if created > MaxCreatedAt {
		return malformedf("protected header %q: %d is larger than %d", HeaderCreatedAt, created, MaxCreatedAt)
	}
	return nil
}

// checkCritical refuses headers marked critical that this package does not
// understand, as RFC 9052 section 3.1 requires.
func checkCritical(ph cose.ProtectedHeader) error {
	l, unknown, err := coseutil.UnknownCritical(ph, cose.HeaderLabelAlgorithm, cose.HeaderLabelKeyID, HeaderMsgType, HeaderCreatedAt, HeaderProposalID)
	if err != nil {
		return fmt.Errorf("%w: protected header crit (2): %w", ErrMalformed, err)
	}
	if unknown {
		return malformedf("protected header crit (2): unknown critical header %s", quote(l))
	}
	return nil
}

func isMemberID(b []byte) bool {
	if len(b) != sha256.Size*2 {
		return false
	}
	for _, c := range b {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// toBeSignedDigest hashes the COSE Sig_structure ["Signature1", protected,
// external_aad (empty), payload]: exactly the bytes the signature covers,
// with the protected bstr in its deterministic encoding as the verifier
// rebuilds it.
func toBeSignedDigest(rawProtected cbor.RawMessage, payload []byte) ([32]byte, error) {
	var protected []byte
	if err := cbor.Unmarshal(rawProtected, &protected); err != nil {
		return [32]byte{}, fmt.Errorf("%w: protected header: %w", ErrMalformed, err)
	}
	tbs, err := cbor.Marshal([]any{"Signature1", protected, []byte{}, payload})
	if err != nil {
		return [32]byte{}, fmt.Errorf("%w: encode Sig_structure: %w", ErrMalformed, err)
	}
	return sha256.Sum256(tbs), nil
}

// Verify checks that r was signed by the holder of memberCert: kid is the
// certificate's id, alg is the one for its key's curve, and the signature is
// valid. Whether that member may make this request is the caller's business.
func (r *Request) Verify(memberCert *x509.Certificate) error {
	if r == nil || r.msg == nil {
		return malformedf("verify: request was not made by Parse")
	}
	if memberCert == nil {
		return fmt.Errorf("%w: no member certificate", ErrBadSignature)
	}
	if err := r.checkUnchanged(); err != nil {
		return err
	}
	if id := cococrypto.CertID(memberCert); r.MemberID != id {
		return fmt.Errorf("%w: kid %s, certificate id %s", ErrWrongKid, r.MemberID, id)
	}
	want, err := coseutil.Algorithm(memberCert.PublicKey)
	if err != nil {
		return fmt.Errorf("%w: member certificate: %w", ErrBadSignature, err)
	}
	// Pinning alg to the key stops a signer choosing a weaker hash than its
	// curve calls for (and go-cose would reject the mismatch less clearly).
	if r.alg != want {
		return fmt.Errorf("%w: protected header alg (1) is %v, but the member key needs %v", ErrBadSignature, r.alg, want)
	}
	v, err := cose.NewVerifier(r.alg, memberCert.PublicKey)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	if err := r.msg.Verify(nil, v); err != nil {
		return fmt.Errorf("%w: member %s: %w", ErrBadSignature, r.MemberID, err)
	}
	return nil
}

// checkUnchanged refuses a request whose exported fields no longer say what
// was signed.
func (r *Request) checkUnchanged() error {
	var fresh Request
	if err := fresh.readHeaders(r.msg.Headers); err != nil {
		return err
	}
	if fresh.MemberID != r.MemberID || fresh.Type != r.Type || fresh.CreatedAt != r.CreatedAt ||
		fresh.ProposalID != r.ProposalID || !bytes.Equal(r.msg.Payload, r.Payload) {
		return malformedf("verify: request fields were changed after Parse")
	}
	return nil
}

// Sign makes a governance request as a member would send it (for the CLI and
// tests). It refuses what Parse would refuse, so its output always parses,
// and a signer that does not hold memberCert's key, so it always verifies.
func Sign(signer crypto.Signer, memberCert *x509.Certificate, t MsgType, createdAt int64, proposalID string, payload []byte) ([]byte, error) {
	if signer == nil || memberCert == nil {
		return nil, errors.New("govcose: sign: nil signer or certificate")
	}
	if pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(memberCert.PublicKey) {
		return nil, fmt.Errorf("govcose: sign: %w", cococrypto.ErrKeyMismatch)
	}
	alg, err := coseutil.Algorithm(memberCert.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("govcose: sign: %w: %w", cococrypto.ErrUnsupportedKey, err)
	}
	if !t.Known() {
		return nil, fmt.Errorf("govcose: sign: %w", malformedf("unknown message type %s", quote(string(t))))
	}
	if t.needsProposalID() && proposalID == "" {
		return nil, fmt.Errorf("govcose: sign: %w", malformedf("%q: required for a %s", HeaderProposalID, t))
	}
	if !t.needsProposalID() && proposalID != "" {
		return nil, fmt.Errorf("govcose: sign: %w", malformedf("%q: not allowed on a %s", HeaderProposalID, t))
	}
	if err := checkCreatedAt(createdAt); err != nil {
		return nil, fmt.Errorf("govcose: sign: %w", err)
	}
	cs, err := cose.NewSigner(alg, signer)
	if err != nil {
		return nil, fmt.Errorf("govcose: sign: %w", err)
	}
	msg := cose.NewSign1Message()
	msg.Headers.Protected.SetAlgorithm(alg)
	msg.Headers.Protected[cose.HeaderLabelKeyID] = []byte(cococrypto.CertID(memberCert))
	msg.Headers.Protected[HeaderMsgType] = string(t)
	msg.Headers.Protected[HeaderCreatedAt] = createdAt
	if proposalID != "" {
		msg.Headers.Protected[HeaderProposalID] = proposalID
	}
	// go-cose treats a nil payload as detached; an empty body (a
	// withdrawal) must still be attached.
	msg.Payload = bytes.Clone(payload)
	if msg.Payload == nil {
		msg.Payload = []byte{}
	}
	if err := msg.Sign(rand.Reader, nil, cs); err != nil {
		return nil, fmt.Errorf("govcose: sign: %w", err)
	}
	out, err := msg.MarshalCBOR()
	if err != nil {
		return nil, fmt.Errorf("govcose: sign: encode: %w", err)
	}
	return out, nil
}
