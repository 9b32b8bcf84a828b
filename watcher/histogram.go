package watcher

import (
	"maps"
	"math"
	"slices"
)

// NativeSchema is the resolution of the native (sparse) duration histograms:
// each bucket is 2^(2^-3), about 9 %, wider than the one before.
const NativeSchema = 3

// A Histogram accumulates completed period durations in seconds. It is
// copy-on-write: observe replaces Buckets and Native instead of changing them
// in place, so a snapshot may share them with the live state without copying.
type Histogram struct {
	// Count and Sum are the number and total of the observations.
	Count uint64
	Sum   float64
	// Buckets holds, for each upper bound of the watcher's bucket layout, the
	// number of observations less than or equal to it (cumulative, as in the
	// Prometheus exposition format). Observations above the last bound count
	// only in Count.
	Buckets []uint64
	// Native maps native bucket indexes (schema NativeSchema) to observation
	// counts. It is nil unless native histograms are enabled.
	Native map[int]int64
}

// observe records one duration v (seconds) against the upper bounds.
func (h *Histogram) observe(v float64, bounds []float64, native bool) {
	h.Count++
	h.Sum += v
	if i, _ := slices.BinarySearch(bounds, v); i < len(bounds) {
		b := make([]uint64, len(bounds))
		copy(b, h.Buckets)
		for ; i < len(b); i++ {
			b[i]++
		}
		h.Buckets = b
	}
	if native {
		m := maps.Clone(h.Native)
		if m == nil {
			m = make(map[int]int64, 1)
		}
		m[nativeIndex(v)]++
		h.Native = m
	}
}

// NativeZeroThreshold is the width of the native histograms' zero bucket, the
// client library's default: durations this short are counted as zero.
const NativeZeroThreshold = 2.938735877055719e-39

// nativeIndex returns the index of the native bucket, schema NativeSchema,
// whose range (2^((i-1)/8), 2^(i/8)] holds v, or math.MinInt for the zero
// bucket.
func nativeIndex(v float64) int {
	if v <= NativeZeroThreshold {
		return math.MinInt
	}
	return int(math.Ceil(math.Log2(v) * (1 << NativeSchema)))
}
