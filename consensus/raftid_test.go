package consensus

import "testing"

func TestRaftID(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want uint64
		ok   bool
	}{
		{"0000000000000001ffff", 1, true},
		{"00000000000000000000", 1, true}, // zero is reserved by raft
		{"d480168dbdbacf84cc446ff8f2eb1018", 0xd480168dbdbacf84, true},
		{"xyz0168dbdbacf84cc44", 0, false},
		{"d480", 0, false},
	} {
		got, err := RaftID(tc.id)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("RaftID(%q) = %x, %v; want %x (ok %v)", tc.id, got, err, tc.want, tc.ok)
		}
	}
}
