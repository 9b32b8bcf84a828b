package watcher

import (
	"net"
	"regexp"
	"slices"
	"strconv"
	"time"
)

// A Link is a copy of one link's state, as returned by Snapshot.
type Link struct {
	Index   int32
	Name    string
	Kind    string // IFLA_INFO_KIND: veth, bridge, vlan, …; empty for physical NICs and lo
	Address string // hardware address, colon-separated hex; empty if none
	Master  string // name of the bridge or bond this link is enslaved to; empty if none
	Alias   string
	MTU     uint32

	AdminUp   bool      // IFF_UP
	Carrier   bool      // IFLA_CARRIER, or IFF_LOWER_UP when the kernel omits it
	OperState OperState // IFLA_OPERSTATE
	// Up is the exporter's notion of a working link: admin up, and either
	// operationally up, or operationally unknown with carrier (lo, tun and
	// wireguard devices never report "up").
	Up bool

	// HasCounters is false on kernels older than 4.16, which do not report the
	// carrier up and down counts; the three counters below are then zero.
	HasCounters      bool
	CarrierChanges   uint32 // IFLA_CARRIER_CHANGES
	CarrierUpCount   uint32 // IFLA_CARRIER_UP_COUNT
	CarrierDownCount uint32 // IFLA_CARRIER_DOWN_COUNT

	// TransitionsUp and TransitionsDown count changes of Up seen by the watcher.
	TransitionsUp   uint64
	TransitionsDown uint64

	// FirstSeen is when the watcher first saw the link, LastChange when it last
	// saw its up, admin, carrier or operational state or its carrier counters
	// change (FirstSeen until then).
	FirstSeen  time.Time
	LastChange time.Time

	// DownDurations and UpDurations hold the completed carrier down and up
	// periods whose start and end were both reported by their own message.
	DownDurations Histogram
	UpDurations   Histogram
	// UntimedDown counts completed carrier down periods that the kernel
	// counted but whose start or end the watcher did not see on its own,
	// because the kernel coalesced several changes into one message or
	// messages were lost. For a link whose carrier is up,
	// DownDurations.Count+UntimedDown equals the growth of CarrierDownCount
	// since FirstSeen.
	UntimedDown uint64

	// Gen changes whenever any other field of the link changes, and only
	// then, except Master, which is the master's name resolved when the
	// copy is made: a consumer can keep what it derives from a link for as
	// long as Gen and Master stay the same. Gens are unique within a
	// watcher, also across links, so a link that replaces another on the
	// same ifindex never repeats its Gen.
	Gen uint64
}

// sameAs reports whether l and o agree on every field but Gen and Master.
// Histograms are compared by count and sum, which every observation
// changes. TestGenCoversEveryField keeps the list complete.
func (l *Link) sameAs(o *Link) bool {
	return l.Index == o.Index && l.Name == o.Name && l.Kind == o.Kind && l.Address == o.Address &&
		l.Alias == o.Alias && l.MTU == o.MTU &&
		l.AdminUp == o.AdminUp && l.Carrier == o.Carrier && l.OperState == o.OperState && l.Up == o.Up &&
		l.HasCounters == o.HasCounters && l.CarrierChanges == o.CarrierChanges &&
		l.CarrierUpCount == o.CarrierUpCount && l.CarrierDownCount == o.CarrierDownCount &&
		l.TransitionsUp == o.TransitionsUp && l.TransitionsDown == o.TransitionsDown &&
		l.FirstSeen == o.FirstSeen && l.LastChange == o.LastChange &&
		l.DownDurations.Count == o.DownDurations.Count && l.DownDurations.Sum == o.DownDurations.Sum &&
		l.UpDurations.Count == o.UpDurations.Count && l.UpDurations.Sum == o.UpDurations.Sum &&
		l.UntimedDown == o.UntimedDown
}

// A Transition tells a subscriber that a link changed. Transitions of the same
// link that the subscriber has not read yet are merged: the state fields are
// the newest, the counts are added up.
type Transition struct {
	Index int32
	Name  string
	// Time is when the newest merged change was received.
	Time time.Time

	Up        bool
	AdminUp   bool
	Carrier   bool
	OperState OperState
	// Deleted is true if the link is gone.
	Deleted bool

	// CarrierUps and CarrierDowns are the growth of the kernel's carrier up
	// and down counters: every flap, including those the kernel coalesced.
	CarrierUps   uint32
	CarrierDowns uint32
}

// link is the watcher's live state for one ifindex.
type link struct {
	Link
	rawAddress []byte // the bytes Address was formatted from
	master     int32
	exported   bool
	epoch      uint64

	// The current carrier period: when it began, whether that start was
	// seen exactly (its own message), and whether it is a down period the
	// kernel's down counter has counted since FirstSeen.
	periodStart   time.Time
	periodExact   bool
	periodCounted bool
}

// A filter decides from a link's name whether the link is exported.
type filter struct {
	include, exclude *regexp.Regexp
}

func (f filter) match(name string) bool {
	if f.include != nil && !f.include.MatchString(name) {
		return false
	}
	return f.exclude == nil || !f.exclude.MatchString(name)
}

// A table is the link state of one network namespace, keyed by ifindex. It is
// pure: it neither does I/O nor reads the clock, and is not safe for
// concurrent use on its own.
type table struct {
	links   map[int32]*link
	bounds  []float64
	native  bool
	filter  filter
	epoch   uint64 // bumped by each resync; links carry the epoch they were last seen in
	gen     uint64 // the last Gen handed out
	ignored uint64 // messages not about a device (AF_BRIDGE port messages)
	stale   uint64 // messages older than the state they would replace
}

func newTable(bounds []float64, native bool, f filter) *table {
	return &table{links: make(map[int32]*link), bounds: bounds, native: native, filter: f}
}

// apply folds one decoded message into the table. exact is true for event
// messages, whose receive time is when the change happened, and false for
// dump messages, which only tell the state at some time after it. It returns
// the transition to publish and whether there is one.
func (t *table) apply(u *update, now time.Time, exact bool) (Transition, bool) {
	if u.family != afUnspec {
		// AF_BRIDGE messages describe bridge ports: an RTM_DELLINK of family
		// 7 means "left the bridge", not "device deleted".
		t.ignored++
		return Transition{}, false
	}
	l := t.links[u.index]
	if l != nil {
		l.epoch = t.epoch
	}
	if u.deleted {
		if l == nil {
			return Transition{}, false
		}
		delete(t.links, u.index)
		tr := l.transition(now)
		tr.Deleted = true
		return tr, true
	}
	if l != nil && l.replacedBy(u) {
		if l.sameDevice(u) {
			t.stale++
			return Transition{}, false
		}
		delete(t.links, u.index) // the ifindex now belongs to a new device
		l = nil
	}
	if l == nil {
		l = t.add(u, now)
		return l.transition(now), true
	}
	ups, downs, changed := l.update(u, now, exact, t)
	if !changed {
		return Transition{}, false
	}
	tr := l.transition(now)
	tr.CarrierUps, tr.CarrierDowns = ups, downs
	return tr, true
}

// replacedBy reports whether u cannot be a later state of the same device:
// its kind differs or its carrier counters went backwards.
func (l *link) replacedBy(u *update) bool {
	if string(u.kind) != l.Kind {
		return true
	}
	return l.HasCounters && u.hasCounters &&
		(u.carrierUp < l.CarrierUpCount || u.carrierDown < l.CarrierDownCount)
}

// sameDevice reports whether u, though its counters are lower, carries the
// link's own name, address and kind: then it is an old message that was
// queued before a dump, not a new device that took over the index.
func (l *link) sameDevice(u *update) bool {
	return string(u.name) == l.Name && string(u.kind) == l.Kind && string(u.address) == string(l.rawAddress)
}

// add creates the state of a link first seen in u. Its counters are the
// baseline for everything the link reports later.
func (t *table) add(u *update, now time.Time) *link {
	l := &link{}
	l.Index = u.index
	l.FirstSeen, l.LastChange = now, now
	l.setAttrs(u, t)
	l.setState(u)
	l.HasCounters = u.hasCounters
	l.CarrierChanges, l.CarrierUpCount, l.CarrierDownCount = u.carrierChanges, u.carrierUp, u.carrierDown
	l.periodStart = now
	l.epoch = t.epoch
	l.Gen = t.nextGen()
	t.links[u.index] = l
	return l
}

// nextGen returns a Gen no link has had yet.
func (t *table) nextGen() uint64 {
	t.gen++
	return t.gen
}

// beginResync starts a full dump: every link the dump does not mention
// before endResync is removed by it.
func (t *table) beginResync() { t.epoch++ }

// endResync removes the links the dump since beginResync did not mention:
// their RTM_DELLINK was lost. It calls publish for each.
func (t *table) endResync(now time.Time, publish func(Transition)) {
	for i, l := range t.links {
		if l.epoch != t.epoch {
			delete(t.links, i)
			tr := l.transition(now)
			tr.Deleted = true
			publish(tr)
		}
	}
}

// setAttrs copies the descriptive attributes, allocating only for those that
// changed.
func (l *link) setAttrs(u *update, t *table) {
	if string(u.name) != l.Name || l.Name == "" {
		l.Name = string(u.name)
		l.exported = t.filter.match(l.Name)
	}
	if string(u.kind) != l.Kind {
		l.Kind = string(u.kind)
	}
	if string(u.alias) != l.Alias {
		l.Alias = string(u.alias)
	}
	if string(u.address) != string(l.rawAddress) {
		l.rawAddress = append(l.rawAddress[:0], u.address...)
		l.Address = formatAddress(u.address)
	}
	l.MTU = u.mtu
	l.master = u.master
}

// setState copies admin, carrier and operational state and derives Up.
func (l *link) setState(u *update) {
	l.AdminUp = u.flags&iffUp != 0
	l.Carrier = u.carrier
	if u.hasOperState {
		l.OperState = u.operState
	}
	l.Up = l.AdminUp && (l.OperState == OperUp || (l.OperState == OperUnknown && l.Carrier))
}

// update applies a message about a known link. It returns the growth of the
// carrier counters and whether the link changed in a way subscribers care
// about.
func (l *link) update(u *update, now time.Time, exact bool, t *table) (ups, downs uint32, changed bool) {
	prev := l.Link
	prevMaster := l.master
	l.setAttrs(u, t)
	l.setState(u)

	switch {
	case l.HasCounters && u.hasCounters:
		ups, downs = u.carrierUp-prev.CarrierUpCount, u.carrierDown-prev.CarrierDownCount
		l.CarrierChanges, l.CarrierUpCount, l.CarrierDownCount = u.carrierChanges, u.carrierUp, u.carrierDown
	case prev.Carrier && !l.Carrier:
		downs = 1
	case !prev.Carrier && l.Carrier:
		ups = 1
	}
	if prev.Carrier != l.Carrier && ups == 0 && downs == 0 {
		// Counters that did not move across a carrier change contradict
		// the kernel; fall back to the edge itself.
		if l.Carrier {
			ups = 1
		} else {
			downs = 1
		}
	}
	l.account(prev.Carrier, ups, downs, now, exact, t)

	if l.Up != prev.Up {
		if l.Up {
			l.TransitionsUp++
		} else {
			l.TransitionsDown++
		}
	}
	changed = ups != 0 || downs != 0 || l.Up != prev.Up || l.AdminUp != prev.AdminUp ||
		l.Carrier != prev.Carrier || l.OperState != prev.OperState
	if changed {
		l.LastChange = now
	}
	if l.master != prevMaster || !l.Link.sameAs(&prev) {
		l.Gen = t.nextGen()
	}
	return ups, downs, changed || l.Name != prev.Name
}

// account closes and opens carrier periods for a message whose counters grew
// by ups and downs, timing each period whose start and end were both seen
// exactly and counting the other down periods as untimed.
func (l *link) account(wasUp bool, ups, downs uint32, now time.Time, exact bool, t *table) {
	if ups == 0 && downs == 0 {
		return
	}
	isUp := l.Carrier
	// A period is timed only if both its ends came in their own notification
	// and at distinct receive times: two changes read in one batch share a
	// timestamp, which says nothing about how far apart they were.
	single := exact && ups+downs == 1
	timed := single && l.periodExact && now.After(l.periodStart)
	// The period that was open ends here.
	switch {
	case wasUp && timed:
		l.UpDurations.observe(now.Sub(l.periodStart).Seconds(), t.bounds, t.native)
	case !wasUp && l.periodCounted && timed:
		l.DownDurations.observe(now.Sub(l.periodStart).Seconds(), t.bounds, t.native)
	case !wasUp && l.periodCounted:
		l.UntimedDown++
	}
	// Down periods that began and ended between two messages.
	inner := int64(downs)
	if !isUp {
		inner-- // the last one is still open
	}
	if inner > 0 {
		l.UntimedDown += uint64(inner)
	}
	// The period that is open now.
	l.periodStart = now
	l.periodExact = single
	l.periodCounted = !isUp && downs > 0
}

// transition describes the link's current state for subscribers.
func (l *link) transition(now time.Time) Transition {
	return Transition{
		Index: l.Index, Name: l.Name, Time: now,
		Up: l.Up, AdminUp: l.AdminUp, Carrier: l.Carrier, OperState: l.OperState,
	}
}

// snapshot appends copies of the exported links to dst. The bucket counts of
// their histograms are copied into one block allocated for the purpose.
func (t *table) snapshot(dst []Link) []Link {
	dst = slices.Grow(dst, len(t.links))
	start, buckets := len(dst), 0
	for _, l := range t.links {
		if !l.exported {
			continue
		}
		c := l.Link
		c.Master = t.masterName(l.master)
		buckets += len(c.DownDurations.Buckets) + len(c.UpDurations.Buckets)
		dst = append(dst, c)
	}
	if buckets > 0 {
		arena := make([]uint64, 0, buckets)
		for i := start; i < len(dst); i++ {
			arena = dst[i].DownDurations.cloneInto(arena)
			arena = dst[i].UpDurations.cloneInto(arena)
		}
	}
	return dst
}

// copyOf returns a copy of l that shares nothing mutable with it.
func (t *table) copyOf(l *link) Link {
	c := l.Link
	c.Master = t.masterName(l.master)
	c.DownDurations = c.DownDurations.clone()
	c.UpDurations = c.UpDurations.clone()
	return c
}

// masterName resolves the ifindex of a master device to its name.
func (t *table) masterName(index int32) string {
	if index == 0 {
		return ""
	}
	if m := t.links[index]; m != nil {
		return m.Name
	}
	return strconv.Itoa(int(index))
}

// lookup returns a copy of the link with the given name, exported or not.
func (t *table) lookup(name string) (Link, bool) {
	for _, l := range t.links {
		if l.Name == name {
			return t.copyOf(l), true
		}
	}
	return Link{}, false
}

func formatAddress(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return net.HardwareAddr(b).String()
}

// clear removes every link, as when the namespace is gone, and calls publish
// with a Deleted transition for each.
func (t *table) clear(now time.Time, publish func(Transition)) {
	t.beginResync()
	t.endResync(now, publish)
}
