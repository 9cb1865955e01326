//go:build !nacl && !js && !wasip1 && cgo && !gofuzz && !tinygo

package bench

// ecrecoverImpl names what go-ethereum's crypto.Ecrecover runs when built
// with these tags (its signature_cgo.go has the same build line).
const ecrecoverImpl = "go-ethereum crypto.Ecrecover, libsecp256k1 (cgo)"
