package collector

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	dto "github.com/prometheus/client_model/go"

	"github.com/linkwatch/linkwatch_exporter/watcher"
)

// This file renders the collector's metric families directly in the text
// formats, without building client_golang metrics and dto messages: at
// thousands of links that pipeline costs about a microsecond per series,
// most of it allocation, sorting and garbage collection. The output is byte
// for byte what promhttp writes for the same families (TestFastPathMatches
// checks it against promhttp for both text formats), so the fast path is an
// implementation detail, not a format of its own.

// A family describes one metric family the collector exports.
type family struct {
	name   string // the full name, as in the Prometheus text format
	help   string
	typ    dto.MetricType
	labels []string // variable labels after device (link families) or all of them

	// link families: has reports whether a link has the family's series
	// (nil: every link), write appends a link's samples. byInfo sorts the
	// family by its info labels (address first) instead of by device.
	link   bool
	has    func(l *watcher.Link) bool
	write  func(r *renderer, f *family, p *prepared)
	byInfo bool
	// global families: writeGlobal appends the samples.
	writeGlobal func(r *renderer, f *family, s *watcher.Stats, links int)

	// header is "# HELP" and "# TYPE" in each format (text, OpenMetrics);
	// sample is the name followed by "{" or, without labels, by " ".
	header [2][]byte
	sample []byte
}

// The link families, in any order; families sorts them by name.
var linkFamilies = []*family{
	{name: "linkwatch_link_up", typ: dto.MetricType_GAUGE,
		help: "Whether the link is up (1) or not (0): administratively up and either operationally up, " +
			"or operationally unknown with carrier (as lo, tun and wireguard devices report).",
		write: func(r *renderer, f *family, p *prepared) { r.boolSample(f, p, p.l.Up) }},
	{name: "linkwatch_link_admin_up", typ: dto.MetricType_GAUGE,
		help:  "Whether the link is administratively up (IFF_UP).",
		write: func(r *renderer, f *family, p *prepared) { r.boolSample(f, p, p.l.AdminUp) }},
	{name: "linkwatch_link_carrier", typ: dto.MetricType_GAUGE,
		help:  "Whether the link has carrier (IFLA_CARRIER).",
		write: func(r *renderer, f *family, p *prepared) { r.boolSample(f, p, p.l.Carrier) }},
	{name: "linkwatch_link_oper_state", typ: dto.MetricType_GAUGE, labels: []string{"state"},
		help:  "Operational state of the link (RFC 2863): 1 for the current state, 0 for the others.",
		write: writeOperState},
	{name: "linkwatch_link_info", typ: dto.MetricType_GAUGE,
		labels: []string{"ifindex", "kind", "address", "master", "alias"}, byInfo: true,
		help:  "Non-numeric data about the link, value is always 1.",
		write: writeInfo},
	{name: "linkwatch_link_mtu_bytes", typ: dto.MetricType_GAUGE,
		help:  "MTU of the link in bytes.",
		write: func(r *renderer, f *family, p *prepared) { r.uintSample(f, p, uint64(p.l.MTU)) }},
	{name: "linkwatch_link_carrier_changes_total", typ: dto.MetricType_COUNTER,
		help: "Carrier changes counted by the kernel since the device was created (IFLA_CARRIER_CHANGES).",
		has:  hasCounters,
		write: func(r *renderer, f *family, p *prepared) {
			r.uintSample(f, p, uint64(p.l.CarrierChanges))
		}},
	{name: "linkwatch_link_carrier_up_changes_total", typ: dto.MetricType_COUNTER,
		help: "Carrier up changes counted by the kernel since the device was created (IFLA_CARRIER_UP_COUNT).",
		has:  hasCounters,
		write: func(r *renderer, f *family, p *prepared) {
			r.uintSample(f, p, uint64(p.l.CarrierUpCount))
		}},
	{name: "linkwatch_link_carrier_down_changes_total", typ: dto.MetricType_COUNTER,
		help: "Carrier down changes counted by the kernel since the device was created (IFLA_CARRIER_DOWN_COUNT).",
		has:  hasCounters,
		write: func(r *renderer, f *family, p *prepared) {
			r.uintSample(f, p, uint64(p.l.CarrierDownCount))
		}},
	{name: "linkwatch_link_transitions_total", typ: dto.MetricType_COUNTER, labels: []string{"to"},
		help:  "Changes of linkwatch_link_up seen by the watcher, by the state changed to.",
		write: writeTransitions},
	{name: "linkwatch_link_last_change_timestamp_seconds", typ: dto.MetricType_GAUGE,
		help: "Unix time of the last observed change of the link's up, admin, carrier or operational state or " +
			"carrier counters, or when the exporter first saw the link.",
		write: func(r *renderer, f *family, p *prepared) {
			r.floatSample(f, p, unixSeconds(p.l.LastChange))
		}},
	{name: "linkwatch_link_carrier_down_untimed_total", typ: dto.MetricType_COUNTER,
		help: "Completed carrier down periods that the kernel counted but did not report one by one " +
			"(coalesced or lost notifications), so that their duration is unknown.",
		write: func(r *renderer, f *family, p *prepared) { r.uintSample(f, p, p.l.UntimedDown) }},
	{name: "linkwatch_link_down_duration_seconds", typ: dto.MetricType_HISTOGRAM,
		help: "Durations of completed carrier down periods whose start and end were each reported in their own notification.",
		write: func(r *renderer, f *family, p *prepared) {
			r.histogram(f, p, &p.l.DownDurations)
		}},
	{name: "linkwatch_link_up_duration_seconds", typ: dto.MetricType_HISTOGRAM,
		help: "Durations of completed carrier up periods (time between failures) whose start and end were each " +
			"reported in their own notification.",
		write: func(r *renderer, f *family, p *prepared) {
			r.histogram(f, p, &p.l.UpDurations)
		}},
}

// The global families, in any order.
var globalFamilies = []*family{
	{name: "linkwatch_links", typ: dto.MetricType_GAUGE,
		help: "Number of links currently exported.",
		writeGlobal: func(r *renderer, f *family, _ *watcher.Stats, links int) {
			r.globalSample(f, "", float64(links))
		}},
	{name: "linkwatch_netlink_messages_total", typ: dto.MetricType_COUNTER, labels: []string{"type"},
		help: "Link notifications received from the kernel, by message type.",
		writeGlobal: func(r *renderer, f *family, s *watcher.Stats, _ int) {
			// Sorted by label value, as the registry sorts them.
			r.globalSample(f, `type="dellink"`, float64(s.DelLink))
			r.globalSample(f, `type="newlink"`, float64(s.NewLink))
			r.globalSample(f, `type="other"`, float64(s.Other))
		}},
	{name: "linkwatch_netlink_overruns_total", typ: dto.MetricType_COUNTER,
		help: "Receive buffer overruns (ENOBUFS) of the notification socket: notifications were lost and a resync followed.",
		writeGlobal: func(r *renderer, f *family, s *watcher.Stats, _ int) {
			r.globalSample(f, "", float64(s.Overruns))
		}},
	{name: "linkwatch_netlink_resyncs_total", typ: dto.MetricType_COUNTER,
		help: "Full link dumps made after start-up to reconcile the state, after overruns and reconnects.",
		writeGlobal: func(r *renderer, f *family, s *watcher.Stats, _ int) {
			r.globalSample(f, "", float64(s.Resyncs))
		}},
	{name: "linkwatch_netlink_decode_errors_total", typ: dto.MetricType_COUNTER,
		help: "Link messages that could not be decoded and were skipped.",
		writeGlobal: func(r *renderer, f *family, s *watcher.Stats, _ int) {
			r.globalSample(f, "", float64(s.DecodeErrors))
		}},
	{name: "linkwatch_netlink_receive_errors_total", typ: dto.MetricType_COUNTER,
		help: "Failures to receive from or reopen the notification socket, each followed by a retry with backoff.",
		writeGlobal: func(r *renderer, f *family, s *watcher.Stats, _ int) {
			r.globalSample(f, "", float64(s.ReceiveErrors))
		}},
	{name: "linkwatch_watcher_up", typ: dto.MetricType_GAUGE,
		help: "Whether the notification socket is open and healthy (1) or not (0).",
		writeGlobal: func(r *renderer, f *family, s *watcher.Stats, _ int) {
			r.globalSample(f, "", boolFloat(s.Up))
		}},
	{name: "linkwatch_watcher_netns_lost_total", typ: dto.MetricType_COUNTER,
		help: "Times the watched network namespace (--watcher.netns) was found deleted or replaced: its sockets were closed " +
			"to release it and its links dropped until a namespace at its path could be opened.",
		writeGlobal: func(r *renderer, f *family, s *watcher.Stats, _ int) {
			r.globalSample(f, "", float64(s.NetNSLost))
		}},
}

// families holds every family sorted by name, the order of the exposition.
var families = func() []*family {
	all := slices.Concat(linkFamilies, globalFamilies)
	slices.SortFunc(all, func(a, b *family) int { return strings.Compare(a.name, b.name) })
	for _, f := range all {
		f.link = f.write != nil
		f.sample = []byte(f.name)
		f.header[0] = familyHeader(f, false)
		f.header[1] = familyHeader(f, true)
	}
	return all
}()

// familyByName returns the family called name.
func familyByName(name string) *family {
	for _, f := range families {
		if f.name == name {
			return f
		}
	}
	panic("collector: no family " + name)
}

func hasCounters(l *watcher.Link) bool { return l.HasCounters }

// familyHeader returns the HELP and TYPE lines of f as expfmt writes them.
func familyHeader(f *family, om bool) []byte {
	name, typ := f.name, ""
	switch f.typ {
	case dto.MetricType_GAUGE:
		typ = "gauge"
	case dto.MetricType_COUNTER:
		typ = "counter"
		if om {
			// OpenMetrics names the counter family without its suffix.
			name = strings.TrimSuffix(name, "_total")
		}
	case dto.MetricType_HISTOGRAM:
		typ = "histogram"
	default:
		panic("collector: unexpected type " + f.typ.String())
	}
	b := append([]byte("# HELP "), name...)
	b = append(b, ' ')
	if om {
		b = appendEscaped(b, f.help)
	} else {
		b = appendHelp(b, f.help)
	}
	b = append(b, "\n# TYPE "...)
	b = append(b, name...)
	b = append(b, ' ')
	b = append(b, typ...)
	return append(b, '\n')
}

// A prepared link is a link of a snapshot with its label values made valid
// UTF-8 (the text formats and the registry require it) and its device
// label rendered once for all its families.
type prepared struct {
	l                                  *watcher.Link
	name, kind, address, master, alias string
	dev                                []byte // `{device="<escaped name>"`
}

// prepare fills p from l; arena holds the rendered device labels.
func (p *prepared) prepare(l *watcher.Link, arena []byte) []byte {
	p.l = l
	p.name, p.kind, p.address = validUTF8(l.Name), validUTF8(l.Kind), validUTF8(l.Address)
	p.master, p.alias = validUTF8(l.Master), validUTF8(l.Alias)
	start := len(arena)
	arena = append(arena, `{device="`...)
	arena = appendEscaped(arena, p.name)
	arena = append(arena, '"')
	p.dev = arena[start:len(arena):len(arena)]
	return arena
}

// validUTF8 replaces invalid UTF-8 in s: link names and aliases are
// arbitrary bytes, label values must be UTF-8.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// byDevice orders prepared links by their device label.
func byDevice(a, b *prepared) int {
	if c := strings.Compare(a.name, b.name); c != 0 {
		return c
	}
	return int(a.l.Index) - int(b.l.Index)
}

// byInfo orders prepared links as the registry orders linkwatch_link_info:
// by its label values in label name order (address, alias, device, ...);
// devices are unique, so the labels after it never decide.
func byInfo(a, b *prepared) int {
	if c := strings.Compare(a.address, b.address); c != 0 {
		return c
	}
	if c := strings.Compare(a.alias, b.alias); c != 0 {
		return c
	}
	return byDevice(a, b)
}

// A renderer appends samples in one of the two text formats to b.
type renderer struct {
	b  []byte
	om bool // OpenMetrics 1.0 rather than the Prometheus text format 0.0.4
	// le holds, for each histogram bound and +Inf, `,le="<bound>"} `.
	le [][]byte
}

func newRenderer(bounds []float64, om bool) *renderer {
	r := &renderer{om: om}
	for _, b := range append(slices.Clone(bounds), math.Inf(1)) {
		le := append([]byte(`,le="`), appendFloat(nil, b, om)...)
		r.le = append(r.le, append(le, `"} `...))
	}
	return r
}

// start appends the sample name with suffix and the device label.
func (r *renderer) start(f *family, suffix string, p *prepared) {
	r.b = append(r.b, f.sample...)
	r.b = append(r.b, suffix...)
	r.b = append(r.b, p.dev...)
}

func (r *renderer) boolSample(f *family, p *prepared, v bool) {
	r.start(f, "", p)
	r.b = append(r.b, "} "...)
	r.b = r.appendBool(r.b, v)
	r.b = append(r.b, '\n')
}

func (r *renderer) uintSample(f *family, p *prepared, v uint64) {
	r.start(f, "", p)
	r.b = append(r.b, "} "...)
	r.b = appendFloat(r.b, float64(v), r.om)
	r.b = append(r.b, '\n')
}

func (r *renderer) floatSample(f *family, p *prepared, v float64) {
	r.start(f, "", p)
	r.b = append(r.b, "} "...)
	r.b = appendFloat(r.b, v, r.om)
	r.b = append(r.b, '\n')
}

// globalSample appends a sample of a global family with the given rendered
// labels (none if empty).
func (r *renderer) globalSample(f *family, labels string, v float64) {
	r.b = append(r.b, f.sample...)
	if labels != "" {
		r.b = append(r.b, '{')
		r.b = append(r.b, labels...)
		r.b = append(r.b, '}')
	}
	r.b = append(r.b, ' ')
	r.b = appendFloat(r.b, v, r.om)
	r.b = append(r.b, '\n')
}

func (r *renderer) appendBool(b []byte, v bool) []byte {
	switch {
	case v && r.om:
		return append(b, "1.0"...)
	case v:
		return append(b, '1')
	case r.om:
		return append(b, "0.0"...)
	default:
		return append(b, '0')
	}
}

// An operStateLabel is one operational state and its rendered label.
type operStateLabel struct {
	state watcher.OperState
	label string // `,state="<name>"} `
}

// operStateLabels holds every operational state in the order the registry
// sorts the label values: by name.
var operStateLabels = func() []operStateLabel {
	var out []operStateLabel
	for _, s := range watcher.OperStates {
		out = append(out, operStateLabel{s, `,state="` + s.String() + `"} `})
	}
	slices.SortFunc(out, func(a, b operStateLabel) int { return strings.Compare(a.state.String(), b.state.String()) })
	return out
}()

func writeOperState(r *renderer, f *family, p *prepared) {
	for _, s := range operStateLabels {
		r.start(f, "", p)
		r.b = append(r.b, s.label...)
		r.b = r.appendBool(r.b, p.l.OperState == s.state)
		r.b = append(r.b, '\n')
	}
}

func writeTransitions(r *renderer, f *family, p *prepared) {
	r.start(f, "", p)
	r.b = append(r.b, `,to="down"} `...)
	r.b = appendFloat(r.b, float64(p.l.TransitionsDown), r.om)
	r.b = append(r.b, '\n')
	r.start(f, "", p)
	r.b = append(r.b, `,to="up"} `...)
	r.b = appendFloat(r.b, float64(p.l.TransitionsUp), r.om)
	r.b = append(r.b, '\n')
}

// writeInfo appends linkwatch_link_info, whose labels are in name order:
// address, alias, device, ifindex, kind, master.
func writeInfo(r *renderer, f *family, p *prepared) {
	b := append(r.b, f.sample...)
	b = append(b, `{address="`...)
	b = appendEscaped(b, p.address)
	b = append(b, `",alias="`...)
	b = appendEscaped(b, p.alias)
	b = append(b, `",device="`...)
	b = appendEscaped(b, p.name)
	b = append(b, `",ifindex="`...)
	b = strconv.AppendInt(b, int64(p.l.Index), 10)
	b = append(b, `",kind="`...)
	b = appendEscaped(b, p.kind)
	b = append(b, `",master="`...)
	b = appendEscaped(b, p.master)
	b = append(b, `"} `...)
	b = r.appendBool(b, true)
	r.b = append(b, '\n')
}

// histogram appends the classic histogram h; its native buckets appear only
// in the protobuf format.
func (r *renderer) histogram(f *family, p *prepared, h *watcher.Histogram) {
	for i, le := range r.le {
		var n uint64
		switch {
		case i == len(r.le)-1:
			n = h.Count
		case i < len(h.Buckets):
			n = h.Buckets[i]
		}
		r.start(f, "_bucket", p)
		r.b = append(r.b, le...)
		r.b = r.appendCount(r.b, n)
		r.b = append(r.b, '\n')
	}
	r.start(f, "_sum", p)
	r.b = append(r.b, "} "...)
	r.b = appendFloat(r.b, h.Sum, r.om)
	r.b = append(r.b, "\n"...)
	r.start(f, "_count", p)
	r.b = append(r.b, "} "...)
	r.b = r.appendCount(r.b, h.Count)
	r.b = append(r.b, '\n')
}

// appendCount appends a histogram count: OpenMetrics writes it as an
// integer, the text format as a float.
func (r *renderer) appendCount(b []byte, n uint64) []byte {
	if r.om {
		return strconv.AppendUint(b, n, 10)
	}
	return appendFloat(b, float64(n), false)
}

// appendFloat appends v as expfmt writes sample values and le labels: in
// the text format (om false) as strconv's shortest 'g' form, with 1, 0 and
// -1 spelt without exponent; in OpenMetrics the same but always with a
// decimal point or an exponent.
func appendFloat(b []byte, v float64, om bool) []byte {
	switch {
	case v >= 0 && v < 1e6 && v == math.Trunc(v):
		// Small whole numbers, most values here, are their own shortest
		// 'g' form; AppendUint is several times faster than AppendFloat.
		b = strconv.AppendUint(b, uint64(v), 10)
		if om {
			b = append(b, ".0"...)
		}
		return b
	case v == -1 && om:
		return append(b, "-1.0"...)
	case v == -1:
		return append(b, "-1"...)
	case math.IsNaN(v):
		return append(b, "NaN"...)
	case math.IsInf(v, +1):
		return append(b, "+Inf"...)
	case math.IsInf(v, -1):
		return append(b, "-Inf"...)
	}
	start := len(b)
	b = strconv.AppendFloat(b, v, 'g', -1, 64)
	if om && !strings.ContainsAny(string(b[start:]), "e.") {
		b = append(b, ".0"...)
	}
	return b
}

// appendEscaped appends a label value (or an OpenMetrics HELP text) with
// backslash, newline and double quote escaped.
func appendEscaped(b []byte, s string) []byte {
	if !strings.ContainsAny(s, "\\\n\"") {
		return append(b, s...)
	}
	for i := range len(s) {
		switch c := s[i]; c {
		case '\\':
			b = append(b, `\\`...)
		case '\n':
			b = append(b, `\n`...)
		case '"':
			b = append(b, `\"`...)
		default:
			b = append(b, c)
		}
	}
	return b
}

// appendHelp appends a HELP text of the text format, where only backslash
// and newline are escaped.
func appendHelp(b []byte, s string) []byte {
	for i := range len(s) {
		switch c := s[i]; c {
		case '\\':
			b = append(b, `\\`...)
		case '\n':
			b = append(b, `\n`...)
		default:
			b = append(b, c)
		}
	}
	return b
}
