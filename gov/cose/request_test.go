package govcose

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"io"
	"maps"
	"math/big"
	"strings"
	"testing"
	"time"

	cococrypto "github.com/cocoledger/coco/crypto"
	"github.com/fxamacker/cbor/v2"
	"github.com/veraison/go-cose"
)

type member struct {
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
	id   string
}

func newMember(t testing.TB, c elliptic.Curve) member {
	t.Helper()
	key, err := cococrypto.GenerateKeyCurve(c)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := cococrypto.SelfSignedCert(key, "member", time.Hour, false)
	if err != nil {
		t.Fatal(err)
	}
	return member{key: key, cert: cert, id: cococrypto.CertID(cert)}
}

const testCreatedAt int64 = 1_700_000_000

func mustSign(t testing.TB, m member, typ MsgType, createdAt int64, pid string, payload []byte) []byte {
	t.Helper()
	b, err := Sign(m.key, m.cert, typ, createdAt, pid, payload)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	for _, c := range []elliptic.Curve{elliptic.P256(), elliptic.P384()} {
		m := newMember(t, c)
		for _, tc := range []struct {
			typ     MsgType
			pid     string
			payload []byte
		}{
			{MsgProposal, "", []byte(`{"actions":[{"name":"set_user","args":{"cert":"..."}}]}`)},
			{MsgBallot, "a1b2", []byte(`{"ballot":"export function vote (proposal, proposerId) { return true }"}`)},
			{MsgWithdrawal, "a1b2", nil},
			{MsgAck, "", []byte(`{"stateDigest":"00"}`)},
			{MsgStateDigest, "", []byte(`{}`)},
			{MsgRecoveryShare, "", []byte(`{"share":"AAAA"}`)},
		} {
			t.Run(c.Params().Name+"/"+string(tc.typ), func(t *testing.T) {
				raw := mustSign(t, m, tc.typ, testCreatedAt, tc.pid, tc.payload)
				r, err := Parse(raw)
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if r.MemberID != m.id || r.Type != tc.typ || r.CreatedAt != testCreatedAt || r.ProposalID != tc.pid {
					t.Fatalf("parsed %+v", r)
				}
				// An empty body stays attached: nil would mean detached.
				if r.Payload == nil || !bytes.Equal(r.Payload, tc.payload) {
					t.Fatalf("payload %q, want %q", r.Payload, tc.payload)
				}
				if !bytes.Equal(r.Raw, raw) {
					t.Fatal("Raw is not the input")
				}
				if err := r.Verify(m.cert); err != nil {
					t.Fatalf("Verify: %v", err)
				}
				// ECDSA signatures are randomised; the digest is not.
				r2, err := Parse(mustSign(t, m, tc.typ, testCreatedAt, tc.pid, tc.payload))
				if err != nil {
					t.Fatal(err)
				}
				if r2.Digest != r.Digest {
					t.Fatal("re-signing the same content changed the digest")
				}
			})
		}
	}
}

func TestParseCopiesInput(t *testing.T) {
	m := newMember(t, elliptic.P256())
	raw := mustSign(t, m, MsgProposal, testCreatedAt, "", []byte(`{"a":1}`))
	r, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	clear(raw)
	if err := r.Verify(m.cert); err != nil {
		t.Fatalf("Verify after the caller reused its buffer: %v", err)
	}
	if r.Raw[0] != cborTagSign1 {
		t.Fatal("Raw aliases the input")
	}
}

// recordingSigner remembers the digest go-cose asks the key to sign.
type recordingSigner struct {
	crypto.Signer
	digest []byte
}

func (s *recordingSigner) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	s.digest = bytes.Clone(digest)
	return s.Signer.Sign(rand, digest, opts)
}

// With ES256 the key signs SHA-256(ToBeSigned): Digest must be exactly that,
// so it identifies the signed content and nothing else.
func TestDigestIsToBeSigned(t *testing.T) {
	m := newMember(t, elliptic.P256())
	rs := &recordingSigner{Signer: m.key}
	raw, err := Sign(rs, m.cert, MsgBallot, testCreatedAt, "p1", []byte(`{"ballot":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	r, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rs.digest, r.Digest[:]) {
		t.Fatalf("Digest %x, signed digest %x", r.Digest, rs.digest)
	}
}

// decodeSign1 splits a tagged COSE_Sign1 into its four parts.
func decodeSign1(t testing.TB, raw []byte) (protected []byte, unprotected map[any]any, payload, sig []byte) {
	t.Helper()
	var tag cbor.RawTag
	if err := cbor.Unmarshal(raw, &tag); err != nil {
		t.Fatal(err)
	}
	var parts []cbor.RawMessage
	if err := cbor.Unmarshal(tag.Content, &parts); err != nil || len(parts) != 4 {
		t.Fatalf("decode COSE_Sign1: %v (%d parts)", err, len(parts))
	}
	for i, dst := range []any{&protected, &unprotected, &payload, &sig} {
		if err := cbor.Unmarshal(parts[i], dst); err != nil {
			t.Fatal(err)
		}
	}
	return protected, unprotected, payload, sig
}

// encodeSign1 builds a COSE_Sign1 from parts, so tests can make messages
// go-cose would refuse to make. payload nil encodes CBOR nil (detached).
func encodeSign1(t testing.TB, tagged bool, protected []byte, unprotected map[any]any, payload any, sig []byte) []byte {
	t.Helper()
	if unprotected == nil {
		unprotected = map[any]any{}
	}
	var content any = []any{protected, unprotected, payload, sig}
	if tagged {
		content = cbor.Tag{Number: 18, Content: content}
	}
	em, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		t.Fatal(err)
	}
	b, err := em.Marshal(content)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func encodeMap(t testing.TB, h map[any]any) []byte {
	t.Helper()
	em, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		t.Fatal(err)
	}
	b, err := em.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// encodePairs writes a CBOR map from key/value pairs as given, duplicates
// included.
func encodePairs(t testing.TB, kv ...any) []byte {
	t.Helper()
	out := []byte{0xa0 | byte(len(kv)/2)}
	for _, v := range kv {
		b, err := cbor.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b...)
	}
	return out
}

func validHeader(kid string) map[any]any {
	return map[any]any{
		int64(1):        int64(-7), // ES256
		int64(4):        []byte(kid),
		HeaderMsgType:   "proposal",
		HeaderCreatedAt: testCreatedAt,
	}
}

func TestParseRejects(t *testing.T) {
	m := newMember(t, elliptic.P256())
	kid := m.id
	good := mustSign(t, m, MsgProposal, testCreatedAt, "", []byte(`{}`))
	sig := bytes.Repeat([]byte{1}, 64)
	body := []byte(`{}`)
	with := func(change func(h map[any]any)) []byte {
		h := maps.Clone(validHeader(kid))
		change(h)
		return encodeSign1(t, true, encodeMap(t, h), nil, body, sig)
	}
	// The baseline the cases below break must itself parse.
	if _, err := Parse(with(func(map[any]any) {})); err != nil {
		t.Fatalf("baseline: %v", err)
	}

	cases := []struct {
		name string
		in   []byte
		want string // in the error message
	}{
		{"empty", nil, "empty"},
		{"not CBOR", []byte("{\"actions\":[]}"), "tag 18"},
		{"untagged", good[1:], "tag 18"},
		{"wrong tag", append([]byte{0xd1}, good[1:]...), "tag 18"},
		{"trailing bytes", append(bytes.Clone(good), 0x00), "COSE_Sign1"},
		{"truncated", good[:len(good)-1], "COSE_Sign1"},
		{"detached payload", encodeSign1(t, true, encodeMap(t, validHeader(kid)), nil, nil, sig), "detached"},
		{"payload is text", encodeSign1(t, true, encodeMap(t, validHeader(kid)), nil, "{}", sig), "COSE_Sign1"},
		{"empty signature", encodeSign1(t, true, encodeMap(t, validHeader(kid)), nil, body, []byte{}), "COSE_Sign1"},
		{"empty protected header", encodeSign1(t, true, []byte{}, validHeader(kid), body, sig), "must be protected"},
		{"duplicate protected label", encodeSign1(t, true, encodePairs(t,
			int64(1), int64(-7), int64(4), []byte(kid), HeaderMsgType, "proposal", HeaderCreatedAt, testCreatedAt,
			HeaderMsgType, "ballot"), nil, body, sig), "COSE_Sign1"},

		{"alg missing", with(func(h map[any]any) { delete(h, int64(1)) }), "alg (1): missing"},
		{"alg text", with(func(h map[any]any) { h[int64(1)] = "ES256" }), "alg (1)"},
		{"alg bytes", with(func(h map[any]any) { h[int64(1)] = []byte{7} }), "alg"},
		{"alg EdDSA", with(func(h map[any]any) { h[int64(1)] = int64(-8) }), "alg (1)"},
		{"alg PS256", with(func(h map[any]any) { h[int64(1)] = int64(-37) }), "alg (1)"},
		{"alg ES512", with(func(h map[any]any) { h[int64(1)] = int64(-36) }), "alg (1)"},

		{"kid missing", with(func(h map[any]any) { delete(h, int64(4)) }), "kid (4): missing"},
		{"kid text", with(func(h map[any]any) { h[int64(4)] = kid }), "kid"},
		{"kid int", with(func(h map[any]any) { h[int64(4)] = int64(4) }), "kid"},
		{"kid not hex", with(func(h map[any]any) { h[int64(4)] = []byte("g" + kid[1:]) }), "kid (4)"},
		{"kid short", with(func(h map[any]any) { h[int64(4)] = []byte(kid[:63]) }), "kid (4)"},
		{"kid long", with(func(h map[any]any) { h[int64(4)] = []byte(kid + "0") }), "kid (4)"},
		{"kid uppercase", with(func(h map[any]any) { h[int64(4)] = []byte(strings.ToUpper(kid)) }), "kid (4)"},
		{"kid raw digest", with(func(h map[any]any) { s := sha256.Sum256(m.cert.Raw); h[int64(4)] = s[:] }), "kid (4)"},
		{"kid empty", with(func(h map[any]any) { h[int64(4)] = []byte{} }), "kid (4)"},

		{"type missing", with(func(h map[any]any) { delete(h, HeaderMsgType) }), HeaderMsgType + `": missing`},
		{"type int", with(func(h map[any]any) { h[HeaderMsgType] = int64(1) }), HeaderMsgType},
		{"type bytes", with(func(h map[any]any) { h[HeaderMsgType] = []byte("proposal") }), HeaderMsgType},
		{"type unknown", with(func(h map[any]any) { h[HeaderMsgType] = "vote" }), "unknown message type"},
		{"type case", with(func(h map[any]any) { h[HeaderMsgType] = "Proposal" }), "unknown message type"},
		{"type empty", with(func(h map[any]any) { h[HeaderMsgType] = "" }), "unknown message type"},
		{"type label case", with(func(h map[any]any) { delete(h, HeaderMsgType); h["ccf.gov.msg.Type"] = "proposal" }), HeaderMsgType + `": missing`},

		{"created_at missing", with(func(h map[any]any) { delete(h, HeaderCreatedAt) }), HeaderCreatedAt + `": missing`},
		{"created_at text", with(func(h map[any]any) { h[HeaderCreatedAt] = "1700000000" }), HeaderCreatedAt},
		{"created_at float", with(func(h map[any]any) { h[HeaderCreatedAt] = 1.7e9 }), HeaderCreatedAt},
		{"created_at tag 1", with(func(h map[any]any) { h[HeaderCreatedAt] = cbor.Tag{Number: 1, Content: testCreatedAt} }), HeaderCreatedAt},
		{"created_at negative", with(func(h map[any]any) { h[HeaderCreatedAt] = int64(-1) }), "negative"},
		{"created_at huge negative", with(func(h map[any]any) { h[HeaderCreatedAt] = new(big.Int).Lsh(big.NewInt(-1), 70) }), HeaderCreatedAt},
		{"created_at too large", with(func(h map[any]any) { h[HeaderCreatedAt] = MaxCreatedAt + 1 }), "larger than"},
		{"created_at over int64", with(func(h map[any]any) { h[HeaderCreatedAt] = uint64(1) << 63 }), "COSE_Sign1"},

		{"proposal_id on proposal", with(func(h map[any]any) { h[HeaderProposalID] = "p1" }), "not allowed on a proposal"},
		{"proposal_id on ack", with(func(h map[any]any) { h[HeaderMsgType] = "ack"; h[HeaderProposalID] = "p1" }), "not allowed on a ack"},
		{"proposal_id missing on ballot", with(func(h map[any]any) { h[HeaderMsgType] = "ballot" }), "required for a ballot"},
		{"proposal_id missing on withdrawal", with(func(h map[any]any) { h[HeaderMsgType] = "withdrawal" }), "required for a withdrawal"},
		{"proposal_id bytes", with(func(h map[any]any) { h[HeaderMsgType] = "ballot"; h[HeaderProposalID] = []byte("p1") }), HeaderProposalID},
		{"proposal_id int", with(func(h map[any]any) { h[HeaderMsgType] = "ballot"; h[HeaderProposalID] = int64(1) }), HeaderProposalID},
		{"proposal_id empty", with(func(h map[any]any) { h[HeaderMsgType] = "withdrawal"; h[HeaderProposalID] = "" }), HeaderProposalID + `": empty`},

		{"unknown critical header", with(func(h map[any]any) { h["x.custom"] = int64(1); h[int64(2)] = []any{"x.custom"} }), "unknown critical header"},
		{"unknown critical int header", with(func(h map[any]any) { h[int64(3)] = "application/json"; h[int64(2)] = []any{int64(3)} }), "unknown critical header"},
		{"critical header absent", with(func(h map[any]any) { h[int64(2)] = []any{"x.custom"} }), "crit"},
		{"crit empty", with(func(h map[any]any) { h[int64(2)] = []any{} }), "crit"},

		{"type also unprotected", encodeSign1(t, true, encodeMap(t, validHeader(kid)), map[any]any{HeaderMsgType: "ballot"}, body, sig), "must be protected"},
		{"kid also unprotected", encodeSign1(t, true, encodeMap(t, validHeader(kid)), map[any]any{int64(4): []byte(kid)}, body, sig), "must be protected"},
		{"proposal_id unprotected", encodeSign1(t, true, encodeMap(t, validHeader(kid)), map[any]any{HeaderProposalID: "p1"}, body, sig), "must be protected"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Parse(tc.in)
			if err == nil {
				t.Fatalf("Parse accepted it: %+v", r)
			}
			if r != nil {
				t.Fatal("Parse returned a request with its error")
			}
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

// Headers the package does not know, unless critical, are ignored as RFC
// 9052 says; critical ones it does know are fine.
func TestParseAcceptsExtraHeaders(t *testing.T) {
	m := newMember(t, elliptic.P256())
	h := validHeader(m.id)
	h[int64(3)] = "application/json"
	h["x.note"] = "hello"
	h[int64(2)] = []any{HeaderCreatedAt, int64(4)}
	raw := encodeSign1(t, true, encodeMap(t, h), map[any]any{"x.unsigned": int64(1)}, []byte(`{}`), bytes.Repeat([]byte{1}, 64))
	if _, err := Parse(raw); err != nil {
		t.Fatal(err)
	}
}

// resign replaces the protected header of a signed message, keeping the
// old signature: what a tamperer can do without the key.
func resign(t *testing.T, raw []byte, change func(h map[any]any)) []byte {
	t.Helper()
	prot, unprot, payload, sig := decodeSign1(t, raw)
	var h map[any]any
	if err := cbor.Unmarshal(prot, &h); err != nil {
		t.Fatal(err)
	}
	// cbor decodes integer labels as uint64 or int64; normalise to the
	// int64 labels encodeMap expects.
	norm := map[any]any{}
	for k, v := range h {
		if u, ok := k.(uint64); ok {
			k = int64(u)
		}
		if u, ok := v.(uint64); ok {
			v = int64(u)
		}
		norm[k] = v
	}
	change(norm)
	return encodeSign1(t, true, encodeMap(t, norm), unprot, payload, sig)
}

func TestVerifyRejects(t *testing.T) {
	m := newMember(t, elliptic.P256())
	m384 := newMember(t, elliptic.P384())
	other := newMember(t, elliptic.P256())
	payload := []byte(`{"ballot":"export function vote (proposal, proposerId) { return true }"}`)
	good := mustSign(t, m, MsgBallot, testCreatedAt, "p1", payload)
	good384 := mustSign(t, m384, MsgBallot, testCreatedAt, "p1", payload)

	flipSig := bytes.Clone(good)
	flipSig[len(flipSig)-1] ^= 0x01
	alteredPayload := bytes.Clone(good)
	i := bytes.Index(alteredPayload, []byte("true"))
	copy(alteredPayload[i:], "fals")

	cases := []struct {
		name    string
		raw     []byte
		cert    *x509.Certificate
		wantErr error
		want    string
	}{
		{"flipped signature byte", flipSig, m.cert, ErrBadSignature, "verification error"},
		{"payload altered", alteredPayload, m.cert, ErrBadSignature, "verification error"},
		{"created_at altered", resign(t, good, func(h map[any]any) { h[HeaderCreatedAt] = testCreatedAt + 1 }), m.cert, ErrBadSignature, "verification error"},
		{"type altered", resign(t, good, func(h map[any]any) { h[HeaderMsgType] = "withdrawal" }), m.cert, ErrBadSignature, "verification error"},
		{"proposal_id altered", resign(t, good, func(h map[any]any) { h[HeaderProposalID] = "p2" }), m.cert, ErrBadSignature, "verification error"},
		{"wrong cert", good, other.cert, ErrWrongKid, "kid"},
		{"kid swapped to other member", resign(t, good, func(h map[any]any) { h[int64(4)] = []byte(other.id) }), other.cert, ErrBadSignature, "verification error"},
		{"ES256 on a P-384 key", resign(t, good384, func(h map[any]any) { h[int64(1)] = int64(-7) }), m384.cert, ErrBadSignature, "alg (1)"},
		{"ES384 on a P-256 key", resign(t, good, func(h map[any]any) { h[int64(1)] = int64(-35) }), m.cert, ErrBadSignature, "alg (1)"},
		{"nil cert", good, nil, ErrBadSignature, "no member certificate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Parse(tc.raw)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			err = r.Verify(tc.cert)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Verify: %v, want %v", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestVerifyRefusesChangedFields(t *testing.T) {
	m := newMember(t, elliptic.P256())
	raw := mustSign(t, m, MsgBallot, testCreatedAt, "p1", []byte(`{"ballot":"x"}`))
	for name, change := range map[string]func(r *Request){
		"ProposalID": func(r *Request) { r.ProposalID = "p2" },
		"Type":       func(r *Request) { r.Type = MsgWithdrawal },
		"CreatedAt":  func(r *Request) { r.CreatedAt++ },
		"Payload":    func(r *Request) { r.Payload[0] = '[' },
	} {
		t.Run(name, func(t *testing.T) {
			r, err := Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			change(r)
			if err := r.Verify(m.cert); !errors.Is(err, ErrMalformed) {
				t.Fatalf("Verify: %v, want ErrMalformed", err)
			}
		})
	}
	var zero Request
	if err := zero.Verify(m.cert); !errors.Is(err, ErrMalformed) {
		t.Fatalf("zero Request: %v", err)
	}
	var nilReq *Request
	if err := nilReq.Verify(m.cert); !errors.Is(err, ErrMalformed) {
		t.Fatalf("nil Request: %v", err)
	}
}

// The bytes of a request that nobody signed must not make it a new request:
// otherwise anyone reading the ledger could replay a recorded proposal.
func TestDigestIgnoresUnsignedBytes(t *testing.T) {
	for _, c := range []elliptic.Curve{elliptic.P256(), elliptic.P384()} {
		t.Run(c.Params().Name, func(t *testing.T) {
			m := newMember(t, c)
			raw := mustSign(t, m, MsgProposal, testCreatedAt, "", []byte(`{"actions":[]}`))
			orig, err := Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			prot, _, payload, sig := decodeSign1(t, raw)

			// (r, s) -> (r, n-s): still a valid ECDSA signature.
			half := len(sig) / 2
			s := new(big.Int).SetBytes(sig[half:])
			s.Sub(c.Params().N, s)
			highS := append(bytes.Clone(sig[:half]), s.FillBytes(make([]byte, half))...)

			variants := map[string][]byte{
				"unprotected header added": encodeSign1(t, true, prot, map[any]any{"x.pad": "anything"}, payload, sig),
				"signature malleated":      encodeSign1(t, true, prot, nil, payload, highS),
			}
			for name, v := range variants {
				r, err := Parse(v)
				if err != nil {
					t.Fatalf("%s: Parse: %v", name, err)
				}
				if err := r.Verify(m.cert); err != nil {
					t.Fatalf("%s: Verify: %v (the variant must be valid for this test to mean anything)", name, err)
				}
				if bytes.Equal(r.Raw, orig.Raw) {
					t.Fatalf("%s: variant is byte-identical", name)
				}
				if r.Digest != orig.Digest {
					t.Fatalf("%s: digest changed, so a replay would pass the window", name)
				}
				w := NewWindow(0)
				w.Add(orig.Digest, orig.CreatedAt)
				if err := w.Check(r.Digest, r.CreatedAt); !errors.Is(err, ErrReplay) {
					t.Fatalf("%s: Check: %v, want ErrReplay", name, err)
				}
			}
		})
	}
}

func TestSignRefuses(t *testing.T) {
	m := newMember(t, elliptic.P256())
	other := newMember(t, elliptic.P256())
	cases := []struct {
		name    string
		signer  crypto.Signer
		typ     MsgType
		created int64
		pid     string
	}{
		{"key not the cert's", other.key, MsgProposal, testCreatedAt, ""},
		{"unknown type", m.key, MsgType("vote"), testCreatedAt, ""},
		{"proposal id on a proposal", m.key, MsgProposal, testCreatedAt, "p1"},
		{"ballot without proposal id", m.key, MsgBallot, testCreatedAt, ""},
		{"negative created_at", m.key, MsgProposal, -1, ""},
		{"created_at too large", m.key, MsgProposal, MaxCreatedAt + 1, ""},
		{"nil signer", nil, MsgProposal, testCreatedAt, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if b, err := Sign(tc.signer, m.cert, tc.typ, tc.created, tc.pid, nil); err == nil {
				t.Fatalf("Sign made %x", b)
			}
		})
	}
}

// go-cose encodes integer labels for us; check the wire form CCF clients
// produce and expect (kid as bstr, text labels) byte for byte.
func TestWireFormat(t *testing.T) {
	m := newMember(t, elliptic.P256())
	raw := mustSign(t, m, MsgWithdrawal, 42, "p1", nil)
	prot, unprot, payload, _ := decodeSign1(t, raw)
	want := encodeMap(t, map[any]any{
		int64(1):         int64(-7),
		int64(4):         []byte(m.id),
		HeaderMsgType:    "withdrawal",
		HeaderCreatedAt:  int64(42),
		HeaderProposalID: "p1",
	})
	if !bytes.Equal(prot, want) {
		t.Fatalf("protected header\n got %x\nwant %x", prot, want)
	}
	if len(unprot) != 0 {
		t.Fatalf("unprotected header %v, want empty", unprot)
	}
	if payload == nil || len(payload) != 0 {
		t.Fatalf("payload %#v, want an empty attached bstr", payload)
	}
	var msg cose.Sign1Message
	if err := msg.UnmarshalCBOR(raw); err != nil {
		t.Fatal(err)
	}
}
