package crypto

import (
	"encoding/hex"
	"fmt"

	ethcrypto "github.com/ethereum/go-ethereum/crypto"
)

// GenerateEthKey returns a new secp256k1 key for a user's Ethereum identity:
// the private key as 0x-prefixed hex (what the sandbox writes to eth_key) and
// its EIP-55 checksummed address.
func GenerateEthKey() (hexKey string, address string, err error) {
	k, err := ethcrypto.GenerateKey()
	if err != nil {
		return "", "", fmt.Errorf("generate Ethereum key: %w", err)
	}
	// Address.Hex applies the EIP-55 checksum.
	return "0x" + hex.EncodeToString(ethcrypto.FromECDSA(k)), ethcrypto.PubkeyToAddress(k.PublicKey).Hex(), nil
}
