package watcher

import (
	"maps"
	"math"
	"slices"
)

// NativeSchema is the resolution of the native (sparse) duration histograms:
// each bucket is 2^(2^-3), about 9 %, wider than the one before.
const NativeSchema = 3

// A Histogram accumulates completed period durations in seconds. The
// watcher updates Buckets in place, so that recording a duration allocates
// nothing; the copies Snapshot and Lookup return have buckets of their own.
// Native is copy-on-write instead (observe replaces it), so copies share it.
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
		if h.Buckets == nil {
			h.Buckets = make([]uint64, len(bounds))
		}
		for ; i < len(h.Buckets); i++ {
			h.Buckets[i]++
		}
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

// clone returns a copy of h whose Buckets are its own.
func (h Histogram) clone() Histogram {
	h.Buckets = slices.Clone(h.Buckets)
	return h
}

// cloneInto is clone with the buckets appended to arena, which it returns.
func (h *Histogram) cloneInto(arena []uint64) []uint64 {
	if h.Buckets == nil {
		return arena
	}
	start := len(arena)
	arena = append(arena, h.Buckets...)
	h.Buckets = arena[start:len(arena):len(arena)]
	return arena
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
