// Package coseutil holds the COSE rules that coco's two COSE formats share:
// receipts (package receipt) and governance requests (package gov/cose).
// Each caller wraps these errors in its own sentinel.
package coseutil

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"fmt"

	"github.com/veraison/go-cose"
)

// Algorithm returns the COSE algorithm for an identity key: coco's keys are
// ECDSA on P-256 or P-384, each paired with its hash size, as in CCF.
func Algorithm(pub crypto.PublicKey) (cose.Algorithm, error) {
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return 0, fmt.Errorf("key is %T, want ECDSA", pub)
	}
	switch k.Curve {
	case elliptic.P256():
		return cose.AlgorithmES256, nil
	case elliptic.P384():
		return cose.AlgorithmES384, nil
	}
	return 0, fmt.Errorf("key curve %s, want P-256 or P-384", k.Curve.Params().Name)
}

// UnknownCritical returns the first label that ph's crit header (RFC 9052
// section 3.1) marks critical but that is not among known, so the caller can
// refuse the message. ok is false when every critical label is known (or
// there is no crit header); err reports a malformed crit header.
func UnknownCritical(ph cose.ProtectedHeader, known ...any) (label any, ok bool, err error) {
	if _, present := ph[cose.HeaderLabelCritical]; !present {
		return nil, false, nil
	}
	crit, err := ph.Critical()
	if err != nil {
		return nil, false, err
	}
	for _, l := range crit {
		found := false
		for _, k := range known {
			if l == k {
				found = true
				break
			}
		}
		if !found {
			return l, true, nil
		}
	}
	return nil, false, nil
}
