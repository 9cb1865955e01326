package bench

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/big"
	"runtime"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
)

// The single-core limits of the two signature checks coco makes per request:
// recovering the sender of an Ethereum transaction (secp256k1 ecrecover, the
// EVM app) and verifying a P-256 ECDSA signature (COSE-signed governance
// requests, receipts, ledger signatures). Each is measured on one goroutine
// locked to one OS thread, so the figure is what one core does, whatever
// else runs on the machine at the time.

// cryptoSignatures is how many distinct signatures (each by a key of its
// own) a measurement cycles through, so that no cache of a key or a result
// flatters it.
const cryptoSignatures = 64

// cryptoChainID is the chain id of the measured transactions (coco's
// sandbox default); only the signing hash depends on it.
const cryptoChainID = 1337

// CryptoRate is one single-core measurement.
type CryptoRate struct {
	// Workload is "ecrecover" or "p256-verify".
	Workload string
	// Impl names the implementation measured.
	Impl    string
	Ops     uint64
	Elapsed time.Duration
	PerSec  float64
}

// Figure is r as a row of a comparison: System "1core", one client.
func (r *CryptoRate) Figure() Figure {
	return Figure{Workload: r.Workload, System: "1core", Clients: 1, PerSec: r.PerSec, Note: r.Impl}
}

// CryptoMarkdownHeader is the table header matching CryptoRate.Markdown rows.
const CryptoMarkdownHeader = "| operation | implementation | per second (1 core) | µs each |\n|---|---|---:|---:|"

// Markdown renders r as one row of the CryptoMarkdownHeader table.
func (r *CryptoRate) Markdown() string {
	each := 0.0
	if r.PerSec > 0 {
		each = 1e6 / r.PerSec
	}
	return fmt.Sprintf("| %s | %s | %.0f | %.1f |", r.Workload, r.Impl, r.PerSec, each)
}

// RunCrypto measures, one after the other in this run, secp256k1 ecrecover/s
// and P-256 verify/s on a single core, each for duration, over freshly made
// signatures. A signature that fails to check is an error, not a slower
// figure. Cancelling ctx stops it with ctx's error.
func RunCrypto(ctx context.Context, duration time.Duration) ([]CryptoRate, error) {
	if duration <= 0 {
		return nil, fmt.Errorf("%w: duration must be positive, got %s", ErrInvalidConfig, duration)
	}
	rec, err := newEcrecoverSet(cryptoSignatures)
	if err != nil {
		return nil, err
	}
	ver, err := newP256Set(cryptoSignatures)
	if err != nil {
		return nil, err
	}
	var rates []CryptoRate
	for _, m := range []struct {
		workload, impl string
		check          func(i int) error
	}{
		{"ecrecover", ecrecoverImpl, rec.check},
		{"p256-verify", "crypto/ecdsa VerifyASN1, " + runtime.Version(), ver.check},
	} {
		ops, elapsed, err := measureOneCore(ctx, duration, cryptoSignatures, m.check)
		if err != nil {
			return nil, fmt.Errorf("bench: %s: %w", m.workload, err)
		}
		rates = append(rates, CryptoRate{Workload: m.workload, Impl: m.impl, Ops: ops, Elapsed: elapsed,
			PerSec: float64(ops) / elapsed.Seconds()})
	}
	return rates, nil
}

// measureOneCore calls check(0), check(1), ... check(n-1), check(0), ...
// on one goroutine locked to its OS thread until duration has passed, and
// returns how many calls it made and the time they took. The first failed
// check ends it with that error.
func measureOneCore(ctx context.Context, duration time.Duration, n int, check func(i int) error) (uint64, time.Duration, error) {
	type result struct {
		ops     uint64
		elapsed time.Duration
		err     error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		var r result
		start := time.Now()
		end := start.Add(duration)
		for i := 0; ; i = (i + 1) % n {
			if err := check(i); err != nil {
				r.err = fmt.Errorf("signature %d: %w", i, err)
				break
			}
			r.ops++
			// A clock read costs tens of nanoseconds against tens of
			// microseconds per check: reading it every time is free.
			if now := time.Now(); !now.Before(end) || ctx.Err() != nil {
				r.elapsed = now.Sub(start)
				break
			}
		}
		done <- r
	}()
	r := <-done
	if r.err != nil {
		return 0, 0, r.err
	}
	if err := ctx.Err(); err != nil {
		return 0, 0, fmt.Errorf("interrupted: %w", err)
	}
	return r.ops, r.elapsed, nil
}

// errWrongSigner is a recovered or verified signature that does not belong
// to its signer.
var errWrongSigner = errors.New("signature does not check against its signer")

// ecrecoverSet holds Ethereum transactions' signing hashes and signatures
// in the [R || S || V] form that types.Sender hands crypto.Ecrecover, with
// their senders.
type ecrecoverSet struct {
	hashes  []common.Hash
	sigs    [][]byte
	senders []common.Address
}

// newEcrecoverSet signs n EIP-1559 transfers, each with a key of its own,
// as coco's EVM app receives them.
func newEcrecoverSet(n int) (*ecrecoverSet, error) {
	signer := types.LatestSignerForChainID(big.NewInt(cryptoChainID))
	s := &ecrecoverSet{}
	for i := range n {
		key, err := crypto.GenerateKey()
		if err != nil {
			return nil, fmt.Errorf("bench: secp256k1 key: %w", err)
		}
		to := common.BigToAddress(big.NewInt(int64(i) + 1))
		tx, err := types.SignNewTx(key, signer, &types.DynamicFeeTx{
			ChainID: big.NewInt(cryptoChainID), Nonce: uint64(i), GasTipCap: big.NewInt(1),
			GasFeeCap: big.NewInt(1_000_000_000), Gas: 60_000, To: &to, Value: big.NewInt(1),
		})
		if err != nil {
			return nil, fmt.Errorf("bench: sign transaction: %w", err)
		}
		v, r, ss := tx.RawSignatureValues()
		sig := make([]byte, crypto.SignatureLength)
		r.FillBytes(sig[:32])
		ss.FillBytes(sig[32:64])
		sig[64] = byte(v.Uint64()) // 0 or 1 for typed transactions
		s.hashes = append(s.hashes, signer.Hash(tx))
		s.sigs = append(s.sigs, sig)
		s.senders = append(s.senders, crypto.PubkeyToAddress(key.PublicKey))
	}
	return s, nil
}

// check recovers signature i's sender as the EVM app does (types.Sender ->
// crypto.Ecrecover, then the address from the key's Keccak-256).
func (s *ecrecoverSet) check(i int) error {
	pub, err := crypto.Ecrecover(s.hashes[i][:], s.sigs[i])
	if err != nil {
		return fmt.Errorf("ecrecover: %w", err)
	}
	if len(pub) != 65 || !bytes.Equal(crypto.Keccak256(pub[1:])[12:], s.senders[i][:]) {
		return errWrongSigner
	}
	return nil
}

// p256Set holds P-256 public keys, SHA-256 digests and ASN.1 DER
// signatures, as coco verifies COSE-signed requests and node signatures.
type p256Set struct {
	keys    []*ecdsa.PublicKey
	digests [][sha256.Size]byte
	sigs    [][]byte
}

func newP256Set(n int) (*p256Set, error) {
	s := &p256Set{}
	for i := range n {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("bench: P-256 key: %w", err)
		}
		digest := sha256.Sum256(fmt.Appendf(nil, `{"id":%d,"msg":"bench"}`, i))
		sig, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
		if err != nil {
			return nil, fmt.Errorf("bench: P-256 sign: %w", err)
		}
		s.keys = append(s.keys, &key.PublicKey)
		s.digests = append(s.digests, digest)
		s.sigs = append(s.sigs, sig)
	}
	return s, nil
}

func (s *p256Set) check(i int) error {
	if !ecdsa.VerifyASN1(s.keys[i], s.digests[i][:], s.sigs[i]) {
		return errWrongSigner
	}
	return nil
}
