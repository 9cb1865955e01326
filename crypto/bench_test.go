package crypto

import (
	"strconv"
	"testing"
)

func BenchmarkSeal(b *testing.B) {
	for _, size := range []int{64, 1024, 16 << 10} {
		b.Run(byteSize(size), func(b *testing.B) {
			k := mustKeyring(b, fixedSecret(1, 1), fixedSecret(2, 1000))
			pt, aad := make([]byte, size), make([]byte, 32)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if _, err := k.Seal(uint64(i+1), pt, aad); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	k := mustKeyring(b, fixedSecret(1, 1))
	pt, aad := make([]byte, 1024), make([]byte, 32)
	sealed, err := k.Seal(1, pt, aad)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(pt)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Open(sealed, aad); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCommitEvidence(b *testing.B) {
	k := mustKeyring(b, fixedSecret(1, 1), fixedSecret(2, 1000))
	b.ReportAllocs()
	for i := uint64(1); b.Loop(); i++ {
		if _, err := k.CommitEvidence(3, i); err != nil {
			b.Fatal(err)
		}
	}
}

func byteSize(n int) string {
	if n >= 1024 {
		return strconv.Itoa(n/1024) + "KiB"
	}
	return strconv.Itoa(n) + "B"
}
