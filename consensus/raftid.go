package consensus

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// RaftID derives raft's numeric node id from a coco node id (the lowercase
// hex SHA-256 of the node's public key): its first eight bytes, big-endian.
// Zero is reserved by raft and maps to 1; a collision among a service's
// nodes would need a 64-bit hash collision.
func RaftID(nodeID string) (uint64, error) {
	if len(nodeID) < 16 {
		return 0, fmt.Errorf("consensus: node id %q is too short for a raft id", nodeID)
	}
	b, err := hex.DecodeString(nodeID[:16])
	if err != nil {
		return 0, fmt.Errorf("consensus: node id %q: %w", nodeID, err)
	}
	if v := binary.BigEndian.Uint64(b); v != 0 {
		return v, nil
	}
	return 1, nil
}
