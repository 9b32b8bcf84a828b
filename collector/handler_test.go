package collector

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/linkwatch/linkwatch_exporter/watcher"
)

// mutableSource is a Source whose links the test changes between scrapes.
type mutableSource struct {
	mu    sync.Mutex
	links []watcher.Link
	stats watcher.Stats
}

func (s *mutableSource) Snapshot(dst []watcher.Link) ([]watcher.Link, watcher.Stats) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.links {
		l.DownDurations.Buckets = append([]uint64(nil), l.DownDurations.Buckets...)
		l.UpDurations.Buckets = append([]uint64(nil), l.UpDurations.Buckets...)
		dst = append(dst, l)
	}
	return dst, s.stats
}

// randomLink returns a link with random state and awkward labels: quotes,
// backslashes, newlines, invalid UTF-8, values beyond what a float holds
// exactly, operational states the kernel does not define.
func randomLink(rng *rand.Rand, index int32, bounds []float64) watcher.Link {
	pick := func(s ...string) string { return s[rng.IntN(len(s))] }
	name := fmt.Sprintf("%s%d", pick("eth", "veth", "br-", `we"ird`, `back\slash`, "new\nline", "bad\xffutf8", "ünï"), index)
	u := func() uint64 {
		switch rng.IntN(4) {
		case 0:
			return 0
		case 1:
			return uint64(rng.IntN(10))
		case 2:
			return rng.Uint64N(1 << 40)
		default:
			return rng.Uint64()
		}
	}
	hist := func() watcher.Histogram {
		if rng.IntN(3) == 0 {
			return watcher.Histogram{}
		}
		h := watcher.Histogram{Count: u(), Sum: rng.Float64() * math.Pow(10, float64(rng.IntN(12)-3))}
		if rng.IntN(4) > 0 {
			h.Buckets = make([]uint64, len(bounds))
			for i := range h.Buckets {
				h.Buckets[i] = u()
			}
		}
		return h
	}
	first := time.Unix(rng.Int64N(2e9), rng.Int64N(1e9))
	return watcher.Link{
		Index: index, Name: name,
		Kind:    pick("", "veth", "bridge", "vlan"),
		Address: pick("", "02:00:00:00:00:01", "aa:bb:cc:dd:ee:ff", fmt.Sprintf("02:00:00:00:%02x:%02x", index>>8, index&0xff)),
		Master:  pick("", "", "br0", "42", "bad\xfe"),
		Alias:   pick("", "", `uplink "a"`, "x\\y", "multi\nline", "\xc3"),
		MTU:     uint32(u()),
		AdminUp: rng.IntN(2) == 0, Carrier: rng.IntN(2) == 0, Up: rng.IntN(2) == 0,
		OperState:      watcher.OperState(rng.IntN(9)),
		HasCounters:    rng.IntN(4) > 0,
		CarrierChanges: uint32(u()), CarrierUpCount: uint32(u()), CarrierDownCount: uint32(u()),
		TransitionsUp: u(), TransitionsDown: u(),
		FirstSeen: first, LastChange: first.Add(time.Duration(rng.Int64N(int64(1000 * time.Hour)))),
		DownDurations: hist(), UpDurations: hist(),
		UntimedDown: u(),
		Gen:         rng.Uint64(),
	}
}

// otherCollectors returns a registry of metrics that sort before, between
// and after the collector's families, as the binary's go, process, failover
// and webhook metrics do.
func otherCollectors() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "aaa_first", Help: "First."})
	g.Set(3.25)
	penalty := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "linkwatch_link_flap_penalty", Help: "Between the link families.",
	}, []string{"device"})
	penalty.WithLabelValues("eth0").Set(1500)
	penalty.WithLabelValues("veth0").Set(0.5)
	reqs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "linkwatch_webhook_requests_total", Help: "After them.",
	}, []string{"code"})
	reqs.WithLabelValues("200").Add(7)
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "zzz_last_seconds", Help: "Last.", Buckets: []float64{1, 2}})
	h.Observe(1.5)
	s := prometheus.NewSummary(prometheus.SummaryOpts{Name: "linkwatch_m_summary", Help: "A summary \\ with \"quotes\"\nand a newline."})
	s.Observe(2)
	reg.MustRegister(g, penalty, reqs, h, s)
	return reg
}

// prometheus3Accept is the Accept header of Prometheus 3 scrapes by default.
const prometheus3Accept = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5," +
	"application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3," +
	"text/plain;version=0.0.4;q=0.2,*/*;q=0.1"

var fastAccepts = []string{
	"",
	"text/plain;version=0.0.4",
	"text/plain;version=1.0.0;escaping=allow-utf-8",
	"text/plain;version=1.0.0;escaping=underscores",
	"application/openmetrics-text;version=1.0.0",
	"application/openmetrics-text;version=0.0.1",
	prometheus3Accept,
	"*/*",
}

// response is what a test compares of a scrape.
type response struct {
	Code                  int
	ContentType, Encoding string
	Vary                  []string
	Body                  string
}

func scrapeWith(t *testing.T, h http.Handler, accept, encoding, query string) response {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/metrics"+query, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if encoding != "" {
		req.Header.Set("Accept-Encoding", encoding)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	body := rec.Body.Bytes()
	if rec.Header().Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatalf("gzip: %v", err)
		}
		zr.Multistream(false)
		if body, err = io.ReadAll(zr); err != nil {
			t.Fatalf("gunzip: %v", err)
		}
		if rest, _ := io.ReadAll(zr); len(rest) != 0 {
			t.Fatal("data after the gzip member")
		}
	}
	return response{
		Code: rec.Code, ContentType: rec.Header().Get("Content-Type"),
		Encoding: rec.Header().Get("Content-Encoding"), Vary: rec.Header().Values("Vary"),
		Body: string(body),
	}
}

// compareHandlers scrapes the fast handler and promhttp over the same
// metrics in every text format, plain and gzipped, and wants the same.
func compareHandlers(t *testing.T, c *Collector, fast, slow http.Handler, label string, accepts ...string) {
	t.Helper()
	if len(accepts) == 0 {
		accepts = fastAccepts
	}
	for _, accept := range accepts {
		for _, enc := range []string{"", "gzip, deflate, br", "identity;q=0.5, gzip;q=0.1"} {
			queries := []string{""}
			if accept == "" {
				queries = append(queries, "?name[]=linkwatch_link_info&name[]=linkwatch_links&name[]=aaa_first")
			}
			for _, query := range queries {
				want := scrapeWith(t, slow, accept, enc, query)
				got := scrapeWith(t, fast, accept, enc, query)
				if want.Code != http.StatusOK {
					t.Fatalf("%s: promhttp answered %d: %s", label, want.Code, want.Body)
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Fatalf("%s, Accept %q, Accept-Encoding %q, query %q: fast path differs from promhttp (-promhttp +fast):\n%s",
						label, accept, enc, query, diff)
				}
				if n := c.collects.Load(); n != 0 {
					t.Fatalf("%s, Accept %q: the fast path collected %d times through the client library", label, accept, n)
				}
			}
		}
	}
}

// TestFastPathMatches checks that the handler's own rendering of the text
// formats is byte for byte what promhttp writes from the Collector's
// metrics, for awkward label values and numbers, in every text format and
// encoding, and across scrapes as links change and the gzip cache is reused.
func TestFastPathMatches(t *testing.T) {
	t.Parallel()
	for _, bounds := range [][]float64{testBuckets, DefaultBuckets} {
		for _, om := range []bool{false, true} {
			t.Run(fmt.Sprintf("buckets=%d/openmetrics=%v", len(bounds), om), func(t *testing.T) {
				t.Parallel()
				rng := rand.New(rand.NewPCG(uint64(len(bounds)), uint64(b2i(om))))
				src := &mutableSource{stats: watcher.Stats{Up: true, NewLink: 1e7, DelLink: 3, Other: 1, Overruns: 2, Resyncs: 1 << 60}}
				for i := range 100 {
					src.links = append(src.links, randomLink(rng, int32(i+1), bounds))
				}
				src.links = append(src.links, fixture().links...)
				src.links[len(src.links)-1].Index = 1000 // lo; the fixture's index 1 is taken
				opts := promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, EnableOpenMetrics: om}
				others := otherCollectors()
				c := New(src, Options{Buckets: bounds})
				fast := c.Handler(others, opts)
				reg := prometheus.NewRegistry()
				reg.MustRegister(New(src, Options{Buckets: bounds}))
				slow := promhttp.HandlerFor(prometheus.Gatherers{others, reg}, opts)

				compareHandlers(t, c, fast, slow, "initial")
				for round := range 3 {
					// Change some links (with a new Gen, as the watcher
					// does), add one, remove one, rename one.
					src.mu.Lock()
					for range 10 {
						i := rng.IntN(len(src.links))
						l := randomLink(rng, src.links[i].Index, bounds)
						l.Name = src.links[i].Name
						src.links[i] = l
					}
					src.links = append(src.links[1:], randomLink(rng, int32(2000+round), bounds))
					src.links[5].Name += "-renamed"
					src.links[5].Gen++
					src.stats.NewLink++
					src.mu.Unlock()
					compareHandlers(t, c, fast, slow, fmt.Sprintf("after change %d", round), "", prometheus3Accept)
				}
			})
		}
	}
}

// TestFastPathEmpty checks the exposition without links: the link families
// are left out, as the registry leaves out empty families.
func TestFastPathEmpty(t *testing.T) {
	src := &mutableSource{}
	opts := promhttp.HandlerOpts{EnableOpenMetrics: true}
	others := prometheus.NewRegistry()
	c := New(src, Options{Buckets: testBuckets})
	fast := c.Handler(others, opts)
	reg := prometheus.NewRegistry()
	reg.MustRegister(New(src, Options{Buckets: testBuckets}))
	compareHandlers(t, c, fast, promhttp.HandlerFor(prometheus.Gatherers{others, reg}, opts), "no links")
	if got := scrapeWith(t, fast, "", "", ""); strings.Contains(got.Body, "linkwatch_link_") {
		t.Errorf("link families without links:\n%s", got.Body)
	}
}

// TestFastPathWatcher scrapes a real watcher while its links flap, so that
// the gzip cache depends on the watcher's Gen being right.
func TestFastPathWatcher(t *testing.T) {
	s := newBenchSetup(t, 50)
	opts := promhttp.HandlerOpts{EnableOpenMetrics: true}
	others := prometheus.NewRegistry()
	fast := New(s.w, Options{Buckets: DefaultBuckets}).Handler(others, opts)
	reg := prometheus.NewRegistry()
	reg.MustRegister(New(s.w, Options{Buckets: DefaultBuckets}))
	slow := promhttp.HandlerFor(prometheus.Gatherers{others, reg}, opts)
	for round := range 4 {
		s.flap(t, 7*round+1)
		for _, accept := range []string{"", prometheus3Accept} {
			want := scrapeWith(t, slow, accept, "gzip", "")
			got := scrapeWith(t, fast, accept, "gzip", "")
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("round %d, Accept %q: fast path differs from promhttp (-promhttp +fast):\n%s", round, accept, diff)
			}
		}
	}
}

// TestFastPathFallsBack checks that what the fast path does not write, the
// protobuf format in particular, is served by promhttp.
func TestFastPathFallsBack(t *testing.T) {
	src := fixture()
	others := prometheus.NewRegistry()
	opts := promhttp.HandlerOpts{EnableOpenMetrics: true}
	c := New(src, Options{Buckets: testBuckets, NativeHistograms: true})
	fast := c.Handler(others, opts)
	reg := prometheus.NewRegistry()
	reg.MustRegister(New(src, Options{Buckets: testBuckets, NativeHistograms: true}))
	slow := promhttp.HandlerFor(prometheus.Gatherers{others, reg}, opts)
	const proto = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"
	want, got := scrapeWith(t, slow, proto, "gzip", ""), scrapeWith(t, fast, proto, "gzip", "")
	if !strings.HasPrefix(got.ContentType, "application/vnd.google.protobuf") || len(got.Body) == 0 {
		t.Fatalf("protobuf scrape: %+v", got.ContentType)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("protobuf differs (-promhttp +fast):\n%s", diff)
	}
	if c.collects.Load() != 1 {
		t.Errorf("protobuf scrape collected %d times through the client library, want 1", c.collects.Load())
	}
}

func TestCRCCombine(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		a := make([]byte, rng.IntN(3000))
		b := make([]byte, rng.IntN(100000))
		for i := range a {
			a[i] = byte(rng.Uint32())
		}
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		whole := crc32IEEE(append(append([]byte(nil), a...), b...))
		if got := crcCombine(crc32IEEE(a), crc32IEEE(b), crcShift(int64(len(b)))); got != whole {
			t.Fatalf("combine of %d and %d bytes: %08x, want %08x", len(a), len(b), got, whole)
		}
	}
}

func TestAppendFloat(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	values := []float64{0, 1, -1, 2, 0.5, 999999, 1e6, 1e6 + 1, 123456789, 1 << 53, 1<<53 + 2, 1e21, 1e-5,
		math.MaxUint64, math.NaN(), math.Inf(1), math.Inf(-1), math.Copysign(0, -1), 1.7e9, 1700000090.123456, math.SmallestNonzeroFloat64}
	for range 10000 {
		values = append(values, float64(rng.Uint64N(1<<uint(rng.IntN(63)+1))), rng.NormFloat64()*math.Pow(10, float64(rng.IntN(40)-20)))
	}
	for _, v := range values {
		for _, om := range []bool{false, true} {
			got := string(appendFloat(nil, v, om))
			want := expfmtFloat(v, om)
			if got != want {
				t.Errorf("appendFloat(%v, om=%v) = %q, want %q", v, om, got, want)
			}
		}
	}
}

func crc32IEEE(b []byte) uint32 { return crc32.ChecksumIEEE(b) }

// expfmtFloat is how expfmt formats a value: writeFloat in the text format,
// writeOpenMetricsFloat in OpenMetrics (copied, since both are unexported).
func expfmtFloat(f float64, om bool) string {
	var s string
	switch {
	case f == 1:
		s = "1"
	case f == 0:
		s = "0"
	case f == -1:
		s = "-1"
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, +1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	default:
		s = strconv.FormatFloat(f, 'g', -1, 64)
	}
	if om && !strings.ContainsAny(s, "e.") {
		s += ".0"
	}
	return s
}
