package crypto

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strings"
	"time"
)

// Errors returned (wrapped) by this package.
var (
	// ErrUnsupportedKey: a key type or curve coco does not use.
	ErrUnsupportedKey = errors.New("unsupported key")
	// ErrKeyMismatch: a private key does not belong to a certificate.
	ErrKeyMismatch = errors.New("private key does not match certificate")
	// ErrInsecureKeyFile: a private key file other users can read.
	ErrInsecureKeyFile = errors.New("insecure key file permissions")
	// ErrNoPEM: no PEM block of the expected type.
	ErrNoPEM = errors.New("no PEM block found")
	// ErrUnknownKey: sealed data names a ledger secret the keyring lacks.
	ErrUnknownKey = errors.New("unknown ledger secret id")
	// ErrDecrypt: sealed or wrapped data failed authentication or is malformed.
	ErrDecrypt = errors.New("decryption failed")
	// ErrNoSecret: no ledger secret is in force at a seqno.
	ErrNoSecret = errors.New("no ledger secret in force")
)

// clockSkew backdates NotBefore so a certificate issued on one machine is
// already valid on a peer whose clock is slightly behind.
const clockSkew = time.Hour

// GenerateKey returns a new ECDSA P-256 key, coco's default.
func GenerateKey() (*ecdsa.PrivateKey, error) {
	return GenerateKeyCurve(elliptic.P256())
}

// GenerateKeyCurve returns a new ECDSA key on c, which must be P-256 or P-384
// (the curves CCF accepts for identities).
func GenerateKeyCurve(c elliptic.Curve) (*ecdsa.PrivateKey, error) {
	if err := checkCurve(c); err != nil {
		return nil, err
	}
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ECDSA %s key: %w", c.Params().Name, err)
	}
	return k, nil
}

func checkCurve(c elliptic.Curve) error {
	if c == nil {
		return fmt.Errorf("%w: nil curve", ErrUnsupportedKey)
	}
	switch c {
	case elliptic.P256(), elliptic.P384():
		return nil
	}
	return fmt.Errorf("%w: curve %s (want P-256 or P-384)", ErrUnsupportedKey, c.Params().Name)
}

// SelfSignedCert returns a certificate for key signed by itself, valid from
// now (backdated by an hour for clock skew) for validity. With isCA it can
// sign other certificates (the service identity); otherwise it is a leaf for
// TLS client or server use (members, users).
func SelfSignedCert(key *ecdsa.PrivateKey, commonName string, validity time.Duration, isCA bool) (*x509.Certificate, error) {
	if key == nil {
		return nil, errors.New("self-signed certificate: nil key")
	}
	if err := checkCurve(key.Curve); err != nil {
		return nil, fmt.Errorf("self-signed certificate: %w", err)
	}
	tmpl, err := template(commonName, validity)
	if err != nil {
		return nil, fmt.Errorf("self-signed certificate: %w", err)
	}
	if isCA {
		tmpl.IsCA = true
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("self-signed certificate for %q: %w", commonName, err)
	}
	return parseDER(der)
}

// CertOptions describes a certificate issued by IssueCert.
type CertOptions struct {
	CommonName string
	// Hosts become subject alternative names: IP addresses as IP SANs,
	// anything else as DNS names.
	Hosts                  []string
	Validity               time.Duration
	ServerAuth, ClientAuth bool
}

// IssueCert returns a certificate for pub signed by issuerKey, whose
// certificate is issuer (which must be a CA), e.g. a node certificate
// endorsed by the service identity.
func IssueCert(pub crypto.PublicKey, opts CertOptions, issuer *x509.Certificate, issuerKey crypto.Signer) (*x509.Certificate, error) {
	if pub == nil || issuer == nil || issuerKey == nil {
		return nil, errors.New("issue certificate: nil public key, issuer or issuer key")
	}
	if !issuer.IsCA {
		return nil, fmt.Errorf("issue certificate: issuer %q is not a CA", issuer.Subject.CommonName)
	}
	if !publicKeysEqual(issuer.PublicKey, issuerKey.Public()) {
		return nil, fmt.Errorf("issue certificate: issuer key: %w", ErrKeyMismatch)
	}
	tmpl, err := template(opts.CommonName, opts.Validity)
	if err != nil {
		return nil, fmt.Errorf("issue certificate: %w", err)
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	if opts.ServerAuth {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if opts.ClientAuth {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	for _, h := range opts.Hosts {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, pub, issuerKey)
	if err != nil {
		return nil, fmt.Errorf("issue certificate for %q: %w", opts.CommonName, err)
	}
	return parseDER(der)
}

func template(commonName string, validity time.Duration) (*x509.Certificate, error) {
	if commonName == "" {
		return nil, errors.New("empty common name")
	}
	if validity <= 0 {
		return nil, fmt.Errorf("validity %v must be positive", validity)
	}
	// 128 random bits: unique serials without any issuer-side state.
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	now := time.Now()
	return &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(validity),
		BasicConstraintsValid: true,
	}, nil
}

func parseDER(der []byte) (*x509.Certificate, error) {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse new certificate: %w", err)
	}
	return c, nil
}

// CertID is the id of a member or user: lowercase hex SHA-256 of the DER
// certificate. It is "" for a nil certificate.
func CertID(cert *x509.Certificate) string {
	if cert == nil {
		return ""
	}
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// KeyID is the id of a node and the COSE kid of a signing key: lowercase hex
// SHA-256 of the DER SubjectPublicKeyInfo.
func KeyID(pub crypto.PublicKey) (string, error) {
	if pub == nil {
		return "", fmt.Errorf("key id: %w: nil public key", ErrUnsupportedKey)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("key id: %w", err)
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}

// publicKeysEqual compares keys with the Equal method every standard library
// key type has.
func publicKeysEqual(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && b != nil && ea.Equal(b)
}

// ErrCertNotValidNow: a certificate's validity period does not include now.
var ErrCertNotValidNow = errors.New("certificate is not valid now")

// CheckValidity checks that now is within cert's validity period. TLS
// handshakes with self-signed client certificates, and COSE signatures,
// prove possession of the key but check no dates.
func CheckValidity(cert *x509.Certificate, now time.Time) error {
	if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		return fmt.Errorf("%w (valid %s to %s)", ErrCertNotValidNow, cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}
