package consensus

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"sync"
	"time"

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
	// ConfIndex is the index of the last configuration entry reflected in
	// Voters and Learners (0: the configuration predates the log).
	ConfIndex uint64 `json:"conf_index,omitempty"`
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

// stateStore guards the persisted raft state: the appender saves HardState
// changes, the loop saves configuration changes and, lazily, the commit index.
type stateStore struct {
	mu          sync.Mutex
	path        string
	st          persistentState
	savedCommit uint64
	lastSave    time.Time
}

func (s *stateStore) get() persistentState {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	st.Voters, st.Learners = slices.Clone(st.Voters), slices.Clone(st.Learners)
	return st
}

// setHard records a HardState; a new term or vote is saved before it
// returns (raft's safety depends on it), a new commit index only lazily.
func (s *stateStore) setHard(term, vote, commit uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	mustSave := term != s.st.Term || vote != s.st.Vote
	s.st.Term, s.st.Vote, s.st.Commit = term, vote, max(commit, s.st.Commit)
	if !mustSave {
		return nil
	}
	return s.saveLocked()
}

func (s *stateStore) setConf(voters, learners []uint64, index uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.Voters, s.st.Learners, s.st.ConfIndex = slices.Clone(voters), slices.Clone(learners), index
	return s.saveLocked()
}

// saveCommit saves the commit index at most once a second (or now, when
// forced), so that a restart replays less of the ledger.
func (s *stateStore) saveCommit(force bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.savedCommit == s.st.Commit || (!force && time.Since(s.lastSave) < time.Second) {
		return nil
	}
	return s.saveLocked()
}

func (s *stateStore) saveLocked() error {
	if err := writeState(s.path, &s.st); err != nil {
		return err
	}
	s.savedCommit = s.st.Commit
	s.lastSave = time.Now()
	return nil
}
