package bench

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strings"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	ethcrypto "github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/ethclient"
	"github.com/ethereum/go-ethereum/params"
	"github.com/ethereum/go-ethereum/rpc"

	cococrypto "github.com/cocoledger/coco/crypto"
	govclient "github.com/cocoledger/coco/gov/client"
)

// tokenBin is the creation bytecode of test/ethjs/contracts/Token.sol (a
// plain ERC-20 whose whole supply goes to the deployer), compiled by solc
// 0.8.37 as the JavaScript tests compile it; test/ethjs checks that it is
// current.
//
//go:embed token.bin
var tokenBin string

// tokenShanghaiBin is the same contract compiled for Shanghai, for chains
// that know no newer fork (ganache); see SetupERC20Peer.
//
//go:embed token-shanghai.bin
var tokenShanghaiBin string

// tokenCode is Token's creation bytecode for an EVM version: "" for solc's
// default (the fork coco runs) or "shanghai".
func tokenCode(evmVersion string) ([]byte, error) {
	bin := tokenBin
	switch evmVersion {
	case "":
	case "shanghai":
		bin = tokenShanghaiBin
	default:
		return nil, fmt.Errorf("%w: no token bytecode for EVM version %q (have the default and shanghai)", ErrInvalidConfig, evmVersion)
	}
	code, err := hex.DecodeString(strings.TrimSpace(bin))
	if err != nil {
		return nil, fmt.Errorf("bench: token bytecode: %w", err)
	}
	return code, nil
}

// tokenABI is the part of Token's interface the benchmark uses.
const tokenABI = `[
{"type":"constructor","inputs":[{"name":"name_","type":"string"},{"name":"symbol_","type":"string"},{"name":"supply","type":"uint256"}]},
{"type":"function","name":"transfer","stateMutability":"nonpayable","inputs":[{"name":"to","type":"address"},{"name":"value","type":"uint256"}],"outputs":[{"name":"","type":"bool"}]},
{"type":"function","name":"balanceOf","stateMutability":"view","inputs":[{"name":"","type":"address"}],"outputs":[{"name":"","type":"uint256"}]}
]`

// Gas limits of the benchmark's transactions: generous (gas is priced at
// zero), so that no transaction runs out whatever the recipient's state.
const (
	deployGas   = 3_000_000
	transferGas = 100_000
)

// fundingPerAccount is the token balance each account starts with: far
// more than any run can spend, one token per transfer.
var fundingPerAccount = new(big.Int).Exp(big.NewInt(10), big.NewInt(12), nil)

// usersPerProposal bounds a set_user proposal's size (each action carries
// a certificate), far under the nodes' request size limit.
const usersPerProposal = 100

// fundingBatch is the number of funding transfers sent per JSON-RPC batch.
const fundingBatch = 250

// ERC20Account is one benchmark account: a registered user's TLS identity
// and the Ethereum key of its registered address.
type ERC20Account struct {
	Cert    tls.Certificate
	Key     *ecdsa.PrivateKey
	Address common.Address
}

// ERC20Env is a deployed token and the funded accounts that trade it.
type ERC20Env struct {
	ChainID  *big.Int
	Token    common.Address
	Deployer ERC20Account
	Accounts []ERC20Account
	// Funding is each account's token balance before the run.
	Funding *big.Int
	// GasTipCap and GasFeeCap are what every transaction offers for gas:
	// nil (zero) on coco, whose gas is priced at zero; a peer chain needs
	// them, and Ether, the ether each account is given to pay with.
	GasTipCap, GasFeeCap, Ether *big.Int
}

type erc20ABI struct{ abi.ABI }

func parseTokenABI() (erc20ABI, error) {
	a, err := abi.JSON(strings.NewReader(tokenABI))
	if err != nil {
		return erc20ABI{}, fmt.Errorf("bench: token ABI: %w", err)
	}
	return erc20ABI{a}, nil
}

// SetupERC20 prepares an ERC-20 run on the sandbox sb through the node at
// addr: it creates accounts+1 fresh identities (a P-256 TLS certificate and
// an Ethereum key each), has the sandbox's members register them as users
// with their Ethereum addresses (set_user proposals, every member voting
// yes), deploys Token from the first one and funds the others with it.
// Every step waits for its commit, so the accounts can trade at once.
func SetupERC20(ctx context.Context, sb *Sandbox, addr string, accounts int) (*ERC20Env, error) {
	if accounts <= 0 {
		return nil, fmt.Errorf("%w: accounts must be positive, got %d", ErrInvalidConfig, accounts)
	}
	if len(sb.Members) == 0 {
		return nil, fmt.Errorf("%w: the sandbox lists no members to register the accounts", ErrInvalidSandbox)
	}
	serviceCert, err := sb.ServiceCertificate()
	if err != nil {
		return nil, err
	}
	all := make([]ERC20Account, accounts+1)
	for i := range all {
		if all[i], err = newERC20Account(); err != nil {
			return nil, err
		}
	}
	if err := registerAccounts(ctx, sb, addr, all); err != nil {
		return nil, err
	}
	code, err := tokenCode("")
	if err != nil {
		return nil, err
	}
	env := &ERC20Env{Deployer: all[0], Accounts: all[1:], Funding: new(big.Int).Set(fundingPerAccount)}
	if err := env.deploy(ctx, cocoTarget(serviceCert, addr), code); err != nil {
		return nil, err
	}
	return env, nil
}

func newERC20Account() (ERC20Account, error) {
	cert, err := NewClientCert()
	if err != nil {
		return ERC20Account{}, err
	}
	ek, err := ethcrypto.GenerateKey()
	if err != nil {
		return ERC20Account{}, fmt.Errorf("bench: ethereum key: %w", err)
	}
	return ERC20Account{
		Cert:    cert,
		Key:     ek,
		Address: ethcrypto.PubkeyToAddress(ek.PublicKey),
	}, nil
}

// registerAccounts passes set_user proposals for accs.
func registerAccounts(ctx context.Context, sb *Sandbox, addr string, accs []ERC20Account) error {
	members := make([]*govclient.Client, len(sb.Members))
	for i, m := range sb.Members {
		c, err := govclient.Load(addr, sb.ServiceCert, m.Cert, m.Key)
		if err != nil {
			return fmt.Errorf("bench: member %s: %w", m.Name, err)
		}
		defer c.Close()
		members[i] = c
	}
	for start := 0; start < len(accs); start += usersPerProposal {
		var p govclient.Proposal
		for _, a := range accs[start:min(start+usersPerProposal, len(accs))] {
			p.Actions = append(p.Actions, govclient.Action{Name: "set_user", Args: map[string]any{
				"cert":      string(cococrypto.EncodeCertPEM(a.Cert.Leaf)),
				"user_data": map[string]any{"eth_address": a.Address.Hex()},
			}})
		}
		if _, err := govclient.Pass(ctx, members[0], members, p); err != nil {
			return fmt.Errorf("bench: register benchmark accounts as users: %w", err)
		}
	}
	return nil
}

// EthPath is the Ethereum app's JSON-RPC endpoint.
const EthPath = "/app/eth"

// userTLS is the client TLS configuration of a user: the service
// certificate as the only root, and the user's certificate always
// presented.
func userTLS(serviceCert *x509.Certificate, cert tls.Certificate) *tls.Config {
	roots := x509.NewCertPool()
	roots.AddCert(serviceCert)
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		RootCAs:    roots,
		// Always present the user certificate: Go would otherwise withhold
		// it when the server's acceptable-CA list does not name its issuer.
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &cert, nil
		},
	}
}

// deploy deploys Token (code is its creation bytecode) from the deployer
// with the accounts' total funding as supply and gives each account its
// share (and Ether, if any), then waits until a block includes all of it.
func (env *ERC20Env) deploy(ctx context.Context, target ethTarget, code []byte) error {
	tok, err := parseTokenABI()
	if err != nil {
		return err
	}
	rc, err := target.dial(ctx, env.Deployer)
	if err != nil {
		return err
	}
	defer rc.Close()
	ec := ethclient.NewClient(rc)
	if env.ChainID, err = ec.ChainID(ctx); err != nil {
		return fmt.Errorf("bench: eth_chainId: %w", err)
	}
	nonce, err := ec.NonceAt(ctx, env.Deployer.Address, nil)
	if err != nil {
		return fmt.Errorf("bench: the deployer's nonce: %w", err)
	}
	signer := types.LatestSignerForChainID(env.ChainID)
	supply := new(big.Int).Mul(env.Funding, big.NewInt(int64(len(env.Accounts))))
	args, err := tok.Pack("", "Bench", "BNCH", supply)
	if err != nil {
		return fmt.Errorf("bench: token constructor: %w", err)
	}
	deployTx, err := env.sign(signer, env.Deployer.Key, &types.DynamicFeeTx{Nonce: nonce, Gas: deployGas, Data: append(code, args...)})
	if err != nil {
		return err
	}
	if err := ec.SendTransaction(ctx, deployTx); err != nil {
		return fmt.Errorf("bench: deploy the token: %w", err)
	}
	r, err := waitReceipt(ctx, ec, deployTx.Hash())
	if err != nil {
		return fmt.Errorf("bench: the token's deployment: %w", err)
	}
	if r.Status != types.ReceiptStatusSuccessful {
		return errors.New("bench: deploying the token failed on chain")
	}
	env.Token = r.ContractAddress
	nonce++

	var funding []*types.Transaction
	for _, a := range env.Accounts {
		if env.Ether != nil && env.Ether.Sign() > 0 {
			to := a.Address
			t, err := env.sign(signer, env.Deployer.Key, &types.DynamicFeeTx{Nonce: nonce, Gas: params.TxGas, To: &to, Value: env.Ether})
			if err != nil {
				return err
			}
			funding = append(funding, t)
			nonce++
		}
		data, err := tok.Pack("transfer", a.Address, env.Funding)
		if err != nil {
			return fmt.Errorf("bench: transfer call: %w", err)
		}
		t, err := env.sign(signer, env.Deployer.Key, &types.DynamicFeeTx{Nonce: nonce, Gas: transferGas, To: &env.Token, Data: data})
		if err != nil {
			return err
		}
		funding = append(funding, t)
		nonce++
	}
	for start := 0; start < len(funding); start += fundingBatch {
		part := funding[start:min(start+fundingBatch, len(funding))]
		batch := make([]rpc.BatchElem, len(part))
		for i, t := range part {
			raw, err := t.MarshalBinary()
			if err != nil {
				return fmt.Errorf("bench: encode a transaction: %w", err)
			}
			batch[i] = rpc.BatchElem{Method: "eth_sendRawTransaction", Args: []any{hexutil.Bytes(raw)}, Result: new(common.Hash)}
		}
		if err := rc.BatchCallContext(ctx, batch); err != nil {
			return fmt.Errorf("bench: fund the accounts: %w", err)
		}
		for i, b := range batch {
			if b.Error != nil {
				return fmt.Errorf("bench: funding transaction %s: %w", part[i].Hash(), b.Error)
			}
		}
	}
	// The deployer's transactions are in nonce order: once a block holds
	// the last, every one is in, and the last funded account holds its
	// funding only if its transfer succeeded.
	if _, err := waitReceipt(ctx, ec, funding[len(funding)-1].Hash()); err != nil {
		return fmt.Errorf("bench: funding: %w", err)
	}
	last := env.Accounts[len(env.Accounts)-1].Address
	bal, err := balanceOf(ctx, ec, tok, env.Token, last)
	if err != nil {
		return err
	}
	if bal.Cmp(env.Funding) != 0 {
		return fmt.Errorf("bench: account %s holds %s tokens after funding, want %s", last, bal, env.Funding)
	}
	return nil
}

// sign signs tx from key on signer's chain, offering env's fees.
func (env *ERC20Env) sign(signer types.Signer, key *ecdsa.PrivateKey, tx *types.DynamicFeeTx) (*types.Transaction, error) {
	tx.ChainID = signer.ChainID()
	tx.GasTipCap, tx.GasFeeCap = new(big.Int), new(big.Int)
	if env.GasTipCap != nil {
		tx.GasTipCap.Set(env.GasTipCap)
	}
	if env.GasFeeCap != nil {
		tx.GasFeeCap.Set(env.GasFeeCap)
	}
	t, err := types.SignNewTx(key, signer, tx)
	if err != nil {
		return nil, fmt.Errorf("bench: sign a transaction: %w", err)
	}
	return t, nil
}

// balanceOf asks the token for who's balance.
func balanceOf(ctx context.Context, ec *ethclient.Client, tok erc20ABI, token, who common.Address) (*big.Int, error) {
	data, err := tok.Pack("balanceOf", who)
	if err != nil {
		return nil, err
	}
	out, err := ec.CallContract(ctx, ethereum.CallMsg{To: &token, Data: data}, nil)
	if err != nil {
		return nil, fmt.Errorf("bench: balanceOf(%s): %w", who, err)
	}
	vals, err := tok.Unpack("balanceOf", out)
	if err != nil || len(vals) != 1 {
		return nil, fmt.Errorf("bench: balanceOf(%s) answered %x: %v", who, out, err)
	}
	b, ok := vals[0].(*big.Int)
	if !ok {
		return nil, fmt.Errorf("bench: balanceOf(%s) answered %T", who, vals[0])
	}
	return b, nil
}
