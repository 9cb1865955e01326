//go:build nacl || js || wasip1 || !cgo || gofuzz || tinygo

package bench

// ecrecoverImpl names what go-ethereum's crypto.Ecrecover runs when built
// with these tags (its signature_nocgo.go has the same build line).
const ecrecoverImpl = "go-ethereum crypto.Ecrecover, decred secp256k1 (pure Go)"
