package transport

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

var errEOF = io.EOF

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }

// FuzzReadFrame feeds arbitrary streams to the frame reader: it must never
// panic, must stop at the first bad frame with one of its errors, and every
// message it decodes must survive re-encoding.
func FuzzReadFrame(f *testing.F) {
	one, _ := appendFrame(nil, app(1, 2, 3, []byte("hello")))
	two, _ := appendFrame(append([]byte(nil), one...), &pb.Message{Type: pb.MsgHeartbeat.Enum(), From: new(uint64(1)), To: new(uint64(2)), Commit: new(uint64(9))})
	f.Add(one)
	f.Add(two)
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add(one[:len(one)-2])
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufioReader(data)
		var buf []byte
		for range 1000 {
			m, b, err := readFrame(r, buf)
			buf = b
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, ErrBadFrame) && !errors.Is(err, ErrFrameTooLarge) {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			enc, err := appendFrame(nil, m)
			if err != nil {
				t.Fatalf("re-encode: %v", err)
			}
			back, _, err := readFrame(bufioReader(enc), nil)
			if err != nil {
				t.Fatalf("decode re-encoded: %v", err)
			}
			if !proto.Equal(m, back) {
				t.Fatalf("re-encoding changed the message: %v vs %v", m, back)
			}
		}
	})
}
