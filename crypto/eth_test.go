package crypto

import (
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	ethcrypto "github.com/ethereum/go-ethereum/crypto"
)

func TestGenerateEthKey(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 5; i++ {
		hexKey, addr, err := GenerateEthKey()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(hexKey, "0x") || len(hexKey) != 2+64 {
			t.Fatalf("key %q is not 0x + 64 hex digits", hexKey)
		}
		k, err := ethcrypto.HexToECDSA(hexKey[2:])
		if err != nil {
			t.Fatal(err)
		}
		want := ethcrypto.PubkeyToAddress(k.PublicKey)
		if addr != want.Hex() {
			t.Fatalf("address %s, want %s", addr, want.Hex())
		}
		// EIP-55: the checksummed form is what the checksum function returns
		// and differs from the lowercase form (all-digit addresses aside).
		if !common.IsHexAddress(addr) || common.HexToAddress(addr).Hex() != addr {
			t.Fatalf("address %s is not EIP-55 checksummed", addr)
		}
		if strings.ContainsAny(addr[2:], "abcdef") && strings.ToLower(addr) == addr {
			t.Fatalf("address %s has no checksum capitals", addr)
		}
		if seen[hexKey] {
			t.Fatal("repeated key")
		}
		seen[hexKey] = true
	}
}
