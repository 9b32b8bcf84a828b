package collector

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/linkwatch/linkwatch_exporter/watcher"
)

const namespace = "linkwatch"

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

	up, adminUp, carrier, operState, info, mtu           *prometheus.Desc
	carrierChanges, carrierUpChanges, carrierDownChanges *prometheus.Desc
	transitions, lastChange, untimed                     *prometheus.Desc
	downDuration, upDuration                             *prometheus.Desc

	links, messages, overruns, resyncs, decodeErrors, receiveErrors, watcherUp, netnsLost *prometheus.Desc
}

var _ prometheus.Collector = (*Collector)(nil)

// New returns a Collector that reads from src.
func New(src Source, o Options) *Collector {
	dev := []string{"device"}
	link := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "link", name), help, append(dev, labels...), nil)
	}
	global := func(sub, name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, sub, name), help, labels, nil)
	}
	return &Collector{
		src: src, opts: o,

		up: link("up", "Whether the link is up (1) or not (0): administratively up and either operationally up, "+
			"or operationally unknown with carrier (as lo, tun and wireguard devices report)."),
		adminUp:   link("admin_up", "Whether the link is administratively up (IFF_UP)."),
		carrier:   link("carrier", "Whether the link has carrier (IFLA_CARRIER)."),
		operState: link("oper_state", "Operational state of the link (RFC 2863): 1 for the current state, 0 for the others.", "state"),
		info: link("info", "Non-numeric data about the link, value is always 1.",
			"ifindex", "kind", "address", "master", "alias"),
		mtu: link("mtu_bytes", "MTU of the link in bytes."),

		carrierChanges: link("carrier_changes_total",
			"Carrier changes counted by the kernel since the device was created (IFLA_CARRIER_CHANGES)."),
		carrierUpChanges: link("carrier_up_changes_total",
			"Carrier up changes counted by the kernel since the device was created (IFLA_CARRIER_UP_COUNT)."),
		carrierDownChanges: link("carrier_down_changes_total",
			"Carrier down changes counted by the kernel since the device was created (IFLA_CARRIER_DOWN_COUNT)."),
		transitions: link("transitions_total",
			"Changes of linkwatch_link_up seen by the watcher, by the state changed to.", "to"),
		lastChange: link("last_change_timestamp_seconds",
			"Unix time of the last observed change of the link's up, admin, carrier or operational state or "+
				"carrier counters, or when the exporter first saw the link."),
		untimed: link("carrier_down_untimed_total",
			"Completed carrier down periods that the kernel counted but did not report one by one "+
				"(coalesced or lost notifications), so that their duration is unknown."),
		downDuration: link("down_duration_seconds",
			"Durations of completed carrier down periods whose start and end were each reported in their own notification."),
		upDuration: link("up_duration_seconds",
			"Durations of completed carrier up periods (time between failures) whose start and end were each "+
				"reported in their own notification."),

		links: global("", "links", "Number of links currently exported."),
		messages: global("netlink", "messages_total",
			"Link notifications received from the kernel, by message type.", "type"),
		overruns: global("netlink", "overruns_total",
			"Receive buffer overruns (ENOBUFS) of the notification socket: notifications were lost and a resync followed."),
		resyncs: global("netlink", "resyncs_total",
			"Full link dumps made after start-up to reconcile the state, after overruns and reconnects."),
		decodeErrors: global("netlink", "decode_errors_total",
			"Link messages that could not be decoded and were skipped."),
		receiveErrors: global("netlink", "receive_errors_total",
			"Failures to receive from or reopen the notification socket, each followed by a retry with backoff."),
		watcherUp: global("watcher", "up", "Whether the notification socket is open and healthy (1) or not (0)."),
		netnsLost: global("watcher", "netns_lost_total",
			"Times the watched network namespace (--watcher.netns) was found deleted or replaced: its sockets were closed "+
				"to release it and its links dropped until a namespace at its path could be opened."),
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

func (c *Collector) collectLink(ch chan<- prometheus.Metric, l *watcher.Link) {
	dev := l.Name
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
	gauge(c.info, 1, strconv.Itoa(int(l.Index)), l.Kind, l.Address, l.Master, l.Alias)
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
