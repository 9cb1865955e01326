package transport

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// MaxFrameSize bounds one encoded message. Raft batches appends up to 1 MiB
// (consensus sets MaxSizePerMsg), but a single entry may be larger; 64 MiB
// leaves room for large writes while keeping a bad length field from making
// the reader allocate without bound.
const MaxFrameSize = 64 << 20

// Errors of the wire protocol, wrapped with detail.
var (
	// ErrFrameTooLarge: a frame's length exceeds MaxFrameSize.
	ErrFrameTooLarge = errors.New("transport: frame too large")
	// ErrBadFrame: a frame is truncated or does not hold a raft message.
	ErrBadFrame = errors.New("transport: malformed frame")
	// ErrRefused: the peer or one of its messages was refused.
	ErrRefused = errors.New("transport: refused")
)

// growStep is how much the reader allocates ahead of the data actually
// received, so a length field alone never costs MaxFrameSize of memory.
const growStep = 1 << 20

// readFrame reads one frame from r and decodes it. buf is scratch space that
// may be reused across calls (the decoded message never aliases it); the
// possibly grown buffer is returned. io.EOF means the stream ended cleanly
// between frames.
func readFrame(r *bufio.Reader, buf []byte) (*pb.Message, []byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, buf, fmt.Errorf("%w: truncated length: %w", ErrBadFrame, err)
		}
		return nil, buf, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxFrameSize {
		return nil, buf, fmt.Errorf("%w: %d bytes (limit %d)", ErrFrameTooLarge, n, MaxFrameSize)
	}
	buf = buf[:0]
	for remaining := int(n); remaining > 0; {
		step := min(remaining, growStep)
		buf = growLen(buf, step)
		if _, err := io.ReadFull(r, buf[len(buf)-step:]); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, buf, fmt.Errorf("%w: %d-byte body: %w", ErrBadFrame, n, err)
		}
		remaining -= step
	}
	m := &pb.Message{}
	if err := proto.Unmarshal(buf, m); err != nil {
		return nil, buf, fmt.Errorf("%w: %d-byte body: %w", ErrBadFrame, n, err)
	}
	return m, buf, nil
}

// growLen extends b by n bytes, reallocating when needed. The capacity may
// overshoot the frame by at most its own size.
func growLen(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		// Doubling keeps a large frame's reads linear in its size.
		nb := make([]byte, len(b), max(len(b)+n, 2*cap(b)))
		copy(nb, b)
		b = nb
	}
	return b[:len(b)+n]
}

// appendFrame appends m's frame to dst.
func appendFrame(dst []byte, m *pb.Message) ([]byte, error) {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst, err := proto.MarshalOptions{}.MarshalAppend(dst, m)
	if err != nil {
		return dst[:start], fmt.Errorf("transport: marshal %s: %w", m.GetType(), err)
	}
	n := len(dst) - start - 4
	if n > MaxFrameSize {
		return dst[:start], fmt.Errorf("%w: %s to %d is %d bytes (limit %d)", ErrFrameTooLarge, m.GetType(), m.GetTo(), n, MaxFrameSize)
	}
	binary.BigEndian.PutUint32(dst[start:], uint32(n))
	return dst, nil
}
