package ledger

import (
	"bufio"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

const (
	filePrefix      = "ledger_"
	committedSuffix = ".committed"
)

// chunkName is what a chunk file's name says about it.
type chunkName struct {
	name       string
	start, end uint64 // end is meaningful only when closed
	closed     bool
	committed  bool
}

func openChunkName(start uint64) string { return filePrefix + strconv.FormatUint(start, 10) }

func closedChunkName(start, end uint64, committed bool) string {
	n := filePrefix + strconv.FormatUint(start, 10) + "-" + strconv.FormatUint(end, 10)
	if committed {
		n += committedSuffix
	}
	return n
}

// parseChunkName parses a ledger file name. ok is false for files that are
// not ledger chunks at all; a name that starts like a chunk but is not one
// exactly (including non-canonical numbers) is an error, because silently
// skipping it could hide entries.
func parseChunkName(name string) (c chunkName, ok bool, err error) {
	rest, found := strings.CutPrefix(name, filePrefix)
	if !found {
		return c, false, nil
	}
	c.name = name
	rest, c.committed = strings.CutSuffix(rest, committedSuffix)
	startStr, endStr, closed := strings.Cut(rest, "-")
	c.closed = closed
	bad := func() (chunkName, bool, error) {
		return c, true, &CorruptError{File: name, Reason: "not a valid ledger chunk name"}
	}
	if c.committed && !closed {
		return bad()
	}
	if c.start, ok = parseCanonical(startStr); !ok || c.start == 0 {
		return bad()
	}
	if closed {
		if c.end, ok = parseCanonical(endStr); !ok || c.end < c.start {
			return bad()
		}
	}
	return c, true, nil
}

// parseCanonical accepts only the form strconv.FormatUint produces, so that
// two names can never denote the same chunk.
func parseCanonical(s string) (uint64, bool) {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || strconv.FormatUint(v, 10) != s {
		return 0, false
	}
	return v, true
}

// listChunks returns dir's chunk files ordered by start index.
func listChunks(dir string) ([]chunkName, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("ledger: read dir: %w", err)
	}
	var out []chunkName
	for _, de := range des {
		c, ok, err := parseChunkName(de.Name())
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if !de.Type().IsRegular() {
			return nil, &CorruptError{File: c.name, Reason: "not a regular file"}
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b chunkName) int { return cmp.Compare(a.start, b.start) })
	return out, nil
}

// scannedChunk is a chunk file as found on disk.
type scannedChunk struct {
	chunkName
	size        int64  // bytes of valid records (a torn tail excluded)
	first, last uint64 // entries held; last = first-1 when empty
}

// recordFunc receives each valid record. body is reused after it returns.
type recordFunc func(file string, off int64, bi bodyInfo, body []byte) error

// scanDir reads every chunk in dir in order and checks framing, CRCs, strict
// decoding, index contiguity from 1, non-decreasing terms, and that file
// names agree with contents. It never writes.
//
// Nothing but zeros after the last record of the last, open chunk is its
// preallocated space (Ledger.preallocate), a clean end. A bad final record
// of that chunk with no valid record after it, or with a page of zeros
// before the next valid one (unwrittenPage), is a torn tail: scanDir stops
// there and returns it as torn (err nil), so the caller chooses to cut it
// (Open) or report it (Verify, ReadDir). Any other problem is a
// *CorruptError.
func scanDir(ctx context.Context, dir string, fn recordFunc) (chunks []scannedChunk, torn *CorruptError, err error) {
	names, err := listChunks(dir)
	if err != nil {
		return nil, nil, err
	}
	next, term := uint64(1), uint64(0)
	buf := make([]byte, 0, 64<<10)
	for i, c := range names {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		last := i == len(names)-1
		if c.start != next {
			reason := fmt.Sprintf("chunk starts at entry %d, expected %d (a chunk is missing)", c.start, next)
			if c.start < next {
				reason = fmt.Sprintf("chunk starts at entry %d, overlapping entries before it (expected %d)", c.start, next)
			}
			return nil, nil, &CorruptError{File: c.name, Index: next, Reason: reason}
		}
		if !c.closed && !last {
			return nil, nil, &CorruptError{File: c.name, Index: next, Reason: "open chunk is not the last chunk"}
		}
		sc := scannedChunk{chunkName: c, first: next}
		var t *CorruptError
		sc.size, t, err = scanChunk(filepath.Join(dir, c.name), c, last && !c.closed, &next, &term, &buf, fn)
		if err != nil {
			return nil, nil, err
		}
		sc.last = next - 1
		if c.closed && sc.last != c.end {
			return nil, nil, &CorruptError{File: c.name, Offset: sc.size, Index: next,
				Reason: fmt.Sprintf("chunk named to end at entry %d holds entries only up to %d (truncated)", c.end, sc.last)}
		}
		chunks = append(chunks, sc)
		torn = t
	}
	return chunks, torn, nil
}

// scanChunk reads one chunk; see scanDir. It returns the offset after the
// last valid record.
func scanChunk(path string, c chunkName, mayTear bool, next, term *uint64, buf *[]byte, fn recordFunc) (int64, *CorruptError, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, nil, fmt.Errorf("ledger: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, nil, fmt.Errorf("ledger: %w", err)
	}
	size := st.Size()
	r := bufio.NewReaderSize(io.NewSectionReader(f, 0, size), 1<<20)
	var off int64
	var hdr [recordHeaderSize]byte
	for off < size {
		corrupt := func(reason string) *CorruptError {
			return &CorruptError{File: c.name, Offset: off, Index: *next, Reason: reason}
		}
		bad := func(reason string) (int64, *CorruptError, error) {
			ce := corrupt(reason)
			if !mayTear {
				return 0, nil, ce
			}
			after, err := validRecordAfter(f, off+1, size)
			if err != nil {
				return 0, nil, err
			}
			if after >= 0 {
				unwritten, err := unwrittenPage(f, off, after)
				if err != nil {
					return 0, nil, err
				}
				if !unwritten {
					ce.Reason += fmt.Sprintf(" (a valid record follows at offset %d)", after)
					return 0, nil, ce
				}
				ce.Reason += fmt.Sprintf(" (a page the disk never wrote: the records from offset %d on were not synced either)", after)
			}
			ce.Reason = "torn tail: " + ce.Reason
			return off, ce, nil
		}
		if size-off < recordHeaderSize {
			if mayTear {
				if zero, err := zerosTo(r, size-off); err != nil || zero {
					return off, nil, err
				}
			}
			return bad(fmt.Sprintf("incomplete record header (%d bytes left)", size-off))
		}
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return 0, nil, fmt.Errorf("ledger: read %s: %w", c.name, err)
		}
		if mayTear && hdr == [recordHeaderSize]byte{} {
			// The open chunk ends here if only zeros follow: the space a
			// writer zero-fills ahead of its records (Ledger.preallocate).
			zero, err := zerosTo(r, size-off-recordHeaderSize)
			if err != nil || zero {
				return off, nil, err
			}
		}
		n := int64(binary.BigEndian.Uint32(hdr[:]))
		if n < minBodySize || n > maxBodySize {
			return bad(fmt.Sprintf("impossible record length %d", n))
		}
		if left := size - off - recordHeaderSize; n > left {
			return bad(fmt.Sprintf("incomplete record: length %d, %d bytes left", n, left))
		}
		if int64(cap(*buf)) < n {
			*buf = make([]byte, n)
		}
		body := (*buf)[:n]
		if _, err := io.ReadFull(r, body); err != nil {
			return 0, nil, fmt.Errorf("ledger: read %s: %w", c.name, err)
		}
		if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(hdr[4:]) {
			return bad("CRC mismatch")
		}
		bi, err := parseBody(body)
		if err != nil {
			return 0, nil, corrupt(err.Error())
		}
		if bi.index != *next {
			return 0, nil, corrupt(fmt.Sprintf("found entry %d where entry %d belongs (reordered or misplaced)", bi.index, *next))
		}
		if c.closed && bi.index > c.end {
			return 0, nil, corrupt(fmt.Sprintf("entry %d is past the end (%d) the chunk's name gives", bi.index, c.end))
		}
		if bi.term < *term {
			return 0, nil, corrupt(fmt.Sprintf("term %d after term %d", bi.term, *term))
		}
		if fn != nil {
			if err := fn(c.name, off, bi, body); err != nil {
				return 0, nil, err
			}
		}
		*term = bi.term
		*next++
		off += recordHeaderSize + n
	}
	return off, nil, nil
}

// zerosTo reads n bytes from r and reports whether all are zero. It stops
// at the first non-zero byte, leaving r part-read: the caller then only
// reports the record at the offset it was at.
func zerosTo(r io.Reader, n int64) (bool, error) {
	var buf [32 << 10]byte
	for n > 0 {
		k, err := io.ReadFull(r, buf[:min(n, int64(len(buf)))])
		if err != nil {
			return false, fmt.Errorf("ledger: read: %w", err)
		}
		if !allZero(buf[:k]) {
			return false, nil
		}
		n -= int64(k)
	}
	return true, nil
}

// allZero reports whether every byte of b is zero.
func allZero(b []byte) bool {
	return !slices.ContainsFunc(b, func(c byte) bool { return c != 0 })
}

// pageSize is the unit in which a disk may persist the writes of an
// interrupted sync out of order.
const pageSize = 4096

// unwrittenPage reports whether the open chunk's bytes [from, to), a bad
// record up to the next valid one, hold a page the disk never wrote: the
// rest of from's page, or a whole page, all zeros. Appends overwrite the
// zeros preallocated ahead of them (Ledger.preallocate), and a crash in the
// middle of a sync can persist a later page of it without an earlier one;
// the earlier page then reads as zeros, and what follows it was part of the
// same unfinished sync, never acknowledged. (Acknowledged data reading as
// zeros would be a disk that lost fsynced writes, which no ledger rule can
// tell from this; so would a damaged record whose own bytes hold a page of
// zeros, which only a public write set can.) Anything else bad in the
// middle stays corruption.
func unwrittenPage(f *os.File, from, to int64) (bool, error) {
	b := make([]byte, to-from)
	if _, err := f.ReadAt(b, from); err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("ledger: read: %w", err)
	}
	next := (from/pageSize + 1) * pageSize // the page after from's
	if allZero(b[:min(next, to)-from]) {
		return true, nil
	}
	for p := next; p+pageSize <= to; p += pageSize {
		if allZero(b[p-from : p-from+pageSize]) {
			return true, nil
		}
	}
	return false, nil
}

// validRecordAfter returns the first offset >= from at which a valid record
// (length, CRC and body all good) starts, or -1. It separates a torn tail
// (never-synced garbage after the last good record) from damage in the
// middle of data that was acknowledged.
func validRecordAfter(f *os.File, from, size int64) (int64, error) {
	if size-from < recordHeaderSize+minBodySize {
		return -1, nil
	}
	tail := make([]byte, size-from)
	if _, err := f.ReadAt(tail, from); err != nil && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("ledger: read tail: %w", err)
	}
	for y := 0; y+recordHeaderSize+minBodySize <= len(tail); y++ {
		n := int(binary.BigEndian.Uint32(tail[y:]))
		if n < minBodySize || n > maxBodySize || n > len(tail)-y-recordHeaderSize {
			continue
		}
		body := tail[y+recordHeaderSize : y+recordHeaderSize+n]
		// Cheap filters first; the CRC is the real test.
		if body[0] != formatV1 || body[offKind] < byte(KindTx) || body[offKind] > byte(KindInternal) {
			continue
		}
		if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(tail[y+4:]) {
			continue
		}
		if _, err := parseBody(body); err == nil {
			return from + int64(y), nil
		}
	}
	return -1, nil
}
