package collector

import (
	"bufio"
	"bytes"
	"compress/flate"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// Handler returns the HTTP handler of the metrics endpoint. It serves the
// collector's metrics together with those of others, which must not include
// the collector itself, exactly as promhttp.HandlerFor(prometheus.Gatherers{others,
// a registry holding c}, opts) would, but writes the text formats (the
// Prometheus text format and OpenMetrics 1.0, uncompressed or gzipped) of
// the collector's families itself, from a snapshot, without the client
// library's metric objects: at thousands of links that is some 20 times
// cheaper. Gzipped scrapes reuse the compressed text of the links that did
// not change since the previous scrape.
//
// Everything else, such as the protobuf format (asked for by Prometheus
// when it scrapes native histograms), is served by promhttp. Of opts, the
// fast path honours ErrorLog, ErrorHandling, Registry, DisableCompression,
// OfferedCompressions (identity and gzip), EnableOpenMetrics,
// ProcessStartTime, MaxRequestsInFlight and Timeout; with
// EnableOpenMetricsTextCreatedSamples, OpenMetrics goes through promhttp.
func (c *Collector) Handler(others prometheus.Gatherer, opts promhttp.HandlerOpts) http.Handler {
	own := prometheus.NewRegistry()
	own.MustRegister(c)
	h := &handler{c: c, others: others, opts: opts}
	if opts.Registry != nil {
		// The same counter promhttp registers, so that both paths count
		// into it.
		h.errs = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "promhttp_metric_handler_errors_total",
			Help: "Total number of internal errors encountered by the promhttp metric handler.",
		}, []string{"cause"})
		h.errs.WithLabelValues("gathering")
		h.errs.WithLabelValues("encoding")
		if err := opts.Registry.Register(h.errs); err != nil {
			are := prometheus.AlreadyRegisteredError{}
			if !errors.As(err, &are) {
				panic(err)
			}
			h.errs = are.ExistingCollector.(*prometheus.CounterVec)
		}
	}
	h.slow = promhttp.HandlerFor(prometheus.Gatherers{others, own}, opts)
	h.accepted = opts.AcceptedFormats
	if len(h.accepted) == 0 {
		h.accepted = expfmt.DefaultAcceptedFormats()
		if opts.EnableOpenMetrics {
			h.accepted = expfmt.DefaultOpenMetricsAcceptedFormats()
		}
	}
	if !opts.DisableCompression {
		h.encodings = []string{string(promhttp.Identity), string(promhttp.Gzip)}
		if len(opts.OfferedCompressions) > 0 {
			h.encodings = h.encodings[:0]
			for _, e := range opts.OfferedCompressions {
				h.encodings = append(h.encodings, string(e))
			}
		}
	}
	if opts.MaxRequestsInFlight > 0 {
		h.inFlight = make(chan struct{}, opts.MaxRequestsInFlight)
	}
	h.fast = http.HandlerFunc(h.serveFast)
	if opts.Timeout > 0 {
		h.fast = http.TimeoutHandler(h.fast, opts.Timeout,
			fmt.Sprintf("Exceeded configured timeout of %v.\n", opts.Timeout))
	}
	return h
}

type handler struct {
	c         *Collector
	others    prometheus.Gatherer
	opts      promhttp.HandlerOpts
	accepted  []expfmt.Format
	encodings []string // offered content encodings
	inFlight  chan struct{}
	errs      *prometheus.CounterVec
	fast      http.Handler
	slow      http.Handler
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, ok := h.fastFormat(r); ok {
		h.fast.ServeHTTP(w, r)
		return
	}
	h.slow.ServeHTTP(w, r)
}

// fastFormat negotiates the format as promhttp does and reports whether the
// fast path writes it.
func (h *handler) fastFormat(r *http.Request) (expfmt.Format, bool) {
	format := expfmt.NegotiateAccept(r.Header, h.accepted...)
	switch format.FormatType() {
	case expfmt.TypeTextPlain:
		return format, true
	case expfmt.TypeOpenMetrics:
		if h.opts.EnableOpenMetricsTextCreatedSamples {
			return format, false
		}
		_, params, err := mime.ParseMediaType(string(format))
		v := params["version"]
		return format, err == nil && (v == expfmt.OpenMetricsVersion_1_0_0 || v == expfmt.OpenMetricsVersion_0_0_1)
	}
	return format, false
}

func (h *handler) serveFast(w http.ResponseWriter, r *http.Request) {
	format, _ := h.fastFormat(r)
	om := format.FormatType() == expfmt.TypeOpenMetrics
	if !h.opts.ProcessStartTime.IsZero() {
		w.Header().Set("Process-Start-Time-Unix", strconv.FormatInt(h.opts.ProcessStartTime.Unix(), 10))
	}
	if h.inFlight != nil {
		select {
		case h.inFlight <- struct{}{}:
			defer func() { <-h.inFlight }()
		default:
			http.Error(w, fmt.Sprintf("Limit of concurrent requests reached (%d), try again later.",
				h.opts.MaxRequestsInFlight), http.StatusServiceUnavailable)
			return
		}
	}
	mfs, err := h.others.Gather()
	if err != nil {
		h.logf("error gathering metrics: %v", err)
		h.count("gathering")
		switch h.opts.ErrorHandling {
		case promhttp.PanicOnError:
			panic(err)
		case promhttp.HTTPErrorOnError:
			w.Header().Del("Content-Encoding")
			http.Error(w, "An error has occurred while serving metrics:\n\n"+err.Error(), http.StatusInternalServerError)
			return
		}
		// ContinueOnError: the collector's own families are always there.
	}
	w.Header().Add("Vary", "Accept")
	if len(h.encodings) > 0 {
		w.Header().Add("Vary", "Accept-Encoding")
	}
	w.Header().Set("Content-Type", string(format))
	keep := nameFilter(r)

	bw := bufWriters.Get().(*bufio.Writer)
	bw.Reset(w)
	defer func() {
		bw.Reset(io.Discard) // drop the response writer
		bufWriters.Put(bw)
	}()
	// encodeOther encodes one of the other families as promhttp does;
	// it goes on after an error unless told not to.
	encodeOther := func(w io.Writer, mf *dto.MetricFamily) error {
		err := expfmt.NewEncoder(w, format).Encode(mf)
		if err != nil {
			h.logf("error encoding and sending metric family: %v", err)
			h.count("encoding")
			switch h.opts.ErrorHandling {
			case promhttp.PanicOnError:
				panic(err)
			case promhttp.HTTPErrorOnError:
				return err
			}
		}
		return nil
	}
	if negotiateEncoding(r, h.encodings) == string(promhttp.Gzip) {
		w.Header().Set("Content-Encoding", "gzip")
		err = h.c.writeGzip(bw, om, mfs, keep, encodeOther)
	} else {
		err = h.c.writeText(bw, om, mfs, keep, encodeOther)
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		// Writing to the client failed (or HTTPErrorOnError stopped at an
		// encoding error, already counted).
		h.logf("error sending metrics: %v", err)
	}
}

func (h *handler) logf(format string, args ...any) {
	if h.opts.ErrorLog != nil {
		h.opts.ErrorLog.Println(fmt.Sprintf(format, args...))
	}
}

func (h *handler) count(cause string) {
	if h.errs != nil {
		h.errs.WithLabelValues(cause).Inc()
	}
}

var (
	bufWriters   = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 64<<10) }}
	freshBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}
)

// writeText writes the exposition uncompressed, rendering the collector's
// families from a snapshot as it goes.
func (c *Collector) writeText(bw *bufio.Writer, om bool, others []*dto.MetricFamily, keep func(string) bool,
	encodeOther func(io.Writer, *dto.MetricFamily) error,
) error {
	v := c.getView()
	defer c.putView(v)
	r := c.renderer(om)
	defer c.putRenderer(r)
	write := func(b []byte) { _, _ = bw.Write(b) } // bw keeps the first error
	err := mergeFamilies(others, keep, func(mf *dto.MetricFamily) error {
		return encodeOther(bw, mf)
	}, func(f *family) error {
		if v.empty(f) {
			return nil
		}
		write(f.header[b2i(om)])
		r.b = r.b[:0]
		if f.link {
			r.writeFamily(f, v.order(f), write)
		} else {
			f.writeGlobal(r, f, &v.stats, len(v.links))
		}
		write(r.b)
		return nil
	})
	if om {
		_, _ = bw.WriteString("# EOF\n")
	}
	if err != nil {
		return err
	}
	return bw.Flush()
}

// writeGzip writes the exposition gzipped, from the cache of compressed
// link families of the format.
func (c *Collector) writeGzip(bw *bufio.Writer, om bool, others []*dto.MetricFamily, keep func(string) bool,
	encodeOther func(io.Writer, *dto.MetricFamily) error,
) error {
	now := time.Now()
	cache := c.gzipCache(om, now)
	fresh := freshBuffers.Get().(*bytes.Buffer)
	fresh.Reset()
	defer freshBuffers.Put(fresh)
	v := c.getView()
	chunks, err := cache.plan(v, others, keep, encodeOther, fresh, now)
	c.putView(v)
	if err != nil {
		return err
	}
	return writeGzip(bw, chunks)
}

// gzipCache returns the cache of the format, creating it if needed, and
// drops the other format's if it has not been used for gzipCacheTTL.
func (c *Collector) gzipCache(om bool, now time.Time) *gzipCache {
	c.gzMu.Lock()
	defer c.gzMu.Unlock()
	i := b2i(om)
	if c.gz[i] == nil {
		fw, _ := flate.NewWriter(nil, flate.BestSpeed) // only fails for a bad level
		c.gz[i] = &gzipCache{om: om, r: newRenderer(c.opts.Buckets, om), fw: fw}
	}
	if o := c.gz[1-i]; o != nil && now.UnixNano()-o.lastUsed.Load() > int64(gzipCacheTTL) {
		c.gz[1-i] = nil
	}
	return c.gz[i]
}

func (c *Collector) renderer(om bool) *renderer {
	if r, _ := c.renderers[b2i(om)].Get().(*renderer); r != nil {
		return r
	}
	return newRenderer(c.opts.Buckets, om)
}

func (c *Collector) putRenderer(r *renderer) {
	if cap(r.b) > 4*flushSize {
		r.b = nil
	}
	c.renderers[b2i(r.om)].Put(r)
}

// nameFilter returns the filter of the name[] query parameters promhttp
// supports: only the families named, or all without any.
func nameFilter(r *http.Request) func(string) bool {
	if r.URL == nil {
		return func(string) bool { return true }
	}
	names := r.URL.Query()["name[]"]
	if len(names) == 0 {
		return func(string) bool { return true }
	}
	set := make(map[string]struct{}, len(names))
	for _, n := range names {
		set[n] = struct{}{}
	}
	return func(name string) bool {
		_, ok := set[name]
		return ok
	}
}

// negotiateEncoding picks the content encoding as promhttp does: of the
// offered ones, the first with the highest quality in Accept-Encoding, with
// "*" matching any; identity if none is acceptable.
func negotiateEncoding(r *http.Request, offers []string) string {
	best, bestQ := "identity", -1.0
	specs := parseAcceptEncoding(r.Header.Values("Accept-Encoding"))
	for _, offer := range offers {
		for _, s := range specs {
			if s.q > bestQ && (s.value == "*" || s.value == offer) {
				best, bestQ = offer, s.q
			}
		}
	}
	if bestQ == 0 {
		return "identity"
	}
	return best
}

type acceptSpec struct {
	value string
	q     float64
}

func parseAcceptEncoding(values []string) []acceptSpec {
	var specs []acceptSpec
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			value, params, _ := strings.Cut(part, ";")
			s := acceptSpec{value: strings.TrimSpace(value), q: 1}
			if s.value == "" {
				continue
			}
			if params = strings.TrimSpace(params); params != "" {
				q, ok := strings.CutPrefix(params, "q=")
				if !ok {
					continue
				}
				f, err := strconv.ParseFloat(strings.TrimSpace(q), 64)
				if err != nil || f < 0 || f > 1 {
					continue
				}
				s.q = f
			}
			specs = append(specs, s)
		}
	}
	return specs
}
