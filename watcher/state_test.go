package watcher

import (
	"maps"
	"math"
	"math/rand/v2"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// base is the injected clock's zero; at(d) is base+d. It carries a monotonic
// reading, as time.Now does, so durations use it.
var base = time.Now()

func at(d time.Duration) time.Time { return base.Add(d) }

// newlink returns an RTM_NEWLINK of an admin up device with carrier counters.
// Its operational state follows the carrier.
func newlink(index int32, name string, carrier bool, up, down uint32) *update {
	u := &update{
		index: index, flags: iffUp, name: []byte(name),
		address:   []byte{0x02, 0, 0, 0, 0, byte(index)},
		operState: OperDown, hasOperState: true,
		carrier: carrier, hasCarrier: true,
		hasCounters: true, carrierChanges: up + down, carrierUp: up, carrierDown: down,
	}
	if carrier {
		u.flags |= iffLowerUp
		u.operState = OperUp
	}
	return u
}

// oldlink is newlink as sent by a kernel older than 4.16: no counters.
func oldlink(index int32, name string, carrier bool) *update {
	u := newlink(index, name, carrier, 0, 0)
	u.hasCounters, u.carrierChanges = false, 0
	return u
}

func dellink(index int32, name string, family uint8) *update {
	return &update{deleted: true, family: family, index: index, name: []byte(name)}
}

// with returns a copy of u changed by fn.
func with(u *update, fn func(u *update)) *update {
	c := *u
	fn(&c)
	return &c
}

// A step is one message applied to a table at base+at.
type step struct {
	at    time.Duration
	u     *update
	exact bool
}

// summary is the part of a Link the period accounting is about, with times
// as offsets from base.
type summary struct {
	Name                             string
	Up, Carrier                      bool
	TransitionsUp, TransitionsDown   uint64
	FirstSeen, LastChange            time.Duration
	CarrierUpCount, CarrierDownCount uint32
	DownCount, UpCount               uint64
	DownSum, UpSum                   float64
	UntimedDown                      uint64
}

func summarize(l *Link) summary {
	return summary{
		Name: l.Name, Up: l.Up, Carrier: l.Carrier,
		TransitionsUp: l.TransitionsUp, TransitionsDown: l.TransitionsDown,
		FirstSeen: l.FirstSeen.Sub(base), LastChange: l.LastChange.Sub(base),
		CarrierUpCount: l.CarrierUpCount, CarrierDownCount: l.CarrierDownCount,
		DownCount: l.DownDurations.Count, UpCount: l.UpDurations.Count,
		DownSum: l.DownDurations.Sum, UpSum: l.UpDurations.Sum,
		UntimedDown: l.UntimedDown,
	}
}

// run applies steps to tb and returns the transitions they produced.
func run(tb *table, steps []step) []Transition {
	var trs []Transition
	for _, s := range steps {
		if tr, ok := tb.apply(s.u, at(s.at), s.exact); ok {
			trs = append(trs, tr)
		}
	}
	return trs
}

// tr is a transition of the up device eth0 (index 1), adjusted by fn.
func tr(d time.Duration, carrier bool, ups, downs uint32) Transition {
	op := OperDown
	if carrier {
		op = OperUp
	}
	return Transition{
		Index: 1, Name: "eth0", Time: at(d),
		Up: carrier, AdminUp: true, Carrier: carrier, OperState: op,
		CarrierUps: ups, CarrierDowns: downs,
	}
}

var testBounds = []float64{1, 10, 60}

func TestApplyCarrierPeriods(t *testing.T) {
	t.Parallel()
	const s = time.Second
	tests := []struct {
		name    string
		steps   []step
		want    summary
		wantTrs []Transition
		// contradictory is set when the counters contradict the carrier,
		// so that the down counter invariant cannot hold.
		contradictory bool
	}{
		{
			name:  "new link records a baseline",
			steps: []step{{at: 5 * s, u: newlink(1, "eth0", true, 5, 4), exact: true}},
			want: summary{
				Name: "eth0", Up: true, Carrier: true, FirstSeen: 5 * s, LastChange: 5 * s,
				CarrierUpCount: 5, CarrierDownCount: 4,
			},
			wantTrs: []Transition{tr(5*s, true, 0, 0)},
		},
		{
			name: "clean down then up is timed",
			steps: []step{
				{at: 0, u: newlink(1, "eth0", true, 1, 0), exact: true},
				{at: 10 * s, u: newlink(1, "eth0", false, 1, 1), exact: true},
				{at: 25*s + 250*time.Millisecond, u: newlink(1, "eth0", true, 2, 1), exact: true},
			},
			want: summary{
				Name: "eth0", Up: true, Carrier: true, TransitionsUp: 1, TransitionsDown: 1,
				LastChange: 25*s + 250*time.Millisecond, CarrierUpCount: 2, CarrierDownCount: 1,
				DownCount: 1, DownSum: 15.25,
			},
			wantTrs: []Transition{
				tr(0, true, 0, 0), tr(10*s, false, 0, 1), tr(25*s+250*time.Millisecond, true, 1, 0),
			},
		},
		{
			name: "up period is timed only between two exact ends",
			steps: []step{
				{at: 0, u: newlink(1, "eth0", true, 1, 0), exact: true},
				{at: 10 * s, u: newlink(1, "eth0", false, 1, 1), exact: true},
				{at: 25 * s, u: newlink(1, "eth0", true, 2, 1), exact: true},
				{at: 65 * s, u: newlink(1, "eth0", false, 2, 2), exact: true},
			},
			want: summary{
				Name: "eth0", TransitionsUp: 1, TransitionsDown: 2,
				LastChange: 65 * s, CarrierUpCount: 2, CarrierDownCount: 2,
				DownCount: 1, DownSum: 15, UpCount: 1, UpSum: 40,
			},
			wantTrs: []Transition{
				tr(0, true, 0, 0), tr(10*s, false, 0, 1), tr(25*s, true, 1, 0), tr(65*s, false, 0, 1),
			},
		},
		{
			name: "down and up read in one batch share a timestamp and are untimed",
			steps: []step{
				{at: 0, u: newlink(1, "eth0", true, 1, 0), exact: true},
				{at: 10 * s, u: newlink(1, "eth0", false, 1, 1), exact: true},
				{at: 10 * s, u: newlink(1, "eth0", true, 2, 1), exact: true},
			},
			want: summary{
				Name: "eth0", Up: true, Carrier: true, TransitionsUp: 1, TransitionsDown: 1,
				LastChange: 10 * s, CarrierUpCount: 2, CarrierDownCount: 1, UntimedDown: 1,
			},
			wantTrs: []Transition{tr(0, true, 0, 0), tr(10*s, false, 0, 1), tr(10*s, true, 1, 0)},
		},
		{
			name: "coalesced flaps while carrier stays up are untimed",
			steps: []step{
				{at: 0, u: newlink(1, "eth0", true, 1, 0), exact: true},
				{at: 10 * s, u: newlink(1, "eth0", true, 4, 3), exact: true},
			},
			want: summary{
				Name: "eth0", Up: true, Carrier: true, LastChange: 10 * s,
				CarrierUpCount: 4, CarrierDownCount: 3, UntimedDown: 3,
			},
			wantTrs: []Transition{tr(0, true, 0, 0), tr(10*s, true, 3, 3)},
		},
		{
			name: "coalesced down leaves an open counted down period",
			steps: []step{
				{at: 0, u: newlink(1, "eth0", true, 1, 0), exact: true},
				{at: 10 * s, u: newlink(1, "eth0", false, 2, 2), exact: true},
			},
			want: summary{
				Name: "eth0", TransitionsDown: 1, LastChange: 10 * s,
				CarrierUpCount: 2, CarrierDownCount: 2, UntimedDown: 1,
			},
			wantTrs: []Transition{tr(0, true, 0, 0), tr(10*s, false, 1, 2)},
		},
		{
			name: "clean up after a coalesced down is untimed",
			steps: []step{
				{at: 0, u: newlink(1, "eth0", true, 1, 0), exact: true},
				{at: 10 * s, u: newlink(1, "eth0", false, 2, 2), exact: true},
				{at: 20 * s, u: newlink(1, "eth0", true, 3, 2), exact: true},
			},
			want: summary{
				Name: "eth0", Up: true, Carrier: true, TransitionsUp: 1, TransitionsDown: 1, LastChange: 20 * s,
				CarrierUpCount: 3, CarrierDownCount: 2, UntimedDown: 2,
			},
			wantTrs: []Transition{tr(0, true, 0, 0), tr(10*s, false, 1, 2), tr(20*s, true, 1, 0)},
		},
		{
			name: "coalesced down up down then clean up",
			steps: []step{
				{at: 0, u: newlink(1, "eth0", true, 1, 0), exact: true},
				{at: 10 * s, u: newlink(1, "eth0", false, 1, 1), exact: true},
				{at: 20 * s, u: newlink(1, "eth0", false, 2, 2), exact: true},
				{at: 30 * s, u: newlink(1, "eth0", true, 3, 2), exact: true},
			},
			want: summary{
				Name: "eth0", Up: true, Carrier: true, TransitionsUp: 1, TransitionsDown: 1, LastChange: 30 * s,
				CarrierUpCount: 3, CarrierDownCount: 2, UntimedDown: 2,
			},
			wantTrs: []Transition{tr(0, true, 0, 0), tr(10*s, false, 0, 1), tr(20*s, false, 1, 1), tr(30*s, true, 1, 0)},
		},
		{
			name: "link down at start is neither timed nor untimed",
			steps: []step{
				{at: 0, u: newlink(1, "eth0", false, 1, 2), exact: false},
				{at: 30 * s, u: newlink(1, "eth0", true, 2, 2), exact: true},
			},
			want: summary{
				Name: "eth0", Up: true, Carrier: true, TransitionsUp: 1, LastChange: 30 * s,
				CarrierUpCount: 2, CarrierDownCount: 2,
			},
			wantTrs: []Transition{tr(0, false, 0, 0), tr(30*s, true, 1, 0)},
		},
		{
			name: "link down at start then coalesced flaps",
			steps: []step{
				{at: 0, u: newlink(1, "eth0", false, 1, 2), exact: false},
				{at: 30 * s, u: newlink(1, "eth0", true, 3, 3), exact: true},
			},
			want: summary{
				Name: "eth0", Up: true, Carrier: true, TransitionsUp: 1, LastChange: 30 * s,
				CarrierUpCount: 3, CarrierDownCount: 3, UntimedDown: 1,
			},
			wantTrs: []Transition{tr(0, false, 0, 0), tr(30*s, true, 2, 1)},
		},
		{
			name: "dump messages are never timed",
			steps: []step{
				{at: 0, u: newlink(1, "eth0", true, 1, 0), exact: false},
				{at: 10 * s, u: newlink(1, "eth0", false, 1, 1), exact: false},
				{at: 20 * s, u: newlink(1, "eth0", true, 2, 1), exact: false},
				{at: 30 * s, u: newlink(1, "eth0", false, 2, 2), exact: false},
				{at: 40 * s, u: newlink(1, "eth0", true, 3, 2), exact: false},
			},
			want: summary{
				Name: "eth0", Up: true, Carrier: true, TransitionsUp: 2, TransitionsDown: 2, LastChange: 40 * s,
				CarrierUpCount: 3, CarrierDownCount: 2, UntimedDown: 2,
			},
			wantTrs: []Transition{
				tr(0, true, 0, 0), tr(10*s, false, 0, 1), tr(20*s, true, 1, 0), tr(30*s, false, 0, 1), tr(40*s, true, 1, 0),
			},
		},
		{
			name: "event ending a down period that a dump started is untimed",
			steps: []step{
				{at: 0, u: newlink(1, "eth0", true, 1, 0), exact: true},
				{at: 10 * s, u: newlink(1, "eth0", false, 1, 1), exact: false},
				{at: 20 * s, u: newlink(1, "eth0", true, 2, 1), exact: true},
			},
			want: summary{
				Name: "eth0", Up: true, Carrier: true, TransitionsUp: 1, TransitionsDown: 1, LastChange: 20 * s,
				CarrierUpCount: 2, CarrierDownCount: 1, UntimedDown: 1,
			},
			wantTrs: []Transition{tr(0, true, 0, 0), tr(10*s, false, 0, 1), tr(20*s, true, 1, 0)},
		},
		{
			name: "kernel without counters times edges",
			steps: []step{
				{at: 0, u: oldlink(1, "eth0", true), exact: true},
				{at: 10 * s, u: oldlink(1, "eth0", false), exact: true},
				{at: 12 * s, u: oldlink(1, "eth0", true), exact: true},
			},
			want: summary{
				Name: "eth0", Up: true, Carrier: true, TransitionsUp: 1, TransitionsDown: 1, LastChange: 12 * s,
				DownCount: 1, DownSum: 2,
			},
			wantTrs: []Transition{tr(0, true, 0, 0), tr(10*s, false, 0, 1), tr(12*s, true, 1, 0)},
		},
		{
			name: "carrier change with unchanged counters falls back to the edge",
			steps: []step{
				{at: 0, u: newlink(1, "eth0", true, 1, 0), exact: true},
				{at: 10 * s, u: newlink(1, "eth0", false, 1, 0), exact: true},
				{at: 13 * s, u: newlink(1, "eth0", true, 1, 0), exact: true},
			},
			want: summary{
				Name: "eth0", Up: true, Carrier: true, TransitionsUp: 1, TransitionsDown: 1, LastChange: 13 * s,
				CarrierUpCount: 1, DownCount: 1, DownSum: 3,
			},
			wantTrs:       []Transition{tr(0, true, 0, 0), tr(10*s, false, 0, 1), tr(13*s, true, 1, 0)},
			contradictory: true,
		},
		{
			name: "admin down is a transition without carrier accounting",
			steps: []step{
				{at: 0, u: newlink(1, "eth0", true, 1, 0), exact: true},
				{at: 10 * s, u: with(newlink(1, "eth0", true, 1, 0), func(u *update) { u.flags &^= iffUp }), exact: true},
			},
			want: summary{
				Name: "eth0", Carrier: true, TransitionsDown: 1, LastChange: 10 * s, CarrierUpCount: 1,
			},
			wantTrs: []Transition{tr(0, true, 0, 0), {
				Index: 1, Name: "eth0", Time: at(10 * s), Carrier: true, OperState: OperUp,
			}},
		},
		{
			name: "attribute change alone publishes nothing",
			steps: []step{
				{at: 0, u: newlink(1, "eth0", true, 1, 0), exact: true},
				{at: 10 * s, u: with(newlink(1, "eth0", true, 1, 0), func(u *update) { u.mtu = 9000; u.alias = []byte("x") }), exact: true},
				{at: 20 * s, u: newlink(1, "eth0", true, 1, 0), exact: true},
			},
			want: summary{
				Name: "eth0", Up: true, Carrier: true, CarrierUpCount: 1,
			},
			wantTrs: []Transition{tr(0, true, 0, 0)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tb := newTable(testBounds, false, filter{})
			trs := run(tb, tt.steps)
			l := tb.links[1]
			if l == nil {
				t.Fatal("link 1 is missing")
			}
			if diff := cmp.Diff(tt.want, summarize(&l.Link)); diff != "" {
				t.Errorf("unexpected link (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantTrs, trs); diff != "" {
				t.Errorf("unexpected transitions (-want +got):\n%s", diff)
			}
			// The documented invariant for a link whose carrier is up.
			if l.Carrier && l.HasCounters && !tt.contradictory {
				growth := uint64(l.CarrierDownCount - tt.steps[0].u.carrierDown)
				if got := l.DownDurations.Count + l.UntimedDown; got != growth {
					t.Errorf("timed %d + untimed %d = %d down periods, want the down counter growth %d",
						l.DownDurations.Count, l.UntimedDown, got, growth)
				}
			}
			if tb.stale != 0 || tb.ignored != 0 {
				t.Errorf("stale %d, ignored %d; want 0, 0", tb.stale, tb.ignored)
			}
		})
	}
}

// TestApplyReplacement covers an ifindex whose counters went backwards.
func TestApplyReplacement(t *testing.T) {
	t.Parallel()
	const s = time.Second
	history := []step{
		{at: 0, u: newlink(1, "eth0", true, 5, 4), exact: true},
		{at: 10 * s, u: newlink(1, "eth0", false, 5, 5), exact: true},
		{at: 20 * s, u: newlink(1, "eth0", true, 6, 5), exact: true},
	}
	kept := summary{
		Name: "eth0", Up: true, Carrier: true, TransitionsUp: 1, TransitionsDown: 1, LastChange: 20 * s,
		CarrierUpCount: 6, CarrierDownCount: 5, DownCount: 1, DownSum: 10,
	}
	tests := []struct {
		name      string
		u         *update
		want      summary
		wantTr    bool
		wantStale uint64
	}{
		{
			name:      "old message of the same device is stale",
			u:         newlink(1, "eth0", false, 5, 5),
			want:      kept,
			wantStale: 1,
		},
		{
			name:      "same device with only the up counter behind is stale",
			u:         newlink(1, "eth0", true, 5, 5),
			want:      kept,
			wantStale: 1,
		},
		{
			name: "new address means a new device",
			u:    with(newlink(1, "eth0", true, 1, 0), func(u *update) { u.address = []byte{0x02, 9, 9, 9, 9, 9} }),
			want: summary{
				Name: "eth0", Up: true, Carrier: true, FirstSeen: 30 * s, LastChange: 30 * s, CarrierUpCount: 1,
			},
			wantTr: true,
		},
		{
			name: "new kind means a new device",
			u:    with(newlink(1, "eth0", false, 1, 1), func(u *update) { u.kind = []byte("veth") }),
			want: summary{
				Name: "eth0", FirstSeen: 30 * s, LastChange: 30 * s, CarrierUpCount: 1, CarrierDownCount: 1,
			},
			wantTr: true,
		},
		{
			name: "new kind with counters ahead still means a new device",
			u:    with(newlink(1, "eth0", true, 7, 6), func(u *update) { u.kind = []byte("dummy") }),
			want: summary{
				Name: "eth0", Up: true, Carrier: true, FirstSeen: 30 * s, LastChange: 30 * s,
				CarrierUpCount: 7, CarrierDownCount: 6,
			},
			wantTr: true,
		},
		{
			name: "new name with counters behind means a new device",
			u:    newlink(1, "eth9", true, 1, 0),
			want: summary{
				Name: "eth9", Up: true, Carrier: true, FirstSeen: 30 * s, LastChange: 30 * s, CarrierUpCount: 1,
			},
			wantTr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tb := newTable(testBounds, false, filter{})
			run(tb, history)
			got, ok := tb.apply(tt.u, at(30*s), true)
			if ok != tt.wantTr {
				t.Errorf("apply published %v (%+v), want %v", ok, got, tt.wantTr)
			}
			if ok && (got.CarrierUps != 0 || got.CarrierDowns != 0) {
				t.Errorf("new device transition has counts %d/%d, want a fresh baseline", got.CarrierUps, got.CarrierDowns)
			}
			if diff := cmp.Diff(tt.want, summarize(&tb.links[1].Link)); diff != "" {
				t.Errorf("unexpected link (-want +got):\n%s", diff)
			}
			if tb.stale != tt.wantStale {
				t.Errorf("stale = %d, want %d", tb.stale, tt.wantStale)
			}
			if l := tb.links[1]; l.Kind != string(tt.u.kind) && tt.wantStale == 0 {
				t.Errorf("kind = %q, want %q", l.Kind, tt.u.kind)
			}
		})
	}
}

func TestApplyRename(t *testing.T) {
	t.Parallel()
	const s = time.Second
	tb := newTable(testBounds, false, filter{include: regexp.MustCompile(`^eth`), exclude: regexp.MustCompile(`^eth9$`)})
	run(tb, []step{
		{at: 0, u: newlink(1, "tmp1", true, 1, 0), exact: true},
		{at: 10 * s, u: newlink(1, "tmp1", false, 1, 1), exact: true},
		{at: 15 * s, u: newlink(1, "tmp1", true, 2, 1), exact: true},
	})
	exported := func() []string {
		var names []string
		for _, l := range tb.snapshot(nil) {
			names = append(names, l.Name)
		}
		return names
	}
	if got := exported(); len(got) != 0 {
		t.Fatalf("exported %q before the rename, want none", got)
	}

	renames := []struct {
		name         string
		to           string
		wantExported []string
	}{
		{name: "into the include filter", to: "eth0", wantExported: []string{"eth0"}},
		{name: "into the exclude filter", to: "eth9", wantExported: nil},
		{name: "out of the include filter", to: "tmp2", wantExported: nil},
		{name: "back into the include filter", to: "eth1", wantExported: []string{"eth1"}},
	}
	for i, tt := range renames {
		// Sequential: each rename starts from the previous one.
		d := time.Duration(20+i) * s
		got, ok := tb.apply(newlink(1, tt.to, true, 2, 1), at(d), true)
		if !ok {
			t.Errorf("%s: rename to %s published no transition", tt.name, tt.to)
		} else if got.Name != tt.to || got.Index != 1 || got.CarrierUps != 0 || got.CarrierDowns != 0 {
			t.Errorf("%s: transition %+v, want name %s and no counts", tt.name, got, tt.to)
		}
		if diff := cmp.Diff(tt.wantExported, exported(), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s: unexpected exported links (-want +got):\n%s", tt.name, diff)
		}
		l, ok := tb.lookup(tt.to)
		if !ok {
			t.Fatalf("%s: lookup(%q) found nothing", tt.name, tt.to)
		}
		want := summary{
			Name: tt.to, Up: true, Carrier: true, TransitionsUp: 1, TransitionsDown: 1, LastChange: 15 * s,
			CarrierUpCount: 2, CarrierDownCount: 1, DownCount: 1, DownSum: 5,
		}
		if diff := cmp.Diff(want, summarize(&l)); diff != "" {
			t.Errorf("%s: history not kept (-want +got):\n%s", tt.name, diff)
		}
	}
	if _, ok := tb.lookup("tmp1"); ok {
		t.Error("the old name is still found")
	}
}

func TestApplyDelete(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		u           *update
		wantTr      *Transition
		wantLinks   int
		wantIgnored uint64
	}{
		{
			name:        "bridge port dellink keeps the link",
			u:           dellink(1, "eth0", afBridge),
			wantLinks:   2,
			wantIgnored: 1,
		},
		{
			name:        "bridge port newlink is ignored",
			u:           with(newlink(1, "eth0", false, 9, 9), func(u *update) { u.family = afBridge }),
			wantLinks:   2,
			wantIgnored: 1,
		},
		{
			name:      "device dellink deletes the link",
			u:         dellink(1, "eth0", afUnspec),
			wantTr:    &Transition{Index: 1, Name: "eth0", Time: at(time.Minute), Up: true, AdminUp: true, Carrier: true, OperState: OperUp, Deleted: true},
			wantLinks: 1,
		},
		{
			name:      "dellink of an unknown link",
			u:         dellink(3, "eth2", afUnspec),
			wantLinks: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tb := newTable(nil, false, filter{})
			run(tb, []step{
				{u: newlink(1, "eth0", true, 1, 0)},
				{u: newlink(2, "eth1", true, 1, 0)},
			})
			got, ok := tb.apply(tt.u, at(time.Minute), true)
			var gotTr *Transition
			if ok {
				gotTr = &got
			}
			if diff := cmp.Diff(tt.wantTr, gotTr); diff != "" {
				t.Errorf("unexpected transition (-want +got):\n%s", diff)
			}
			if len(tb.links) != tt.wantLinks {
				t.Errorf("%d links, want %d", len(tb.links), tt.wantLinks)
			}
			if tb.ignored != tt.wantIgnored {
				t.Errorf("ignored = %d, want %d", tb.ignored, tt.wantIgnored)
			}
			if l := tb.links[1]; tt.wantLinks == 2 && (l == nil || !l.Carrier || l.CarrierDownCount != 0) {
				t.Errorf("link 1 changed: %+v", l)
			}
		})
	}
}

func TestUpRule(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		flags   uint32
		oper    OperState
		hasOper bool
		carrier bool
		want    bool
	}{
		{name: "admin up and oper up", flags: iffUp, oper: OperUp, hasOper: true, carrier: true, want: true},
		{name: "admin up oper unknown with carrier", flags: iffUp, oper: OperUnknown, hasOper: true, carrier: true, want: true},
		{name: "admin up without operstate attribute and carrier", flags: iffUp, carrier: true, want: true},
		{name: "oper unknown without carrier", flags: iffUp, oper: OperUnknown, hasOper: true},
		{name: "admin down", oper: OperUp, hasOper: true, carrier: true},
		{name: "admin down oper unknown with carrier", oper: OperUnknown, hasOper: true, carrier: true},
		{name: "oper dormant", flags: iffUp, oper: OperDormant, hasOper: true, carrier: true},
		{name: "oper lower layer down", flags: iffUp, oper: OperLowerLayerDown, hasOper: true},
		{name: "oper down", flags: iffUp, oper: OperDown, hasOper: true},
		{name: "oper testing", flags: iffUp, oper: OperTesting, hasOper: true, carrier: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			u := &update{index: 1, name: []byte("x"), flags: tt.flags, operState: tt.oper, hasOperState: tt.hasOper, carrier: tt.carrier, hasCarrier: true}
			tb := newTable(nil, false, filter{})
			got, ok := tb.apply(u, at(0), true)
			if !ok {
				t.Fatal("new link published no transition")
			}
			if got.Up != tt.want || tb.links[1].Up != tt.want {
				t.Errorf("Up = %v (link %v), want %v", got.Up, tb.links[1].Up, tt.want)
			}
			if got.AdminUp != (tt.flags&iffUp != 0) || got.Carrier != tt.carrier || got.OperState != tt.oper {
				t.Errorf("transition %+v does not reflect the message", got)
			}
		})
	}

	t.Run("message without operstate keeps the previous one", func(t *testing.T) {
		t.Parallel()
		tb := newTable(nil, false, filter{})
		tb.apply(newlink(1, "eth0", true, 1, 0), at(0), true)
		u := newlink(1, "eth0", true, 1, 0)
		u.hasOperState, u.operState = false, OperUnknown
		if _, ok := tb.apply(u, at(time.Second), true); ok {
			t.Error("an unchanged link published a transition")
		}
		if l := tb.links[1]; l.OperState != OperUp || !l.Up {
			t.Errorf("OperState %v, Up %v; want up, true", l.OperState, l.Up)
		}
	})
}

func TestResync(t *testing.T) {
	t.Parallel()
	tb := newTable(nil, false, filter{})
	run(tb, []step{
		{u: newlink(1, "eth0", true, 1, 0), exact: true},
		{u: newlink(2, "eth1", true, 1, 0), exact: true},
		{u: newlink(3, "eth2", false, 0, 1), exact: true},
	})

	tb.beginResync()
	run(tb, []step{
		{at: time.Minute, u: newlink(1, "eth0", true, 1, 0)},
		{at: time.Minute, u: newlink(3, "eth2", false, 0, 1)},
		{at: time.Minute, u: newlink(4, "eth3", true, 1, 0)},
	})
	var got []Transition
	tb.endResync(at(time.Minute), func(tr Transition) { got = append(got, tr) })
	want := []Transition{{Index: 2, Name: "eth1", Time: at(time.Minute), Up: true, AdminUp: true, Carrier: true, OperState: OperUp, Deleted: true}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("unexpected transitions (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int32{1, 3, 4}, slices.Sorted(maps.Keys(tb.links))); diff != "" {
		t.Errorf("unexpected links (-want +got):\n%s", diff)
	}

	// A stale message during a dump still proves the link exists.
	tb.beginResync()
	tb.apply(newlink(1, "eth0", true, 0, 0), at(2*time.Minute), false)
	got = nil
	tb.endResync(at(2*time.Minute), func(tr Transition) { got = append(got, tr) })
	if len(tb.links) != 1 || tb.links[1] == nil || len(got) != 2 || tb.stale != 1 {
		t.Errorf("after a dump with only a stale link 1: links %v, %d deletions, stale %d; want only link 1, 2, 1",
			slices.Sorted(maps.Keys(tb.links)), len(got), tb.stale)
	}
}

func TestClear(t *testing.T) {
	t.Parallel()
	tb := newTable(nil, false, filter{})
	run(tb, []step{
		{u: newlink(1, "eth0", true, 1, 0), exact: true},
		{at: time.Second, u: newlink(2, "eth1", false, 1, 1), exact: true},
	})
	var got []Transition
	tb.clear(at(time.Minute), func(tr Transition) { got = append(got, tr) })
	slices.SortFunc(got, func(a, b Transition) int { return int(a.Index - b.Index) })
	want := []Transition{
		{Index: 1, Name: "eth0", Time: at(time.Minute), Up: true, AdminUp: true, Carrier: true, OperState: OperUp, Deleted: true},
		{Index: 2, Name: "eth1", Time: at(time.Minute), AdminUp: true, OperState: OperDown, Deleted: true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("unexpected transitions (-want +got):\n%s", diff)
	}
	if len(tb.links) != 0 || len(tb.snapshot(nil)) != 0 {
		t.Errorf("links after clear: %v", slices.Sorted(maps.Keys(tb.links)))
	}

	// An index of the gone namespace is a new device when it comes back:
	// its counters are the new baseline, whatever they are.
	run(tb, []step{{at: 2 * time.Minute, u: newlink(1, "eth0", true, 1, 0)}})
	l := tb.links[1]
	if l == nil || l.FirstSeen != at(2*time.Minute) || l.TransitionsUp+l.TransitionsDown != 0 || l.UntimedDown != 0 {
		t.Errorf("link 1 after clear and re-add: %+v, want a fresh link", l)
	}
}

func TestSnapshotAndLookup(t *testing.T) {
	t.Parallel()
	tb := newTable(nil, false, filter{exclude: regexp.MustCompile(`^br`)})
	br := newlink(1, "br0", true, 1, 0)
	br.kind = []byte("bridge")
	port := newlink(2, "veth0", true, 1, 0)
	port.master = 1
	orphan := newlink(3, "veth1", true, 1, 0)
	orphan.master = 42
	run(tb, []step{{u: br}, {u: port}, {u: orphan}})

	snap := tb.snapshot(nil)
	slices.SortFunc(snap, func(a, b Link) int { return int(a.Index - b.Index) })
	type row struct{ Name, Master, Address, Kind string }
	var got []row
	for _, l := range snap {
		got = append(got, row{l.Name, l.Master, l.Address, l.Kind})
	}
	want := []row{{"veth0", "br0", "02:00:00:00:00:02", ""}, {"veth1", "42", "02:00:00:00:00:03", ""}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("unexpected snapshot (-want +got):\n%s", diff)
	}
	l, ok := tb.lookup("br0")
	if !ok || l.Kind != "bridge" || l.Master != "" {
		t.Errorf("lookup(br0) = %+v, %v; want the bridge", l, ok)
	}
	if _, ok := tb.lookup("nope"); ok {
		t.Error("lookup(nope) found a link")
	}
}

func TestHistogram(t *testing.T) {
	t.Parallel()

	t.Run("buckets are cumulative", func(t *testing.T) {
		t.Parallel()
		var h Histogram
		for _, v := range []float64{0.5, 1, 7, 20, 60.5} {
			h.observe(v, []float64{1, 5, 10, 60}, false)
		}
		want := Histogram{Count: 5, Sum: 89, Buckets: []uint64{2, 2, 3, 4}}
		if diff := cmp.Diff(want, h); diff != "" {
			t.Errorf("unexpected histogram (-want +got):\n%s", diff)
		}
	})

	t.Run("observations above every bound count only in count", func(t *testing.T) {
		t.Parallel()
		var h Histogram
		h.observe(100, []float64{1, 5}, false)
		if h.Count != 1 || h.Sum != 100 || slices.ContainsFunc(h.Buckets, func(n uint64) bool { return n != 0 }) {
			t.Errorf("histogram %+v, want count 1, sum 100, empty buckets", h)
		}
	})

	t.Run("clones are independent", func(t *testing.T) {
		t.Parallel()
		bounds := []float64{1, 10}
		var h Histogram
		h.observe(1, bounds, true)
		c := h.clone()
		var arena []uint64
		c2 := h
		arena = c2.cloneInto(arena)
		if len(arena) != 2 || &arena[0] != &c2.Buckets[0] {
			t.Errorf("cloneInto did not use the arena: %v %v", arena, c2.Buckets)
		}
		h.observe(2, bounds, true)
		h.observe(0.5, bounds, true)
		want := Histogram{Count: 1, Sum: 1, Buckets: []uint64{1, 1}, Native: map[int]int64{0: 1}}
		if diff := cmp.Diff(want, c); diff != "" {
			t.Errorf("clone changed by later observations (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(want, c2); diff != "" {
			t.Errorf("clone into an arena changed by later observations (-want +got):\n%s", diff)
		}
		want = Histogram{Count: 3, Sum: 3.5, Buckets: []uint64{2, 3}, Native: map[int]int64{-8: 1, 0: 1, 8: 1}}
		if diff := cmp.Diff(want, h); diff != "" {
			t.Errorf("unexpected histogram (-want +got):\n%s", diff)
		}
	})

	t.Run("native disabled leaves native nil", func(t *testing.T) {
		t.Parallel()
		var h Histogram
		h.observe(3, nil, false)
		if h.Native != nil || h.Buckets != nil {
			t.Errorf("histogram %+v, want no buckets", h)
		}
	})
}

// TestObserveDoesNotAllocate checks that recording a duration allocates only
// the first time. Not parallel: AllocsPerRun counts every goroutine's
// allocations.
func TestObserveDoesNotAllocate(t *testing.T) {
	bounds := []float64{1, 10}
	var h Histogram
	h.observe(0.5, bounds, false)
	if n := testing.AllocsPerRun(100, func() { h.observe(2, bounds, false) }); n != 0 {
		t.Errorf("observe allocates %v times", n)
	}
}

func TestNativeIndex(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		v    float64
		want int
	}{
		{name: "one", v: 1, want: 0},
		{name: "two", v: 2, want: 8},
		{name: "half", v: 0.5, want: -8},
		{name: "four", v: 4, want: 16},
		{name: "just above one", v: math.Nextafter(1, 2), want: 1},
		{name: "slightly above one", v: 1.0001, want: 1},
		{name: "just below two", v: math.Nextafter(2, 0), want: 8},
		{name: "just above two", v: math.Nextafter(2, 3), want: 9},
		{name: "zero", v: 0, want: math.MinInt},
		{name: "below the zero threshold", v: 1e-40, want: math.MinInt},
		{name: "at the zero threshold", v: NativeZeroThreshold, want: math.MinInt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := nativeIndex(tt.v); got != tt.want {
				t.Errorf("nativeIndex(%v) = %d, want %d", tt.v, got, tt.want)
			}
		})
	}
}

// TestCarrierFlapsProperty drives one link through random carrier flaps the
// way the kernel reports them: it keeps the true counters and sends a message
// with the current state only at some flaps, so that the others are
// coalesced into the next message. Time advances only between flaps.
func TestCarrierFlapsProperty(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(20250301, 1))
	var totalTimed, totalUntimed uint64
	for iter := range 500 {
		up, down := rng.Uint32N(100)+1, rng.Uint32N(100)
		initialUp, initialDown := up, down
		now := time.Duration(0)

		// The scripted down periods, and the ones the watcher can time:
		// those whose start and end each came in a message that reported
		// exactly one flap.
		var lengths []float64
		var timed []time.Duration
		var downStart time.Duration
		startSeen := false

		flaps := 2 * (rng.IntN(30) + 1) // even: the carrier ends up
		type msg struct {
			at      time.Duration
			carrier bool
			up      uint32
			down    uint32
		}
		var msgs []msg
		pending := 0 // flaps since the last message
		carrier := true
		for i := range flaps {
			now += time.Duration(rng.IntN(60_000)+1) * time.Millisecond
			carrier = !carrier
			if carrier {
				up++
			} else {
				down++
			}
			pending++
			emit := rng.IntN(3) != 0 || i == flaps-1
			single := emit && pending == 1
			if emit {
				msgs = append(msgs, msg{now, carrier, up, down})
				if rng.IntN(5) == 0 { // a duplicate, such as an MTU change
					msgs = append(msgs, msg{now, carrier, up, down})
				}
				pending = 0
			}
			if !carrier {
				downStart, startSeen = now, single
			} else {
				lengths = append(lengths, (now - downStart).Seconds())
				if startSeen && single {
					timed = append(timed, now-downStart)
				}
			}
		}

		bounds := slices.Clone(lengths)
		slices.Sort(bounds)
		bounds = slices.Compact(bounds)
		tb := newTable(bounds, false, filter{})
		tb.apply(newlink(1, "eth0", true, initialUp, initialDown), at(0), iter%2 == 0)
		for _, m := range msgs {
			tb.apply(newlink(1, "eth0", m.carrier, m.up, m.down), at(m.at), true)
		}
		l := tb.links[1]

		// The watcher measures each period from its own start, so the
		// histogram, sum included, is bit-exact.
		var want Histogram
		for _, d := range timed {
			want.observe(d.Seconds(), bounds, false)
		}
		if diff := cmp.Diff(want, l.DownDurations, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("iteration %d: timed down periods differ from the scripted ones (-want +got):\n%s", iter, diff)
		}
		if got, want := l.DownDurations.Count+l.UntimedDown, uint64(down-initialDown); got != want {
			t.Fatalf("iteration %d: timed %d + untimed %d = %d, want the down counter growth %d",
				iter, l.DownDurations.Count, l.UntimedDown, got, want)
		}
		if !l.Carrier || l.CarrierDownCount != down || l.CarrierUpCount != up {
			t.Fatalf("iteration %d: link ends with carrier %v, counts %d/%d; want true, %d/%d",
				iter, l.Carrier, l.CarrierUpCount, l.CarrierDownCount, up, down)
		}
		totalTimed += l.DownDurations.Count
		totalUntimed += l.UntimedDown
	}
	if totalTimed == 0 || totalUntimed == 0 {
		t.Errorf("timed %d, untimed %d: the simulation does not exercise both", totalTimed, totalUntimed)
	}
}
