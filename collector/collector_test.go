package collector

import (
	"bytes"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/linkwatch/linkwatch_exporter/watcher"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// fakeSource returns fixed links and stats.
type fakeSource struct {
	links []watcher.Link
	stats watcher.Stats
}

func (f fakeSource) Snapshot(dst []watcher.Link) ([]watcher.Link, watcher.Stats) {
	return append(dst, f.links...), f.stats
}

var testBuckets = []float64{0.1, 1, 10}

func fixture() fakeSource {
	first := time.Unix(1_700_000_000, 0)
	return fakeSource{
		links: []watcher.Link{
			{
				Index: 2, Name: "eth0", Kind: "", Address: "52:54:00:12:34:56", MTU: 1500,
				AdminUp: true, Carrier: true, OperState: watcher.OperUp, Up: true,
				HasCounters: true, CarrierChanges: 9, CarrierUpCount: 5, CarrierDownCount: 4,
				TransitionsUp: 2, TransitionsDown: 2,
				FirstSeen: first, LastChange: first.Add(90 * time.Second),
				DownDurations: watcher.Histogram{Count: 2, Sum: 3.5, Buckets: []uint64{0, 1, 2}},
				UpDurations:   watcher.Histogram{Count: 1, Sum: 30, Buckets: []uint64{0, 0, 0}},
				UntimedDown:   1,
			},
			{
				Index: 7, Name: "veth0", Kind: "veth", Address: "aa:bb:cc:dd:ee:ff", Master: "br0",
				Alias: `uplink "a"`, MTU: 9000,
				AdminUp: true, Carrier: false, OperState: watcher.OperLowerLayerDown,
				HasCounters: true, CarrierChanges: 1, CarrierDownCount: 1,
				FirstSeen: first, LastChange: first,
			},
			{
				Index: 1, Name: "lo", MTU: 65536,
				AdminUp: true, Carrier: true, OperState: watcher.OperUnknown, Up: true,
				FirstSeen: first, LastChange: first,
			},
		},
		stats: watcher.Stats{
			Up: true, NewLink: 40, DelLink: 3, Other: 1,
			Overruns: 2, Resyncs: 2, DecodeErrors: 1, ReceiveErrors: 0, NetNSLost: 1, Links: 4,
		},
	}
}

func TestCollectorGolden(t *testing.T) {
	c := New(fixture(), Options{Buckets: testBuckets})
	got := exposition(t, c)
	golden := filepath.Join("testdata", "links.prom")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("unexpected exposition (-want +got):\n%s", diff)
	}
	// The golden file must also be what a pedantic registry accepts.
	if err := testutil.CollectAndCompare(c, strings.NewReader(string(want))); err != nil {
		t.Error(err)
	}
}

// exposition gathers c through a pedantic registry, which also checks the
// metrics against Describe, and returns them in the text format.
func exposition(t *testing.T, c prometheus.Collector) []byte {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func TestCollectorLint(t *testing.T) {
	problems, err := testutil.CollectAndLint(New(fixture(), Options{Buckets: testBuckets}))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

func TestCollectorSeriesPerLink(t *testing.T) {
	// Without carrier counters (old kernels) the three kernel counters are
	// left out rather than exported as zero.
	src := fixture()
	c := New(src, Options{Buckets: testBuckets})
	if got, want := testutil.CollectAndCount(c, "linkwatch_link_carrier_changes_total"), 2; got != want {
		t.Errorf("carrier_changes_total series: got %d, want %d (lo has no counters)", got, want)
	}
	const want = `
# HELP linkwatch_links Number of links currently exported.
# TYPE linkwatch_links gauge
linkwatch_links 3
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "linkwatch_links"); err != nil {
		t.Error(err)
	}
}

func TestNativeHistogram(t *testing.T) {
	h := watcher.Histogram{Count: 4, Sum: 0.5 + 1 + 1 + 3, Buckets: []uint64{0, 3, 4}, Native: map[int]int64{
		-8: 1, // (2^-1.125, 0.5]
		0:  2, // (2^-0.125, 1]
		13: 1, // 3 is in (2^1.5, 2^1.625]
	}}
	c := New(fakeSource{}, Options{Buckets: testBuckets, NativeHistograms: true})
	created := time.Unix(1_700_000_000, 0)
	m := c.histogram(c.downDuration, &h, created, "eth0")
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		t.Fatal(err)
	}
	got := out.GetHistogram()
	if got.GetSchema() != 3 || got.GetZeroCount() != 0 || got.GetSampleCount() != 4 {
		t.Errorf("schema %d, zero count %d, count %d", got.GetSchema(), got.GetZeroCount(), got.GetSampleCount())
	}
	type span struct{ Offset, Length int }
	var spans []span
	for _, s := range got.GetPositiveSpan() {
		spans = append(spans, span{int(s.GetOffset()), int(s.GetLength())})
	}
	if diff := cmp.Diff([]span{{-8, 1}, {7, 1}, {12, 1}}, spans); diff != "" {
		t.Errorf("unexpected spans (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int64{1, 1, -1}, got.GetPositiveDelta()); diff != "" {
		t.Errorf("unexpected deltas (-want +got):\n%s", diff)
	}
	if n := len(got.GetBucket()); n != len(testBuckets) {
		t.Errorf("classic buckets: got %d, want %d", n, len(testBuckets))
	}
	if !got.GetCreatedTimestamp().AsTime().Equal(created) {
		t.Errorf("created timestamp %v, want %v", got.GetCreatedTimestamp().AsTime(), created)
	}

	// An empty native histogram still carries a span, so that it is
	// recognised as native.
	var empty dto.Metric
	if err := c.histogram(c.downDuration, &watcher.Histogram{}, created, "eth0").Write(&empty); err != nil {
		t.Fatal(err)
	}
	if n := len(empty.GetHistogram().GetPositiveSpan()); n != 1 {
		t.Errorf("empty native histogram spans: got %d, want 1", n)
	}
}

func TestParseBuckets(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []float64
		wantErr string
	}{
		{name: "default round trip", in: FormatBuckets(DefaultBuckets), want: DefaultBuckets},
		{name: "spaces and trailing comma", in: " 0.5, 1,2 ,", want: []float64{0.5, 1, 2}},
		{name: "not a number", in: "1,x", wantErr: `bucket "x"`},
		{name: "descending", in: "1,0.5", wantErr: "strictly ascending"},
		{name: "duplicate", in: "1,1", wantErr: "strictly ascending"},
		{name: "zero", in: "0,1", wantErr: "positive finite"},
		{name: "infinite", in: "1,+Inf", wantErr: "positive finite"},
		{name: "empty", in: "", wantErr: "no buckets"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseBuckets(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("unexpected buckets (-want +got):\n%s", diff)
			}
		})
	}
	if math.IsNaN(DefaultBuckets[0]) {
		t.Fatal("unreachable")
	}
}
