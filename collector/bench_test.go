package collector

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/linkwatch/linkwatch_exporter/internal/linkmsg"
	"github.com/linkwatch/linkwatch_exporter/watcher"
)

// benchSetup is a running watcher over 8000 veths whose carriers have
// flapped, so that every duration histogram holds observations.
type benchSetup struct {
	w    *watcher.Watcher
	src  *linkmsg.Source
	msgs []*linkmsg.Msg
}

func newBenchSetup(tb testing.TB, pairs int) *benchSetup {
	tb.Helper()
	msgs := linkmsg.Veths(pairs)
	src := linkmsg.NewSource(msgs)
	now := time.Now()
	w := watcher.New(func() (watcher.Source, error) { return src, nil }, watcher.Options{
		Buckets: DefaultBuckets,
		// Each batch is 0.7 s after the one before, so the periods land in
		// the middle buckets.
		Now: func() time.Time { now = now.Add(700 * time.Millisecond); return now },
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Error(err)
		}
	})
	<-w.Ready()
	s := &benchSetup{w: w, src: src, msgs: msgs}
	for range 4 {
		s.flap(tb, len(msgs))
	}
	return s
}

// flap flips the carrier of the first n links, one notification each, and
// returns once the watcher has applied them.
func (s *benchSetup) flap(tb testing.TB, n int) {
	tb.Helper()
	batch := make([]netlink.Message, 0, n)
	for _, m := range s.msgs[:n] {
		m.Flip()
		batch = append(batch, linkmsg.Message(append([]byte(nil), m.Data...)))
	}
	if err := s.src.Send(batch...); err != nil {
		tb.Fatal(err)
	}
	if err := s.src.Sync(); err != nil {
		tb.Fatal(err)
	}
}

const protobufAccept = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"

var benchOpts = promhttp.HandlerOpts{
	ErrorHandling:     promhttp.ContinueOnError,
	EnableOpenMetrics: true,
}

// handler is the /metrics handler of the binary, for the link collector
// alone.
func (s *benchSetup) handler(tb testing.TB) http.Handler {
	tb.Helper()
	return New(s.w, Options{Buckets: DefaultBuckets}).Handler(prometheus.NewRegistry(), benchOpts)
}

// promhttpHandler serves the collector through the client library, as the
// handler does for the protobuf format (and did for every format before it
// wrote the text formats itself).
func (s *benchSetup) promhttpHandler(tb testing.TB) http.Handler {
	tb.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(New(s.w, Options{Buckets: DefaultBuckets}))
	return promhttp.HandlerFor(reg, benchOpts)
}

// discardWriter is an http.ResponseWriter that counts and drops the body.
type discardWriter struct {
	h http.Header
	n int64
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) WriteHeader(int)             {}
func (d *discardWriter) Write(p []byte) (int, error) { d.n += int64(len(p)); return len(p), nil }

var _ io.Writer = (*discardWriter)(nil)

// BenchmarkCollect8000 measures one scrape of 8000 links with the default 16
// duration buckets, through the handler the binary serves: the text format,
// uncompressed and gzipped, and gzipped OpenMetrics as Prometheus asks for
// it. "steady" scrapes are back to back with no change in between; "churn"
// flaps 1 % of the links (80) before each scrape, outside the timed region.
func BenchmarkCollect8000(b *testing.B) {
	s := newBenchSetup(b, 4000)
	benchScrapes(b, s, s.handler(b))
}

// BenchmarkCollect8000Promhttp is BenchmarkCollect8000 through the client
// library: Collect, the registry and expfmt.
func BenchmarkCollect8000Promhttp(b *testing.B) {
	s := newBenchSetup(b, 4000)
	benchScrapes(b, s, s.promhttpHandler(b))
}

func benchScrapes(b *testing.B, s *benchSetup, h http.Handler) {
	for _, bc := range []struct {
		name             string
		churn            int // links flapped before each scrape
		encoding, accept string
	}{
		{"steady/identity", 0, "", ""},
		{"steady/gzip", 0, "gzip", ""},
		{"churn/identity", 80, "", ""},
		{"churn/gzip", 80, "gzip", ""},
		// What Prometheus 3 asks for by default: gzipped OpenMetrics.
		{"steady/gzip-openmetrics", 0, "gzip", prometheus3Accept},
		{"churn/gzip-openmetrics", 80, "gzip", prometheus3Accept},
		// What it asks for when it scrapes native histograms: protobuf,
		// which goes through the client library.
		{"steady/gzip-protobuf", 0, "gzip", protobufAccept},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
			if bc.encoding != "" {
				req.Header.Set("Accept-Encoding", bc.encoding)
			}
			if bc.accept != "" {
				req.Header.Set("Accept", bc.accept)
			}
			rw := &discardWriter{h: http.Header{}}
			h.ServeHTTP(rw, req) // warm up
			b.ReportAllocs()
			for b.Loop() {
				if bc.churn > 0 {
					b.StopTimer()
					s.flap(b, bc.churn)
					b.StartTimer()
				}
				rw.n = 0
				clear(rw.h)
				h.ServeHTTP(rw, req)
			}
			b.ReportMetric(float64(rw.n), "bytes/scrape")
			b.ReportMetric(b.Elapsed().Seconds()*1000/float64(b.N), "ms/scrape")
		})
	}
}

// BenchmarkGzipText8000 gzips the uncompressed text exposition of 8000 links
// as a whole, the way promhttp compresses a scrape, at its level (the
// default) and at BestSpeed: what a gzipped scrape would cost on top of
// rendering without the cache of compressed blocks.
func BenchmarkGzipText8000(b *testing.B) {
	s := newBenchSetup(b, 4000)
	rec := httptest.NewRecorder()
	s.handler(b).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	text := rec.Body.Bytes()
	for _, level := range []int{gzip.DefaultCompression, gzip.BestSpeed} {
		b.Run(fmt.Sprintf("level=%d", level), func(b *testing.B) {
			zw, _ := gzip.NewWriterLevel(io.Discard, level)
			b.SetBytes(int64(len(text)))
			for b.Loop() {
				zw.Reset(io.Discard)
				_, _ = zw.Write(text)
				_ = zw.Close()
			}
			b.ReportMetric(b.Elapsed().Seconds()*1000/float64(b.N), "ms/scrape")
		})
	}
}
