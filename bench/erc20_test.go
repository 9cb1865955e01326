package bench

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	ethcrypto "github.com/ethereum/go-ethereum/crypto"
)

func TestParseSendRawAnswers(t *testing.T) {
	hash := `"0x` + strings.Repeat("ab", 32) + `"`
	cases := []struct {
		name  string
		raw   string
		n     int
		batch bool
		want  []string
		err   string
	}{
		{"one hash", `{"jsonrpc":"2.0","id":0,"result":` + hash + `}`, 1, false, []string{""}, ""},
		{"one error", `{"jsonrpc":"2.0","id":0,"error":{"code":-32000,"message":"nonce too low"}}`, 1, false, []string{"-32000: nonce too low"}, ""},
		{"refused whole", `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}`, 1, false, []string{"-32700: parse error"}, ""},
		{"batch out of order", `[{"id":1,"error":{"code":3,"message":"x"}},{"id":0,"result":` + hash + `}]`, 2, true, []string{"", "3: x"}, ""},
		{"batch too short", `[{"id":0,"result":` + hash + `}]`, 2, true, nil, "1 answers to 2"},
		{"duplicate id", `[{"id":0,"result":` + hash + `},{"id":0,"result":` + hash + `}]`, 2, true, nil, "unexpected id"},
		{"id out of range", `[{"id":0,"result":` + hash + `},{"id":7,"result":` + hash + `}]`, 2, true, nil, "unexpected id"},
		{"no result", `{"id":0}`, 1, false, nil, "neither result nor error"},
		{"not JSON", `<html>`, 1, false, nil, "malformed"},
		{"object for a batch", `{"id":0,"result":` + hash + `}`, 1, true, nil, "malformed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseSendRawAnswers([]byte(c.raw), c.n, c.batch)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want one containing %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got, "|") != strings.Join(c.want, "|") {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
}

func TestSendRawBody(t *testing.T) {
	key, err := ethcrypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	signer := types.LatestSignerForChainID(big.NewInt(1337))
	to := common.HexToAddress("0x01")
	var txs []*types.Transaction
	for n := range uint64(3) {
		tx, err := (&ERC20Env{}).sign(signer, key, &types.DynamicFeeTx{Nonce: n, Gas: transferGas, To: &to})
		if err != nil {
			t.Fatal(err)
		}
		txs = append(txs, tx)
	}
	type req struct {
		JSONRPC string   `json:"jsonrpc"`
		ID      int      `json:"id"`
		Method  string   `json:"method"`
		Params  []string `json:"params"`
	}
	body, err := sendRawBody(txs, true)
	if err != nil {
		t.Fatal(err)
	}
	var reqs []req
	if err := json.Unmarshal(body, &reqs); err != nil || len(reqs) != 3 {
		t.Fatalf("batch body %s: %v", body, err)
	}
	for i, r := range reqs {
		var back types.Transaction
		raw := common.FromHex(r.Params[0])
		if r.JSONRPC != "2.0" || r.ID != i || r.Method != "eth_sendRawTransaction" || back.UnmarshalBinary(raw) != nil || back.Hash() != txs[i].Hash() {
			t.Errorf("request %d: %+v", i, r)
		}
	}
	body, err = sendRawBody(txs[:1], false)
	if err != nil {
		t.Fatal(err)
	}
	var one req
	if err := json.Unmarshal(body, &one); err != nil || one.ID != 0 || len(one.Params) != 1 {
		t.Fatalf("plain body %s: %v", body, err)
	}
}

func TestERC20ConfigNormalise(t *testing.T) {
	env := &ERC20Env{ChainID: big.NewInt(1), Accounts: make([]ERC20Account, 4)}
	good := ERC20Config{Targets: []string{"127.0.0.1:1"}, ServiceCert: testCert(t), Env: env, Batch: 5, Duration: time.Second, Warmup: time.Second, MaxRate: 100}
	if err := good.normalise(); err != nil {
		t.Fatal(err)
	}
	// 100/s over 2 s on 4 accounts: 51 each, rounded up to whole batches.
	if n := good.perAccount(); n != 55 {
		t.Errorf("perAccount = %d, want 55", n)
	}
	for name, mutate := range map[string]func(*ERC20Config){
		"no targets":   func(c *ERC20Config) { c.Targets = nil },
		"bad target":   func(c *ERC20Config) { c.Targets = []string{"nope"} },
		"no cert":      func(c *ERC20Config) { c.ServiceCert = nil },
		"no env":       func(c *ERC20Config) { c.Env = nil },
		"zero batch":   func(c *ERC20Config) { c.Batch = 0 },
		"huge batch":   func(c *ERC20Config) { c.Batch = 1001 },
		"no duration":  func(c *ERC20Config) { c.Duration = 0 },
		"neg warmup":   func(c *ERC20Config) { c.Warmup = -time.Second },
		"zero maxrate": func(c *ERC20Config) { c.MaxRate = 0 },
	} {
		c := good
		mutate(&c)
		if err := c.normalise(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: err = %v, want ErrInvalidConfig", name, err)
		}
	}
}

func testCert(t *testing.T) *x509.Certificate {
	t.Helper()
	c, err := NewClientCert()
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf
}

// TestTokenBytecode: the embedded bytecode decodes and the constructor
// arguments pack.
func TestTokenBytecode(t *testing.T) {
	tok, err := parseTokenABI()
	if err != nil {
		t.Fatal(err)
	}
	code := common.FromHex(strings.TrimSpace(tokenBin))
	if len(code) < 1000 {
		t.Fatalf("token bytecode is %d bytes", len(code))
	}
	if _, err := tok.Pack("", "Bench", "BNCH", big.NewInt(1)); err != nil {
		t.Fatal(err)
	}
}
