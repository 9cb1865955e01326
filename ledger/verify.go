package ledger

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/cocoledger/coco/merkle"
	"github.com/cocoledger/coco/receipt"
)

// VerifyOptions configures Verify.
type VerifyOptions struct {
	// ServiceCert, if set, is the service identity: every node certificate
	// must be issued by it and every COSE signature made by its key.
	ServiceCert *x509.Certificate
}

// VerifyReport summarises a ledger that verified.
type VerifyReport struct {
	Entries         uint64 // entries read
	Signatures      uint64 // signature entries checked
	LastSignedSeqno uint64 // last entry covered by a signature (its tree size), 0 if none
	Files           int    // chunk files read
}

// Verify checks the ledger in dir without modifying it: framing, CRCs,
// index contiguity and file names, non-decreasing terms, and every signature
// transaction against the Merkle tree recomputed from every entry before it.
// It returns a *VerifyError for the first bad entry; a torn tail is reported
// too (it is for auditors, who must see what is on disk).
//
// Entries after the last signature are checked for integrity but nothing
// vouches for them: LastSignedSeqno says how far the signed prefix reaches.
func Verify(ctx context.Context, dir string, opts VerifyOptions) (*VerifyReport, error) {
	v := &verifier{opts: opts, tree: merkle.New(), certs: map[string]*x509.Certificate{}}
	rep := &VerifyReport{}
	n := 0
	chunks, torn, err := scanDir(ctx, dir, func(file string, off int64, bi bodyInfo, body []byte) error {
		if n++; n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		e := entryFromBody(body, bi, false) // body is not kept past this call
		if e.Kind == KindSignature {
			if reason := v.checkSignature(e); reason != "" {
				return &VerifyError{File: file, Offset: off, Index: e.Index, Reason: reason}
			}
			rep.Signatures++
			rep.LastSignedSeqno = e.Index - 1
		}
		v.tree.Append(e.Leaf())
		rep.Entries++
		return nil
	})
	if err != nil {
		return nil, asVerifyError(err)
	}
	if torn != nil {
		return nil, asVerifyError(torn)
	}
	rep.Files = len(chunks)
	return rep, nil
}

func asVerifyError(err error) error {
	var ce *CorruptError
	if errors.As(err, &ce) {
		return &VerifyError{File: ce.File, Offset: ce.Offset, Index: ce.Index, Reason: ce.Reason}
	}
	return err
}

type verifier struct {
	opts  VerifyOptions
	tree  *merkle.Tree
	certs map[string]*x509.Certificate // by PEM: nodes sign many times with one cert
	// lastSigned is the tree size of the previous good signature, to name
	// the range a root mismatch implicates.
	lastSigned uint64
}

// checkSignature returns why signature entry e is bad, or "".
func (v *verifier) checkSignature(e *Entry) string {
	s, err := e.Signature()
	if err != nil {
		return err.Error()
	}
	if s.View != e.Term || s.Seqno != e.Index {
		return fmt.Sprintf("signature names txid %d.%d but is entry %s", s.View, s.Seqno, e.TxID())
	}
	if s.TreeSize != e.Index-1 || s.TreeSize > v.tree.Size() {
		return fmt.Sprintf("signature covers %d leaves, expected %d", s.TreeSize, e.Index-1)
	}
	want, err := v.tree.RootAt(s.TreeSize)
	if err != nil {
		return fmt.Sprintf("signature over tree size %d: %v", s.TreeSize, err)
	}
	got, err := hex.DecodeString(s.Root)
	if err != nil || len(got) != len(want) {
		return fmt.Sprintf("signature root %q is not a hex SHA-256", s.Root)
	}
	if merkle.Hash(got) != want {
		return fmt.Sprintf("signed root %s does not match the recomputed root %x: an entry in [%d, %d] was altered",
			s.Root, want[:], v.lastSigned+1, s.TreeSize)
	}
	cert, reason := v.cert(s.Cert)
	if reason != "" {
		return reason
	}
	spki := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	if s.NodeID != hex.EncodeToString(spki[:]) {
		return fmt.Sprintf("node_id %q is not the certificate's key id %x", s.NodeID, spki[:])
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return fmt.Sprintf("node certificate key is %T, want ECDSA", cert.PublicKey)
	}
	if !ecdsa.VerifyASN1(pub, want[:], s.Sig) {
		return "node signature over the root does not verify"
	}
	if sc := v.opts.ServiceCert; sc != nil {
		// Signature only, not validity dates: an audit years later must
		// still accept certificates that were valid when they signed.
		if err := cert.CheckSignatureFrom(sc); err != nil {
			return fmt.Sprintf("node certificate not issued by the service certificate: %v", err)
		}
		if err := receipt.VerifySignedRoot(s.COSE, want, sc); err != nil {
			return fmt.Sprintf("COSE signature over the root: %v", err)
		}
	}
	v.lastSigned = s.TreeSize
	return ""
}

func (v *verifier) cert(p string) (*x509.Certificate, string) {
	if c, ok := v.certs[p]; ok {
		return c, ""
	}
	block, rest := pem.Decode([]byte(p))
	if block == nil || block.Type != "CERTIFICATE" || len(rest) != 0 {
		return nil, "node certificate is not one PEM CERTIFICATE"
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Sprintf("node certificate: %v", err)
	}
	v.certs[p] = c
	return c, ""
}

// ReadDir calls fn for every entry of the ledger in dir, in order, with the
// file and offset of its record. It is read-only and as strict as Open:
// damage stops it with a *CorruptError, and a torn tail (which Open would
// cut) is reported as a *CorruptError after every entry before it was
// delivered. An error from fn stops it and is returned as is.
func ReadDir(ctx context.Context, dir string, fn func(e *Entry, file string, offset int64) error) error {
	n := 0
	_, torn, err := scanDir(ctx, dir, func(file string, off int64, bi bodyInfo, body []byte) error {
		if n++; n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		// Cloned: fn may keep the entry, and body is reused.
		return fn(entryFromBody(body, bi, true), file, off)
	})
	if err != nil {
		return err
	}
	if torn != nil {
		return torn
	}
	return nil
}
