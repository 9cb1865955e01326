package coseutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"testing"

	"github.com/veraison/go-cose"
)

func TestAlgorithm(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 1024)
	for _, tc := range []struct {
		name string
		pub  any
		want cose.Algorithm
		ok   bool
	}{
		{"p256", &p256.PublicKey, cose.AlgorithmES256, true},
		{"p384", &p384.PublicKey, cose.AlgorithmES384, true},
		{"p521", &p521.PublicKey, 0, false},
		{"rsa", &rsaKey.PublicKey, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Algorithm(tc.pub)
			if (err == nil) != tc.ok || got != tc.want {
				t.Fatalf("Algorithm = %v, %v; want %v (ok %v)", got, err, tc.want, tc.ok)
			}
		})
	}
}

func TestUnknownCritical(t *testing.T) {
	const custom = "ccf.v1"
	for _, tc := range []struct {
		name      string
		ph        cose.ProtectedHeader
		wantLabel any
		wantOK    bool
		wantErr   bool
	}{
		{"no crit", cose.ProtectedHeader{cose.HeaderLabelAlgorithm: cose.AlgorithmES256}, nil, false, false},
		{"all known", cose.ProtectedHeader{cose.HeaderLabelAlgorithm: cose.AlgorithmES256, cose.HeaderLabelCritical: []any{cose.HeaderLabelAlgorithm, custom}, custom: 1}, nil, false, false},
		{"unknown", cose.ProtectedHeader{cose.HeaderLabelCritical: []any{int64(99)}, int64(99): 1}, int64(99), true, false},
		{"malformed", cose.ProtectedHeader{cose.HeaderLabelCritical: "not a list"}, nil, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, ok, err := UnknownCritical(tc.ph, cose.HeaderLabelAlgorithm, custom)
			if (err != nil) != tc.wantErr || ok != tc.wantOK || l != tc.wantLabel {
				t.Fatalf("UnknownCritical = %v, %v, %v", l, ok, err)
			}
		})
	}
}
