package watcher

import (
	"bytes"
	"encoding/binary"
	"errors"
	"maps"
	"math"
	"reflect"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
)

// FuzzDecodeAndApply feeds a sequence of link messages through decodeLink and
// table.apply, as the watcher does, with a synthetic clock, and checks after
// every step the guarantees of the decoder and of the link table.
//
// Framing of an input (all of it is used; a record cut off at the end ends
// the sequence):
//
//	input  = config record*
//	config = 1 byte: bit 0 enables native histograms; bit 1 enables a device
//	         filter that does not export links named "lo" or starting with "x"
//	record = op [len body]
//	op     = 1 byte: the high 5 bits k advance the clock by k³·5 ms (0 to
//	         about 149 s) before the step; the low 3 bits select it:
//	           0-3  RTM_NEWLINK notification (applied as exact)
//	           4    RTM_NEWLINK of a dump (applied as not exact)
//	           5    RTM_DELLINK notification
//	           6    beginResync (no len, no body)
//	           7    endResync   (no len, no body)
//	len    = 2 bytes, little endian: the length of body, cut to what is left
//	body   = a message body as decodeLink takes it: ifinfomsg and attributes
//	         (native byte order, as the kernel sends them)
//
// fuzzRecord and fuzzInput build inputs in this framing.
func FuzzDecodeAndApply(f *testing.F) {
	upFlags := uint32(iffUp | iffBroadcast | iffRunning | iffMulticast | iffLowerUp)
	veth := func(index int32, name string, carrier bool, up, down uint32) []byte {
		flags := uint32(iffUp | iffBroadcast | iffMulticast)
		if carrier {
			flags = upFlags
		}
		return ifinfomsg(f, afUnspec, index, flags, func(ae *netlink.AttributeEncoder) {
			linkAttrs(name, carrier, up, down)(ae)
			ae.Bytes(iflaAddress, []byte{0x0e, 0, 0, 0, 0, byte(index)})
			ae.Nested(iflaLinkinfo, func(nae *netlink.AttributeEncoder) error {
				nae.String(iflaInfoKind, "veth")
				return nil
			})
		})
	}
	bridge := ifinfomsg(f, afUnspec, 3, upFlags, func(ae *netlink.AttributeEncoder) {
		linkAttrs("br0", true, 1, 0)(ae)
		ae.Nested(iflaLinkinfo, func(nae *netlink.AttributeEncoder) error {
			nae.String(iflaInfoKind, "bridge")
			return nil
		})
	})
	port := ifinfomsg(f, afUnspec, 4, upFlags, func(ae *netlink.AttributeEncoder) {
		linkAttrs("veth1", true, 1, 0)(ae)
		ae.Uint32(iflaMaster, 3)
	})
	oldKernel := func(carrier bool) []byte {
		flags := uint32(iffUp)
		if carrier {
			flags |= iffLowerUp
		}
		return ifinfomsg(f, afUnspec, 5, flags, func(ae *netlink.AttributeEncoder) {
			ae.String(iflaIfname, "eth5")
			ae.Uint8(iflaOperstate, uint8(OperUnknown))
		})
	}
	const (
		event  = 0
		dump   = 4
		del    = 5
		begin  = 6
		end    = 7
		second = 6 << 3 // advance 6³·5 ms = 1.08 s
		minute = 23 << 3
	)
	seeds := [][]byte{
		// A veth pair that flaps cleanly, then in coalesced batches, then
		// goes away.
		fuzzInput(0,
			fuzzRecord(event, veth(7, "veth0", true, 1, 0)),
			fuzzRecord(event|second, veth(7, "veth0", false, 1, 1)),
			fuzzRecord(event|minute, veth(7, "veth0", true, 2, 1)),
			fuzzRecord(event|second, veth(7, "veth0", true, 5, 4)),
			fuzzRecord(event|second, veth(7, "veth0", false, 5, 6)),
			fuzzRecord(event, veth(7, "veth0", false, 5, 6)), // duplicate, same time
			fuzzRecord(event|minute, veth(7, "veth0", true, 7, 6)),
			fuzzRecord(del|second, ifinfomsg(f, afUnspec, 7, 0, linkAttrs("veth0", false, 7, 7))),
		),
		// A bridge and its port, a bridge port message of family 7 (not a
		// deletion), a rename and a resync that loses the port.
		fuzzInput(3,
			fuzzRecord(dump, bridge),
			fuzzRecord(dump, port),
			fuzzRecord(del|second, ifinfomsg(f, afBridge, 4, upFlags, linkAttrs("veth1", true, 1, 0))),
			fuzzRecord(event|second, ifinfomsg(f, afUnspec, 4, upFlags, linkAttrs("xport", true, 1, 0))),
			[]byte{begin | minute},
			fuzzRecord(dump, bridge),
			[]byte{end},
		),
		// An ifindex taken over by a new device: counters go backwards.
		fuzzInput(1,
			fuzzRecord(event, veth(9, "veth9", true, 5, 4)),
			fuzzRecord(event|second, veth(9, "veth9", false, 5, 5)),
			fuzzRecord(event|second, veth(9, "veth9", true, 1, 0)), // stale: same device
			fuzzRecord(event|second, veth(9, "vethX", true, 1, 0)), // a new device
		),
		// A kernel without carrier counters, timed by edges.
		fuzzInput(1,
			fuzzRecord(event, oldKernel(true)),
			fuzzRecord(event|second, oldKernel(false)),
			fuzzRecord(event|minute, oldKernel(true)),
		),
		// Truncated messages between good ones.
		fuzzInput(0,
			fuzzRecord(event, veth(2, "veth2", true, 1, 0)),
			fuzzRecord(event|second, veth(2, "veth2", false, 1, 1)[:sizeofIfInfomsg-1]),
			fuzzRecord(event|second, veth(2, "veth2", false, 1, 1)[:sizeofIfInfomsg+10]),
			fuzzRecord(event|second, veth(2, "veth2", true, 2, 1)),
		),
	}
	for _, s := range seeds {
		f.Add(s)
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		h := newFuzzHarness(t, data)
		h.run()
	})
}

// fuzzRecord frames one record of FuzzDecodeAndApply: an op byte followed by
// the length-prefixed body.
func fuzzRecord(op byte, body []byte) []byte {
	b := []byte{op, 0, 0}
	binary.LittleEndian.PutUint16(b[1:], uint16(len(body)))
	return append(b, body...)
}

// fuzzInput frames a whole input of FuzzDecodeAndApply.
func fuzzInput(config byte, records ...[]byte) []byte {
	return append([]byte{config}, bytes.Join(records, nil)...)
}

var fuzzBounds = []float64{0.01, 0.1, 1, 10, 60, 600, 3600}

// fuzzLink is what the harness remembers of a link between steps.
type fuzzLink struct {
	ptr  *link // identity of the live state: a new pointer is a new device
	copy Link  // deep copy of the state after the previous step

	// baseDown is CarrierDownCount when the link was added; initialUp is
	// Up then.
	baseDown  uint32
	initialUp bool
	// extraDowns counts carrier losses that the kernel's counters did not
	// show: the carrier went down while both counters stood still (always
	// so on kernels without counters). The table counts each as one down
	// period, from the edge.
	extraDowns uint64
}

type fuzzHarness struct {
	t      *testing.T
	data   []byte
	tb     *table
	native bool
	now    time.Time
	step   int

	links map[int32]*fuzzLink
	// mentioned holds the ifindexes of the device messages applied since
	// the last beginResync (or the start).
	mentioned map[int32]bool
	// snap is the previous snapshot and snapCopy a deep copy of it: later
	// steps must not change it.
	snap, snapCopy []Link
}

func newFuzzHarness(t *testing.T, data []byte) *fuzzHarness {
	h := &fuzzHarness{
		t: t, now: time.Unix(1_700_000_000, 0),
		links: make(map[int32]*fuzzLink), mentioned: make(map[int32]bool),
	}
	var cfg byte
	if len(data) > 0 {
		cfg, data = data[0], data[1:]
	}
	h.data = data
	h.native = cfg&1 != 0
	var flt filter
	if cfg&2 != 0 {
		flt.exclude = regexp.MustCompile(`lo|x.*`)
	}
	h.tb = newTable(fuzzBounds, h.native, flt)
	return h
}

func (h *fuzzHarness) run() {
	for len(h.data) > 0 {
		op := h.data[0]
		h.data = h.data[1:]
		k := int64(op >> 3)
		h.now = h.now.Add(time.Duration(k*k*k) * 5 * time.Millisecond)
		h.step++
		switch kind := op & 7; kind {
		case 6:
			h.beginResync()
		case 7:
			h.endResync()
		default:
			if len(h.data) < 2 {
				return
			}
			n := min(int(binary.LittleEndian.Uint16(h.data)), len(h.data)-2)
			body := h.data[2 : 2+n]
			h.data = h.data[2+n:]
			msgType := uint16(rtmNewLink)
			if kind == 5 {
				msgType = rtmDelLink
			}
			h.message(msgType, body, kind < 4)
		}
		h.checkTable()
	}
}

func (h *fuzzHarness) fatalf(format string, args ...any) {
	h.t.Helper()
	h.t.Fatalf("step %d: "+format, append([]any{h.step}, args...)...)
}

// message decodes and applies one message, checking the decoder's contract
// and what apply did to the link the message is about.
func (h *fuzzHarness) message(msgType uint16, body []byte, exact bool) {
	before := h.liveCopy()
	var u update
	err := decodeLink(msgType, body, &u)
	// Decoding into an update left over from another message gives the
	// same result: nothing of the previous message leaks.
	dirty := update{
		deleted: true, family: 9, index: 99, flags: 0xffffffff, name: []byte("stale"), kind: []byte("k"),
		alias: []byte("a"), address: []byte{1}, mtu: 1, master: 2, operState: OperUp, carrier: true,
		hasOperState: true, hasCarrier: true, hasCounters: true, carrierChanges: 3, carrierUp: 4, carrierDown: 5,
	}
	err2 := decodeLink(msgType, body, &dirty)
	if (err == nil) != (err2 == nil) || (err == nil && !reflect.DeepEqual(u, dirty)) {
		h.fatalf("decoding into a used update differs: %+v, %v vs %+v, %v", u, err, dirty, err2)
	}
	if err != nil {
		if !errors.Is(err, errShort) {
			h.fatalf("decode error %q does not wrap errShort", err)
		}
		if len(body) >= sizeofIfInfomsg && !bytes.Contains([]byte(err.Error()), []byte("decode link")) {
			h.fatalf("attribute error %q does not name the link", err)
		}
		h.sameTable(before, "a message that failed to decode")
		return // the watcher counts it and skips the message
	}
	h.checkDecoded(msgType, body, &u)

	prev := h.links[u.index]
	var prevCopy Link
	if prev != nil {
		prevCopy = prev.copy
	}
	tr, ok := h.tb.apply(&u, h.now, exact)
	cur := h.tb.links[u.index]

	if u.family != afUnspec {
		// A bridge port message changes nothing, even a "deletion".
		if ok {
			h.fatalf("family %d message published %+v", u.family, tr)
		}
		h.sameTable(before, "a bridge port message")
		return
	}
	h.mentioned[u.index] = true

	if u.deleted {
		if cur != nil {
			h.fatalf("link %d still present after RTM_DELLINK", u.index)
		}
		if ok != (prev != nil) {
			h.fatalf("RTM_DELLINK of a link that existed %v published %v", prev != nil, ok)
		}
		if ok && (!tr.Deleted || tr.Index != u.index || tr.Name != prevCopy.Name || !tr.Time.Equal(h.now)) {
			h.fatalf("deletion transition %+v for link %d %q", tr, u.index, prevCopy.Name)
		}
		return
	}

	if cur == nil {
		h.fatalf("no link %d after RTM_NEWLINK", u.index)
	}
	isNew := prev == nil || prev.ptr != cur
	backwards := prev != nil && prevCopy.HasCounters && u.hasCounters &&
		(u.carrierUp < prevCopy.CarrierUpCount || u.carrierDown < prevCopy.CarrierDownCount)
	if backwards && isNew == (string(u.name) == prevCopy.Name && string(u.kind) == prevCopy.Kind &&
		formatAddress(u.address) == prevCopy.Address) {
		h.fatalf("counters of link %d went backwards: replaced %v, for %+v after %+v", u.index, isNew, u, prevCopy)
	}
	switch {
	case isNew:
		// A new device (first seen, or taking over the ifindex) is always
		// published, with a fresh baseline.
		if !ok || tr.Deleted || tr.CarrierUps != 0 || tr.CarrierDowns != 0 {
			h.fatalf("new link %d published %v: %+v", u.index, ok, tr)
		}
	case backwards:
		// Counters behind the link's own, with the link's own name, kind
		// and address: an old message of the same device, which must
		// change nothing.
		if ok {
			h.fatalf("stale message for link %d published %+v", u.index, tr)
		}
		if !reflect.DeepEqual(cur.Link, prevCopy) {
			h.fatalf("stale message changed link %d:\n%+v\nto\n%+v", u.index, prevCopy, cur.Link)
		}
	case !ok:
		// Unpublished: nothing a subscriber cares about changed.
		c := cur.Link
		if c.Name != prevCopy.Name || c.Up != prevCopy.Up || c.AdminUp != prevCopy.AdminUp ||
			c.Carrier != prevCopy.Carrier || c.OperState != prevCopy.OperState ||
			c.CarrierUpCount != prevCopy.CarrierUpCount || c.CarrierDownCount != prevCopy.CarrierDownCount {
			h.fatalf("link %d changed without a transition:\n%+v\nto\n%+v", u.index, prevCopy, c)
		}
	default:
		c := cur.Link
		if c.HasCounters && (c.CarrierUpCount != prevCopy.CarrierUpCount || c.CarrierDownCount != prevCopy.CarrierDownCount) &&
			(tr.CarrierUps != c.CarrierUpCount-prevCopy.CarrierUpCount || tr.CarrierDowns != c.CarrierDownCount-prevCopy.CarrierDownCount) {
			h.fatalf("transition counts %d/%d, counters moved %d/%d",
				tr.CarrierUps, tr.CarrierDowns, c.CarrierUpCount-prevCopy.CarrierUpCount, c.CarrierDownCount-prevCopy.CarrierDownCount)
		}
	}
	if ok {
		c := cur.Link
		if tr.Index != u.index || tr.Deleted || !tr.Time.Equal(h.now) || tr.Name != c.Name || tr.Up != c.Up ||
			tr.AdminUp != c.AdminUp || tr.Carrier != c.Carrier || tr.OperState != c.OperState {
			h.fatalf("transition %+v does not describe link %+v", tr, c)
		}
	}
	if !isNew {
		// Periods are timed only from exact messages, at most one per
		// message, and last no longer than the link has been known.
		c := cur.Link
		timed := c.DownDurations.Count + c.UpDurations.Count - prevCopy.DownDurations.Count - prevCopy.UpDurations.Count
		if timed > 1 || (timed == 1 && !exact) {
			h.fatalf("%d periods timed by one message (exact %v)", timed, exact)
		}
		if timed == 1 {
			v := c.DownDurations.Sum + c.UpDurations.Sum - prevCopy.DownDurations.Sum - prevCopy.UpDurations.Sum
			if life := h.now.Sub(c.FirstSeen).Seconds(); v < 0 || v > life*(1+1e-9) {
				h.fatalf("timed a period of %vs for a link known for %vs", v, life)
			}
		}
	}
}

// checkDecoded checks what decodeLink returned for a message it accepted.
func (h *fuzzHarness) checkDecoded(msgType uint16, body []byte, u *update) {
	if len(body) < sizeofIfInfomsg {
		h.fatalf("decoded a %d byte message", len(body))
	}
	if u.deleted != (msgType == rtmDelLink) || u.family != body[0] ||
		u.index != int32(binary.NativeEndian.Uint32(body[4:8])) || u.flags != binary.NativeEndian.Uint32(body[8:12]) {
		h.fatalf("ifinfomsg decoded as %+v", u)
	}
	for _, s := range [][]byte{u.name, u.kind, u.alias} {
		if bytes.IndexByte(s, 0) >= 0 {
			h.fatalf("string attribute %q keeps a NUL", s)
		}
	}
	if !u.hasCarrier && u.carrier != (u.flags&iffLowerUp != 0) {
		h.fatalf("carrier %v without IFLA_CARRIER, flags %#x", u.carrier, u.flags)
	}
	if !u.hasCounters && (u.carrierUp != 0 || u.carrierDown != 0) {
		h.fatalf("counters %d/%d without both counter attributes", u.carrierUp, u.carrierDown)
	}
}

func (h *fuzzHarness) beginResync() {
	before := h.liveCopy()
	h.tb.beginResync()
	clear(h.mentioned)
	h.sameTable(before, "beginResync")
}

func (h *fuzzHarness) endResync() {
	before := h.liveCopy()
	var deleted []Transition
	h.tb.endResync(h.now, func(tr Transition) { deleted = append(deleted, tr) })
	seen := make(map[int32]bool)
	for _, tr := range deleted {
		if !tr.Deleted || !tr.Time.Equal(h.now) || seen[tr.Index] {
			h.fatalf("endResync published %+v (twice: %v)", tr, seen[tr.Index])
		}
		seen[tr.Index] = true
		if _, ok := before[tr.Index]; !ok || h.mentioned[tr.Index] {
			h.fatalf("endResync deleted link %d, which existed %v, mentioned %v", tr.Index, ok, h.mentioned[tr.Index])
		}
	}
	for i := range before {
		_, kept := h.tb.links[i]
		if kept != h.mentioned[i] || kept == seen[i] {
			h.fatalf("after endResync link %d kept %v, mentioned %v, deletion published %v", i, kept, h.mentioned[i], seen[i])
		}
	}
	if len(h.tb.links)+len(deleted) != len(before) {
		h.fatalf("endResync: %d links + %d deleted, had %d", len(h.tb.links), len(deleted), len(before))
	}
}

// liveCopy returns the live link pointers by ifindex.
func (h *fuzzHarness) liveCopy() map[int32]*link {
	return maps.Clone(h.tb.links)
}

// sameTable checks that op changed no link.
func (h *fuzzHarness) sameTable(before map[int32]*link, op string) {
	if !maps.Equal(before, h.tb.links) {
		h.fatalf("%s changed the set of links", op)
	}
	for i, l := range h.tb.links {
		if fl := h.links[i]; fl == nil || !reflect.DeepEqual(fl.copy, l.Link) {
			h.fatalf("%s changed link %d", op, i)
		}
	}
}

// checkTable checks the invariants of every link after a step, and that the
// previous snapshot was not changed by it.
func (h *fuzzHarness) checkTable() {
	h.t.Helper()
	if h.snap != nil && !reflect.DeepEqual(h.snap, h.snapCopy) {
		h.fatalf("a snapshot changed after it was taken:\n%+v\nwant\n%+v", h.snap, h.snapCopy)
	}
	for i, fl := range h.links {
		if l := h.tb.links[i]; l == nil || l != fl.ptr {
			delete(h.links, i) // gone or replaced
		}
	}
	for i, l := range h.tb.links {
		if l.Index != i {
			h.fatalf("link %d is stored under ifindex %d", l.Index, i)
		}
		h.checkLink(l)
		fl := h.links[i]
		if fl == nil {
			// Added by this step, with a fresh baseline.
			if !l.FirstSeen.Equal(h.now) || !l.LastChange.Equal(h.now) || l.DownDurations.Count != 0 ||
				l.UpDurations.Count != 0 || l.UntimedDown != 0 || l.TransitionsUp != 0 || l.TransitionsDown != 0 {
				h.fatalf("new link %d does not start afresh: %+v", i, l.Link)
			}
			h.links[i] = &fuzzLink{ptr: l, copy: cloneLink(l.Link), baseDown: l.CarrierDownCount, initialUp: l.Up}
			continue
		}
		h.checkProgress(fl, l)
		fl.copy = cloneLink(l.Link)
	}

	// The snapshot holds a copy of exactly the exported links.
	snap := h.tb.snapshot(nil)
	slices.SortFunc(snap, func(a, b Link) int { return int(a.Index) - int(b.Index) })
	var want []Link
	for _, i := range slices.Sorted(maps.Keys(h.tb.links)) {
		l := h.tb.links[i]
		if h.tb.filter.match(l.Name) {
			c := l.Link
			c.Master = h.tb.masterName(l.master)
			want = append(want, c)
		}
	}
	if (len(snap) > 0 || len(want) > 0) && !reflect.DeepEqual(snap, want) {
		h.fatalf("snapshot\n%+v\nwant\n%+v", snap, want)
	}
	h.snap = snap
	h.snapCopy = make([]Link, len(snap))
	for i, l := range snap {
		h.snapCopy[i] = cloneLink(l)
	}
}

// checkLink checks the invariants that hold for any link at any time.
func (h *fuzzHarness) checkLink(l *link) {
	c := &l.Link
	if c.FirstSeen.After(c.LastChange) || c.LastChange.After(h.now) {
		h.fatalf("link %d first seen %v, last changed %v, now %v", c.Index, c.FirstSeen, c.LastChange, h.now)
	}
	if want := c.AdminUp && (c.OperState == OperUp || (c.OperState == OperUnknown && c.Carrier)); c.Up != want {
		h.fatalf("link %d Up %v, want %v from %+v", c.Index, c.Up, want, c)
	}
	if l.exported != h.tb.filter.match(c.Name) {
		h.fatalf("link %q exported %v", c.Name, l.exported)
	}
	if !c.HasCounters && (c.CarrierUpCount != 0 || c.CarrierDownCount != 0) {
		h.fatalf("link %d without counters has counts %d/%d", c.Index, c.CarrierUpCount, c.CarrierDownCount)
	}
	if c.Address != formatAddress(l.rawAddress) {
		h.fatalf("link %d address %q, raw %x", c.Index, c.Address, l.rawAddress)
	}
	h.checkHistogram(c.Index, "down", &c.DownDurations)
	h.checkHistogram(c.Index, "up", &c.UpDurations)
}

func (h *fuzzHarness) checkHistogram(index int32, which string, hg *Histogram) {
	fail := func(why string) { h.fatalf("link %d %s durations: %s: %+v", index, which, why, *hg) }
	if math.IsNaN(hg.Sum) || math.IsInf(hg.Sum, 0) || hg.Sum < 0 {
		fail("bad sum")
	}
	if hg.Count == 0 && (hg.Sum != 0 || hg.Buckets != nil || hg.Native != nil) {
		fail("empty histogram with content")
	}
	if hg.Buckets != nil && len(hg.Buckets) != len(fuzzBounds) {
		fail("bucket layout")
	}
	for i, n := range hg.Buckets {
		if n > hg.Count || (i > 0 && n < hg.Buckets[i-1]) {
			fail("buckets not cumulative or above the count")
		}
	}
	if !h.native && hg.Native != nil {
		fail("native buckets while disabled")
	}
	if h.native {
		var sum int64
		for _, n := range hg.Native {
			if n <= 0 {
				fail("empty native bucket")
			}
			sum += n
		}
		if uint64(sum) != hg.Count {
			fail("native buckets do not add up to the count")
		}
	}
}

// checkProgress checks what may change between two steps of the same link,
// and the down period accounting.
func (h *fuzzHarness) checkProgress(fl *fuzzLink, l *link) {
	p, c := &fl.copy, &l.Link
	if !c.FirstSeen.Equal(p.FirstSeen) || c.HasCounters != p.HasCounters {
		h.fatalf("link %d first seen or counter support changed: %+v to %+v", c.Index, p, c)
	}
	if c.DownDurations.Count < p.DownDurations.Count || c.UpDurations.Count < p.UpDurations.Count ||
		c.UntimedDown < p.UntimedDown || c.TransitionsUp < p.TransitionsUp || c.TransitionsDown < p.TransitionsDown ||
		c.CarrierUpCount < p.CarrierUpCount || c.CarrierDownCount < p.CarrierDownCount ||
		c.DownDurations.Sum < p.DownDurations.Sum || c.UpDurations.Sum < p.UpDurations.Sum {
		h.fatalf("link %d went backwards: %+v to %+v", c.Index, p, c)
	}
	if c.Up != p.Up && !c.LastChange.Equal(h.now) {
		h.fatalf("link %d changed Up without LastChange", c.Index)
	}
	// Transitions alternate, starting from the state the link was added in.
	if got, want := int64(c.TransitionsUp)-int64(c.TransitionsDown), b2i(c.Up)-b2i(fl.initialUp); got != want {
		h.fatalf("link %d: %d up and %d down transitions, Up %v, initially %v",
			c.Index, c.TransitionsUp, c.TransitionsDown, c.Up, fl.initialUp)
	}

	// The accounting of down periods. Every carrier loss since the link was
	// added is either timed, untimed, or (at most one) still open:
	//	timed + untimed + open = counter growth + losses the counters missed
	// where open is 0 while the carrier is up. A loss the counters missed
	// is a carrier edge to down with both counters unchanged (contradicting
	// the kernel, or a kernel without counters): the table then falls back
	// to the edge. Counters that go backwards never reach this point: the
	// table replaces the link (a new baseline) or drops the message.
	if p.Carrier && !c.Carrier && p.CarrierUpCount == c.CarrierUpCount && p.CarrierDownCount == c.CarrierDownCount {
		fl.extraDowns++
	}
	want := uint64(c.CarrierDownCount-fl.baseDown) + fl.extraDowns
	got := c.DownDurations.Count + c.UntimedDown
	if got > want || (c.Carrier && got != want) || want-got > 1 {
		h.fatalf("link %d (carrier %v): timed %d + untimed %d = %d down periods, counter growth %d + %d missed",
			c.Index, c.Carrier, c.DownDurations.Count, c.UntimedDown, got, c.CarrierDownCount-fl.baseDown, fl.extraDowns)
	}
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// cloneLink returns a copy of l that shares no memory with it.
func cloneLink(l Link) Link {
	l.DownDurations.Buckets = slices.Clone(l.DownDurations.Buckets)
	l.DownDurations.Native = maps.Clone(l.DownDurations.Native)
	l.UpDurations.Buckets = slices.Clone(l.UpDurations.Buckets)
	l.UpDurations.Native = maps.Clone(l.UpDurations.Native)
	return l
}
