package bench

import (
	"math/bits"
	"time"
)

// histogram is a log-linear latency histogram in the manner of HdrHistogram:
// 2^histSubBits buckets per power of two, so any recorded value is known to
// within 1/128 (< 0.8%) whatever the run length, in constant memory (a few
// tens of KiB), with no allocation per sample. Each client owns one, so the
// hot path takes no lock; they are merged once at the end.
type histogram struct {
	counts [histBuckets]uint64
	n      uint64
	max    time.Duration
}

const (
	histSubBits = 7
	histSub     = 1 << histSubBits
	// histMaxValue bounds recorded values (about 18 minutes); longer
	// latencies are clamped, which no benchmark would notice.
	histMaxBits  = 40
	histMaxValue = 1<<histMaxBits - 1
	histBuckets  = 2*histSub + (histMaxBits-histSubBits-1)*histSub
)

func histIndex(v uint64) int {
	if v < 2*histSub {
		return int(v)
	}
	shift := bits.Len64(v) - histSubBits - 1
	top := v >> shift // in [histSub, 2*histSub)
	return 2*histSub + (shift-1)*histSub + int(top-histSub)
}

// histValue is the midpoint of bucket i, the best estimate of its samples.
func histValue(i int) uint64 {
	if i < 2*histSub {
		return uint64(i)
	}
	shift := (i-2*histSub)/histSub + 1
	top := uint64(histSub + (i-2*histSub)%histSub)
	lo := top << shift
	return lo + (uint64(1)<<shift-1)/2
}

func (h *histogram) record(d time.Duration) {
	v := uint64(max(d, 0))
	if v > histMaxValue {
		v = histMaxValue
	}
	h.counts[histIndex(v)]++
	h.n++
	h.max = max(h.max, d)
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile returns the latency below which a fraction q of samples fall. It
// never exceeds the exact maximum, so P50 <= P99 <= Max always holds.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q * float64(h.n))
	if float64(rank) < q*float64(h.n) {
		rank++
	}
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(time.Duration(histValue(i)), h.max)
		}
	}
	return h.max
}
