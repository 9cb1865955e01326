package consensus

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"

	cococrypto "github.com/cocoledger/coco/crypto"
	pb "go.etcd.io/raft/v3/raftpb"
)

// persistentState is what raft needs besides the log: HardState and the
// configuration. It lives in one small JSON file replaced atomically.
type persistentState struct {
	Term     uint64   `json:"term"`
	Vote     uint64   `json:"vote"`
	Commit   uint64   `json:"commit"`
	Voters   []uint64 `json:"voters"`
	Learners []uint64 `json:"learners,omitempty"`
}

func readState(path string) (*persistentState, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("consensus: read raft state: %w", err)
	}
	var st persistentState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("consensus: raft state %s is corrupt: %w", path, err)
	}
	return &st, nil
}

func writeState(path string, st *persistentState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("consensus: encode raft state: %w", err)
	}
	if err := cococrypto.WriteFileAtomic(path, b, 0o600); err != nil {
		return fmt.Errorf("consensus: write raft state: %w", err)
	}
	return nil
}

func (st *persistentState) hardState() *pb.HardState {
	return &pb.HardState{Term: new(st.Term), Vote: new(st.Vote), Commit: new(st.Commit)}
}

func (st *persistentState) confState() *pb.ConfState {
	cs := &pb.ConfState{Voters: append([]uint64(nil), st.Voters...), Learners: append([]uint64(nil), st.Learners...)}
	return pb.EnsureConfState(cs)
}
