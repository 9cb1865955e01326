package crypto

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
)

// encryptionKeyBits is the size of members' encryption keys, as in CCF.
const encryptionKeyBits = 2048

// GenerateEncryptionKey returns a new RSA-2048 key, a member's encryption key
// for recovery shares.
func GenerateEncryptionKey() (*rsa.PrivateKey, error) {
	k, err := rsa.GenerateKey(rand.Reader, encryptionKeyBits)
	if err != nil {
		return nil, fmt.Errorf("generate RSA-%d key: %w", encryptionKeyBits, err)
	}
	return k, nil
}

// WrapKey encrypts plaintext (a recovery share) to pub with RSA-OAEP,
// SHA-256 and no label, as CCF does.
func WrapKey(pub *rsa.PublicKey, plaintext []byte) ([]byte, error) {
	if pub == nil {
		return nil, errors.New("wrap key: nil public key")
	}
	ct, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, plaintext, nil)
	if err != nil {
		return nil, fmt.Errorf("wrap key: %w", err)
	}
	return ct, nil
}

// UnwrapKey decrypts what WrapKey produced. Any failure is ErrDecrypt,
// without detail, so callers cannot become a padding oracle.
func UnwrapKey(priv *rsa.PrivateKey, ciphertext []byte) ([]byte, error) {
	if priv == nil {
		return nil, errors.New("unwrap key: nil private key")
	}
	pt, err := rsa.DecryptOAEP(sha256.New(), nil, priv, ciphertext, nil)
	if err != nil {
		return nil, fmt.Errorf("unwrap key: %w", ErrDecrypt)
	}
	return pt, nil
}
