package consensus

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"sort"

	"github.com/cocoledger/coco/ledger"
	"github.com/cocoledger/coco/merkle"
	"github.com/cocoledger/coco/receipt"
)

// TxStatus is the status of a transaction id, as CCF reports it.
type TxStatus string

// The statuses of GET /node/tx.
const (
	TxUnknown   TxStatus = "Unknown"
	TxPending   TxStatus = "Pending"
	TxCommitted TxStatus = "Committed"
	TxInvalid   TxStatus = "Invalid"
)

// TxStatus reports what this node knows of id. It is safe to call from any
// goroutine.
func (n *Node) TxStatus(id TxID) (TxStatus, error) {
	s := n.Status()
	if id.Seqno <= s.CommitIndex {
		t, err := n.st.Term(id.Seqno)
		if err != nil {
			return TxUnknown, err
		}
		if t == id.View {
			return TxCommitted, nil
		}
		return TxInvalid, nil
	}
	// Past the commit point: a view older than the committed one can no
	// longer gain entries there.
	if id.View < s.CommitView {
		return TxInvalid, nil
	}
	if id.Seqno <= s.LastIndex {
		t, err := n.st.Term(id.Seqno)
		if err == nil && t == id.View {
			return TxPending, nil
		}
		// Any other term there says nothing final: raft may still replace an
		// uncommitted entry with one of a lower term (Raft paper, figure 8),
		// so this is Unknown, as in CCF, never Invalid.
	}
	return TxUnknown, nil
}

// Receipt is everything needed to build either form of receipt for one
// committed transaction.
type Receipt struct {
	TxID      TxID
	Leaf      receipt.LeafComponents
	Signature *ledger.Signature
	Proof     []merkle.ProofStep
}

// Receipt builds the receipt of the committed transaction at seqno. It
// returns ErrNotCommitted, ErrNotSigned (try again shortly) or ErrNoReceipt.
func (n *Node) Receipt(id TxID) (*Receipt, error) {
	st, err := n.TxStatus(id)
	if err != nil {
		return nil, err
	}
	if st != TxCommitted {
		return nil, fmt.Errorf("%w: %s is %s", ErrNotCommitted, id, st)
	}
	le, err := n.cfg.Ledger.Entry(id.Seqno)
	if err != nil {
		return nil, err
	}
	if le.Kind == ledger.KindInternal {
		return nil, ErrNoReceipt
	}
	commit := n.Status().CommitIndex
	n.sigMu.RLock()
	k := sort.Search(len(n.sigs), func(i int) bool { return n.sigs[i] > id.Seqno })
	var sigSeq uint64
	if k < len(n.sigs) && n.sigs[k] <= commit {
		sigSeq = n.sigs[k]
	}
	n.sigMu.RUnlock()
	if sigSeq == 0 {
		return nil, ErrNotSigned
	}
	sle, err := n.cfg.Ledger.Entry(sigSeq)
	if err != nil {
		return nil, err
	}
	sig, err := sle.Signature()
	if err != nil {
		return nil, err
	}
	if sig.TreeSize < id.Seqno {
		return nil, fmt.Errorf("consensus: signature %d covers %d entries, not %d", sigSeq, sig.TreeSize, id.Seqno)
	}
	n.treeMu.RLock()
	proof, err := n.tree.Proof(id.Seqno-1, sig.TreeSize)
	n.treeMu.RUnlock()
	if err != nil {
		return nil, fmt.Errorf("consensus: proof for %s: %w", id, err)
	}
	ce, err := n.cfg.Keyring.CommitEvidence(id.View, id.Seqno)
	if err != nil {
		return nil, err
	}
	if sha256.Sum256([]byte(ce)) != le.CommitEvidenceDigest {
		return nil, errors.New("consensus: commit evidence does not match the ledger entry")
	}
	return &Receipt{
		TxID:      id,
		Leaf:      receipt.LeafComponents{WriteSetDigest: le.WriteSetDigest(), CommitEvidence: ce, ClaimsDigest: le.ClaimsDigest},
		Signature: sig,
		Proof:     proof,
	}, nil
}
