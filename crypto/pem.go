package crypto

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
)

// PEM block types.
const (
	pemCertificate  = "CERTIFICATE"
	pemPKCS8        = "PRIVATE KEY"
	pemSEC1         = "EC PRIVATE KEY"
	pemPKCS1        = "RSA PRIVATE KEY"
	pemPublicKey    = "PUBLIC KEY"
	pemEncryptedKey = "ENCRYPTED PRIVATE KEY"
)

// maxPEMFile bounds what ReadKeyFile and ReadCertFile load, so pointing them
// at the wrong file (a ledger chunk, /dev/zero) fails quickly.
const maxPEMFile = 1 << 20

// EncodeCertPEM returns cert as a CERTIFICATE PEM block.
func EncodeCertPEM(cert *x509.Certificate) []byte {
	if cert == nil {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: cert.Raw})
}

// ParseCertPEM returns the first CERTIFICATE block of b, skipping any other
// blocks before it.
func ParseCertPEM(b []byte) (*x509.Certificate, error) {
	certs, err := parseCertsPEM(b, 1)
	if err != nil {
		return nil, err
	}
	return certs[0], nil
}

// parseCertsPEM returns up to limit (0: all) CERTIFICATE blocks of b, at
// least one.
func parseCertsPEM(b []byte, limit int) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	var seen []string
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != pemCertificate {
			seen = append(seen, blk.Type)
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
		if limit > 0 && len(certs) == limit {
			break
		}
	}
	if len(certs) == 0 {
		if len(seen) > 0 {
			return nil, fmt.Errorf("%w: no %s block (found %q)", ErrNoPEM, pemCertificate, seen)
		}
		return nil, fmt.Errorf("%w: expected a PEM %s", ErrNoPEM, pemCertificate)
	}
	return certs, nil
}

// EncodePrivateKeyPEM returns an ECDSA or RSA key as a PKCS#8 PRIVATE KEY PEM
// block, the format CCF and OpenSSL 3 write by default.
func EncodePrivateKeyPEM(key crypto.Signer) ([]byte, error) {
	switch key.(type) {
	case *ecdsa.PrivateKey, *rsa.PrivateKey:
	default:
		return nil, fmt.Errorf("encode private key: %w: %T (want ECDSA or RSA)", ErrUnsupportedKey, key)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPKCS8, Bytes: der}), nil
}

// ParsePrivateKeyPEM returns the first private key in b: PKCS#8 PRIVATE KEY,
// SEC1 EC PRIVATE KEY or PKCS#1 RSA PRIVATE KEY. Other blocks before it (such
// as the EC PARAMETERS that `openssl ecparam -genkey` writes) are skipped.
// Encrypted keys are refused: coco keeps keys protected by file permissions.
func ParsePrivateKeyPEM(b []byte) (crypto.Signer, error) {
	var seen []string
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if _, ok := blk.Headers["Proc-Type"]; ok || blk.Type == pemEncryptedKey {
			return nil, fmt.Errorf("parse private key: %w: encrypted private keys are not supported", ErrUnsupportedKey)
		}
		var (
			key any
			err error
		)
		switch blk.Type {
		case pemPKCS8:
			key, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
		case pemSEC1:
			key, err = x509.ParseECPrivateKey(blk.Bytes)
		case pemPKCS1:
			key, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
		default:
			seen = append(seen, blk.Type)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", blk.Type, err)
		}
		switch k := key.(type) {
		case *ecdsa.PrivateKey:
			return k, nil
		case *rsa.PrivateKey:
			return k, nil
		default:
			return nil, fmt.Errorf("parse private key: %w: %T (want ECDSA or RSA)", ErrUnsupportedKey, key)
		}
	}
	if len(seen) > 0 {
		return nil, fmt.Errorf("%w: no private key block (found %q)", ErrNoPEM, seen)
	}
	return nil, fmt.Errorf("%w: expected a PEM private key", ErrNoPEM)
}

// EncodePublicKeyPEM returns pub as a PKIX PUBLIC KEY PEM block (how members'
// encryption keys are shared).
func EncodePublicKeyPEM(pub crypto.PublicKey) ([]byte, error) {
	if pub == nil {
		return nil, fmt.Errorf("encode public key: %w: nil key", ErrUnsupportedKey)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPublicKey, Bytes: der}), nil
}

// ParsePublicKeyPEM returns the first PKIX PUBLIC KEY in b, the inverse of
// EncodePublicKeyPEM (governance reads members' encryption keys with it).
func ParsePublicKeyPEM(b []byte) (crypto.PublicKey, error) {
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			return nil, fmt.Errorf("%w: expected a PEM %s", ErrNoPEM, pemPublicKey)
		}
		if blk.Type != pemPublicKey {
			continue
		}
		pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse public key: %w", err)
		}
		return pub, nil
	}
}

// WriteFileAtomic replaces path with data: it writes a temporary file in the
// same directory (so the rename cannot cross file systems), fsyncs it, renames
// it over path and fsyncs the directory so the rename itself is durable. The
// file gets exactly perm, whatever the umask.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	// CreateTemp makes the file 0600, so secrets are never exposed even
	// before the chmod.
	if err = f.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("write %s: sync: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("write %s: close: %w", path, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = syncDir(dir); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil // directories cannot be opened for sync there
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// WriteKeyFile writes key as PKCS#8 PEM to path, mode 0600, atomically.
func WriteKeyFile(path string, key crypto.Signer) error {
	b, err := EncodePrivateKeyPEM(key)
	if err != nil {
		return fmt.Errorf("write key file %s: %w", path, err)
	}
	return WriteFileAtomic(path, b, 0o600)
}

// ReadKeyFile reads a private key written by WriteKeyFile (or by OpenSSL, in
// any format ParsePrivateKeyPEM accepts). It refuses a file that its group or
// other users can access, as ssh does, because such a key must be assumed
// leaked.
func ReadKeyFile(path string) (crypto.Signer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("read key file %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); runtime.GOOS != "windows" && perm&0o077 != 0 {
		return nil, fmt.Errorf("read key file %s: %w: mode %#o allows group/other access (run chmod 600 %s)",
			path, ErrInsecureKeyFile, perm, path)
	}
	b, err := readLimited(f, path)
	if err != nil {
		return nil, fmt.Errorf("read key file: %w", err)
	}
	k, err := ParsePrivateKeyPEM(b)
	if err != nil {
		return nil, fmt.Errorf("read key file %s: %w", path, err)
	}
	return k, nil
}

// WriteCertFile writes cert as PEM to path, mode 0644, atomically.
func WriteCertFile(path string, cert *x509.Certificate) error {
	if cert == nil {
		return fmt.Errorf("write certificate file %s: nil certificate", path)
	}
	return WriteFileAtomic(path, EncodeCertPEM(cert), 0o644)
}

// ReadCertFile reads the first certificate of a PEM file.
func ReadCertFile(path string) (*x509.Certificate, error) {
	certs, err := readCertsFile(path, 1)
	if err != nil {
		return nil, err
	}
	return certs[0], nil
}

func readCertsFile(path string, limit int) ([]*x509.Certificate, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read certificate file: %w", err)
	}
	defer f.Close()
	b, err := readLimited(f, path)
	if err != nil {
		return nil, fmt.Errorf("read certificate file: %w", err)
	}
	certs, err := parseCertsPEM(b, limit)
	if err != nil {
		return nil, fmt.Errorf("read certificate file %s: %w", path, err)
	}
	return certs, nil
}

func readLimited(f *os.File, path string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(f, maxPEMFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxPEMFile {
		return nil, fmt.Errorf("%s: larger than %d bytes, not a PEM file", path, maxPEMFile)
	}
	return b, nil
}

// LoadKeyPair loads a TLS certificate from PEM files, checking (with the
// permission rules of ReadKeyFile) that the key belongs to the first
// certificate. Further certificates in certPath are sent as the chain.
func LoadKeyPair(certPath, keyPath string) (tls.Certificate, error) {
	certs, err := readCertsFile(certPath, 0)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("load key pair: %w", err)
	}
	key, err := ReadKeyFile(keyPath)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("load key pair: %w", err)
	}
	if !publicKeysEqual(certs[0].PublicKey, key.Public()) {
		return tls.Certificate{}, fmt.Errorf("load key pair: %s and %s: %w", keyPath, certPath, ErrKeyMismatch)
	}
	tc := tls.Certificate{PrivateKey: key, Leaf: certs[0]}
	for _, c := range certs {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	return tc, nil
}
