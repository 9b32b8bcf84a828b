package collector

import (
	"math"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/linkwatch/linkwatch_exporter/watcher"
)

// A histogram is a const metric that carries a watcher.Histogram as a classic
// histogram and, if enabled, also as a native one, in a single sample as
// Prometheus expects when both are exposed.
type histogram struct {
	desc    *prometheus.Desc
	labels  []*dto.LabelPair
	h       watcher.Histogram // a copy: the snapshot's buffer is reused
	bounds  []float64
	native  bool
	created time.Time
}

func (c *Collector) histogram(d *prometheus.Desc, h *watcher.Histogram, created time.Time, lv ...string) prometheus.Metric {
	return &histogram{
		desc: d, labels: prometheus.MakeLabelPairs(d, lv), h: *h,
		bounds: c.opts.Buckets, native: c.opts.NativeHistograms, created: created,
	}
}

func (m *histogram) Desc() *prometheus.Desc { return m.desc }

func (m *histogram) Write(out *dto.Metric) error {
	count, sum := m.h.Count, m.h.Sum
	hist := &dto.Histogram{SampleCount: &count, SampleSum: &sum}
	hist.Bucket = make([]*dto.Bucket, len(m.bounds))
	for i := range m.bounds {
		var n uint64
		if i < len(m.h.Buckets) {
			n = m.h.Buckets[i]
		}
		hist.Bucket[i] = &dto.Bucket{CumulativeCount: &n, UpperBound: &m.bounds[i]}
	}
	if m.native {
		m.writeNative(hist)
	}
	out.Histogram = hist
	out.Label = m.labels
	return nil
}

// writeNative adds the sparse bucket representation: spans of consecutive
// bucket indexes and the deltas between neighbouring bucket counts.
func (m *histogram) writeNative(hist *dto.Histogram) {
	schema, zt := int32(watcher.NativeSchema), watcher.NativeZeroThreshold
	hist.Schema, hist.ZeroThreshold = &schema, &zt
	hist.CreatedTimestamp = timestamppb.New(m.created)
	var zero uint64
	keys := make([]int, 0, len(m.h.Native))
	for k, v := range m.h.Native {
		if k == math.MinInt {
			zero = uint64(v)
			continue
		}
		keys = append(keys, k)
	}
	hist.ZeroCount = &zero
	if len(keys) == 0 {
		// An empty span marks the histogram as native even without
		// observations.
		off, n := int32(0), uint32(0)
		hist.PositiveSpan = []*dto.BucketSpan{{Offset: &off, Length: &n}}
		return
	}
	slices.Sort(keys)
	var prevKey int
	var prevCount int64
	for i, k := range keys {
		if i == 0 || k != prevKey+1 {
			gap := int32(k)
			if i > 0 {
				gap = int32(k - prevKey - 1)
			}
			n := uint32(0)
			hist.PositiveSpan = append(hist.PositiveSpan, &dto.BucketSpan{Offset: &gap, Length: &n})
		}
		*hist.PositiveSpan[len(hist.PositiveSpan)-1].Length++
		v := m.h.Native[k]
		hist.PositiveDelta = append(hist.PositiveDelta, v-prevCount)
		prevKey, prevCount = k, v
	}
}
