package collector

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/linkwatch/linkwatch_exporter/watcher"
)

// A Source returns the current link state; *watcher.Watcher implements it.
type Source interface {
	Snapshot(dst []watcher.Link) ([]watcher.Link, watcher.Stats)
}

// Options configure a Collector.
type Options struct {
	// Buckets are the upper bounds of the duration histograms; they must be
	// the watcher's.
	Buckets []float64
	// NativeHistograms adds the native histogram representation to the
	// duration histograms (visible in the protobuf exposition only).
	NativeHistograms bool
}

// DefaultBuckets are the default upper bounds, in seconds, of the duration
// histograms: from 10 ms, below which the kernel's own reporting is not
// precise, to one day.
var DefaultBuckets = []float64{
	0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400,
}

// A Collector is a prometheus.Collector for link state.
type Collector struct {
	src  Source
	opts Options

	// buf is reused between scrapes to avoid reallocating the snapshot.
	mu  sync.Mutex
	buf []watcher.Link

	// The fast path of Handler: a spare view (a snapshot prepared for
	// rendering), pooled renderers by format, and the caches of compressed
	// text of each text format (Prometheus, OpenMetrics) for gzipped
	// scrapes.
	viewMu    sync.Mutex
	spare     *view
	renderers [2]sync.Pool
	gzMu      sync.Mutex
	gz        [2]*gzipCache

	collects atomic.Uint64 // calls of Collect, for tests of the fast path

	up, adminUp, carrier, operState, info, mtu           *prometheus.Desc
	carrierChanges, carrierUpChanges, carrierDownChanges *prometheus.Desc
	transitions, lastChange, untimed                     *prometheus.Desc
	downDuration, upDuration                             *prometheus.Desc

	links, messages, overruns, resyncs, decodeErrors, receiveErrors, watcherUp, netnsLost *prometheus.Desc
}

var _ prometheus.Collector = (*Collector)(nil)

// New returns a Collector that reads from src.
func New(src Source, o Options) *Collector {
	desc := func(name string) *prometheus.Desc {
		f := familyByName(name)
		labels := f.labels
		if f.link {
			labels = append([]string{"device"}, labels...)
		}
		return prometheus.NewDesc(f.name, f.help, labels, nil)
	}
	return &Collector{
		src: src, opts: o,

		up:        desc("linkwatch_link_up"),
		adminUp:   desc("linkwatch_link_admin_up"),
		carrier:   desc("linkwatch_link_carrier"),
		operState: desc("linkwatch_link_oper_state"),
		info:      desc("linkwatch_link_info"),
		mtu:       desc("linkwatch_link_mtu_bytes"),

		carrierChanges:     desc("linkwatch_link_carrier_changes_total"),
		carrierUpChanges:   desc("linkwatch_link_carrier_up_changes_total"),
		carrierDownChanges: desc("linkwatch_link_carrier_down_changes_total"),
		transitions:        desc("linkwatch_link_transitions_total"),
		lastChange:         desc("linkwatch_link_last_change_timestamp_seconds"),
		untimed:            desc("linkwatch_link_carrier_down_untimed_total"),
		downDuration:       desc("linkwatch_link_down_duration_seconds"),
		upDuration:         desc("linkwatch_link_up_duration_seconds"),

		links:         desc("linkwatch_links"),
		messages:      desc("linkwatch_netlink_messages_total"),
		overruns:      desc("linkwatch_netlink_overruns_total"),
		resyncs:       desc("linkwatch_netlink_resyncs_total"),
		decodeErrors:  desc("linkwatch_netlink_decode_errors_total"),
		receiveErrors: desc("linkwatch_netlink_receive_errors_total"),
		watcherUp:     desc("linkwatch_watcher_up"),
		netnsLost:     desc("linkwatch_watcher_netns_lost_total"),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.up, c.adminUp, c.carrier, c.operState, c.info, c.mtu,
		c.carrierChanges, c.carrierUpChanges, c.carrierDownChanges,
		c.transitions, c.lastChange, c.untimed, c.downDuration, c.upDuration,
		c.links, c.messages, c.overruns, c.resyncs, c.decodeErrors, c.receiveErrors, c.watcherUp, c.netnsLost,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. It never touches the kernel.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.collects.Add(1)
	c.mu.Lock()
	links, stats := c.src.Snapshot(c.buf[:0])
	for i := range links {
		c.collectLink(ch, &links[i])
	}
	clear(links) // drop references to strings and histograms until the next scrape
	c.buf = links
	c.mu.Unlock()

	gauge := func(d *prometheus.Desc, v float64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, lv...)
	}
	counter := func(d *prometheus.Desc, v uint64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), lv...)
	}
	gauge(c.links, float64(len(links)))
	counter(c.messages, stats.NewLink, "newlink")
	counter(c.messages, stats.DelLink, "dellink")
	counter(c.messages, stats.Other, "other")
	counter(c.overruns, stats.Overruns)
	counter(c.resyncs, stats.Resyncs)
	counter(c.decodeErrors, stats.DecodeErrors)
	counter(c.receiveErrors, stats.ReceiveErrors)
	gauge(c.watcherUp, boolFloat(stats.Up))
	counter(c.netnsLost, stats.NetNSLost)
}

// collectLink sends the metrics of one link. Label values are made valid
// UTF-8 first: link names and aliases are arbitrary bytes, and the client
// library refuses invalid label values.
func (c *Collector) collectLink(ch chan<- prometheus.Metric, l *watcher.Link) {
	dev := validUTF8(l.Name)
	gauge := func(d *prometheus.Desc, v float64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append([]string{dev}, lv...)...)
	}
	counter := func(d *prometheus.Desc, v uint64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), append([]string{dev}, lv...)...)
	}
	gauge(c.up, boolFloat(l.Up))
	gauge(c.adminUp, boolFloat(l.AdminUp))
	gauge(c.carrier, boolFloat(l.Carrier))
	for _, s := range watcher.OperStates {
		gauge(c.operState, boolFloat(l.OperState == s), s.String())
	}
	gauge(c.info, 1, strconv.Itoa(int(l.Index)), validUTF8(l.Kind), validUTF8(l.Address), validUTF8(l.Master), validUTF8(l.Alias))
	gauge(c.mtu, float64(l.MTU))
	if l.HasCounters {
		counter(c.carrierChanges, uint64(l.CarrierChanges))
		counter(c.carrierUpChanges, uint64(l.CarrierUpCount))
		counter(c.carrierDownChanges, uint64(l.CarrierDownCount))
	}
	counter(c.transitions, l.TransitionsUp, "up")
	counter(c.transitions, l.TransitionsDown, "down")
	gauge(c.lastChange, unixSeconds(l.LastChange))
	counter(c.untimed, l.UntimedDown)
	ch <- c.histogram(c.downDuration, &l.DownDurations, l.FirstSeen, dev)
	ch <- c.histogram(c.upDuration, &l.UpDurations, l.FirstSeen, dev)
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unixSeconds(t time.Time) float64 {
	return float64(t.UnixNano()) / 1e9
}
